"""Outside tests the query log is written by a background thread, a batch per second, not by each search
on the request path: every search still ends up in the log, once."""

from __future__ import annotations

import dataclasses
import time

from flask import Flask
from sqlalchemy import func, select

from search import query as search_query
from search.models import QueryLog
from services.db import get_database


def _count(app: Flask) -> int:
    with get_database("search", app).transaction() as session:
        return int(session.scalar(select(func.count()).select_from(QueryLog)) or 0)


def test_searches_are_logged_in_batches_by_a_background_thread(suite: dict[str, Flask], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = suite["search"]
    settings = app.extensions["gongkai.settings"]
    monkeypatch.setitem(app.extensions, "gongkai.settings", dataclasses.replace(settings, environment="production"))
    monkeypatch.setattr(search_query, "QUERY_LOG_FLUSH_SECONDS", 0.2)
    app.extensions.pop("gongkai.query_log", None)
    before = _count(app)
    for number in range(25):
        search_query.record_query(app, f"公积金 提取 {number % 5}", {"type": []}, number, 3)
    assert _count(app) == before  # nothing written on the request path
    deadline = time.monotonic() + 5
    while _count(app) < before + 25 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(app) == before + 25
    time.sleep(0.5)
    assert _count(app) == before + 25  # each row once
    app.extensions.pop("gongkai.query_log", None)
