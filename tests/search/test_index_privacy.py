"""A scan of the whole index after consultations went through every ending (published, kept private,
rejected, reopened) and the historical answers were imported: no submitter's name, phone or e-mail, and
no mobile number, ID number or e-mail address of anybody, is anywhere in it — neither in the documents
the engine returns nor in the bytes of the index on disk."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client

from services.db import get_database
from services.suite import PathDispatcher
from services.text.pii import EMAIL, ID_CARD, find_personal_data, is_mobile

from support.org import STAFF_PASSWORD

pytestmark = pytest.mark.slow

DEMO_MESSAGES = Path(__file__).resolve().parents[2] / "services" / "demo" / "data" / "messages_with_replies.csv"


class Staff:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.tokens: dict[str, str] = {}

    def __call__(self, user: str, case_id: int, action: str, body: dict[str, Any] | None = None,
                 method: str = "POST") -> dict[str, Any]:
        if user not in self.tokens:
            answer = self.client.post("/api/auth/token", json={"username": user, "password": STAFF_PASSWORD})
            self.tokens[user] = answer.get_json()["token"]
        answer = self.client.open(f"/api/consult/manage/consultations/{case_id}/{action}", method=method,
                                  json=body or {}, headers={"Authorization": f"Bearer {self.tokens[user]}"})
        assert answer.status_code == 200, f"{action}: {answer.get_data(as_text=True)}"
        result: dict[str, Any] = answer.get_json()
        return result


def _asker() -> dict[str, str]:
    given = "".join(random.choice("甲乙丙丁戊己庚辛壬癸") for _ in range(2))
    return {"name": f"司马{given}", "phone": f"13{random.randrange(3, 10)}{random.randrange(10**8):08d}",
            "email": f"private-{uuid.uuid4().hex[:10]}@example.com"}


def _index_all_consult_events(suite: dict[str, Flask]) -> None:
    from consult.models import OutboxEvent
    from search.tasks import index_document, remove_document
    from services.events import subscribers

    tasks = {"search.index_document": index_document, "search.remove_document": remove_document}
    with get_database("consult", suite["consult"]).transaction() as session:
        messages = [event.as_message() for event in session.scalars(select(OutboxEvent).order_by(
            OutboxEvent.created_at))]
    with suite["search"].app_context():
        for message in messages:
            for name in subscribers(message["topic"]):
                if name in tasks:
                    tasks[name](message)


def _every_document(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    from services.searchengine.port import SearchQuery
    from services.web import content_alias

    engine, alias = content_alias(suite["search"])
    engine.refresh(alias)
    documents: list[dict[str, Any]] = []
    page = 1
    while True:
        result = engine.search(alias, SearchQuery(page=page, per_page=100))
        documents += [hit.document for hit in result.hits]
        if page * 100 >= result.total:
            return documents
        page += 1


def test_no_contact_detail_anywhere_in_the_index(suite: dict[str, Flask], org: dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from consult.importing import import_messages, read_messages

    app = suite["consult"]
    monkeypatch.setattr(get_database("consult", app), "publisher", None)
    settings = replace(app.extensions["gongkai.settings"], consult_intake_department="KJTA")
    monkeypatch.setitem(app.extensions, "gongkai.settings", settings)
    client = Client(PathDispatcher(suite), use_cookies=False)
    act = Staff(client)
    askers = []
    endings = ("published", "published_then_withdrawn", "private", "rejected", "reopened")
    for ending in endings:
        asker = _asker()
        askers.append(asker)
        question = f"关于{ending}的咨询：请问科技项目经费如何报销？我的邮箱 {asker['email']}，电话 {asker['phone']}。"
        submitted = client.post("/api/consult/consultations", json={
            "title": f"科技项目经费报销咨询 {ending}", "question": question, **asker, "consent_to_publish": True})
        assert submitted.status_code == 201
        receipt = submitted.get_json()
        case_id = _case_id(app, receipt["tracking_number"])
        if ending == "rejected":
            act("dispatcher_a", case_id, "reject", {"reason": "duplicate"})
            continue
        act("dispatcher_a", case_id, "accept")
        act("editor_a", case_id, "assign")
        act("editor_a", case_id, "draft", {"reply": f"您好，{asker['name']}，经费报销请按管理办法办理。"}, method="PUT")
        act("editor_a", case_id, "submit-review")
        act("reviewer_a", case_id, "approve")
        act("editor_a", case_id, "reply")
        if ending == "private":
            act("disclosure_office_a", case_id, "keep-private")
            continue
        review = act("reviewer_a", case_id, "personal-data", method="GET")
        act("reviewer_a", case_id, "confirm-redaction", {
            "published_question": review["proposed_question"],
            "published_reply": review["proposed_reply"].replace(asker["name"], "［已隐去：姓名］"),
        })
        act("disclosure_office_a", case_id, "publish")
        if ending == "published_then_withdrawn":
            act("disclosure_office_a", case_id, "unpublish", {"text": "应提交人要求撤回"})
        elif ending == "reopened":
            rated = client.post(f"/api/consult/consultations/{receipt['tracking_number']}/rating",
                                json={"code": receipt["query_code"], "rating": "dissatisfied"})
            assert rated.status_code == 200
            assert client.post(f"/api/consult/consultations/{receipt['tracking_number']}/reopen",
                               json={"code": receipt["query_code"]}).status_code == 200

    report = import_messages(get_database("consult", app).transaction, settings, read_messages(DEMO_MESSAGES),
                             department="KJTA")
    assert report.imported == 2816
    _index_all_consult_events(suite)

    documents = _every_document(suite)
    answers = [document for document in documents if document["doc_type"] == "answer"]
    titles = {document["title"] for document in answers}
    assert "科技项目经费报销咨询 published" in titles and "科技项目经费报销咨询 reopened" in titles
    assert not {"科技项目经费报销咨询 private", "科技项目经费报销咨询 rejected",
                "科技项目经费报销咨询 published_then_withdrawn"} & titles
    assert len(answers) == 2816 + 2

    index_text = json.dumps(documents, ensure_ascii=False)
    index_bytes = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    for asker in askers:
        for detail in asker.values():
            assert detail not in index_text, f"{detail!r} in the index"
            assert detail.encode() not in index_bytes, f"{detail!r} in the index files"
    leaks = []
    for document in documents:
        for name, text in document.items():
            if not isinstance(text, str) or name in ("id", "url", "published_at", "received_at", "replied_at"):
                continue
            for finding in find_personal_data(text, (ID_CARD, EMAIL, "phone")):
                digits = "".join(ch for ch in finding.text if ch.isdigit())
                if finding.kind != "phone" or is_mobile(digits):
                    leaks.append((document["id"], name, finding.kind, finding.text))
    assert not leaks, f"personal data in the index: {leaks[:10]}"


def _case_id(app: Flask, tracking_number: str) -> int:
    from consult.models import Consultation

    with get_database("consult", app).transaction() as session:
        return int(session.scalar(select(Consultation.id).where(
            Consultation.tracking_number == tracking_number)) or 0)
