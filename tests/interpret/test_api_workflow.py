"""A policy (本级) and its interpretation walked through the whole editorial workflow via the staff API.

Issue #4, must-show 1: drafted and linked by an editor, submitted as a package, a refused
self-approval (even with the reviewer role), approved by a reviewer, scheduled for publication
by the disclosure office, invisible until the beat task publishes it at its time, then public
with both link directions, then withdrawn from the public pages and search.

The search consumer runs in-process on the outbox events, as the worker would (see
``tests/services/test_suite_web.py::publish_and_index``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from services.db import get_database
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD


class StaffApi:
    """Bearer-token calls through the same path dispatcher nginx mirrors, one token per user."""

    def __init__(self, suite: dict[str, Flask]) -> None:
        self.client = Client(PathDispatcher(suite), use_cookies=False)
        self.address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"
        self.tokens: dict[str, str] = {}

    def sign_in(self, username: str) -> None:
        answer = self.client.post("/api/auth/token", json={"username": username, "password": STAFF_PASSWORD},
                                  environ_base={"REMOTE_ADDR": self.address})
        assert answer.status_code == 200, answer.get_json()
        self.tokens[username] = answer.get_json()["token"]

    def call(self, username: str, method: str, path: str, **kwargs: Any) -> TestResponse:
        if username not in self.tokens:
            self.sign_in(username)
        return self.client.open(f"/api/interpret/manage{path}", method=method,
                                headers={"Authorization": f"Bearer {self.tokens[username]}"},
                                environ_base={"REMOTE_ADDR": self.address}, **kwargs)

    def ok(self, username: str, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        answer = self.call(username, method, path, **kwargs)
        assert answer.status_code == status, (method, path, answer.status_code, answer.get_json())
        body: dict[str, Any] = answer.get_json()
        return body


class SearchConsumer:
    """Applies the interpret outbox's search events once each, in-process, as the Celery worker does."""

    def __init__(self, suite: dict[str, Flask]) -> None:
        self.suite = suite
        self.done: set[str] = set()

    def run(self) -> list[str]:
        from interpret.models import OutboxEvent
        from search.tasks import index_document, remove_document
        from services.events import subscribers

        tasks = {"search.index_document": index_document, "search.remove_document": remove_document}
        with get_database("interpret", self.suite["interpret"]).transaction() as session:
            events = session.query(OutboxEvent).order_by(OutboxEvent.created_at).all()
            messages = [event.as_message() for event in events if event.id not in self.done]
        results = []
        with self.suite["search"].app_context():
            for message in messages:
                self.done.add(message["id"])
                for task_name in subscribers(message["topic"]):
                    if task_name in tasks:
                        results.append(f"{message['topic']}:{tasks[task_name](message)}")
        return results


@pytest.fixture
def api(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> StaffApi:
    # Events stay in the outbox (no broker in these tests); the consumer below applies them.
    monkeypatch.setattr(get_database("interpret", suite["interpret"]), "publisher", None)
    return StaffApi(suite)


@pytest.fixture
def public(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite))


def give_role(suite: dict[str, Flask], username: str, role: str, department: str) -> None:
    from sqlalchemy import select

    from services.identity.accounts import assign_role
    from services.identity.models import Department, User
    from services.permissions import Role

    with get_database("identity", suite["identity"]).transaction() as session:
        user = session.scalar(select(User).where(User.username == username))
        division = session.scalar(select(Department).where(Department.code == department))
        assert user is not None and division is not None
        assign_role(session, user, Role(role), division)


def run_publish_due(suite: dict[str, Flask]) -> list[tuple[str, int]]:
    """What the beat task ``interpret.publish_due`` does."""
    from interpret.workflow import publish_due

    with get_database("interpret", suite["interpret"]).transaction() as session:
        return publish_due(session)


POLICY = {
    "title": "安徽省科学技术厅关于推进科技成果转化的若干措施",
    "issuer": "安徽省科学技术厅",
    "level": "本级",
    "document_number": "皖科政〔2025〕12号",
    "topic": "科技",
    "category_group": "规范性文件",
    "source": "安徽省科学技术厅",
    "written_on": "2025-03-01",
    "body": "<p>为加快推进科技成果转化，现提出如下措施。</p><p>一、强化企业创新主体地位。</p>",
}
INTERPRETATION = {
    "title": "《关于推进科技成果转化的若干措施》政策解读",
    "form": "文字解读",
    "interpreter_kind": "第一解读人",
    "interpreter_name": "厅长 张三",
    "summary": "解读成果转化措施的出台背景和主要内容。",
    "body": "<p>一、出台背景。</p><p>二、主要内容：强化企业创新主体地位。</p>",
    "key_points": ["强化企业创新主体地位", "完善收益分配"],
}


def test_policy_and_interpretation_through_the_whole_workflow(
    suite: dict[str, Flask], api: StaffApi, public: Client
) -> None:
    # The editor also holds the reviewer role: self-approval must still be refused.
    give_role(suite, "editor_a", "reviewer", "KJTA")
    consumer = SearchConsumer(suite)

    # -- drafting: both in the editor's division, linked both ways -------------------------------
    policy = api.ok("editor_a", "POST", "/policies", 201, json=POLICY)
    assert policy["department"] == "KJTA" and policy["state"] == "draft" and policy["version"] == 1
    assert policy["index_number"].startswith(f"KJTA/{datetime.now(UTC):%Y%m}-")
    interpretation = api.ok("editor_a", "POST", "/interpretations", 201, json=INTERPRETATION)
    pid, iid = policy["id"], interpretation["id"]
    linked = api.ok("editor_a", "POST", f"/interpretations/{iid}/policies", json={"policy_id": pid})
    assert [item["id"] for item in linked["policies"]] == [pid]
    policy = api.ok("editor_a", "GET", f"/policies/{pid}")
    assert [item["id"] for item in policy["interpretations"]] == [iid]
    assert policy["package_actions"] == ["submit"]
    assert "submit" in policy["allowed_actions"]

    # -- submitted together ------------------------------------------------------------------------
    policy = api.ok("editor_a", "POST", f"/packages/{pid}/submit")
    assert policy["state"] == "submitted"
    assert [item["state"] for item in policy["interpretations"]] == ["submitted"]

    # -- the author may not approve their own draft, reviewer role or not ------------------------
    assert "approve" not in api.ok("editor_a", "GET", f"/policies/{pid}")["allowed_actions"]
    for path in (f"/packages/{pid}/approve", f"/policies/{pid}/approve", f"/interpretations/{iid}/approve"):
        refused = api.call("editor_a", "POST", path)
        assert refused.status_code == 422, (path, refused.get_json())
        assert "approver" in refused.get_json()["errors"]["json"]
        assert "审核人不能审核自己起草的内容" in refused.get_json()["errors"]["json"]["approver"][0]
    assert api.ok("editor_a", "GET", f"/policies/{pid}")["state"] == "submitted"
    assert api.ok("editor_a", "GET", f"/interpretations/{iid}")["state"] == "submitted"
    # Another division's reviewer does not even see it; an editor without the role is refused by the rule.
    assert api.call("reviewer_b", "POST", f"/packages/{pid}/approve").status_code == 404
    assert api.call("dispatcher_a", "POST", f"/packages/{pid}/approve").status_code == 403

    # -- approved by the reviewer ---------------------------------------------------------------------
    policy = api.ok("reviewer_a", "POST", f"/packages/{pid}/approve")
    assert policy["state"] == "approved"
    assert [item["state"] for item in policy["interpretations"]] == ["approved"]
    # Publishing is the disclosure office's, not the reviewer's.
    assert api.call("reviewer_a", "POST", f"/packages/{pid}/publish").status_code == 403

    # -- scheduled a moment ahead by the disclosure office -----------------------------------------------
    publish_at = datetime.now(UTC) + timedelta(seconds=3)
    policy = api.ok("disclosure_office_a", "POST", f"/packages/{pid}/publish",
                    json={"publish_at": publish_at.isoformat()})
    assert policy["state"] == "approved" and policy["scheduled_at"] is not None
    assert api.ok("editor_a", "GET", f"/interpretations/{iid}")["scheduled_at"] is not None

    # Before its time: the beat task leaves it alone and nothing is public.
    assert run_publish_due(suite) == []
    consumer.run()
    assert public.get(f"/interpret/policies/{pid}").status_code == 404
    assert public.get(f"/interpret/interpretations/{iid}").status_code == 404
    assert public.get(f"/api/interpret/policies/{pid}").status_code == 404

    # -- its time comes: the beat task publishes both, the search consumer follows --------------------------
    time.sleep(max(0.0, (publish_at - datetime.now(UTC)).total_seconds()) + 0.2)
    assert sorted(run_publish_due(suite)) == [("interpretation", iid), ("policy", pid)]
    assert run_publish_due(suite) == []  # each is published once
    applied = consumer.run()
    assert "interpret.policy.published:indexed" in applied
    assert "interpret.interpretation.published:indexed" in applied

    policy = api.ok("editor_a", "GET", f"/policies/{pid}")
    assert policy["state"] == "published" and policy["scheduled_at"] is None
    assert policy["published_at"] is not None
    assert [(v["version"], v["published_by"]) for v in policy["history"]] == [(1, "scheduler")]

    policy_page = public.get(f"/interpret/policies/{pid}")
    assert policy_page.status_code == 200
    html = policy_page.get_data(as_text=True)
    assert POLICY["title"] in html and "皖科政〔2025〕12号" in html
    assert INTERPRETATION["title"] in html and f"/interpret/interpretations/{iid}" in html  # policy → interpretation
    interpretation_page = public.get(f"/interpret/interpretations/{iid}")
    assert interpretation_page.status_code == 200
    html = interpretation_page.get_data(as_text=True)
    assert INTERPRETATION["title"] in html
    assert POLICY["title"] in html and f"/interpret/policies/{pid}" in html  # interpretation → policy
    found = public.get("/api/search", query_string={"q": "科技成果转化"}).get_json()
    assert {hit["id"] for hit in found["hits"]} == {f"policy-{pid}", f"interpretation-{iid}"}

    # -- withdrawn: gone from the public pages and from search -----------------------------------------------
    assert api.call("editor_a", "POST", f"/policies/{pid}/withdraw").status_code == 403
    api.ok("disclosure_office_a", "POST", f"/interpretations/{iid}/withdraw")
    policy = api.ok("disclosure_office_a", "POST", f"/policies/{pid}/withdraw")
    assert policy["state"] == "withdrawn"
    applied = consumer.run()
    assert "interpret.policy.withdrawn:removed" in applied
    assert "interpret.interpretation.withdrawn:removed" in applied
    assert public.get(f"/interpret/policies/{pid}").status_code == 404
    assert public.get(f"/interpret/interpretations/{iid}").status_code == 404
    assert public.get(f"/api/interpret/policies/{pid}").status_code == 404
    assert public.get("/api/search", query_string={"q": "科技成果转化"}).get_json()["total"] == 0
    assert POLICY["title"] not in public.get("/interpret/policies").get_data(as_text=True)
    # A second withdrawal is a conflict with the state, said plainly.
    again = api.call("disclosure_office_a", "POST", f"/policies/{pid}/withdraw")
    assert again.status_code == 409
    assert "已撤回" in again.get_json()["message"] and "cannot withdraw" in again.get_json()["message"]


def _publish_policy_now(api: StaffApi, body: dict[str, Any]) -> dict[str, Any]:
    policy = api.ok("editor_a", "POST", "/policies", 201, json=body)
    api.ok("editor_a", "POST", f"/policies/{policy['id']}/submit")
    api.ok("reviewer_a", "POST", f"/policies/{policy['id']}/approve")
    return api.ok("disclosure_office_a", "POST", f"/policies/{policy['id']}/publish")


def test_editing_a_published_policy_makes_a_new_draft_version(
    suite: dict[str, Flask], api: StaffApi, public: Client
) -> None:
    consumer = SearchConsumer(suite)
    first_title = "关于加强实验室安全管理的通知"
    policy = _publish_policy_now(api, {
        "title": first_title, "issuer": "科学技术厅", "level": "本级", "body": "<p>各单位：现就安全事项通知如下。</p>",
    })
    pid = policy["id"]
    assert policy["state"] == "published" and policy["version"] == 1
    consumer.run()
    assert first_title in public.get(f"/interpret/policies/{pid}").get_data(as_text=True)

    # The edit revises the published policy into draft version 2; the public page keeps version 1.
    edited = api.ok("editor_a", "PATCH", f"/policies/{pid}", json={"title": "关于进一步加强实验室安全管理的通知"})
    assert (edited["state"], edited["version"], edited["title"]) == ("draft", 2, "关于进一步加强实验室安全管理的通知")
    assert [(v["version"], v["title"]) for v in edited["history"]] == [(1, first_title)]
    consumer.run()
    page = public.get(f"/interpret/policies/{pid}").get_data(as_text=True)
    assert first_title in page and "进一步" not in page

    # Published again, version 2 is what the public sees, and the history lists both versions.
    api.ok("editor_a", "POST", f"/policies/{pid}/submit")
    api.ok("reviewer_a", "POST", f"/policies/{pid}/approve")
    republished = api.ok("disclosure_office_a", "POST", f"/policies/{pid}/publish")
    assert [(v["version"], v["title"]) for v in republished["history"]] == [
        (1, first_title), (2, "关于进一步加强实验室安全管理的通知"),
    ]
    consumer.run()
    assert "关于进一步加强实验室安全管理的通知" in public.get(f"/interpret/policies/{pid}").get_data(as_text=True)


def test_staff_lists_are_scoped_to_the_departments_they_read(
    suite: dict[str, Flask], api: StaffApi
) -> None:
    mine = api.ok("editor_a", "POST", "/policies", 201, json={
        "title": "政策法规处的草稿", "issuer": "科学技术厅", "level": "本级", "body": "<p>正文</p>"})
    theirs = api.ok("editor_b", "POST", "/policies", 201, json={
        "title": "高新技术处的草稿", "issuer": "科学技术厅", "level": "本级", "body": "<p>正文</p>"})
    listed = api.ok("reviewer_a", "GET", "/policies", query_string={"state": "draft", "q": "草稿"})
    assert [item["id"] for item in listed["items"]] == [mine["id"]] and listed["total"] == 1
    assert api.ok("reviewer_a", "GET", "/policies", query_string={"department": "KJTB"})["total"] == 0
    # Another division's record answers as if it did not exist, for reads and writes alike.
    assert api.call("reviewer_a", "GET", f"/policies/{theirs['id']}").status_code == 404
    assert api.call("editor_a", "PATCH", f"/policies/{theirs['id']}", json={"title": "改"}).status_code == 404
    assert api.call("editor_a", "POST", f"/policies/{theirs['id']}/submit").status_code == 404
    # Creating in a department where one may not draft is refused.
    refused = api.call("editor_a", "POST", "/policies", json={
        "title": "越权", "issuer": "科学技术厅", "level": "本级", "department": "KJTB"})
    assert refused.status_code == 403
    interpretation = api.ok("editor_a", "POST", "/interpretations", 201, json={
        "title": "解读", "form": "文字解读", "interpreter_kind": "处室", "body": "<p>解读</p>"})
    # Linking to another division's unpublished draft: it "does not exist".
    link = api.call("editor_a", "POST", f"/interpretations/{interpretation['id']}/policies",
                    json={"policy_id": theirs["id"]})
    assert link.status_code == 422 and "policy_id" in link.get_json()["errors"]["json"]
    listed = api.ok("editor_a", "GET", "/interpretations", query_string={"form": "文字解读"})
    assert [item["id"] for item in listed["items"]] == [interpretation["id"]]
