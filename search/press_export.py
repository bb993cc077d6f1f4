"""What the search service tells the press office: how often the public searched for what, lately.

The press office counts searches as one of the inputs of its hot topics
(``services.press.search_interest``). Its task calls :func:`recent_query_counts` with the app that
holds the search database (the worker's one app holds every service's database), the way the search
rebuild calls the services' exports the other way round: the press service never reads the query
log's table itself.

What it gives
    The most searched (normalised) queries of the current window ``[now - window, now]``, most
    searched first, each with its count in that window and in the window of the same length before,
    ``[now - 2 window, now - window)``. Counted with the query log helpers of
    :mod:`search.curation`; the previous counts are read for exactly the queries returned, so both
    numbers are exact. The log holds nothing about who searched (see ``search.models.QueryLog``),
    and what people typed had its personal numbers masked before it was logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask

from search.curation import query_counts
from search.models import QueryLog
from services.db import get_database, utcnow

DEFAULT_LIMIT = 1000
"""Queries handed over per pull: the long tail of one-off searches is left out."""


@dataclass(frozen=True)
class QueryTrend:
    query: str
    current: int
    """Searches in the current window."""
    previous: int
    """Searches in the window before."""


@dataclass(frozen=True)
class QueryCounts:
    window_start: datetime
    window_end: datetime
    window: timedelta
    queries: list[QueryTrend]
    """Most searched in the current window first (ties: most recently searched first, then by text)."""


def recent_query_counts(
    app: Flask, window: timedelta, *, now: datetime | None = None, limit: int = DEFAULT_LIMIT
) -> QueryCounts:
    """The queries searched in the current window with their counts in it and in the previous one.

    ``app`` holds the search database. Database trouble is raised (``SQLAlchemyError`` or
    ``services.db.DatabaseUnavailable``) for the caller to decide."""
    if window <= timedelta(0):
        raise ValueError("the window must be longer than zero")
    if limit < 1:
        raise ValueError("limit must be >= 1")
    end = now or utcnow()
    start = end - window
    with get_database("search", app).transaction() as session:
        current = query_counts(session, start, limit, QueryLog.created_at <= end)
        previous: dict[str, int] = {}
        texts = [item.query for item in current]
        for offset in range(0, len(texts), 500):
            chunk = texts[offset:offset + 500]
            for item in query_counts(session, start - window, len(chunk), QueryLog.created_at < start,
                                 QueryLog.query.in_(chunk)):
                previous[item.query] = item.count
    return QueryCounts(start, end, window, [
        QueryTrend(item.query, item.count, previous.get(item.query, 0)) for item in current
    ])
