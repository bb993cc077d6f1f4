"""Rebuilding the index while the suite keeps serving and publishing (issue 6, must-show 2).

The rebuild runs in the test's thread while one thread queries the alias (the engine and the
public API) and another publishes, revises, withdraws and unpublishes through the services'
workflows, each event applied at once by ``search.tasks`` as the worker would. The publisher's
first round is let in right after the first batch was written to the new index, so it always
edits documents the rebuild has already copied as well as ones it has not reached yet; the
second round runs freely alongside the rest of the rebuild, the third after the swap.

The ``suite`` fixture binds each service's database to one connection (rolled back after the
test). A connection serves one thread at a time, so the ``turns`` fixture lends it to the
threads in turn, one session at a time; the search engine, the queries and the index writes
run concurrently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.test import Client

from search.models import ReindexRun
from search.reindex import (
    BUILDING,
    FAILED,
    FINISHED,
    SOURCES,
    STALE_AFTER,
    ReindexAbandoned,
    ReindexInProgress,
    building_indices,
    doc_type_of,
    latest_run,
    reindex,
)
from services.db import ServiceDatabase, get_database, utcnow
from services.searchengine.port import SearchQuery
from services.suite import PathDispatcher
from services.web import content_alias

from support.org import STAFF_PASSWORD
from support.search_content import Newsroom

QUERIES = ("科技", "创新", "通知", "咨询", "乡村振兴", "新能源", "申请", "政策解读")


@pytest.fixture
def room(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Newsroom:
    for service in ("interpret", "consult"):
        monkeypatch.setattr(get_database(service, suite[service]), "publisher", None)
    return Newsroom(suite)


@pytest.fixture
def turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """One session at a time on the suite's shared connections (see the module's docstring)."""
    lock = threading.RLock()
    original = ServiceDatabase.new_session

    def new_session(self: ServiceDatabase) -> Session:
        lock.acquire()
        try:
            session = original(self)
        except BaseException:
            lock.release()
            raise
        close = session.close
        released = False

        def close_and_release() -> None:
            nonlocal released
            try:
                close()
            finally:
                if not released:
                    released = True
                    lock.release()

        session.close = close_and_release  # type: ignore[method-assign]
        return session

    monkeypatch.setattr(ServiceDatabase, "new_session", new_session)


def published(suite: dict[str, Flask]) -> dict[str, int]:
    """doc_id -> version of everything the services publish, asked through their exports."""
    versions: dict[str, int] = {}
    for source in SOURCES:
        versions.update(source.versions(suite))
    return versions


def exported_titles(suite: dict[str, Flask]) -> dict[str, str]:
    return {doc_id: document["title"] for source in SOURCES for doc_id, document, _v in source.documents(suite)}


def per_type(doc_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc_id in doc_ids:
        kind = str(doc_type_of(doc_id))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_a_rebuild_under_queries_and_publications_loses_nothing_and_fails_no_query(
    suite: dict[str, Flask], room: Newsroom, turns: None
) -> None:
    policies = [room.policy(f"关于科技创新第{n}批试点的通知", body=f"为推进科技创新第{n}批试点，现通知如下。")
                for n in range(1, 25)]
    interpretations = [room.interpretation(f"科技创新第{n}批试点政策解读", policies[n]) for n in range(6)]
    answers = [room.answer(f"科技项目申报咨询第{n}号", question=f"请问第{n}批科技项目如何申请？") for n in range(12)]
    room.sync()
    engine, alias = content_alias(suite["search"])
    first_index = engine.current_index(alias)
    withdrawn: dict[str, str] = {}

    building = threading.Event()
    first_batch_written = threading.Event()
    first_round_done = threading.Event()
    rebuilt = threading.Event()
    stop = threading.Event()
    problems: list[str] = []
    queries = {"total": 0, "during_rebuild": 0, "api": 0}

    def query_loop() -> None:
        client = Client(PathDispatcher(suite), use_cookies=False)
        n = 0
        while not stop.is_set():
            text = QUERIES[n % len(QUERIES)]
            try:
                result = engine.search(alias, SearchQuery(text=text, facets=("doc_type",), highlight=True))
                assert result.total >= len(result.hits)
                assert engine.count(alias) > 0
                if n % 15 == 0:
                    answer = client.get("/api/search", query_string={"q": text})
                    if answer.status_code != 200 or "hits" not in (answer.get_json() or {}):
                        problems.append(f"/api/search?q={text}: {answer.status_code} {answer.get_data(as_text=True)}")
                    queries["api"] += 1
            except Exception as error:  # any engine error, any failed assertion
                problems.append(f"query {text!r}: {type(error).__name__}: {error}")
            queries["total"] += 1
            if building.is_set() and not rebuilt.is_set():
                queries["during_rebuild"] += 1
            n += 1
            time.sleep(0.002)

    def withdraw_policy(index: int) -> None:
        room.withdraw_policy(policies[index])
        withdrawn[f"policy-{policies[index]}"] = "withdrawn"

    def unpublish_answer(index: int) -> None:
        room.unpublish_answer(answers[index])
        withdrawn[f"answer-{answers[index]}"] = "unpublished"

    def publish_loop() -> None:
        try:
            assert first_batch_written.wait(60), "the rebuild never wrote its first batch"
            # Round 1, while the rebuild waits: edit what it has copied already (the first
            # policies) and what it has not reached (the last policies, every answer).
            room.revise_policy(policies[0], "关于科技创新第1批试点的通知（修订）")
            room.revise_policy(policies[22], "关于科技创新第23批试点的通知（修订）")
            withdraw_policy(1)
            withdraw_policy(23)
            room.withdraw_interpretation(interpretations[0])
            unpublish_answer(0)
            policies.append(room.policy("关于科技创新券使用管理的通知"))
            answers.append(room.answer("科技创新券申领咨询"))
            room.sync()
            first_round_done.set()
            # Round 2, alongside the rest of the rebuild.
            for n in range(6):
                policies.append(room.policy(f"新能源汽车推广应用第{n}号通知"))
                answers.append(room.answer(f"新能源汽车补贴咨询第{n}号"))
                room.sync()
            room.revise_policy(policies[3], "关于科技创新第4批试点的通知（第二次修订）")
            withdraw_policy(5)
            unpublish_answer(3)
            room.sync()
            assert rebuilt.wait(120), "the rebuild did not finish"
            # Round 3, after the swap: the new index serves and receives the events.
            policies.append(room.policy("乡村振兴科技特派员工作方案"))
            withdraw_policy(7)
            room.revise_policy(policies[8], "关于科技创新第9批试点的通知（修订）")
            room.sync()
        except Exception as error:
            problems.append(f"publisher: {type(error).__name__}: {error}")
            first_round_done.set()

    def progress(doc_type: str, done: int, total: int) -> None:
        building.set()
        if done and not first_batch_written.is_set():
            first_batch_written.set()
            assert first_round_done.wait(60), "the publisher's first round did not end"

    threads = [threading.Thread(target=query_loop), threading.Thread(target=publish_loop)]
    for thread in threads:
        thread.start()
    try:
        report = reindex(suite, keep=2, batch_size=4, progress=progress, settle_seconds=0, started_by="test")
    finally:
        rebuilt.set()
        threads[1].join(120)
        stop.set()
        threads[0].join(30)
    room.sync()  # nothing left: every event was applied as it was emitted
    assert problems == []
    assert queries["during_rebuild"] > 0 and queries["api"] > 0

    # The alias moved to the new index; the old one is kept for a rollback.
    assert report.previous == first_index and report.index != first_index
    assert engine.current_index(alias) == report.index
    assert engine.list_indices(alias) == [first_index, report.index]

    # Every published document is in the new index at its latest version; withdrawn ones are not.
    engine.refresh(alias)
    expected = published(suite)
    titles = exported_titles(suite)
    assert set(withdrawn) and not set(withdrawn) & set(expected)
    for doc_id, version in expected.items():
        document = engine.get_document(alias, doc_id)
        assert document is not None, f"{doc_id} is missing from the rebuilt index"
        assert (document["_version"], document["title"]) == (version, titles[doc_id]), doc_id
    for doc_id in withdrawn:
        assert engine.get_document(alias, doc_id) is None, f"{doc_id} is still in the index"
    assert titles[f"policy-{policies[0]}"].endswith("（修订）")
    assert titles[f"policy-{policies[3]}"].endswith("（第二次修订）")
    counts = per_type(list(expected))
    assert counts == {"policy": 24 + 1 + 6 + 1 - 4, "interpretation": 5, "answer": 12 + 1 + 6 - 2}
    assert {doc_type: engine.count(alias, doc_type) for doc_type in counts} == counts
    withdrawn_titles = {"关于科技创新第2批试点的通知", "关于科技创新第24批试点的通知", "科技项目申报咨询第0号"}
    hits = engine.search(alias, SearchQuery(text="科技", per_page=100)).hits
    assert not withdrawn_titles & {hit.title for hit in hits}

    run = latest_run(suite["search"])
    assert run is not None and run["state"] == FINISHED and run["index"] == report.index
    assert run["previous_index"] == first_index and run["finished_at"] is not None
    assert set(run["progress"]) == {*counts, "press_response"}  # every source, the press office too
    assert all(item["done"] == item["total"] > 0 for doc_type, item in run["progress"].items() if doc_type in counts)
    assert building_indices(suite["search"]) == ()


def test_a_failed_rebuild_leaves_the_alias_and_drops_its_index(
    suite: dict[str, Flask], room: Newsroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        room.policy(f"关于开展节水型社会建设第{n}号通知")
    room.answer("节水器具补贴咨询")
    room.sync()
    engine, alias = content_alias(suite["search"])
    before = engine.current_index(alias)

    def broken(app: Flask, **_: Any) -> Iterator[tuple[str, dict[str, Any], int]]:
        raise RuntimeError("consult export interrupted")
        yield  # a generator, like the real one

    with monkeypatch.context() as patch:
        patch.setattr("consult.search_export.published_documents", broken)
        with pytest.raises(RuntimeError, match="consult export interrupted"):
            reindex(suite, batch_size=2, settle_seconds=0)

    assert engine.current_index(alias) == before and engine.list_indices(alias) == [before]
    run = latest_run(suite["search"])
    assert run is not None and run["state"] == FAILED and "consult export interrupted" in run["error"]
    assert building_indices(suite["search"]) == ()
    # The next events go to the alias alone, and the next rebuild runs normally.
    room.policy("关于节水型社会建设的补充通知")
    assert room.sync() == ["indexed"]
    report = reindex(suite, settle_seconds=0)
    assert engine.current_index(alias) == report.index and report.counts == {
        "policy": 4, "interpretation": 0, "answer": 1, "press_response": 0}



def test_a_rebuild_that_was_silent_too_long_does_not_swap(suite: dict[str, Flask], room: Newsroom) -> None:
    """Silent for long, the indexing tasks took it for dead and stopped writing to its index: it may
    have missed events, so it must not become what the public reads."""
    for n in range(3):
        room.policy(f"关于推动老旧小区改造第{n}号通知")
    room.sync()
    engine, alias = content_alias(suite["search"])
    before = engine.current_index(alias)
    database = get_database("search", suite["search"])

    def fall_silent(doc_type: str, done: int, total: int) -> None:
        with database.transaction() as session:
            run = session.query(ReindexRun).filter_by(state=BUILDING).one()
            run.heartbeat_at = utcnow() - STALE_AFTER

    with pytest.raises(ReindexAbandoned, match="paused"):
        reindex(suite, batch_size=1, progress=fall_silent, settle_seconds=0)

    assert engine.current_index(alias) == before and engine.list_indices(alias) == [before]
    run = latest_run(suite["search"])
    assert run is not None and run["state"] == FAILED and "paused" in run["error"]

def test_one_rebuild_at_a_time_and_old_versions_are_pruned(suite: dict[str, Flask], room: Newsroom) -> None:
    room.policy("关于加强安全生产工作的通知")
    room.sync()
    engine, alias = content_alias(suite["search"])
    database = get_database("search", suite["search"])
    with database.transaction() as session:
        session.add(ReindexRun(alias=alias, building_slot=alias, state=BUILDING, progress={}, pruned=[],
                               started_by="another terminal", started_at=utcnow(), heartbeat_at=utcnow()))
    with pytest.raises(ReindexInProgress, match="another terminal"):
        reindex(suite, settle_seconds=0)
    assert len(engine.list_indices(alias)) == 1

    # A run that stopped giving signs of life long ago does not block the next one.
    with database.transaction() as session:
        run = session.query(ReindexRun).filter_by(state=BUILDING).one()
        run.heartbeat_at = utcnow().replace(year=2020)
    reports = [reindex(suite, keep=2, settle_seconds=0) for _ in range(3)]

    assert engine.list_indices(alias) == [reports[1].index, reports[2].index]
    assert engine.current_index(alias) == reports[2].index
    assert reports[2].pruned == [reports[1].previous]
    with database.transaction() as session:
        states = [run.state for run in session.query(ReindexRun).order_by(ReindexRun.id)]
    assert states == ["abandoned", FINISHED, FINISHED, FINISHED]
    assert engine.get_document(alias, next(iter(published(suite)))) is not None


def test_the_rebuild_status_is_for_the_disclosure_office(
    suite: dict[str, Flask], org: dict[str, Any], room: Newsroom
) -> None:
    client = Client(PathDispatcher(suite), use_cookies=False)

    def token(username: str) -> dict[str, str]:
        answer = client.post("/api/auth/token", json={"username": username, "password": STAFF_PASSWORD})
        return {"Authorization": f"Bearer {answer.get_json()['token']}"}

    path = "/api/search/reindex/status"
    office = token("disclosure_office_a")
    never = client.get(path, headers=office)
    assert never.status_code == 200 and never.get_json()["state"] == "none"

    room.policy("关于做好政务公开工作的通知")
    room.answer("政务公开申请咨询")
    report = reindex(suite, settle_seconds=0)
    status = client.get(path, headers=office).get_json()

    assert status["state"] == "finished" and status["index"] == status["current_index"] == report.index
    assert status["previous_index"] == report.previous
    assert status["progress"] == {"policy": {"done": 1, "total": 1}, "interpretation": {"done": 0, "total": 0},
                                  "answer": {"done": 1, "total": 1}, "press_response": {"done": 0, "total": 0}}
    assert status["started_at"] and status["finished_at"] and status["started_by"] == "cli"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=token("editor_a")).status_code == 403
