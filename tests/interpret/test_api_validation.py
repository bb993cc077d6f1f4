"""Invalid input to the staff API gets a 4xx with field errors and changes nothing (issue #4, must-show 3).

Bad 文号, a duplicate 文号 for the same issuer, 索引号 (generated, never duplicated), publishing an
interpretation without a policy link, an infographic without its text alternative, an oversize or
disguised attachment (HTML or an executable named .pdf, SVG with script, a zip-bomb .docx), and
``<script>`` in a body: each is answered 4xx with field errors, and every table of the service
(plus the attachment store) counts the same rows afterwards.
"""

from __future__ import annotations

import dataclasses
import io
import re
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from services.db import get_database
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
       b"<script>alert(document.domain)</script></svg>")
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 100 + b"This program cannot be run"


def docx(document: bytes = b"<w:document/>") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", document)
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a Word document")
    return buffer.getvalue()


def zip_bomb_docx() -> bytes:
    """A .docx whose document declares 64 MiB that deflate to a few dozen KiB."""
    return docx(b"\x00" * (64 * 1024 * 1024))


class StaffApi:
    def __init__(self, suite: dict[str, Flask]) -> None:
        self.client = Client(PathDispatcher(suite), use_cookies=False)
        self.address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9"
        self.tokens: dict[str, str] = {}

    def call(self, username: str, method: str, path: str, **kwargs: Any) -> TestResponse:
        if username not in self.tokens:
            answer = self.client.post("/api/auth/token", json={"username": username, "password": STAFF_PASSWORD},
                                      environ_base={"REMOTE_ADDR": self.address})
            assert answer.status_code == 200, answer.get_json()
            self.tokens[username] = answer.get_json()["token"]
        return self.client.open(f"/api/interpret/manage{path}", method=method,
                                headers={"Authorization": f"Bearer {self.tokens[username]}"},
                                environ_base={"REMOTE_ADDR": self.address}, **kwargs)

    def ok(self, username: str, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        answer = self.call(username, method, path, **kwargs)
        assert answer.status_code == status, (method, path, answer.status_code, answer.get_json())
        body: dict[str, Any] = answer.get_json()
        return body

    def upload(self, username: str, policy_id: int, filename: str, data: bytes,
               content_type: str = "application/pdf") -> TestResponse:
        return self.call(username, "POST", f"/policies/{policy_id}/attachments",
                         data={"file": (io.BytesIO(data), filename, content_type)})


@pytest.fixture
def api(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> StaffApi:
    monkeypatch.setattr(get_database("interpret", suite["interpret"]), "publisher", None)
    return StaffApi(suite)


def interpret_counts(suite: dict[str, Flask]) -> dict[str, int]:
    """Rows in every table of the interpret service, and files in the attachment store."""
    from interpret.models import Base

    counts = {}
    with get_database("interpret", suite["interpret"]).transaction() as session:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = session.scalar(select(func.count()).select_from(table)) or 0
        serials = session.execute(select(Base.metadata.tables["index_number_serial"])).all()
    counts["serials"] = hash(tuple(sorted(tuple(row) for row in serials)))
    store = attachment_store(suite)
    counts["stored_files"] = len(list(store.iterdir())) if store.is_dir() else 0
    return counts


def attachment_store(suite: dict[str, Flask]) -> Path:
    return Path(suite["interpret"].extensions["gongkai.settings"].data_dir) / "attachments"


@contextmanager
def unchanged(suite: dict[str, Flask]) -> Iterator[None]:
    before = interpret_counts(suite)
    yield
    assert interpret_counts(suite) == before


def refused(answer: TestResponse, field: str, *, status: int = 422, location: str = "json") -> str:
    """Assert a 4xx with an error for ``field``; returns its message."""
    body = answer.get_json()
    assert answer.status_code == status, body
    assert set(body) >= {"code", "status", "message", "errors"}, body
    messages = body["errors"][location][field]
    assert messages and all(isinstance(message, str) and message for message in messages)
    return str(messages[0])


POLICY = {"title": "关于开展科技计划项目申报工作的通知", "issuer": "安徽省科学技术厅", "level": "本级",
          "body": "<p>各有关单位：现将有关事项通知如下。</p>"}
INTERPRETATION = {"title": "科技计划项目申报政策解读", "form": "文字解读", "interpreter_kind": "处室",
                  "body": "<p>一、申报条件。</p>"}


def test_bad_document_number_is_refused(suite: dict[str, Flask], api: StaffApi) -> None:
    for bad in ("皖科政2017-12", "皖科政〔17〕12号", "〔2017〕12号", "皖科政〔1850〕12号", "<b>皖科政〔2017〕12号</b>"):
        with unchanged(suite):
            message = refused(api.call("editor_a", "POST", "/policies", json={**POLICY, "document_number": bad}),
                              "document_number")
        assert "皖科政〔2017〕12号" in message  # says what a good one looks like
    policy = api.ok("editor_a", "POST", "/policies", 201, json={**POLICY, "document_number": "皖科政[2017]12号"})
    assert policy["document_number"] == "皖科政〔2017〕12号"  # brackets normalised as the standard writes them
    with unchanged(suite):
        refused(api.call("editor_a", "PATCH", f"/policies/{policy['id']}", json={"document_number": "12号"}),
                "document_number")
    assert api.ok("editor_a", "GET", f"/policies/{policy['id']}")["document_number"] == "皖科政〔2017〕12号"


def test_duplicate_document_number_for_the_same_issuer_is_refused(suite: dict[str, Flask], api: StaffApi) -> None:
    first = api.ok("editor_a", "POST", "/policies", 201, json={**POLICY, "document_number": "皖科政〔2017〕12号"})
    with unchanged(suite):
        message = refused(api.call("editor_a", "POST", "/policies",
                                   json={**POLICY, "title": "另一份文件", "document_number": "皖科政（2017）12号"}),
                          "document_number")
    assert "相同文号" in message
    # Another division of the same issuer does not see the first policy, but the number is still taken.
    with unchanged(suite):
        refused(api.call("editor_b", "POST", "/policies", json={**POLICY, "document_number": "皖科政〔2017〕12号"}),
                "document_number")
    # Changing another policy to the taken number is refused too; a different issuer may use it.
    second = api.ok("editor_a", "POST", "/policies", 201, json={**POLICY, "title": "第二份文件"})
    with unchanged(suite):
        refused(api.call("editor_a", "PATCH", f"/policies/{second['id']}",
                         json={"document_number": "皖科政〔2017〕12号"}), "document_number")
    api.ok("editor_a", "POST", "/policies", 201,
           json={**POLICY, "issuer": "安徽省财政厅", "document_number": "皖科政〔2017〕12号"})
    assert first["document_number"] == "皖科政〔2017〕12号"


def test_index_numbers_are_generated_consecutively_and_cannot_be_given(
    suite: dict[str, Flask], api: StaffApi
) -> None:
    with unchanged(suite):
        refused(api.call("editor_a", "POST", "/policies", json={**POLICY, "index_number": "KJTA/201701-00001"}),
                "index_number")
    first = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    second = api.ok("editor_a", "POST", "/policies", 201, json={**POLICY, "title": "第二份"})
    month = f"{datetime.now(UTC):%Y%m}"
    pattern = re.compile(rf"^KJTA/{month}-(\d{{5}})$")
    serials = [pattern.match(policy["index_number"]) for policy in (first, second)]
    assert all(serials), (first["index_number"], second["index_number"])
    assert int(serials[1].group(1)) == int(serials[0].group(1)) + 1  # type: ignore[union-attr]
    # Another department counts on its own.
    other = api.ok("editor_b", "POST", "/policies", 201, json={**POLICY, "title": "高新处文件"})
    assert other["index_number"].startswith(f"KJTB/{month}-")
    # It is not editable either.
    with unchanged(suite):
        refused(api.call("editor_a", "PATCH", f"/policies/{first['id']}",
                         json={"index_number": second["index_number"]}), "index_number")


def _approved_interpretation(api: StaffApi, body: dict[str, Any]) -> int:
    interpretation = api.ok("editor_a", "POST", "/interpretations", 201, json=body)
    api.ok("editor_a", "POST", f"/interpretations/{interpretation['id']}/submit")
    api.ok("reviewer_a", "POST", f"/interpretations/{interpretation['id']}/approve")
    return int(interpretation["id"])


def test_publishing_an_interpretation_without_a_policy_link_is_refused(
    suite: dict[str, Flask], api: StaffApi
) -> None:
    iid = _approved_interpretation(api, INTERPRETATION)
    for body in ({}, {"publish_at": "2099-01-01T09:00:00+08:00"}):
        with unchanged(suite):
            message = refused(api.call("disclosure_office_a", "POST", f"/interpretations/{iid}/publish", json=body),
                              "policies")
        assert "关联" in message
    item = api.ok("editor_a", "GET", f"/interpretations/{iid}")
    assert (item["state"], item["scheduled_at"], item["history"]) == ("approved", None, [])
    # A bad time is refused by the schema, in the same shape.
    with unchanged(suite):
        refused(api.call("disclosure_office_a", "POST", f"/interpretations/{iid}/publish",
                         json={"publish_at": "next tuesday"}), "publish_at")


def test_an_infographic_needs_its_text_alternative(suite: dict[str, Flask], api: StaffApi) -> None:
    policy = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    iid = _approved_interpretation(api, {**INTERPRETATION, "form": "图解", "body": "",
                                         "media_url": "https://example.gov.cn/tujie.png"})
    api.ok("editor_a", "POST", f"/interpretations/{iid}/policies", json={"policy_id": policy["id"]})
    with unchanged(suite):
        message = refused(api.call("disclosure_office_a", "POST", f"/interpretations/{iid}/publish"),
                          "text_alternative")
    assert "文字说明" in message
    # As part of a package, too: nothing of the package is published.
    api.ok("editor_a", "POST", f"/policies/{policy['id']}/submit")
    api.ok("reviewer_a", "POST", f"/policies/{policy['id']}/approve")
    with unchanged(suite):
        refused(api.call("disclosure_office_a", "POST", f"/packages/{policy['id']}/publish"), "text_alternative")
    assert api.ok("editor_a", "GET", f"/policies/{policy['id']}")["state"] == "approved"


def test_script_in_a_body_is_refused(suite: dict[str, Flask], api: StaffApi) -> None:
    script = "<p>通知如下。</p><script>alert(1)</script>"
    handler = '<p onclick="alert(1)">通知如下。</p>'
    for body in (script, handler, '<a href="javascript:alert(1)">链接</a>'):
        with unchanged(suite):
            message = refused(api.call("editor_a", "POST", "/policies", json={**POLICY, "body": body}), "body")
        assert "脚本" in message
        with unchanged(suite):
            refused(api.call("editor_a", "POST", "/interpretations", json={**INTERPRETATION, "body": body}), "body")
    policy = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    with unchanged(suite):
        refused(api.call("editor_a", "PATCH", f"/policies/{policy['id']}", json={"body": script}), "body")
    assert api.ok("editor_a", "GET", f"/policies/{policy['id']}")["body"] == POLICY["body"]


def test_oversize_attachment_is_refused(
    suite: dict[str, Flask], api: StaffApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = suite["interpret"]
    settings = app.extensions["gongkai.settings"]
    monkeypatch.setitem(app.extensions, "gongkai.settings", dataclasses.replace(settings, attachment_max_bytes=4096))
    policy = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    just_over = PDF + b"0" * (4097 - len(PDF))
    far_over = PDF + b"0" * (512 * 1024)  # beyond what the request may carry: refused before it is read
    for data in (just_over, far_over):
        with unchanged(suite):
            message = refused(api.upload("editor_a", policy["id"], "细则.pdf", data), "file", location="files")
        assert "4 KiB" in message
    accepted = api.upload("editor_a", policy["id"], "细则.pdf", PDF + b"0" * (4096 - len(PDF)))
    assert accepted.status_code == 201, accepted.get_json()


DISGUISED: list[tuple[str, str, bytes, str]] = [
    ("html named .pdf", "通知.pdf", HTML, "HTML"),
    ("exe named .pdf", "通知.pdf", EXE, "可执行程序"),
    ("svg", "图解.svg", SVG, "PDF"),
    ("svg named .png", "图解.png", SVG, "SVG"),
    ("zip bomb .docx", "附件.docx", zip_bomb_docx(), "压缩炸弹"),
    ("broken zip .docx", "附件.docx", b"PK\x03\x04" + b"\x00" * 200, "Word"),
    ("zip that is not Word", "附件.docx", plain_zip(), "Word"),
    ("png named .pdf", "图片.pdf", PNG, "PNG"),
    ("empty", "空.pdf", b"", "空"),
    ("no extension", "无扩展名", PDF, "PDF"),
]


def test_disguised_or_unaccepted_attachments_are_refused(suite: dict[str, Flask], api: StaffApi) -> None:
    policy = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    for label, filename, data, expected in DISGUISED:
        with unchanged(suite):
            message = refused(api.upload("editor_a", policy["id"], filename, data), "file", location="files")
        assert expected in message, (label, message)
    assert api.ok("editor_a", "GET", f"/policies/{policy['id']}/attachments")["items"] == []


def test_attachments_are_sniffed_stored_by_content_and_public_only_once_published(
    suite: dict[str, Flask], api: StaffApi
) -> None:
    public = Client(PathDispatcher(suite))
    policy = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    pid = policy["id"]
    pdf = api.upload("editor_a", pid, "实施细则|.PDF", PDF, content_type="text/html")
    assert pdf.status_code == 201, pdf.get_json()
    pdf_item = pdf.get_json()
    assert (pdf_item["filename"], pdf_item["content_type"]) == ("实施细则_.pdf", "application/pdf")
    stored = attachment_store(suite) / pdf_item["sha256"]
    assert stored.read_bytes() == PDF
    word = api.upload("editor_b", pid, "附件.docx", docx())
    assert word.status_code == 404  # another division's draft does not exist for them
    word = api.upload("editor_a", pid, "附件.docx", docx())
    assert word.get_json()["content_type"].endswith("wordprocessingml.document")
    image = api.upload("editor_a", pid, "图解.png", PNG)
    assert image.get_json()["content_type"] == "image/png"
    listed = api.ok("reviewer_a", "GET", f"/policies/{pid}/attachments")["items"]
    assert [item["filename"] for item in listed] == ["实施细则_.pdf", "附件.docx", "图解.png"]
    staff_copy = api.call("reviewer_a", "GET", f"/policies/{pid}/attachments/{pdf_item['id']}")
    assert staff_copy.status_code == 200 and staff_copy.data == PDF
    deleted = api.call("editor_a", "DELETE", f"/policies/{pid}/attachments/{image.get_json()['id']}")
    assert deleted.status_code == 204
    assert len(api.ok("editor_a", "GET", f"/policies/{pid}/attachments")["items"]) == 2

    url = f"/interpret/attachments/{pdf_item['id']}/{quote(pdf_item['filename'])}"
    assert pdf_item["public_url"] == url
    assert public.get(url).status_code == 404  # a draft's attachment is not public
    api.ok("editor_a", "POST", f"/policies/{pid}/submit")
    with unchanged(suite):  # only a draft's attachments change
        refused(api.upload("editor_a", pid, "晚到.pdf", PDF), "state")
        refused(api.call("editor_a", "DELETE", f"/policies/{pid}/attachments/{pdf_item['id']}"), "state")
    api.ok("reviewer_a", "POST", f"/policies/{pid}/approve")
    api.ok("disclosure_office_a", "POST", f"/policies/{pid}/publish")

    download = public.get(url)
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''" in disposition
    assert quote("实施细则_.pdf") in disposition and "/" not in disposition.split("filename", 1)[1]
    assert public.get(f"/interpret/attachments/{pdf_item['id']}/other.pdf").status_code == 404
    api.ok("disclosure_office_a", "POST", f"/policies/{pid}/withdraw")
    assert public.get(url).status_code == 404
