"""Policy attachments (附件): what is accepted, where it is kept, and the public download.

Only PDF, Word (.doc, .docx) and PNG/JPEG/GIF images are accepted, and the type is read from
the bytes (magic numbers), never from the name or the declared content type: the extension
must agree with what the bytes are. A .docx is a zip holding ``word/document.xml``; its
declared uncompressed sizes are checked so that a zip bomb is refused without unpacking it.
SVG (it can carry script), HTML, executables and everything else are refused, and so is a polyglot:
a file whose first bytes are an accepted header but which holds HTML where a browser's content sniffer
looks (``services.security.markup_in_sniffing_window``). A name with a control character or a ``..``
step is refused rather than cleaned: no browser sends one.

Files are stored content-addressed as ``$GONGKAI_DATA_DIR/attachments/<sha256>``: no part of
a path ever comes from the uploader. The blob is written before the row is committed (a row
never points at a missing file; a failed commit leaves at most an unreferenced blob), and
removed after the last row naming it is deleted.

The public download ``/interpret/attachments/<id>/<filename>`` answers only while the owner
policy is published, as a download (``Content-Disposition: attachment`` with a safe name)
with ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, abort, current_app, send_file
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from interpret.models import Attachment, OutboxEvent, Policy
from interpret.workflow import ContentProblem, ContentState
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity, public
from services.db import get_session
from services.permissions import Permission, require
from services.security import markup_in_sniffing_window, suspicious_filename
from services.settings import Settings

log = logging.getLogger(__name__)

bp = Blueprint("interpret_attachments", __name__, url_prefix="/interpret/attachments")

OWNER_POLICY = "policy"
MAX_FILENAME = 120
MAX_ZIP_ENTRIES = 1000
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
"""The most a .docx may declare it unpacks to, all entries together."""
MAX_RATIO = 100
"""The highest compression ratio accepted for an entry declaring more than RATIO_CHECKED_FROM bytes."""
RATIO_CHECKED_FROM = 1024 * 1024
ALLOWED_LABEL = "PDF、Word（.doc/.docx）、PNG、JPEG、GIF"


@dataclass(frozen=True)
class FileKind:
    label: str
    content_type: str
    extensions: frozenset[str]


PDF = FileKind("PDF", "application/pdf", frozenset({".pdf"}))
DOC = FileKind("Word (.doc)", "application/msword", frozenset({".doc"}))
DOCX = FileKind(
    "Word (.docx)", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", frozenset({".docx"})
)
PNG = FileKind("PNG", "image/png", frozenset({".png"}))
JPEG = FileKind("JPEG", "image/jpeg", frozenset({".jpg", ".jpeg"}))
GIF = FileKind("GIF", "image/gif", frozenset({".gif"}))
KINDS = (PDF, DOC, DOCX, PNG, JPEG, GIF)
ALLOWED_EXTENSIONS = frozenset(extension for kind in KINDS for extension in kind.extensions)

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
WORD_STREAM = "WordDocument".encode("utf-16-le")
"""The stream every Word 97-2003 document has, named (UTF-16) in the compound file's directory."""


class AttachmentRejected(ContentProblem):
    """An upload that is not accepted; answered 422 with the error under ``files.file``."""

    location = "files"

    def __init__(self, message: str) -> None:
        super().__init__({"file": [message]})


# -- what the bytes are ------------------------------------------------------------------------


def _looks_like_markup(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf\xff\xfe\xfe\xff \t\r\n\x00").lower()
    return text.startswith(b"<")


def _describe_refused(data: bytes) -> str:
    """Name what a refused file really is, when that is easy to tell (for a clearer message)."""
    head = data[:1024]
    if _looks_like_markup(head):
        lowered = data[:4096].lower()
        if b"<svg" in lowered:
            return "SVG 图像（可能含脚本）"
        return "HTML/XML 文本"
    if head.startswith(b"MZ") or head.startswith(b"\x7fELF"):
        return "可执行程序"
    if head.startswith(b"PK\x03\x04"):
        return "压缩包"
    return "未知类型"


def _check_docx(data: bytes) -> None:
    """A real .docx, and no zip bomb: checked from the central directory, nothing is unpacked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise AttachmentRejected("文件不是有效的 Word（.docx）文档") from None
    if len(entries) > MAX_ZIP_ENTRIES:
        raise AttachmentRejected("Word 文档内部文件过多，疑似压缩炸弹，已拒绝")
    names = {entry.filename for entry in entries}
    if "word/document.xml" not in names or "[Content_Types].xml" not in names:
        raise AttachmentRejected("文件不是有效的 Word（.docx）文档")
    if any(name.lower().endswith("vbaproject.bin") for name in names):
        raise AttachmentRejected("不接受含宏的 Word 文档")
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise AttachmentRejected("不接受加密的 Word 文档")
    total = 0
    for entry in entries:
        total += entry.file_size
        if entry.file_size > RATIO_CHECKED_FROM and entry.file_size > MAX_RATIO * max(entry.compress_size, 1):
            raise AttachmentRejected("Word 文档压缩比异常，疑似压缩炸弹，已拒绝")
    if total > MAX_UNPACKED_BYTES:
        raise AttachmentRejected("Word 文档解压后过大，疑似压缩炸弹，已拒绝")


def sniff(data: bytes) -> FileKind | None:
    """The accepted kind these bytes are, or None (the docx checks raise with their own reason)."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data.startswith(OLE2) and WORD_STREAM in data:
        return DOC
    if data.startswith(b"PK\x03\x04"):
        _check_docx(data)
        return DOCX
    return None


def check_upload(filename: str, data: bytes, max_bytes: int) -> tuple[str, FileKind]:
    """The safe name and the kind of an upload; raise AttachmentRejected when it is not accepted."""
    if len(data) > max_bytes:
        raise AttachmentRejected(f"文件超过大小上限（{size_label(max_bytes)}）")
    if not data:
        raise AttachmentRejected("文件是空的")
    if suspicious_filename(filename):
        raise AttachmentRejected("文件名含有控制字符或路径（如 ../），请改名后重新上传")
    name = safe_filename(filename)
    extension = Path(name).suffix.lower()
    if extension not in ALLOWED_EXTENSIONS:
        raise AttachmentRejected(f"只接受 {ALLOWED_LABEL} 文件")
    kind = sniff(data)
    if kind is None:
        raise AttachmentRejected(
            f"文件内容是{_describe_refused(data)}，不是允许的类型（只接受 {ALLOWED_LABEL}），与扩展名 {extension} 不符"
        )
    if extension not in kind.extensions:
        raise AttachmentRejected(f"文件内容是 {kind.label}，与扩展名 {extension} 不符")
    if markup_in_sniffing_window(data):
        raise AttachmentRejected(f"文件开头是 {kind.label}，但含有网页代码（可能是伪装的网页），已拒绝")
    return name, kind


def size_label(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MiB"
    if size >= 1024:
        return f"{size / 1024:g} KiB"
    return f"{size} B"


_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*;]')


def safe_filename(raw: str) -> str:
    """A name to show and to offer as the download name: no path, no control characters, not too long."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_CHARACTERS.sub("_", name)
    name = " ".join(name.split()).strip(" .")
    stem, extension = os.path.splitext(name)
    extension = extension.lower()
    stem = stem[: MAX_FILENAME - len(extension)].strip(" .") or "附件"
    return f"{stem}{extension}"


# -- storage ----------------------------------------------------------------------------------


def attachments_dir(settings: Settings) -> Path:
    return settings.data_dir / "attachments"


def blob_path(settings: Settings, sha256: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("not a sha256 digest")
    return attachments_dir(settings) / sha256


def store_blob(settings: Settings, data: bytes) -> str:
    """Write the bytes under their SHA-256 (atomically; an existing identical blob is kept)."""
    digest = hashlib.sha256(data).hexdigest()
    target = blob_path(settings, digest)
    if target.is_file() and target.stat().st_size == len(data):
        return digest
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return digest


def remove_unreferenced_blob(session: Session, settings: Settings, sha256: str) -> None:
    """After a deletion is committed: remove the blob if no attachment row names it any more."""
    still_used = session.scalar(select(func.count()).select_from(Attachment).where(Attachment.sha256 == sha256))
    if not still_used:
        blob_path(settings, sha256).unlink(missing_ok=True)


# -- the rules ----------------------------------------------------------------------------------


def _audit(session: Session, actor: StaffIdentity, action: str, policy: Policy, **detail: object) -> None:
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "interpret", action, AuditResult.SUCCESS, object_type="policy", object_id=str(policy.id),
        detail=dict(detail),
    ))


def _require_draft(policy: Policy) -> None:
    if policy.state != ContentState.DRAFT:
        raise ContentProblem({"state": ["只有草稿可以增删附件；已提交的请先退回，已发布的请先修订"]})


def add_attachment(
    session: Session, settings: Settings, actor: StaffIdentity, policy: Policy, filename: str, data: bytes
) -> Attachment:
    """Check, store and record an upload for a draft policy (the caller commits)."""
    require(actor.grants, Permission.DRAFT, policy.department)
    _require_draft(policy)
    name, kind = check_upload(filename, data, settings.attachment_max_bytes)
    digest = store_blob(settings, data)
    attachment = Attachment(
        owner_type=OWNER_POLICY, owner_id=policy.id, filename=name, content_type=kind.content_type,
        size=len(data), sha256=digest,
    )
    session.add(attachment)
    session.flush()
    _audit(session, actor, "policy.attachment.add", policy, attachment_id=attachment.id, filename=name)
    return attachment


def delete_attachment(session: Session, actor: StaffIdentity, policy: Policy, attachment: Attachment) -> None:
    """Remove an attachment of a draft policy (the caller commits, then removes the unreferenced blob)."""
    require(actor.grants, Permission.DRAFT, policy.department)
    _require_draft(policy)
    session.delete(attachment)
    session.flush()
    _audit(session, actor, "policy.attachment.delete", policy, attachment_id=attachment.id,
           filename=attachment.filename)


def attachments_of(session: Session, policy: Policy) -> list[Attachment]:
    return list(session.scalars(
        select(Attachment).where(Attachment.owner_type == OWNER_POLICY, Attachment.owner_id == policy.id)
        .order_by(Attachment.id)
    ))


def public_url(attachment: Attachment) -> str:
    return f"/interpret/attachments/{attachment.id}/{quote(attachment.filename)}"


def file_response(settings: Settings, attachment: Attachment) -> Response:
    """The stored file as a download under its safe name, never rendered by the browser."""
    path = blob_path(settings, attachment.sha256)
    if not path.is_file():
        log.error("attachment %s: blob %s is missing", attachment.id, attachment.sha256)
        abort(404)
    response = send_file(
        path, mimetype=attachment.content_type, as_attachment=True, download_name=attachment.filename,
        etag=attachment.sha256, conditional=True, max_age=None,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "no-cache"  # revalidate (cheap: ETag), so a withdrawal shows at once
    return response


# -- the public download --------------------------------------------------------------------------


@bp.get("/<int:attachment_id>/<filename>")
@public
def download(attachment_id: int, filename: str) -> Response:
    """An attachment of a published policy (404 for anything else, including a wrong file name)."""
    session = get_session("interpret")
    attachment = session.get(Attachment, attachment_id)
    if attachment is None or attachment.owner_type != OWNER_POLICY or attachment.filename != filename:
        abort(404)
    policy = session.get(Policy, attachment.owner_id)
    if policy is None or policy.state != ContentState.PUBLISHED:
        abort(404)
    settings: Settings = current_app.extensions["gongkai.settings"]
    return file_response(settings, attachment)
