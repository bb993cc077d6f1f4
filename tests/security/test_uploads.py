"""Uploads that lie about what they are, and downloads that try to leave the attachment store.

Two ways in take files: the public 我要咨询 form (PDF, JPEG, PNG) and the interpret staff API
(``POST /api/interpret/manage/policies/<id>/attachments``: PDF, Word, PNG, JPEG, GIF). The consult JSON
API takes no file. Each hostile file is refused with a field error (422) and nothing is stored: no
consultation, no attachment row, no blob on disk; a real file of each kind is still accepted. Download
paths with ``..`` in every encoding answer 404 (or 400), never a file from outside the store, and every
download is an attachment with ``nosniff``.
"""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

LIMIT = 64 * 1024
"""ATTACHMENT_MAX_BYTES in these tests (the default is 20 MiB: the check is the same, the upload smaller)."""

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00" + b"\x00" * 48
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00" \
      b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
PAGE = b"<html><body><script>alert(document.cookie)</script></body></html>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
       b"<script>alert(document.domain)</script></svg>")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _docx(document: bytes = b"<w:document/>", **more: bytes) -> bytes:
    return _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": document, **more})


def _zip_bomb() -> bytes:
    """A .docx of a few KB whose document expands to 16 MiB (ratio above a thousand)."""
    return _docx(b"\x00" * (16 * 1024 * 1024))


def _many_entries() -> bytes:
    return _docx(**{f"word/media/{number}.xml": b"x" for number in range(1200)})


HOSTILE_FILES: tuple[tuple[str, str, bytes], ...] = (
    ("a GIF header followed by a page (polyglot)", "photo.gif", GIF[:13] + PAGE),
    ("a PNG header followed by a page (polyglot)", "photo.png", PNG[:16] + PAGE),
    ("a PDF header followed by a page (polyglot)", "report.pdf", b"%PDF-1.4\n" + PAGE + b"\n%%EOF"),
    ("a JPEG header followed by SVG (polyglot)", "photo.jpg", b"\xff\xd8\xff\xe0" + SVG),
    ("an SVG with script", "chart.svg", SVG),
    ("an SVG renamed .png", "chart.png", SVG),
    ("an HTML page renamed .pdf", "report.pdf", b"<!DOCTYPE html>" + PAGE),
    ("an HTML page with a BOM renamed .jpg", "photo.jpg", b"\xef\xbb\xbf" + PAGE),
    ("an executable renamed .pdf", "setup.pdf", b"MZ\x90\x00" + b"\x00" * 200),
    ("a zip bomb named .docx", "bomb.docx", _zip_bomb()),
    ("a zip of 1,200 entries named .docx", "many.docx", _many_entries()),
    ("a zip bomb named .zip", "bomb.zip", _zip_bomb()),
    ("a file over ATTACHMENT_MAX_BYTES", "big.pdf", PDF + b"0" * LIMIT),
    ("a NUL in the name", "report\x00.pdf", PDF),
    ("../../etc/passwd as the name", "../../etc/passwd", PDF),
    ("../../etc/passwd.pdf as the name", "../../etc/passwd.pdf", PDF),
    ("an empty file", "empty.pdf", b""),
)


@pytest.fixture
def small_limit(site: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    for service in ("consult", "interpret"):
        app = site.suite[service]
        monkeypatch.setitem(app.extensions, "gongkai.settings",
                            replace(app.extensions["gongkai.settings"], attachment_max_bytes=LIMIT))
    return LIMIT


def _stored_blobs(site: Any) -> set[str]:
    from interpret.attachments import attachments_dir

    folder = attachments_dir(site.suite["interpret"].extensions["gongkai.settings"])
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def _consult_rows(site: Any) -> tuple[int, int]:
    from consult.models import Consultation, SubmissionAttachment

    with site.transaction("consult") as session:
        return (session.scalar(select(func.count()).select_from(Consultation)) or 0,
                session.scalar(select(func.count()).select_from(SubmissionAttachment)) or 0)


def _interpret_rows(site: Any) -> int:
    from interpret.models import Attachment

    with site.transaction("interpret") as session:
        return int(session.scalar(select(func.count()).select_from(Attachment)) or 0)


def _ask(site: Any, filename: str, content: bytes) -> Any:
    browser = site.browser()
    return browser.open("/consult/ask", "POST", content_type="multipart/form-data", data={
        "csrf_token": browser.csrf("/consult/ask"), "title": "附件安全测试",
        "question": f"请看附件。{uuid.uuid4().hex[:6]}", "name": "王五", "phone": f"139{uuid.uuid4().int % 10**8:08d}",
        "attachments": (io.BytesIO(content), filename)})


def test_lying_files_are_refused_by_the_public_form_and_nothing_is_stored(site: Any, small_limit: int) -> None:
    refused = []
    for label, filename, content in HOSTILE_FILES:
        before = _consult_rows(site)
        answer = _ask(site, filename, content)
        page = answer.get_data(as_text=True)
        error = re.search(r'<ul class="field-errors" id="attachments-error">(.*?)</ul>', page, re.S)
        assert answer.status_code == 422 and error, f"{label}: {answer.status_code}"
        assert _consult_rows(site) == before, f"{label}: something was stored"
        assert 'class="tracking-number"' not in page
        refused.append(label)
    # Real files of each accepted kind still go through, stored under a clean name.
    for filename, content in (("申请材料.pdf", PDF), ("照片.png", PNG), ("扫描件.pdf", PDF + b"%2")):
        before = _consult_rows(site)
        answer = _ask(site, filename, content)
        assert answer.status_code == 200, (filename, answer.get_data(as_text=True)[:500])
        assert _consult_rows(site) == (before[0] + 1, before[1] + 1)
    from consult.models import SubmissionAttachment

    with site.transaction("consult") as session:
        names = set(session.scalars(select(SubmissionAttachment.filename)))
    assert names == {"申请材料.pdf", "照片.png", "扫描件.pdf"}
    print(f"\n[attack] uploads (consult form): {len(refused)} lying files x 1 field refused, 3 real files accepted")


def test_lying_files_are_refused_by_the_interpret_api_and_nothing_is_stored(site: Any, small_limit: int) -> None:
    records = site.seed()
    path = f"/api/interpret/manage/policies/{records['policy_draft']}/attachments"
    blobs, rows = _stored_blobs(site), _interpret_rows(site)
    checks = 0
    for label, filename, content in HOSTILE_FILES:
        answer = site.api("editor_a", "POST", path, data={"file": (io.BytesIO(content), filename)},
                          content_type="multipart/form-data")
        assert answer.status_code == 422, f"{label}: {answer.status_code} {answer.get_data(as_text=True)[:300]}"
        body = answer.get_json()
        assert body["errors"]["files"]["file"], (label, body)
        assert (_stored_blobs(site), _interpret_rows(site)) == (blobs, rows), f"{label}: something was stored"
        checks += 1
    accepted = []
    for filename, content in (("通知.pdf", PDF + b"%x"), ("图解.png", PNG), ("图解.gif", GIF), ("原文.docx", _docx())):
        answer = site.api("editor_a", "POST", path, data={"file": (io.BytesIO(content), filename)},
                          content_type="multipart/form-data")
        assert answer.status_code == 201, (filename, answer.get_data(as_text=True)[:300])
        accepted.append(answer.get_json()["filename"])
    assert accepted == ["通知.pdf", "图解.png", "图解.gif", "原文.docx"]
    print(f"\n[attack] uploads (interpret API): {checks} lying files x 1 field refused, {len(accepted)} real files "
          f"accepted")


TRAVERSALS: tuple[str, ...] = (
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "..%252f..%252f..%252fetc%252fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\etc\\passwd",
    "..%5c..%5c..%5cetc%5cpasswd",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "..%c0%af..%c0%afetc%c0%afpasswd",
    "..%00/etc/passwd",
    "../../services/settings.py",
    "..%2f..%2f..%2fservices%2fsettings.py",
    "../../../.env",
)
"""Relative, encoded, double-encoded, overlong-UTF-8, backslashed and absolute ways out of a folder."""


def _download_prefixes(records: dict[str, Any]) -> tuple[str, ...]:
    return (
        f"/interpret/attachments/{records['public_attachment']}/",
        "/static/",
        "/static/css/",
        "/press/static/",
        "/api/interpret/docs/assets/",
        f"/consult/staff/{records['consultation']}/attachments/",
    )


def test_downloads_never_leave_the_store(site: Any) -> None:
    records = site.seed()
    secrets = (b"root:", b"def load_settings", b"SECRET_KEY", b"[Content_Types]")
    staff = site.browser("editor_a")
    tried = 0
    for prefix in _download_prefixes(records):
        for traversal in TRAVERSALS:
            path = prefix + traversal
            for who, browser in (("public", site.browser()), ("staff", staff)):
                answer = browser.get(path)
                tried += 1
                if answer.status_code == 308:  # "//" merged into "/": a redirect on this site, then a 404
                    location = urlsplit(answer.headers["Location"])
                    assert location.netloc in ("", "localhost"), location
                    answer = browser.get(location.path)
                assert answer.status_code in (400, 404), f"{path} ({who}): {answer.status_code}"
                assert not any(secret in answer.get_data() for secret in secrets), f"{path} ({who}) leaked a file"
    # The real downloads: always an attachment, never sniffed, the public one sandboxed.
    public = site.browser().get(f"/interpret/attachments/{records['public_attachment']}/"
                                f"{records['public_attachment_name']}")
    assert public.status_code == 200 and public.get_data().startswith(b"%PDF-")
    assert public.headers["Content-Disposition"].startswith("attachment")
    assert public.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in public.headers["Content-Security-Policy"]
    assert site.browser().get(f"/interpret/attachments/{records['staff_attachment']}/"
                              f"{records['staff_attachment_name']}").status_code == 404  # a draft's file
    staff_file = staff.get(f"/consult/staff/{records['consultation']}/attachments/{records['consultation_attachment']}")
    assert staff_file.status_code == 200
    assert staff_file.headers["Content-Disposition"].startswith("attachment")
    assert staff_file.headers["X-Content-Type-Options"] == "nosniff"
    api_file = site.api("editor_a", "GET", f"/api/interpret/manage/policies/{records['policy_draft']}/attachments/"
                        f"{records['staff_attachment']}")
    assert api_file.status_code == 200
    assert api_file.headers["Content-Disposition"].startswith("attachment")
    assert api_file.headers["X-Content-Type-Options"] == "nosniff"
    print(f"\n[attack] downloads: {len(TRAVERSALS)} traversals x {len(_download_prefixes(records))} download paths "
          f"x 2 callers = {tried} checks")


def test_the_store_holds_blobs_by_digest_only(site: Any) -> None:
    """Whatever the uploaded name, the file on disk is named by its SHA-256 inside the store."""
    from interpret.attachments import attachments_dir

    records = site.seed()
    folder = attachments_dir(site.suite["interpret"].extensions["gongkai.settings"])
    answer = site.api("editor_a", "POST", f"/api/interpret/manage/policies/{records['policy_draft']}/attachments",
                      data={"file": (io.BytesIO(PDF + b"%digest"), "通知 (2).pdf")},
                      content_type="multipart/form-data")
    assert answer.status_code == 201, answer.get_data(as_text=True)
    stored = answer.get_json()
    assert stored["filename"] == "通知 (2).pdf"
    assert (folder / stored["sha256"]).is_file()
    assert all(re.fullmatch(r"[0-9a-f]{64}", path.name) for path in Path(folder).iterdir()
               if not path.name.startswith(".upload-"))
