"""Responses to public concerns (回应关切) and media focus items (媒体聚焦) through the staff API.

The review workflow (the same table as interpret's), its refusals, validation with nothing written,
publication through the outbox into the shared index (the search tasks applied in-process, as the worker
does) and out again on withdrawal, the reindex export, and the alert clock stopped on publication.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from search.reconcile import reconcile
from search.tasks import index_document, remove_document
from services.db import get_database, utcnow
from services.events import subscribers
from services.press import search_export
from services.press.models import Alert, AlertRule, OutboxEvent, Response, ResponseStep, Topic
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD
from support.search_content import Newsroom

BASE = "/api/press/manage/responses"
PHONE = "13912345678"


class StaffApi:
    """Bearer-token calls through the path dispatcher, one token per user."""

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
        return self.client.open(f"{BASE}{path}", method=method,
                                headers={"Authorization": f"Bearer {self.tokens[username]}"},
                                environ_base={"REMOTE_ADDR": self.address}, **kwargs)

    def ok(self, username: str, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        answer = self.call(username, method, path, **kwargs)
        assert answer.status_code == status, (method, path, answer.status_code, answer.get_json())
        body: dict[str, Any] = answer.get_json()
        return body


class PressSearchConsumer:
    """Applies the press outbox's search events once each, in-process, as the Celery worker does."""

    def __init__(self, suite: dict[str, Flask]) -> None:
        self.suite = suite
        self.done: set[str] = set()

    def run(self) -> list[str]:
        tasks = {"search.index_document": index_document, "search.remove_document": remove_document}
        with get_database("press", self.suite["press"]).transaction() as session:
            events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)).all()
            messages = [event.as_message() for event in events if event.id not in self.done]
        results = []
        with self.suite["search"].app_context():
            for message in messages:
                self.done.add(message["id"])
                for name in subscribers(message["topic"]):
                    if name in tasks:
                        results.append(f"{message['topic']}:{tasks[name](message)}")
        return results


@pytest.fixture
def api(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> StaffApi:
    # Events stay in the outbox (no broker here); the consumer applies them.
    monkeypatch.setattr(get_database("press", suite["press"]), "publisher", None)
    monkeypatch.setattr(get_database("interpret", suite["interpret"]), "publisher", None)
    return StaffApi(suite)


@pytest.fixture
def public(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite))


def make_topic(suite: dict[str, Flask], label: str = "合肥 公积金 提取") -> int:
    with get_database("press", suite["press"]).transaction() as session:
        topic = Topic(label=label, keywords=label.split(), size=12, first_at=utcnow(), last_at=utcnow())
        session.add(topic)
        session.flush()
        return topic.id


def published_policy(suite: dict[str, Flask]) -> str:
    newsroom = Newsroom(suite)
    policy_id = newsroom.policy("关于住房公积金提取的通知")
    newsroom.sync()
    return f"policy-{policy_id}"


def count(suite: dict[str, Flask], model: Any) -> int:
    with get_database("press", suite["press"]).transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def search(public: Client, text: str) -> dict[str, Any]:
    answer = public.get("/api/search", query_string={"q": text, "type": "press_response"})
    assert answer.status_code == 200, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


DRAFT = {"kind": "response", "title": "关于公积金提取办理时限的回应",
         "summary": "市住房公积金中心对群众关切的提取时限问题作出回应。",
         "body": f"<p>群众反映的公积金提取问题，我们高度重视。咨询电话 {PHONE}。</p>"}


def test_a_response_goes_through_review_into_search_and_out_again(
    suite: dict[str, Flask], api: StaffApi, public: Client
) -> None:
    topic_id = make_topic(suite)
    policy_id = published_policy(suite)
    consumer = PressSearchConsumer(suite)
    created = api.ok("press_officer_a", "POST", "", 201,
                     json={**DRAFT, "topic_ids": [topic_id], "policy_ids": [policy_id]})
    rid = created["id"]
    assert created["state"] == "draft" and created["department"] == "KJTA"
    assert created["topic_ids"] == [topic_id]
    assert created["policy_refs"] == [{"id": policy_id, "title": "关于住房公积金提取的通知"}]
    assert created["allowed_actions"] == ["submit"]

    submitted = api.ok("press_officer_a", "POST", f"/{rid}/submit")
    assert submitted["state"] == "submitted" and submitted["version"] > created["version"]
    assert api.call("press_officer_a", "POST", f"/{rid}/approve").status_code == 403  # no review permission
    assert api.call("reviewer_b", "POST", f"/{rid}/approve").status_code == 404  # another division's
    reviewer_view = api.ok("reviewer_a", "GET", f"/{rid}")
    assert set(reviewer_view["allowed_actions"]) == {"return", "approve"}
    approved = api.ok("reviewer_a", "POST", f"/{rid}/approve", json={"comment": "同意"})
    assert approved["state"] == "approved" and approved["reviewer_name"] == "reviewer_a"
    assert consumer.run() == []  # nothing public yet
    assert search(public, "公积金提取")["total"] == 0

    published = api.ok("press_officer_a", "POST", f"/{rid}/publish")
    assert published["state"] == "published" and published["public_url"] == f"/press/responses/{rid}"
    assert consumer.run() == ["press.response.published:indexed"]
    found = search(public, "公积金提取")
    assert found["total"] == 1
    hit = found["hits"][0]
    assert hit["id"] == f"press_response-{rid}" and hit["url"] == f"/press/responses/{rid}"
    page = public.get(f"/press/responses/{rid}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "关于公积金提取办理时限的回应" in html and f"/interpret/policies/{policy_id.removeprefix('policy-')}" in html
    assert PHONE not in html and "已隐去：电话号码" in html  # personal data never public
    assert f"/press/responses/{rid}" in public.get("/press/responses").get_data(as_text=True)

    history = [(step["action"], step["to_state"]) for step in api.ok("reviewer_a", "GET", f"/{rid}")["history"]]
    assert history == [("create", "draft"), ("submit", "submitted"), ("approve", "approved"),
                       ("publish", "published")]

    withdrawn = api.ok("press_officer_a", "POST", f"/{rid}/withdraw")
    assert withdrawn["state"] == "withdrawn" and withdrawn["version"] > published["version"]
    assert consumer.run() == ["press.response.withdrawn:removed"]
    assert search(public, "公积金提取")["total"] == 0
    assert public.get(f"/press/responses/{rid}").status_code == 404

    with get_database("press", suite["press"]).transaction() as session:
        audited = session.scalars(select(OutboxEvent.aggregate_id).where(OutboxEvent.topic == "audit.recorded")).all()
    assert sorted(audited) == sorted(f"press_response.{action}" for action in
                                     ("create", "submit", "approve", "publish", "withdraw"))


def test_every_transition_follows_the_shared_table(suite: dict[str, Flask], api: StaffApi, public: Client) -> None:
    consumer = PressSearchConsumer(suite)
    rid = api.ok("press_officer_a", "POST", "", 201, json=DRAFT)["id"]
    for action in ("approve", "publish", "withdraw", "revise", "return"):  # none of them from a draft
        refused = api.call("reviewer_a" if action in ("approve", "return") else "press_officer_a", "POST",
                           f"/{rid}/{action}")
        assert refused.status_code == 409, (action, refused.get_json())
        assert "草稿" in refused.get_json()["message"]
    api.ok("press_officer_a", "POST", f"/{rid}/submit")
    assert api.ok("reviewer_a", "POST", f"/{rid}/return", json={"comment": "请补充办理时限"})["state"] == "draft"
    api.ok("press_officer_a", "POST", f"/{rid}/submit")
    api.ok("reviewer_a", "POST", f"/{rid}/approve")
    assert api.ok("reviewer_a", "POST", f"/{rid}/return")["state"] == "draft"  # from approved too
    api.ok("press_officer_a", "POST", f"/{rid}/submit")
    api.ok("reviewer_a", "POST", f"/{rid}/approve")
    refused = api.call("press_officer_a", "POST", f"/{rid}/submit")
    assert refused.status_code == 409 and "已审核" in refused.get_json()["message"]
    api.ok("press_officer_a", "POST", f"/{rid}/publish")
    consumer.run()
    assert search(public, "公积金提取")["total"] == 1
    # Revising a published response takes it off the public side until it is published again.
    revised = api.ok("press_officer_a", "POST", f"/{rid}/revise")
    assert revised["state"] == "draft"
    assert consumer.run() == ["press.response.withdrawn:removed"]
    assert search(public, "公积金提取")["total"] == 0
    # Editing a withdrawn one makes a new draft version as well.
    api.ok("press_officer_a", "POST", f"/{rid}/submit")
    api.ok("reviewer_a", "POST", f"/{rid}/approve")
    api.ok("press_officer_a", "POST", f"/{rid}/publish")
    api.ok("press_officer_a", "POST", f"/{rid}/withdraw")
    edited = api.ok("press_officer_a", "PATCH", f"/{rid}", json={"title": "关于公积金提取时限的再次回应"})
    assert edited["state"] == "draft" and edited["title"] == "关于公积金提取时限的再次回应"
    assert [step["action"] for step in edited["history"]][-2:] == ["revise", "update"]
    consumer.run()
    assert search(public, "公积金提取")["total"] == 0


def test_a_reviewer_never_approves_what_they_wrote_or_submitted(suite: dict[str, Flask], api: StaffApi) -> None:
    give_role(suite, "reviewer_a", "press_officer", "KJTA")  # both roles in one division
    own = api.ok("reviewer_a", "POST", "", 201, json=DRAFT)["id"]
    api.ok("reviewer_a", "POST", f"/{own}/submit")
    assert "approve" not in api.ok("reviewer_a", "GET", f"/{own}")["allowed_actions"]
    refused = api.call("reviewer_a", "POST", f"/{own}/approve")
    assert refused.status_code == 422 and "approver" in refused.get_json()["errors"]["json"]
    # Written by another, but submitted by the reviewer: refused as well.
    theirs = api.ok("press_officer_a", "POST", "", 201, json=DRAFT)["id"]
    api.ok("reviewer_a", "POST", f"/{theirs}/submit")
    assert api.call("reviewer_a", "POST", f"/{theirs}/approve").status_code == 422
    # Edited by the reviewer: refused too; another reviewer of the division may approve.
    other = api.ok("press_officer_a", "POST", "", 201, json=DRAFT)["id"]
    api.ok("reviewer_a", "PATCH", f"/{other}", json={"summary": "审核人改过的摘要"})
    api.ok("press_officer_a", "POST", f"/{other}/submit")
    assert api.call("reviewer_a", "POST", f"/{other}/approve").status_code == 422
    give_role(suite, "reviewer_b", "reviewer", "KJTA")
    assert api.ok("reviewer_b", "POST", f"/{other}/approve")["state"] == "approved"
    with get_database("press", suite["press"]).transaction() as session:
        stored = session.get(Response, own)
        assert stored is not None and stored.state == "submitted"


def give_role(suite: dict[str, Flask], username: str, role: str, department: str) -> None:
    from services.identity.accounts import assign_role
    from services.identity.models import Department, User
    from services.permissions import Role

    with get_database("identity", suite["identity"]).transaction() as session:
        user = session.scalar(select(User).where(User.username == username))
        division = session.scalar(select(Department).where(Department.code == department))
        assert user is not None and division is not None
        assign_role(session, user, Role(role), division)


def test_validation_answers_field_errors_and_writes_nothing(suite: dict[str, Flask], api: StaffApi) -> None:
    before = (count(suite, Response), count(suite, ResponseStep), count(suite, OutboxEvent))
    media = api.call("press_officer_a", "POST", "", json={"kind": "media_focus", "title": "央视聚焦我省科技成果转化"})
    assert media.status_code == 422
    errors = media.get_json()["errors"]["json"]
    assert {"outlet", "published_on", "url", "summary"} <= set(errors)
    bad_url = api.call("press_officer_a", "POST", "", json={
        "kind": "media_focus", "title": "报道", "outlet": "新华社", "published_on": "2024-05-01",
        "url": "javascript:alert(1)", "summary": "摘要"})
    assert bad_url.status_code == 422 and "url" in bad_url.get_json()["errors"]["json"]
    for body, field in (
        ({"kind": "statement", "title": "标题"}, "kind"),
        ({"kind": "response", "title": " "}, "title"),
        ({"kind": "response", "title": "标" * 201}, "title"),
        ({"kind": "response", "title": "标题", "body": "<script>alert(1)</script>"}, "body"),
        ({"kind": "response", "title": "标题", "topic_ids": [987654]}, "topic_ids"),
        ({"kind": "response", "title": "标题", "policy_ids": ["policy-987654"]}, "policy_ids"),
        ({"kind": "response", "title": "标题", "secret": "x"}, "secret"),
    ):
        answer = api.call("press_officer_a", "POST", "", json=body)
        assert answer.status_code == 422, (body, answer.get_json())
        assert field in answer.get_json()["errors"]["json"], (body, answer.get_json())
    assert api.call("reviewer_a", "POST", "", json=DRAFT).status_code == 403
    assert (count(suite, Response), count(suite, ResponseStep), count(suite, OutboxEvent)) == before

    rid = api.ok("press_officer_a", "POST", "", 201, json=DRAFT)["id"]
    refused = api.call("press_officer_a", "PATCH", f"/{rid}", json={"url": "ftp://example.com/a"})
    assert refused.status_code == 422
    assert api.ok("press_officer_a", "GET", f"/{rid}")["version"] == 1
    media_ok = api.ok("press_officer_a", "POST", "", 201, json={
        "kind": "media_focus", "title": "新华社：我省公积金提取再提速", "outlet": "新华社",
        "published_on": "2024-05-01", "url": "https://www.news.cn/a.html", "summary": "提取时限由5日缩短至3日。"})
    assert media_ok["outlet"] == "新华社"


def test_publishing_stops_the_response_clock_of_the_topics_alerts(suite: dict[str, Flask], api: StaffApi) -> None:
    topic_id, other_topic = make_topic(suite), make_topic(suite, "学区 划片")
    with get_database("press", suite["press"]).transaction() as session:
        rule = AlertRule(name="增长", kind="growth", response_hours=48)
        session.add(rule)
        session.flush()
        for tid in (topic_id, other_topic):
            session.add(Alert(rule_id=rule.id, topic_id=tid, window_key="w1", reason="增长", details={},
                              fired_at=utcnow(), response_due=utcnow() + timedelta(hours=48)))
    rid = api.ok("press_officer_a", "POST", "", 201, json={**DRAFT, "topic_ids": [topic_id]})["id"]
    api.ok("press_officer_a", "POST", f"/{rid}/submit")
    api.ok("reviewer_a", "POST", f"/{rid}/approve")
    with get_database("press", suite["press"]).transaction() as session:
        assert all(alert.responded_at is None for alert in session.scalars(select(Alert)))
    api.ok("press_officer_a", "POST", f"/{rid}/publish")
    with get_database("press", suite["press"]).transaction() as session:
        alerts = {alert.topic_id: alert for alert in session.scalars(select(Alert))}
        assert alerts[topic_id].responded_at is not None and alerts[topic_id].response_id == rid
        assert alerts[other_topic].responded_at is None


def test_the_reindex_export_and_reconciliation_include_published_responses(
    suite: dict[str, Flask], api: StaffApi
) -> None:
    consumer = PressSearchConsumer(suite)
    rid = api.ok("press_officer_a", "POST", "", 201, json=DRAFT)["id"]
    draft_only = api.ok("press_officer_a", "POST", "", 201, json={**DRAFT, "title": "另一篇草稿"})["id"]
    api.ok("press_officer_a", "POST", f"/{rid}/submit")
    api.ok("reviewer_a", "POST", f"/{rid}/approve")
    version = api.ok("press_officer_a", "POST", f"/{rid}/publish")["version"]
    exported = list(search_export.published_documents(suite["press"]))
    assert [(doc_id, v) for doc_id, _doc, v in exported] == [(f"press_response-{rid}", version)]
    assert exported[0][1]["doc_type"] == "press_response" and PHONE not in str(exported[0][1])
    assert dict(search_export.document_versions(suite["press"])) == {f"press_response-{rid}": version}
    assert list(search_export.published_documents(suite["press"], doc_ids=[f"press_response-{draft_only}"])) == []
    # The event not applied yet: the reconciliation finds the gap and repairs it from the export.
    report = reconcile(suite)
    assert (report.types["press_response"].missing, report.types["press_response"].repaired) == (1, 1)
    consumer.run()  # the late event writes the same version: nothing changes
    after = reconcile(suite, repair=False).types["press_response"]
    assert (after.published, after.indexed, after.drift) == (1, 1, 0)
