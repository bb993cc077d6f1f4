"""The search query log as a hot-topic input (``services.press.search_interest``).

Searches are logged with search's own ``record_query`` in the search database; the pull (the
``press.pull_search_interest`` task, in an app holding both databases as the worker's does) stores
exact per-query counts, redacted, as a snapshot that a rerun replaces; a topic's search interest is
the searches whose query shares a keyword with it, each query once; hotness rises with it; a search
database that does not answer leaves the last snapshot and a log line, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.engine import make_url

from search.query import record_query, resume_query_log
from services.celery_app import beat_schedule, make_celery
from services.db import ServiceDatabase, get_database, register_database
from services.press import search_interest
from services.press.models import SearchQueryCount, Topic
from services.press.search_interest import RisingSearch, pull, pull_search_interest
from services.press.topics import SEARCH_WEIGHT, hotness

from support.clock import Clock

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    resume_query_log()
    clock = Clock(NOW)
    monkeypatch.setattr("search.query.utcnow", clock)
    yield clock
    resume_query_log()


@pytest.fixture
def worker(suite: dict[str, Flask]) -> Flask:
    """An app holding the press and search databases (the suite's, rolled back after the test), as the
    worker's one app holds every service's database."""
    app = Flask("press_search_worker")
    app.extensions["gongkai.settings"] = suite["press"].extensions["gongkai.settings"]
    register_database(app, get_database("press", suite["press"]))
    register_database(app, get_database("search", suite["search"]))
    return app


def searched(suite: dict[str, Flask], clock: Clock, text: str, hours_ago: float, times: int = 1) -> None:
    clock.set(NOW - timedelta(hours=hours_ago))
    for _ in range(times):
        record_query(suite["search"], text, {}, 2, 3)


def run_task(app: Flask) -> Any:
    with app.app_context():
        return pull_search_interest.run()


def snapshot(suite: dict[str, Flask]) -> dict[str, tuple[int, int, list[str]]]:
    with get_database("press", suite["press"]).transaction() as session:
        return {row.query: (row.current, row.previous, list(row.keywords))
                for row in session.scalars(select(SearchQueryCount))}


def topics(suite: dict[str, Flask], **keywords: list[str]) -> dict[str, int]:
    ids = {}
    with get_database("press", suite["press"]).transaction() as session:
        for name, words in keywords.items():
            topic = Topic(label="·".join(words[:3]), keywords=words, centroid={}, size=5, askers=5)
            session.add(topic)
            session.flush()
            ids[name] = topic.id
    return ids


def log_searches(suite: dict[str, Flask], clock: Clock) -> None:
    # The window is PRESS_SEARCH_WINDOW_HOURS = 24: current [NOW - 24 h, NOW], previous the 24 h before.
    searched(suite, clock, "停车位收费", 1, times=4)
    searched(suite, clock, "停车位收费", 30, times=1)
    searched(suite, clock, "阳光花园 停车", 2, times=3)
    searched(suite, clock, "小区物业", 3, times=2)
    searched(suite, clock, "小区物业", 26, times=2)
    searched(suite, clock, "自来水发黄怎么办", 5, times=6)
    searched(suite, clock, "公积金提取", 4, times=5)
    searched(suite, clock, "查询进度 13800138000", 1, times=1)
    searched(suite, clock, "停车位收费", 60, times=50)  # older than both windows


def test_pull_stores_exact_counts_and_topic_interest(suite: dict[str, Flask], worker: Flask, clock: Clock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.press_export.utcnow", clock)
    log_searches(suite, clock)
    clock.set(NOW)
    assert run_task(worker) == "6 queries, 21 searches"

    stored = snapshot(suite)
    assert {query: counts[:2] for query, counts in stored.items()} == {
        "停车位收费": (4, 1), "阳光花园 停车": (3, 0), "小区物业": (2, 2), "自来水发黄怎么办": (6, 0),
        "公积金提取": (5, 0), "查询进度 ［已隐去：电话号码］": (1, 0),
    }
    assert not any("13800138000" in query for query in stored)
    assert stored["停车位收费"][2] == ["停车位", "收费"]
    assert stored["查询进度 ［已隐去：电话号码］"][2] == ["查询", "进度"]  # markers are no keywords
    with get_database("press", suite["press"]).transaction() as session:
        row = session.scalars(select(SearchQueryCount)).first()
        assert row is not None and (row.window_end, row.window_hours) == (NOW, 24)
        info = search_interest.snapshot_info(session)
        assert info is not None and (info["window_start"], info["window_end"]) == (NOW - timedelta(hours=24), NOW)
        assert (info["queries"], info["searches"]) == (6, 21)

    ids = topics(suite, parking=["停车位", "阳光", "花园", "收费", "小区"], water=["自来水", "发黄", "小区"],
                 quiet=["医保", "报销"], empty=[])
    with get_database("press", suite["press"]).transaction() as session:
        interest = search_interest.search_interest_by_topic(session, [*ids.values(), 999_999])
        # parking: 停车位收费 4 (two shared words, counted once) + 阳光花园 停车 3 + 小区物业 2
        # water: 自来水发黄怎么办 6 + 小区物业 2
        assert interest == {ids["parking"]: 9, ids["water"]: 8, ids["quiet"]: 0, ids["empty"]: 0, 999_999: 0}
        assert search_interest.search_interest_by_topic(session, []) == {}
        assert search_interest.topic_searches(session, ids["parking"]) == [
            RisingSearch("停车位收费", 4, 1), RisingSearch("阳光花园 停车", 3, 0), RisingSearch("小区物业", 2, 2)]
        assert search_interest.topic_searches(session, ids["empty"]) == []


def test_rising_searches_for_the_console(suite: dict[str, Flask], worker: Flask, clock: Clock) -> None:
    log_searches(suite, clock)
    searched(suite, clock, "公积金提取", 28, times=5)  # as often as before: not rising
    clock.set(NOW)
    pull(worker, now=NOW)
    with get_database("press", suite["press"]).transaction() as session:
        rising = search_interest.rising_searches(session)
        assert [item.as_dict() for item in rising] == [
            {"query": "自来水发黄怎么办", "current": 6, "previous": 0, "growth": 1.946},
            {"query": "阳光花园 停车", "current": 3, "previous": 0, "growth": 1.386},
            {"query": "停车位收费", "current": 4, "previous": 1, "growth": 0.916},
        ]  # 小区物业 (2 and 2) and 公积金提取 (5 and 5) are flat; the single search is below the minimum
        assert [item.query for item in search_interest.rising_searches(session, limit=1)] == ["自来水发黄怎么办"]
        assert len(search_interest.rising_searches(session, min_count=1)) == 4


def test_hotness_rises_with_search_interest(suite: dict[str, Flask], worker: Flask, clock: Clock) -> None:
    ids = topics(suite, parking=["停车位", "收费"], water=["自来水", "发黄"])
    searched(suite, clock, "停车位收费", 1, times=20)
    searched(suite, clock, "自来水发黄", 1, times=2)
    pull(worker, now=NOW)
    with get_database("press", suite["press"]).transaction() as session:
        interest = search_interest.search_interest_by_topic(session, list(ids.values()))
    assert interest == {ids["parking"]: 20, ids["water"]: 2}
    same = (10, 8, 3, 4, 2, 0.5, 1.0)  # two topics alike in messages, askers, likes, growth and age
    parking, water, unknown = (hotness(*same, searches=interest[ids["parking"]]),
                               hotness(*same, searches=interest[ids["water"]]), hotness(*same))
    assert parking > water > unknown == hotness(*same, searches=0)
    assert parking - unknown == pytest.approx(SEARCH_WEIGHT * 3.044522437723423)  # 0.5 * ln(21)


def test_rerun_replaces_the_snapshot(suite: dict[str, Flask], worker: Flask, clock: Clock) -> None:
    log_searches(suite, clock)
    first = pull(worker, now=NOW)
    assert first is not None and (first.queries, first.searches) == (6, 21)
    before = snapshot(suite)
    again = pull(worker, now=NOW)
    assert again == first and snapshot(suite) == before

    searched(suite, clock, "停车位收费", 0.5, times=2)
    searched(suite, clock, "阳光花园 停车", -1, times=1)
    # 23 h later the current window starts at NOW - 1 h: the searches of 2 to 25 h before NOW are the
    # previous window's, and queries searched only then are left out.
    pull(worker, now=NOW + timedelta(hours=23))
    assert {query: counts[:2] for query, counts in snapshot(suite).items()} == {
        "停车位收费": (6, 0), "阳光花园 停车": (1, 3), "查询进度 ［已隐去：电话号码］": (1, 0),
    }
    pull(worker, now=NOW + timedelta(days=5))  # nothing searched lately: an empty snapshot
    assert snapshot(suite) == {}
    with get_database("press", suite["press"]).transaction() as session:
        assert search_interest.snapshot_info(session) is None


def test_search_unavailable_keeps_the_last_snapshot(suite: dict[str, Flask], worker: Flask, clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    searched(suite, clock, "停车位收费", 1, times=3)
    pull(worker, now=NOW)
    settings = suite["press"].extensions["gongkai.settings"]
    dead = ServiceDatabase("search", str(make_url(settings.database_url).set(port=1)))
    unreachable = Flask("unreachable_search")
    register_database(unreachable, dead)
    try:
        with caplog.at_level(logging.WARNING, logger="services.press.search_interest"):
            assert pull(worker, search_app=unreachable, now=NOW + timedelta(hours=1)) is None
            press_only = Flask("press_only")
            press_only.extensions["gongkai.settings"] = settings
            register_database(press_only, get_database("press", suite["press"]))
            assert run_task(press_only) == "search unavailable: snapshot kept"
    finally:
        dead.dispose()
    assert "OperationalError" in caplog.text and "keeping the last snapshot" in caplog.text
    assert "holds no search database" in caplog.text
    assert "停车位收费" not in caplog.text
    assert {query: counts[:2] for query, counts in snapshot(suite).items()} == {"停车位收费": (3, 0)}


def test_the_worker_registers_and_schedules_the_pull(suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    entry = beat_schedule(settings)["press-pull-search-interest"]
    assert entry["task"] == "press.pull_search_interest" and entry["schedule"] == timedelta(minutes=5)
    celery = make_celery(settings)
    celery.loader.import_default_modules()
    assert "press.pull_search_interest" in celery.tasks
