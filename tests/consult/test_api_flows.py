"""The consult API beyond the straight path: rejection, transfer, a request for information that pauses
the clock, an extension, a reopened case; and bad input, which gets a 4xx with field errors and changes
nothing.

The clock is set (``consult.workflow.utcnow``) so that the case runs across the 2026 National Day
holiday; the expected deadlines are counted with the same working-day calendar the service uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from services.calendar import WorkingCalendar
from services.db import get_database
from services.suite import PathDispatcher

from support.clock import Clock, bj
from support.org import STAFF_PASSWORD


class ConsultApi:
    def __init__(self, suite: dict[str, Flask]) -> None:
        self.client = Client(PathDispatcher(suite), use_cookies=False)
        self.tokens: dict[str, str] = {}
        self.suite = suite

    def as_staff(self, user: str, method: str, path: str, **kwargs: Any) -> TestResponse:
        if user not in self.tokens:
            answer = self.client.post("/api/auth/token", json={"username": user, "password": STAFF_PASSWORD})
            assert answer.status_code == 200, answer.get_data(as_text=True)
            self.tokens[user] = answer.get_json()["token"]
        return self.client.open(path, method=method, headers={"Authorization": f"Bearer {self.tokens[user]}"},
                                **kwargs)

    def act(self, user: str, case_id: int, action: str, body: dict[str, Any] | None = None,
            expect: int = 200, method: str = "POST") -> dict[str, Any]:
        answer = self.as_staff(user, method, f"/api/consult/manage/consultations/{case_id}/{action}", json=body or {})
        assert answer.status_code == expect, f"{action}: {answer.status_code} {answer.get_data(as_text=True)}"
        result: dict[str, Any] = answer.get_json()
        return result

    def submit(self, **overrides: Any) -> dict[str, Any]:
        body = {"title": "科技项目申报咨询", "question": f"请问今年的科技项目申报何时开始？{uuid.uuid4().hex[:6]}",
                "name": "李四", "phone": f"138{uuid.uuid4().int % 10**8:08d}", "consent_to_publish": False}
        body.update(overrides)
        answer = self.client.post("/api/consult/consultations", json=body)
        assert answer.status_code == 201, answer.get_data(as_text=True)
        receipt: dict[str, Any] = answer.get_json()
        return receipt

    def track(self, receipt: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.get(f"/api/consult/consultations/{receipt['tracking_number']}",
                                 query_string={"code": receipt["query_code"]})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        view: dict[str, Any] = answer.get_json()
        return view

    def case_id(self, receipt: dict[str, Any], user: str = "dispatcher_a") -> int:
        from consult.models import Consultation

        with get_database("consult", self.suite["consult"]).transaction() as session:
            return int(session.scalar(select(Consultation.id).where(
                Consultation.tracking_number == receipt["tracking_number"])) or 0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(bj(2026, 9, 28))  # Monday 28 September 2026, 10:00 in Beijing
    monkeypatch.setattr("consult.workflow.utcnow", clock)
    monkeypatch.setattr("consult.api.utcnow", clock)
    return clock


@pytest.fixture
def public_api(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsultApi]:
    """The public side only (no staff needed)."""
    app = suite["consult"]
    monkeypatch.setattr(get_database("consult", app), "publisher", None)
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(app.extensions["gongkai.settings"], consult_intake_department="KJTA"))
    return ConsultApi(suite)


@pytest.fixture
def api(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsultApi]:
    app = suite["consult"]
    monkeypatch.setattr(get_database("consult", app), "publisher", None)
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(app.extensions["gongkai.settings"], consult_intake_department="KJTA"))
    return ConsultApi(suite)


def _state_counts(suite: dict[str, Flask]) -> tuple[int, int, int, list[tuple[int, str, int]]]:
    from consult.models import Consultation, ConsultationStep, OutboxEvent

    with get_database("consult", suite["consult"]).transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Consultation)) or 0,
            session.scalar(select(func.count()).select_from(OutboxEvent)) or 0,
            session.scalar(select(func.count()).select_from(ConsultationStep)) or 0,
            [tuple(row) for row in session.execute(select(Consultation.id, Consultation.state, Consultation.version)
                                                    .order_by(Consultation.id))],
        )


def test_rejection_transfer_information_extension_and_reopen(api: ConsultApi, clock: Clock) -> None:
    calendar = WorkingCalendar()

    # Rejected: not this office's duty, so the asker is told where to go.
    rejected = api.submit(title="社保缴费基数咨询", question="请问今年社保缴费基数如何调整？")
    rejected_id = api.case_id(rejected)
    refused = api.act("dispatcher_a", rejected_id, "reject", {"reason": "not_our_duty"}, expect=422)
    assert "referral" in refused["errors"]["json"]
    api.act("dispatcher_a", rejected_id, "reject", {"reason": "not_our_duty", "referral": "市人力资源和社会保障局"})
    view = api.track(rejected)
    assert view["state"] == "rejected" and view["referral"] == "市人力资源和社会保障局"
    assert view["steps"][-1]["action"] == "reject" and "不属于本机关职责" in view["steps"][-1]["note"]

    # Accepted on Monday 28 September: five working days run across the National Day holiday.
    receipt = api.submit()
    case_id = api.case_id(receipt)
    accepted = api.act("dispatcher_a", case_id, "accept")
    started = date(2026, 9, 28)
    assert accepted["reply_due"] == calendar.add_working_days(started, 5).isoformat()
    assert date.fromisoformat(accepted["reply_due"]) > date(2026, 10, 8)  # the holiday does not count

    # Transferred to the other division: it keeps its history and its deadline.
    moved = api.act("dispatcher_a", case_id, "transfer", {"department": "KJTB", "reason": "属高新技术处职责"})
    assert moved["department"] == "KJTB" and moved["reply_due"] == accepted["reply_due"]
    assert api.as_staff("dispatcher_a", "GET", f"/api/consult/manage/consultations/{case_id}").status_code == 404
    seen = api.as_staff("dispatcher_b", "GET", f"/api/consult/manage/consultations/{case_id}").get_json()
    assert [step["action"] for step in seen["steps"]] == ["submit", "accept", "transfer"]
    assert "KJTA → KJTB" in seen["steps"][-1]["detail"]

    # The handler asks for more information on 30 September; the asker answers on 12 October.
    api.act("editor_b", case_id, "assign")
    clock.set(bj(2026, 9, 30))
    api.act("editor_b", case_id, "request-info", {"text": "请提供拟申报项目的名称"})
    view = api.track(receipt)
    assert view["state"] == "awaiting_info" and view["deadline_status"] == "paused"
    assert view["info_request"] == "请提供拟申报项目的名称"
    api.act("editor_b", case_id, "submit-review", expect=409)  # not while waiting for the asker
    clock.set(bj(2026, 10, 12))
    answered = api.client.post(f"/api/consult/consultations/{receipt['tracking_number']}/information",
                               json={"code": receipt["query_code"], "text": "项目名称为“智能制造示范”。"})
    assert answered.status_code == 200 and answered.get_json()["state"] == "drafting"
    paused = calendar.working_days_between(date(2026, 9, 30), date(2026, 10, 12))
    assert paused > 0
    detail = api.as_staff("editor_b", "GET", f"/api/consult/manage/consultations/{case_id}").get_json()
    assert detail["paused_working_days"] == paused
    assert detail["reply_due"] == calendar.add_working_days(started, 5 + paused).isoformat()

    # An extension: asked with a reason by the handler, approved by a reviewer (not by the handler).
    api.act("editor_b", case_id, "extensions", {"working_days": 3, "reason": ""}, expect=422)
    requested = api.act("editor_b", case_id, "extensions", {"working_days": 3, "reason": "需征求其他处室意见"})
    extension_id = requested["extensions"][0]["id"]
    decision = f"extensions/{extension_id}/decision"
    api.act("editor_b", case_id, decision, {"approve": True}, expect=403)
    extended = api.act("reviewer_b", case_id, decision, {"approve": True, "note": "同意"})
    assert extended["reply_due"] == calendar.add_working_days(started, 5 + paused + 3).isoformat()
    assert api.track(receipt)["steps"][-1]["action"] == "extension_approved"

    # Replied; the asker is not satisfied and reopens it, once.
    api.act("editor_b", case_id, "draft", {"reply": "您好，今年申报将于11月开始，请关注通知。"}, method="PUT")
    api.act("editor_b", case_id, "submit-review")
    api.act("editor_b", case_id, "approve", expect=403)
    api.act("reviewer_b", case_id, "approve")
    clock.set(bj(2026, 10, 14))
    api.act("editor_b", case_id, "reply")
    code = {"code": receipt["query_code"]}
    number = receipt["tracking_number"]
    reopen_first = api.client.post(f"/api/consult/consultations/{number}/reopen", json=code)
    assert reopen_first.status_code == 422  # only after rating the reply 不满意
    rated = api.client.post(f"/api/consult/consultations/{number}/rating",
                            json={**code, "rating": "dissatisfied", "comment": "没有说明具体日期"})
    assert rated.status_code == 200 and rated.get_json()["can_reopen_until"]
    clock.set(bj(2026, 10, 15))
    reopened = api.client.post(f"/api/consult/consultations/{number}/reopen", json=code)
    assert reopened.status_code == 200, reopened.get_data(as_text=True)
    assert reopened.get_json()["state"] == "reopened"
    detail = api.as_staff("reviewer_b", "GET", f"/api/consult/manage/consultations/{case_id}").get_json()
    assert detail["reply_due"] == calendar.add_working_days(date(2026, 10, 15), 5).isoformat()
    again = api.client.post(f"/api/consult/consultations/{number}/reopen", json=code)
    assert again.status_code in (409, 422)
    history = [step["action"] for step in detail["steps"]]
    assert history[:3] == ["submit", "accept", "transfer"] and history[-1] == "reopen"
    assert {"request_info", "provide_info", "extension_requested", "extension_approved", "rate"} <= set(history)


BAD_SUBMISSIONS: list[tuple[dict[str, Any], str]] = [
    ({"title": "", "question": "请问如何申报？", "name": "李四", "phone": "13800138000"}, "title"),
    ({"title": "   ", "question": "请问如何申报？", "name": "李四", "phone": "13800138000"}, "title"),
    ({"title": "咨询", "question": "", "name": "李四", "phone": "13800138000"}, "question"),
    ({"title": "长" * 101, "question": "请问如何申报？", "name": "李四", "phone": "13800138000"}, "title"),
    ({"title": "咨询", "question": "问" * 5001, "name": "李四", "phone": "13800138000"}, "question"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "", "phone": "13800138000"}, "name"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "李四"}, "phone"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "李四", "phone": "12345"}, "phone"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "李四", "phone": "1380013800a"}, "phone"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "李四", "email": "not-an-address"}, "email"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "李四", "email": "a@b"}, "email"),
    ({"title": "咨询", "question": "请问如何申报？", "name": "李四", "phone": "13800138000", "category": "没有这类"},
     "category"),
    ({"question": "请问如何申报？", "name": "李四", "phone": "13800138000"}, "title"),
    ({"title": 12, "question": "请问如何申报？", "name": "李四", "phone": "13800138000"}, "title"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SUBMISSIONS)
def test_a_bad_submission_gets_field_errors_and_stores_nothing(public_api: ConsultApi, body: dict[str, Any],
                                                              field: str) -> None:
    api = public_api
    before = _state_counts(api.suite)
    answer = api.client.post("/api/consult/consultations", json=body)
    assert answer.status_code == 422, answer.get_data(as_text=True)
    errors = answer.get_json()["errors"]["json"]
    assert field in errors and all(isinstance(message, str) and message for message in errors[field])
    assert _state_counts(api.suite) == before


def test_not_json_is_refused(public_api: ConsultApi) -> None:
    api = public_api
    before = _state_counts(api.suite)
    answer = api.client.post("/api/consult/consultations", data="title=x", content_type="text/plain")
    assert 400 <= answer.status_code < 500
    assert _state_counts(api.suite) == before


def test_a_wrong_query_code_reveals_nothing_and_changes_nothing(public_api: ConsultApi) -> None:
    api = public_api
    receipt = api.submit()
    before = _state_counts(api.suite)
    number = receipt["tracking_number"]
    wrong = "A" * 8 if receipt["query_code"] != "A" * 8 else "B" * 8
    for path, method, body, location in (
        (f"/api/consult/consultations/{number}?code={wrong}", "GET", None, "query"),
        ("/api/consult/consultations/ZX20000101-0001?code=" + receipt["query_code"], "GET", None, "query"),
        (f"/api/consult/consultations/{number}/rating", "POST", {"code": wrong, "rating": "satisfied"}, "json"),
        (f"/api/consult/consultations/{number}/reopen", "POST", {"code": wrong}, "json"),
        (f"/api/consult/consultations/{number}/information", "POST", {"code": wrong, "text": "补充"}, "json"),
    ):
        answer = api.client.open(path, method=method, json=body)
        assert answer.status_code == 422, f"{path}: {answer.get_data(as_text=True)}"
        assert answer.get_json()["errors"][location]["code"] == ["受理编号或查询码不正确"]
        assert "李四" not in answer.get_data(as_text=True)
    missing_code = api.client.get(f"/api/consult/consultations/{number}")
    assert missing_code.status_code == 422 and "code" in missing_code.get_json()["errors"]["query"]
    assert _state_counts(api.suite) == before
    # The right code is accepted in any letter case.
    lower = api.client.get(f"/api/consult/consultations/{number}", query_string={"code": receipt["query_code"].lower()})
    assert lower.status_code == 200


def test_a_transition_not_allowed_from_the_state_is_refused_and_changes_nothing(api: ConsultApi) -> None:
    receipt = api.submit()
    case_id = api.case_id(receipt)
    before = _state_counts(api.suite)
    for user, action, body in (
        ("reviewer_a", "approve", {}),
        ("disclosure_office_a", "publish", {}),
        ("editor_a", "submit-review", {}),
        ("dispatcher_a", "close", {}),
        ("editor_a", "reply", {}),
    ):
        answer = api.act(user, case_id, action, body, expect=409)
        assert "submitted" in answer["message"]
    assert api.act("editor_a", case_id, "request-info", {"text": "请补充"}, expect=409)
    assert _state_counts(api.suite) == before
    # Rating before any reply: refused with a field error.
    rated = api.client.post(f"/api/consult/consultations/{receipt['tracking_number']}/rating",
                            json={"code": receipt["query_code"], "rating": "satisfied"})
    assert rated.status_code == 422 and "rating" in rated.get_json()["errors"]["json"]
    bad_rating = api.client.post(f"/api/consult/consultations/{receipt['tracking_number']}/rating",
                                 json={"code": receipt["query_code"], "rating": "great"})
    assert bad_rating.status_code == 422 and "rating" in bad_rating.get_json()["errors"]["json"]
    assert _state_counts(api.suite) == before


def test_staff_input_is_checked_before_anything_changes(api: ConsultApi) -> None:
    receipt = api.submit()
    case_id = api.case_id(receipt)
    before = _state_counts(api.suite)
    assert "reason" in api.act("dispatcher_a", case_id, "reject", {"reason": "because"}, expect=422)["errors"]["json"]
    assert "department" in api.act("dispatcher_a", case_id, "route", {"department": "no such!"},
                                   expect=422)["errors"]["json"]
    api.act("dispatcher_a", case_id, "route", {"department": "KJTA", "category": "不存在的类别"}, expect=422)
    api.act("dispatcher_b", case_id, "accept", expect=404)  # outside the caller's departments: not revealed
    api.act("editor_a", case_id, "accept", expect=403)  # an editor does not accept
    assert _state_counts(api.suite) == before
    api.act("dispatcher_a", case_id, "accept")
    bulk = api.as_staff("dispatcher_a", "POST", "/api/consult/manage/consultations/bulk-assign",
                        json={"consultation_ids": [case_id, 10**9], "handler_id": 5, "handler_name": "王五"})
    assert bulk.status_code == 404  # one unknown case: none is assigned
    detail = api.as_staff("dispatcher_a", "GET", f"/api/consult/manage/consultations/{case_id}").get_json()
    assert detail["state"] == "accepted" and detail["handler_name"] is None
