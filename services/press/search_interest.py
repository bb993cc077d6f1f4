"""The public search's query log as a hot-topic input: what people search for, and what is rising.

The pull (:func:`pull`, the ``press.pull_search_interest`` task, every few minutes from beat)
    Asks the search service for its recent query counts (``search.press_export.recent_query_counts``,
    search's own code on search's database, called with the app that holds it: the worker's one app
    holds every service's database) over the window ``PRESS_SEARCH_WINDOW_HOURS`` (24 h) and the window
    before, and stores them in ``press_search_query`` as a *snapshot*: one transaction deletes every
    row and writes the new ones, so a pull run twice (or twice at once: an advisory lock serialises
    them on PostgreSQL) leaves the same table. Each query is redacted again
    (``services.text.pii.redact``: the log masked numbers, a name or an address may remain) and cut
    into words as topic keywords are (``topics.keywords_of``, redaction markers left out). Queries that
    redact to the same text are counted together. When the search database cannot be reached the
    pull logs one line and returns: the last snapshot stays and the console goes on showing it, with
    its time (:func:`snapshot_info`).

Search interest of a topic (:func:`search_interest_by_topic`)
    The searches of the current window whose query shares at least one word with the topic's shared
    keywords (``press_topic.keywords``), each query counted once per topic however many words it
    shares. It feeds the hotness index as ``topics.SEARCH_WEIGHT * ln(1 + searches)``
    (``topics.hotness(..., searches=...)``).

Rising searches (:func:`rising_searches`)
    Queries searched at least :data:`RISING_MIN_COUNT` times in the current window and more often
    than in the window before, by growth ``ln((1 + current) / (1 + previous))`` (the +1-smoothed growth
    of the hotness index), then by count.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from flask import Flask, current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from services.db import EXTENSION_KEY, DatabaseUnavailable, get_database, utcnow
from services.press import topics
from services.press.ingest import MARKER
from services.press.models import SearchQueryCount, Topic
from services.settings import Settings
from services.text.pii import redact

log = logging.getLogger(__name__)

RISING_MIN_COUNT = 2
"""Searches in the current window a query needs to be listed as rising: one search is nobody's trend."""
QUERY_MAX = 200
"""Length of ``press_search_query.query``."""
SEARCH_LOCK = 7_240_319
"""The advisory lock key of pulls (next to ``engine.PRESS_LOCK``)."""


@dataclass(frozen=True)
class PullReport:
    queries: int
    """Rows of the new snapshot."""
    searches: int
    """Searches of the current window they add up to."""
    window_end: datetime


@dataclass(frozen=True)
class RisingSearch:
    query: str
    current: int
    previous: int

    @property
    def growth(self) -> float:
        return math.log((1 + self.current) / (1 + self.previous))

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "current": self.current, "previous": self.previous,
                "growth": round(self.growth, 3)}


def query_keywords(text: str) -> list[str]:
    """The words of a (redacted) query as topic keywords are cut, each once, markers left out."""
    return list(dict.fromkeys(topics.keywords_of(MARKER.sub(" ", text), "")))


# --------------------------------------------------------------------------- the pull


def pull(app: Flask | None = None, search_app: Flask | None = None, now: datetime | None = None) -> PullReport | None:
    """Replace the snapshot with the search service's counts; None when search cannot be asked.

    ``app`` holds the press database and its settings, ``search_app`` the search database (the same
    app in a worker or the CLI)."""
    from search.press_export import recent_query_counts

    app = app or current_app
    settings: Settings = app.extensions["gongkai.settings"]
    window = timedelta(hours=settings.press_search_window_hours)
    source = search_app or app
    if "search" not in source.extensions.get(EXTENSION_KEY, {}):
        log.warning("press: search interest not pulled, this process holds no search database")
        return None
    try:
        counts = recent_query_counts(source, window, now=now)
    except (SQLAlchemyError, DatabaseUnavailable) as error:
        log.warning("press: search interest not pulled, the search service did not answer (%s); "
                    "keeping the last snapshot", type(error).__name__)
        return None
    merged: dict[str, list[int]] = {}
    for item in counts.queries:
        shown = " ".join(redact(item.query).text.split())[:QUERY_MAX].strip()  # markers lengthen text
        if not shown:
            continue
        total = merged.setdefault(shown, [0, 0])
        total[0] += item.current
        total[1] += item.previous
    pulled_at = utcnow()
    hours = settings.press_search_window_hours
    with get_database("press", app).transaction() as session:
        _lock(session)
        session.execute(delete(SearchQueryCount))
        session.add_all(
            SearchQueryCount(query=query, keywords=query_keywords(query), current=current, previous=previous,
                             window_hours=hours, window_end=counts.window_end, pulled_at=pulled_at)
            for query, (current, previous) in merged.items()
        )
    return PullReport(len(merged), sum(current for current, _previous in merged.values()), counts.window_end)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(SEARCH_LOCK)))


@shared_task(name="press.pull_search_interest", acks_late=True, ignore_result=True, max_retries=0)
def pull_search_interest() -> str:
    """:func:`pull` in the worker (whose one app holds every service's database): for beat, every 5 minutes."""
    report = pull(current_app)
    if report is None:
        return "search unavailable: snapshot kept"
    return f"{report.queries} queries, {report.searches} searches"


# --------------------------------------------------------------------------- reading


def search_interest_by_topic(session: Session, topic_ids: Sequence[int]) -> dict[int, int]:
    """Searches of the current window whose query shares a word with each topic's shared keywords
    (each query once per topic); every id asked for is in the answer (0 when none, or unknown)."""
    wanted = list(dict.fromkeys(int(topic_id) for topic_id in topic_ids))
    interest = dict.fromkeys(wanted, 0)
    if not wanted:
        return interest
    by_word: dict[str, list[int]] = defaultdict(list)
    counts: list[int] = []
    for keywords, current in session.execute(
            select(SearchQueryCount.keywords, SearchQueryCount.current).where(SearchQueryCount.current > 0)):
        row = len(counts)
        counts.append(int(current))
        for word in set(keywords or ()):
            by_word[word].append(row)
    if not counts:
        return interest
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start:start + 1000]
        for topic_id, keywords in session.execute(select(Topic.id, Topic.keywords).where(Topic.id.in_(chunk))):
            rows = {row for word in (keywords or ()) for row in by_word.get(word, ())}
            interest[int(topic_id)] = sum(counts[row] for row in rows)
    return interest


def topic_searches(session: Session, topic_id: int, limit: int = 10) -> list[RisingSearch]:
    """The queries of the current window that count towards a topic's search interest, most searched first."""
    keywords = set(session.scalar(select(Topic.keywords).where(Topic.id == topic_id)) or ())
    if not keywords:
        return []
    found = [
        RisingSearch(_shown(query), int(current), int(previous))
        for query, words, current, previous in session.execute(
            select(SearchQueryCount.query, SearchQueryCount.keywords, SearchQueryCount.current,
                   SearchQueryCount.previous).where(SearchQueryCount.current > 0))
        if keywords.intersection(words or ())
    ]
    found.sort(key=lambda item: (-item.current, -item.growth, item.query))
    return found[:limit]


def rising_searches(session: Session, limit: int = 10, min_count: int = RISING_MIN_COUNT) -> list[RisingSearch]:
    """Queries searched at least ``min_count`` times in the current window and more than in the window
    before, fastest growing first (then most searched, then by text)."""
    rows = session.execute(
        select(SearchQueryCount.query, SearchQueryCount.current, SearchQueryCount.previous)
        .where(SearchQueryCount.current >= max(min_count, 1), SearchQueryCount.current > SearchQueryCount.previous)
    ).all()
    found = [RisingSearch(_shown(query), int(current), int(previous)) for query, current, previous in rows]
    found.sort(key=lambda item: (-item.growth, -item.current, item.query))
    return found[:max(limit, 0)]


def snapshot_info(session: Session) -> dict[str, Any] | None:
    """When the snapshot was pulled and which window it counts (None before the first pull that found
    any search): ``{"pulled_at", "window_start", "window_end", "window_hours", "queries", "searches"}``."""
    first = session.scalar(select(SearchQueryCount).order_by(SearchQueryCount.id).limit(1))
    if first is None:
        return None
    queries, searches = session.execute(
        select(func.count(), func.coalesce(func.sum(SearchQueryCount.current), 0))).one()
    return {"pulled_at": first.pulled_at, "window_start": first.window_end - timedelta(hours=first.window_hours),
            "window_end": first.window_end, "window_hours": first.window_hours, "queries": int(queries),
            "searches": int(searches)}


def _shown(text: str) -> str:
    """Stored redacted already; redacted again however it was stored (the console shows it)."""
    return redact(text).text
