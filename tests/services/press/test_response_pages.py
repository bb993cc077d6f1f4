"""The staff pages of responses (CSRF-protected forms, only the actions allowed now) and the public pages."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from search.tasks import index_document
from services.db import get_database, utcnow
from services.press.models import OutboxEvent, Response, Topic
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD


def make_topic(suite: dict[str, Flask], label: str = "合肥 公积金 提取") -> int:
    with get_database("press", suite["press"]).transaction() as session:
        topic = Topic(label=label, keywords=label.split(), size=12, first_at=utcnow(), last_at=utcnow())
        session.add(topic)
        session.flush()
        return topic.id


def index_published(suite: dict[str, Flask]) -> None:
    """Apply the press outbox's publish events as the worker's ``search.index_document`` would."""
    with get_database("press", suite["press"]).transaction() as session:
        messages = [event.as_message() for event in session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == "press.response.published"))]
    with suite["search"].app_context():
        for message in messages:
            assert index_document(message) == "indexed"


def _csrf(page: TestResponse) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, f"no CSRF token on {page.request.path}"
    return match.group(1)


class Browser:
    def __init__(self, suite: dict[str, Flask], username: str) -> None:
        self.client = Client(PathDispatcher(suite))
        self.address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.11"
        form = self.get("/staff/login")
        answer = self.client.post("/staff/login", data={
            "csrf_token": _csrf(form), "username": username, "password": STAFF_PASSWORD, "next": "/staff/"},
            environ_base={"REMOTE_ADDR": self.address})
        assert answer.status_code == 302, answer.status_code

    def get(self, path: str) -> TestResponse:
        return self.client.get(path, environ_base={"REMOTE_ADDR": self.address})

    def post(self, path: str, data: dict[str, Any], form_page: str) -> TestResponse:
        return self.client.post(path, data={"csrf_token": _csrf(self.get(form_page)), **data},
                                environ_base={"REMOTE_ADDR": self.address})


@pytest.fixture
def quiet(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_database("press", suite["press"]), "publisher", None)


def actions_on(page: TestResponse) -> set[str]:
    return set(re.findall(r'data-action="([a-z_]+)"', page.get_data(as_text=True)))


def responses(suite: dict[str, Flask]) -> int:
    with get_database("press", suite["press"]).transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Response)) or 0)


def test_staff_draft_review_and_publish_through_the_pages(suite: dict[str, Flask], quiet: None) -> None:
    topic_id = make_topic(suite)
    officer = Browser(suite, "press_officer_a")
    form = officer.get(f"/press/staff/responses/new?topic={topic_id}")
    assert form.status_code == 200
    assert re.search(rf'name="topic_ids" value="{topic_id}" checked', form.get_data(as_text=True))

    without_token = officer.client.post("/press/staff/responses/new", data={"kind": "response", "title": "x"},
                                        environ_base={"REMOTE_ADDR": officer.address})
    assert without_token.status_code == 400 and responses(suite) == 0  # CSRF

    refused = officer.post("/press/staff/responses/new", {
        "kind": "media_focus", "title": "媒体报道", "topic_ids": str(topic_id)}, "/press/staff/responses/new")
    assert refused.status_code == 422 and responses(suite) == 0
    assert 'data-field="outlet"' in refused.get_data(as_text=True)

    created = officer.post("/press/staff/responses/new", {
        "kind": "media_focus", "title": "人民网：公积金提取再提速", "summary": "提取时限缩短至3日。",
        "outlet": "人民网", "published_on": "2024-05-01", "url": "https://www.people.com.cn/a.html",
        "topic_ids": str(topic_id)}, "/press/staff/responses/new")
    assert created.status_code == 303
    detail_path = created.headers["Location"].split("?")[0]
    page = officer.get(detail_path)
    assert page.status_code == 200 and actions_on(page) == {"submit"}
    assert officer.post(f"{detail_path}/submit", {}, detail_path).status_code == 303
    assert actions_on(officer.get(detail_path)) == set()  # the officer waits for review

    reviewer = Browser(suite, "reviewer_a")
    assert actions_on(reviewer.get(detail_path)) == {"return", "approve"}
    assert reviewer.post(f"{detail_path}/approve", {"comment": "同意"}, detail_path).status_code == 303
    conflict = reviewer.post(f"{detail_path}/approve", {}, detail_path)
    assert conflict.status_code == 409 and "已审核" in conflict.get_data(as_text=True)
    assert actions_on(officer.get(detail_path)) == {"publish"}
    assert officer.post(f"{detail_path}/publish", {}, detail_path).status_code == 303
    assert "同意" in officer.get(detail_path).get_data(as_text=True)  # the history shows the comment

    listing = officer.get("/press/staff/responses/?state=published").get_data(as_text=True)
    assert "人民网：公积金提取再提速" in listing

    index_published(suite)
    public = Client(PathDispatcher(suite))
    response_id = int(detail_path.rsplit("/", 1)[1])
    item = public.get(f"/press/responses/{response_id}")
    assert item.status_code == 200
    html = item.get_data(as_text=True)
    assert re.search(r'href="https://www.people.com.cn/a.html" rel="noopener[^"]*"', html)
    assert "媒体聚焦" in html and "人民网" in html
    listed = public.get("/press/responses?kind=media_focus")
    assert listed.status_code == 200 and f"/press/responses/{response_id}" in listed.get_data(as_text=True)
    assert listed.headers["Cache-Control"].startswith("public") and listed.headers.get("ETag")
    again = public.get("/press/responses?kind=media_focus", headers={"If-None-Match": listed.headers["ETag"]})
    assert again.status_code == 304
    assert f"/press/responses/{response_id}" not in public.get("/press/responses?kind=response").get_data(
        as_text=True)
    assert public.get("/press/responses/987654").status_code == 404


def test_staff_pages_keep_other_departments_out(suite: dict[str, Flask], quiet: None) -> None:
    officer = Browser(suite, "press_officer_a")
    created = officer.post("/press/staff/responses/new", {"kind": "response", "title": "回应", "body": "<p>正文</p>"},
                           "/press/staff/responses/new")
    detail_path = created.headers["Location"].split("?")[0]
    assert Browser(suite, "press_officer_b").get(detail_path).status_code == 404
    assert Browser(suite, "editor_a").get("/press/staff/responses/new").status_code == 403
