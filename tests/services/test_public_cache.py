"""The shared cache of hot public reads (services.web): rendered anonymous public pages and search answers
are kept for a few seconds, never for signed-in staff or a POST, and a stale entry ends with its time to live."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client

from search.models import QueryLog
from services.db import get_database
from services.suite import PathDispatcher
from services.web import ELDER_MODE_COOKIE, LocalCache, RedisCache, cached_answer, content_alias

TTL = 2.0


@pytest.fixture
def cached(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> dict[str, Flask]:
    """The suite with both caches on (TTL seconds) and empty (the test environment turns them off)."""
    for app in suite.values():
        monkeypatch.setitem(app.config, "PUBLIC_CACHE_SECONDS", TTL)
        monkeypatch.setitem(app.config, "SEARCH_CACHE_SECONDS", TTL)
        monkeypatch.setitem(app.extensions, "gongkai.public_cache", LocalCache())
    return suite


def _answer(suite: dict[str, Flask], number: int, title: str, version: int) -> None:
    engine, alias = content_alias(suite["consult"])
    engine.index_document(alias, f"answer-{number}", {
        "id": f"answer-{number}", "doc_type": "answer", "title": title, "summary": "公积金提取的答复",
        "body": f"{title} 公积金提取", "question": "如何提取住房公积金？", "reply": "您好，可按规定提取。",
        "url": f"/consult/answers/{number}", "published_at": "2026-10-12T02:00:00+00:00",
        "received_at": "2026-10-10T02:00:00+00:00", "replied_at": "2026-10-12T02:00:00+00:00",
        "department": "KJTA", "category": "住房",
    }, version)


def test_an_anonymous_page_is_served_from_the_cache_until_its_time_to_live_ends(cached: dict[str, Flask]) -> None:
    client = Client(PathDispatcher(cached))
    _answer(cached, 1, "第一版标题", 1)
    first = client.get("/consult/answers/1")
    assert first.status_code == 200 and "第一版标题" in first.get_data(as_text=True)

    _answer(cached, 1, "第二版标题", 2)
    again = client.get("/consult/answers/1")
    assert "第一版标题" in again.get_data(as_text=True)  # within the time to live: the cached page
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert again.headers["Content-Security-Policy"]  # the app's own headers are still added to a cached page
    not_modified = client.get("/consult/answers/1", headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304 and not not_modified.get_data()

    # Someone with a session cookie never gets (nor fills) the shared copy.
    signed_in = Client(PathDispatcher(cached))
    signed_in.set_cookie("session", "abc")
    assert "第二版标题" in signed_in.get("/consult/answers/1").get_data(as_text=True)
    # Another locale is another entry.
    english = client.get("/consult/answers/1?lang=en")
    assert "第二版标题" in english.get_data(as_text=True)

    time.sleep(TTL + 0.1)
    assert "第二版标题" in client.get("/consult/answers/1").get_data(as_text=True)


def test_the_elder_mode_is_cached_apart_from_the_standard_page(cached: dict[str, Flask]) -> None:
    """长者模式 is rendered on the server (a class on <html>): its visitors share their own entry, never the other."""
    standard = Client(PathDispatcher(cached))
    elder = Client(PathDispatcher(cached))
    elder.set_cookie(ELDER_MODE_COOKIE, "1")
    _answer(cached, 2, "第一版标题", 1)
    assert 'class="elder"' not in standard.get("/consult/answers/2").get_data(as_text=True)
    page = elder.get("/consult/answers/2").get_data(as_text=True)
    assert 'class="elder"' in page and 'aria-pressed="true"' in page
    _answer(cached, 2, "第二版标题", 2)
    again = elder.get("/consult/answers/2").get_data(as_text=True)
    assert 'class="elder"' in again and "第一版标题" in again  # an anonymous visitor still: served from the cache
    assert 'class="elder"' not in standard.get("/consult/answers/2").get_data(as_text=True)


def test_a_missing_page_is_not_cached(cached: dict[str, Flask]) -> None:
    client = Client(PathDispatcher(cached))
    assert client.get("/consult/answers/7").status_code == 404
    _answer(cached, 7, "刚发布的答复", 1)
    assert client.get("/consult/answers/7").status_code == 200


def test_pages_without_the_mark_are_never_cached(cached: dict[str, Flask]) -> None:
    cache = cached["consult"].extensions["gongkai.public_cache"]
    asker = Client(PathDispatcher(cached))
    assert asker.get("/consult/ask").status_code == 200  # a form: it sets a session cookie (CSRF)
    assert asker.get("/consult/answers").status_code == 200  # so this visitor's pages are not shared
    assert not cache._entries
    assert Client(PathDispatcher(cached)).get("/consult/answers").status_code == 200
    keys = list(cache._entries)
    assert keys and all("/consult/answers?" in key for key in keys)


def test_search_answers_are_shared_briefly_and_every_search_is_still_logged(cached: dict[str, Flask]) -> None:
    client = Client(PathDispatcher(cached))
    _answer(cached, 3, "公积金提取的答复", 1)

    def logged() -> int:
        with get_database("search", cached["search"]).transaction() as session:
            return int(session.scalar(select(func.count()).select_from(QueryLog)) or 0)

    before = logged()
    first = client.get("/api/search?q=公积金").get_json()
    assert first["total"] == 1
    _answer(cached, 4, "公积金提取的另一个答复", 1)
    assert client.get("/api/search?q=公积金").get_json() == first  # the shared answer
    assert client.get("/api/search?q=公积金&type=answer").get_json()["total"] == 2  # other filters: another key
    assert logged() == before + 3
    time.sleep(TTL + 0.1)
    assert client.get("/api/search?q=公积金").get_json()["total"] == 2


def test_the_search_cache_is_off_in_the_test_environment_by_default(suite: dict[str, Flask]) -> None:
    assert suite["search"].config["SEARCH_CACHE_SECONDS"] == 0
    assert suite["consult"].config["PUBLIC_CACHE_SECONDS"] == 0
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert [cached_answer(suite["search"], "k", compute) for _ in range(2)] == [{"n": 1}, {"n": 2}]


def test_the_redis_cache_is_shared_and_expires(redis_url: str) -> None:
    key = f"gongkai:test:{uuid.uuid4().hex}"
    writer, reader = RedisCache(redis_url), RedisCache(redis_url)
    writer.set(key, "答复".encode(), 0.3)
    assert reader.get(key) == "答复".encode()
    time.sleep(0.4)
    assert reader.get(key) is None


def test_redis_down_means_no_cache_not_an_error() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")
    cache.set("k", b"v", 1)
    assert cache.get("k") is None


def test_the_local_cache_is_bounded() -> None:
    cache = LocalCache(max_entries=3)
    for number in range(5):
        cache.set(str(number), b"x", 10)
    assert [cache.get(str(number)) for number in range(5)] == [None, None, b"x", b"x", b"x"]


def test_cached_answers_keep_their_shape(cached: dict[str, Flask]) -> None:
    value: dict[str, Any] = {"total": 1, "hits": [{"title": "公积金", "score": 1.5, "pinned": False}], "facets": {}}
    assert cached_answer(cached["search"], "shape", lambda: value) == value
    assert cached_answer(cached["search"], "shape", lambda: {}) == value
