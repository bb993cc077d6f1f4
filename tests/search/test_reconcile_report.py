"""The reconciliation report in the admin UI ("索引核对", ``/search/admin/reconcile``) and the staff API
(``GET /api/search/reconcile``).

* Every run is recorded with its counts per document type, whoever started it (command, schedule, staff),
  and the page and the API show the last runs, newest first.
* The button queues a run (a ``search.reconcile.requested`` event, audited, CSRF-protected) that the
  ``search.reconcile`` task carries out; while it is queued or running, a second click queues nothing,
  and a repeated delivery of the event does not run it twice.
* A run that fails (the engine down) or loses its worker says so.
* Only the disclosure office (``content.publish``, who may see the other search admin pages and the
  rebuild status) reaches either.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from search import tasks as search_tasks
from search.models import OutboxEvent, ReconcileRun
from search.reconcile import COMMAND, REQUESTED_TOPIC, reconcile_recorded
from search.tasks import reconcile_index
from services.db import get_database, utcnow
from services.searchengine.fts import FtsSearchEngine
from services.searchengine.port import SearchUnavailable
from services.suite import PathDispatcher
from services.web import content_alias

from support.org import STAFF_PASSWORD
from support.search_content import Newsroom

PAGE = "/search/admin/reconcile"
API = "/api/search/reconcile"


@pytest.fixture
def room(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Newsroom:
    # Events stay in the (rolled-back) outboxes: the test hands them on itself.
    for service in ("interpret", "consult", "search"):
        monkeypatch.setattr(get_database(service, suite[service]), "publisher", None)
    return Newsroom(suite)


class Browser:
    """A member of the test org signed in on the staff pages, with the session's CSRF token."""

    def __init__(self, suite: dict[str, Flask], username: str) -> None:
        self.client = Client(PathDispatcher(suite))
        form = self.client.get("/staff/login")
        answer = self.client.post("/staff/login", data={
            "csrf_token": _csrf(form), "username": username, "password": STAFF_PASSWORD, "next": "/staff/"})
        assert answer.headers.get("Location") == "/staff/", username
        self.csrf = _csrf(self.client.get("/staff/"))

    def get(self, path: str) -> TestResponse:
        return self.client.get(path)

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> TestResponse:
        return self.client.post(path, data={**({"csrf_token": self.csrf} if csrf else {}), **(data or {})})


def _csrf(page: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, page.request.path
    return found.group(1)


def api_token(suite: dict[str, Flask], username: str) -> dict[str, str]:
    answer = Client(PathDispatcher(suite)).post("/api/auth/token",
                                                json={"username": username, "password": STAFF_PASSWORD})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}


def api_runs(suite: dict[str, Flask], headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = Client(PathDispatcher(suite)).get(API, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    runs: list[dict[str, Any]] = answer.get_json()["runs"]
    return runs


def run_rows(page: TestResponse) -> list[str]:
    """Each run's block of the table, as text without tags."""
    html = page.get_data(as_text=True)
    blocks = re.findall(r'<tbody class="reconcile-run".*?</tbody>', html, flags=re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", block)).strip() for block in blocks]


def search_events(suite: dict[str, Flask], topic: str) -> list[OutboxEvent]:
    with get_database("search", suite["search"]).transaction() as session:
        events = list(session.scalars(select(OutboxEvent).where(OutboxEvent.topic == topic)
                                      .order_by(OutboxEvent.created_at)))
        session.expunge_all()
        return events


def test_each_run_is_shown_with_its_counts_per_type_on_the_page_and_in_the_api(
    suite: dict[str, Flask], org: dict[str, Any], room: Newsroom
) -> None:
    for number in range(3):
        room.policy(f"关于开展第{number}批科技型中小企业评价工作的通知")
    room.answer("高新技术企业认定咨询")
    room.sync()
    clean_id, clean = reconcile_recorded(suite, trigger=COMMAND)
    assert clean is not None and clean.drift == 0
    lost = room.policy("关于科技成果转化奖励的办法")
    room.take()  # its event is lost on the way: the index misses it

    drift_id, report = reconcile_recorded(suite, trigger=COMMAND)

    assert report is not None and report.types["policy"].missing == 1
    runs = api_runs(suite, api_token(suite, "disclosure_office_a"))
    assert [run["id"] for run in runs] == [drift_id, clean_id]
    newest = runs[0]
    assert (newest["trigger"], newest["state"], newest["repair"], newest["error"]) == (COMMAND, "finished", True, None)
    assert newest["types"]["policy"] == {"published": 4, "indexed": 3, "missing": 1, "stale": 0, "extra": 0,
                                         "repaired": 1, "unrepaired": 0}
    assert newest["types"]["answer"] == {"published": 1, "indexed": 1, "missing": 0, "stale": 0, "extra": 0,
                                         "repaired": 0, "unrepaired": 0}
    assert newest["totals"]["missing"] == 1 and newest["drift"] == 1 and runs[1]["drift"] == 0
    assert newest["started_at"] and newest["finished_at"] and newest["seconds"] is not None
    engine, alias = content_alias(suite["search"])
    assert engine.get_document(alias, f"policy-{lost}") is not None

    page = Browser(suite, "disclosure_office_a").get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h1>索引核对</h1>" in html and 'id="form-reconcile"' in html
    assert 'http-equiv="refresh"' not in html  # nothing queued or running: no reason to reload
    rows = run_rows(page)
    assert len(rows) == 2
    # Newest first: time, how, state, then per type published, indexed, missing, stale, extra, repaired, unrepaired.
    assert "命令行 已完成 政策文件 4 3 1 0 0 1 0 政策解读 0 0 0 0 0 0 0 咨询回复 1 1 0 0 0 0 0" in rows[0], rows[0]
    assert "政策文件 3 3 0 0 0 0 0" in rows[1]
    assert 'class="drift"' in html
    english = Browser(suite, "disclosure_office_a")
    english.get(f"/lang/en?next={PAGE}")
    page = english.get(PAGE)
    assert "<h1>Index reconciliation</h1>" in page.get_data(as_text=True)
    assert ("Command line Finished Policies 4 3 1 0 0 1 0 Interpretations 0 0 0 0 0 0 0 "
            "Consultation replies 1 1 0 0 0 0 0") in run_rows(page)[0], run_rows(page)[0]


def test_the_button_queues_a_run_once_and_the_task_carries_it_out_once(
    suite: dict[str, Flask], org: dict[str, Any], room: Newsroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    room.policy("关于支持新型研发机构发展的若干措施")
    room.take()  # lost: the run will find it missing
    office = Browser(suite, "disclosure_office_a")

    queued = office.post(PAGE)

    assert queued.status_code == 303 and queued.headers["Location"].endswith(f"{PAGE}?done=queued")
    page = office.get(f"{PAGE}?done=queued")
    html = page.get_data(as_text=True)
    assert "已加入队列" in html and 'http-equiv="refresh"' in html and "disabled" in html
    [row] = run_rows(page)
    assert "手动 disclosure_office_a 排队中" in row
    [requested] = search_events(suite, REQUESTED_TOPIC)
    audit = [event.payload for event in search_events(suite, "audit.recorded")]
    assert [(entry["action"], entry["username"], entry["object_id"]) for entry in audit] == [
        ("search.reconcile.request", "disclosure_office_a", str(requested.payload["run_id"]))]

    # A second click while it waits queues nothing more.
    again = office.post(PAGE)
    assert again.headers["Location"].endswith(f"{PAGE}?done=already")
    assert "已有一次核对在排队或进行中" in office.get(f"{PAGE}?done=already").get_data(as_text=True)
    assert len(search_events(suite, REQUESTED_TOPIC)) == 1

    # The worker takes the event (here in-process; the worker app holds every service's database).
    monkeypatch.setattr(search_tasks, "worker_apps", lambda app: suite)
    with suite["search"].app_context():
        summary = reconcile_index(requested.as_message())
        repeated = reconcile_index(requested.as_message())  # delivered again (acks_late)

    assert summary["run_id"] == requested.payload["run_id"]
    assert summary["types"]["policy"]["missing"] == 1 and summary["types"]["policy"]["repaired"] == 1
    assert repeated == {"duplicate": requested.payload["run_id"]}
    [run] = api_runs(suite, api_token(suite, "disclosure_office_a"))
    assert (run["trigger"], run["requested_by"], run["state"]) == ("staff", "disclosure_office_a", "finished")
    assert run["types"]["policy"]["repaired"] == 1
    [row] = run_rows(office.get(PAGE))
    assert "手动 disclosure_office_a 已完成 政策文件 1 0 1 0 0 1 0" in row

    # Once it is done, the button queues a new run.
    assert office.post(PAGE).headers["Location"].endswith(f"{PAGE}?done=queued")
    assert len(search_events(suite, REQUESTED_TOPIC)) == 2


def test_a_scheduled_run_and_a_failed_one_are_recorded_and_a_run_that_lost_its_worker_is_marked(
    suite: dict[str, Flask], org: dict[str, Any], room: Newsroom, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    room.policy("关于推进科技金融发展的意见")
    room.sync()
    office = Browser(suite, "disclosure_office_a")
    office.post(PAGE)  # queued, then its worker is killed: it never finishes
    with get_database("search", suite["search"]).transaction() as session:
        forgotten = session.scalars(select(ReconcileRun)).one()
        forgotten.requested_at = utcnow() - timedelta(hours=3)

    monkeypatch.setattr(search_tasks, "worker_apps", lambda app: suite)
    with suite["search"].app_context():
        scheduled = reconcile_index()  # what beat sends every hour
    assert scheduled["types"]["policy"] == {"doc_type": "policy", "published": 1, "indexed": 1, "missing": 0,
                                            "stale": 0, "extra": 0, "repaired": 0, "unrepaired": 0}

    # The engine cannot be used (its folder cannot be made): the run fails and says why.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    working = suite["search"].extensions["gongkai.search_engine"]
    suite["search"].extensions["gongkai.search_engine"] = FtsSearchEngine(blocked / "index.sqlite3")
    suite["search"].extensions.pop("gongkai.search_alias_ready", None)
    try:
        with pytest.raises(SearchUnavailable):
            reconcile_recorded(suite, trigger=COMMAND)
        with suite["search"].app_context():
            assert reconcile_index() == {"skipped": "search unavailable"}
    finally:
        suite["search"].extensions["gongkai.search_engine"] = working

    runs = api_runs(suite, api_token(suite, "disclosure_office_a"))
    assert [(run["trigger"], run["state"]) for run in runs] == [
        ("schedule", "failed"), ("command", "failed"), ("schedule", "finished"), ("staff", "abandoned")]
    assert "搜索服务不可用" in runs[0]["error"] and runs[0]["types"] == {}
    assert "未完成" in runs[3]["error"]
    rows = run_rows(office.get(PAGE))
    assert "定时（每小时） 失败 搜索服务不可用" in rows[0]
    assert "命令行 失败" in rows[1] and "定时（每小时） 已完成 政策文件 1 1 0" in rows[2]
    assert "手动 disclosure_office_a 未完成" in rows[3]


def test_a_form_without_its_csrf_token_queues_nothing(
    suite: dict[str, Flask], org: dict[str, Any], room: Newsroom
) -> None:
    office = Browser(suite, "disclosure_office_a")
    refused = office.post(PAGE, csrf=False)
    assert refused.status_code == 400
    assert search_events(suite, REQUESTED_TOPIC) == []
    assert run_rows(office.get(PAGE)) == []


def test_only_the_disclosure_office_reaches_the_report(
    suite: dict[str, Flask], org: dict[str, Any], room: Newsroom
) -> None:
    anonymous = Client(PathDispatcher(suite))
    assert anonymous.get(PAGE).headers["Location"].startswith("/staff/login?next=")
    assert anonymous.post(PAGE).status_code in (302, 400)  # no session: sent to sign in, or refused for CSRF
    assert anonymous.get(API).status_code == 401
    for username in ("admin1", "editor_a", "reviewer_a", "auditor_a"):
        browser = Browser(suite, username)
        assert browser.get(PAGE).status_code == 403, username
        assert browser.post(PAGE).status_code == 403, username
        assert anonymous.get(API, headers=api_token(suite, username)).status_code == 403, username
    assert search_events(suite, REQUESTED_TOPIC) == []
    assert Browser(suite, "disclosure_office_b").get(PAGE).status_code == 200
    assert anonymous.get(API, headers=api_token(suite, "disclosure_office_b")).status_code == 200


def test_the_api_is_in_the_openapi_document(suite: dict[str, Flask]) -> None:
    spec = Client(PathDispatcher(suite)).get("/api/search/openapi.json").get_json()
    operation = spec["paths"]["/api/search/reconcile"]["get"]
    assert "200" in operation["responses"]
    schema = spec["components"]["schemas"]["ReconcileRun"]
    assert {"trigger", "state", "types", "totals", "drift"} <= set(schema["properties"])
