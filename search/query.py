"""Running a public search: the one code path of the API and the search page.

What happens to a query, in order:

1. Its text is normalised (``curation.normalise_query``: NFKC, control characters dropped,
   spaces collapsed, lower case). The engine takes it as plain text whatever it holds
   (quotes, brackets, ``AND``, ``*``, ``field:``): the port has no query syntax.
2. The curation rules (cached a few seconds per process) add the synonym groups whose terms
   occur in it, and find the best bets pinned for exactly this text.
3. One engine query returns the page, the total, the facet counts over the whole match set
   and highlighted snippets; pinned documents (fetched by id, skipped when expired,
   withdrawn or outside the filters) come first on the first page, marked, and never again.
4. The query log gets one row (normalised text, filters, count, time; nobody's identity)
   after the answer is computed, written by a background thread once a second (see
   :data:`QUERY_LOG_FLUSH_SECONDS`); a failing log never fails or slows the search.

Answers (not the explained ones staff ask for) are shared for ``SEARCH_CACHE_SECONDS`` (default 1 s,
see ``services.web.cached_answer``) by every search with the same text, filters, sort and page; each
search is still logged.

An engine that cannot be reached raises ``SearchUnavailable`` (answered 503); an engine
that refuses the query (``SearchEngineError``) is logged and answered with no results:
an engine error never reaches the public.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import nh3
from flask import Flask
from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from search import curation
from search.curation import Pin, has_words, normalise_query
from search.models import QueryLog
from services.db import DatabaseUnavailable, get_database, utcnow
from services.searchengine.port import (
    FACET_FIELDS,
    KEYWORD_FIELDS,
    SearchEngine,
    SearchEngineError,
    SearchHit,
    SearchQuery,
    SearchResult,
    Suggestion,
    parse_published_at,
)
from services.web import cached_answer, content_alias, get_search_engine

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
TYPE_LABELS: dict[str, str] = {
    "policy": "政策文件",
    "interpretation": "政策解读",
    "answer": "咨询回复",
    "press_response": "回应关切",
}
PIN_LABEL = "推荐"
MAX_SUGGESTIONS = 8
MAX_QUERY_SUGGESTIONS = 3
"""Popular queries take at most this many places of the suggestion list when titles fill the rest."""
RELATED_LIMIT = 5
LOG_PAUSE_SECONDS = 30.0
"""After the query log could not be written, searches skip it for this long (no waiting on a dead database)."""


@dataclass(frozen=True)
class SearchParams:
    """A validated search request (see ``search.schemas.SearchArgsSchema``)."""

    q: str = ""
    types: tuple[str, ...] = ()
    filters: Mapping[str, str] = field(default_factory=dict)
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "relevance"
    page: int = 1
    per_page: int = 10
    explain: bool = False

    @classmethod
    def from_args(cls, args: Mapping[str, Any], *, explain: bool = False) -> SearchParams:
        return cls(
            q=args.get("q") or "",
            types=tuple(dict.fromkeys(value for value in args.get("type") or () if value)),
            filters={name: args[name] for name in KEYWORD_FIELDS if args.get(name)},
            date_from=args.get("date_from"),
            date_to=args.get("date_to"),
            sort=args.get("sort") or "relevance",
            page=args.get("page") or 1,
            per_page=args.get("per_page") or 10,
            explain=explain,
        )

    @property
    def has_filters(self) -> bool:
        return bool(self.types or self.filters or self.date_from or self.date_to)

    def logged_filters(self) -> dict[str, Any]:
        """What the query log keeps besides the text: the filters and the sort, nothing else."""
        logged: dict[str, Any] = {}
        if self.types:
            logged["type"] = list(self.types)
        logged.update(self.filters)
        if self.date_from:
            logged["date_from"] = self.date_from.isoformat()
        if self.date_to:
            logged["date_to"] = self.date_to.isoformat()
        if self.sort != "relevance":
            logged["sort"] = self.sort
        return logged


def today_in_china() -> date:
    return datetime.now(CHINA).date()


# -- hits --------------------------------------------------------------------------------------


def safe_fragment(html: str) -> str:
    """A highlight as the page may render it: text and ``<mark>`` only (the engine escapes
    first and marks afterwards; this holds even if an engine ever did not)."""
    return nh3.clean(html, tags={"mark"}, attributes={}, strip_comments=True)


def hit_dict(hit: SearchHit, *, explain: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": hit.id,
        "doc_type": hit.doc_type,
        "type_label": TYPE_LABELS.get(hit.doc_type, hit.doc_type),
        "title": hit.title,
        "summary": hit.summary,
        "url": hit.url,
        "published_at": hit.published_at,
        "department": hit.document.get("department"),
        "score": hit.score,
        "highlights": {name: safe_fragment(value) for name, value in (hit.highlights or {}).items()
                       if isinstance(value, str)},
        "pinned": False,
        "pin_label": None,
    }
    if explain:
        item["explanation"] = hit.explanation
    return item


def _pinned_dict(document: dict[str, Any], pin: Pin) -> dict[str, Any]:
    doc_type = str(document.get("doc_type") or "")
    return {
        "id": document.get("id") or pin.doc_id,
        "doc_type": doc_type,
        "type_label": TYPE_LABELS.get(doc_type, doc_type),
        "title": document.get("title") or "",
        "summary": document.get("summary") or "",
        "url": document.get("url") or "",
        "published_at": document.get("published_at") or None,
        "department": document.get("department"),
        "score": None,
        "highlights": {},
        "pinned": True,
        "pin_label": pin.label or PIN_LABEL,
    }


def _within(document: dict[str, Any], params: SearchParams) -> bool:
    """Whether a pinned document passes the search's own filters (a pin never breaks them)."""
    if params.types and document.get("doc_type") not in params.types:
        return False
    if any(document.get(name) != value for name, value in params.filters.items()):
        return False
    if params.date_from or params.date_to:
        try:
            published = parse_published_at(document.get("published_at"))
        except ValueError:
            return False
        if published is None:
            return False
        day = published.astimezone(CHINA).date()
        if (params.date_from and day < params.date_from) or (params.date_to and day > params.date_to):
            return False
    return True


def _pinned_documents(engine: SearchEngine, alias: str, pins: tuple[Pin, ...],
                      params: SearchParams) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    for pin in pins:
        try:
            document = engine.get_document(alias, pin.doc_id)
        except SearchEngineError as error:
            log.warning("pinned document %s not read: %s", pin.doc_id, type(error).__name__)
            continue
        if document is None or document.get("deleted") or not _within(document, params):
            continue  # withdrawn, deleted, or filtered out: simply not shown
        shown.append(_pinned_dict(document, pin))
    return shown


# -- searching ---------------------------------------------------------------------------------


def build_query(params: SearchParams, text: str, synonyms: tuple[tuple[str, ...], ...]) -> SearchQuery:
    return SearchQuery(
        text=text,
        doc_types=params.types,
        filters=dict(params.filters),
        sort="date" if params.sort == "date" else "relevance",
        page=params.page,
        per_page=params.per_page,
        date_from=params.date_from,
        date_to=params.date_to,
        facets=FACET_FIELDS,
        highlight=True,
        synonyms=synonyms,
        explain=params.explain,
    )


def run_search(app: Flask, params: SearchParams, *, log_query: bool = True, curated: bool = True) -> dict[str, Any]:
    """The answer of ``GET /api/search`` for ``params`` (see the module's docstring); without
    ``curated``, the engine's own answer (no synonyms, no best bets)."""
    started = time.perf_counter()
    text = normalise_query(params.q)
    if params.explain:  # staff only: never shared
        answer = _answer(app, params, text, curated)
    else:
        answer = cached_answer(app, _answer_key(params, text, curated), lambda: _answer(app, params, text, curated))
    duration_ms = int((time.perf_counter() - started) * 1000)
    if log_query and params.page == 1 and has_words(text):
        record_query(app, text, params.logged_filters(), answer["total"], duration_ms)
    return answer


def _answer_key(params: SearchParams, text: str, curated: bool) -> str:
    """What a search answer depends on: the normalised text, every filter, the sort and the page."""
    parts = [text, ",".join(params.types), ",".join(f"{k}={v}" for k, v in sorted(params.filters.items())),
             params.date_from.isoformat() if params.date_from else "",
             params.date_to.isoformat() if params.date_to else "",
             params.sort, str(params.page), str(params.per_page), "curated" if curated else "engine"]
    return "search:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _answer(app: Flask, params: SearchParams, text: str, curated: bool) -> dict[str, Any]:
    rules = curation.curation_rules(app) if curated else curation.NO_RULES
    synonyms = rules.synonyms_for(text)
    engine, alias = content_alias(app)
    query = build_query(params, text, synonyms)
    try:
        result = engine.search(alias, query)
    except SearchEngineError as error:
        log.warning("search engine refused a query (%s): answered with no results", type(error).__name__)
        result = SearchResult(0, [], {})
    pins = rules.pins_for(text, today_in_china()) if has_words(text) else ()
    pinned_ids = {pin.doc_id for pin in pins}
    pinned = _pinned_documents(engine, alias, pins, params) if pins and params.page == 1 else []
    found = {hit.id: hit for hit in result.hits if hit.id in pinned_ids}
    for item in pinned:  # a pinned document the engine found too keeps its highlights (and explanation)
        if item["id"] in found:
            item.update({**hit_dict(found[item["id"]], explain=params.explain), "pinned": True,
                         "pin_label": item["pin_label"]})
        elif params.explain:
            item["explanation"] = {"best_bet": text, "note": "pinned by the disclosure office; not scored"}
    hits = [hit_dict(hit, explain=params.explain) for hit in result.hits if hit.id not in pinned_ids]
    total = max(result.total, len(pinned))
    answer: dict[str, Any] = {
        "total": total,
        "page": params.page,
        "per_page": params.per_page,
        "hits": pinned + hits,
        "facets": {name: dict(result.facets.get(name) or {}) for name in FACET_FIELDS},
    }
    if params.explain:
        answer["debug"] = {
            "query": text,
            "synonyms": [list(group) for group in synonyms],
            "best_bets": [pin.doc_id for pin in pins],
            "engine": type(get_search_engine(app)).__name__,
        }
    return answer


# -- the query log -----------------------------------------------------------------------------

_log_paused_until = 0.0
_log_lock = threading.Lock()

QUERY_LOG_FLUSH_SECONDS = 1.0
"""Outside tests, searches' log rows are written in one transaction per this interval by a background
thread of the process, not one transaction per search on the request path (on SQLite each write takes
the database's write lock). A crash loses at most this interval's rows of an anonymous statistic."""


class _QueryLogBuffer:
    """The rows waiting to be written, and the thread that writes them (started in the process that
    logs: gunicorn forks its workers after the app is built)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.pid = 0

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.rows.append(row)
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(target=self._run, name="query-log", daemon=True).start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(QUERY_LOG_FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
        if rows:
            _write_query_rows(self.app, rows)


def _write_query_rows(app: Flask, rows: list[dict[str, Any]]) -> None:
    """Insert log rows; any database trouble is logged (without the queries) and swallowed, and pauses
    logging for ``LOG_PAUSE_SECONDS`` so that searches never wait on it."""
    global _log_paused_until
    try:
        with get_database("search", app).transaction() as session:
            session.execute(insert(QueryLog), rows)
    except (SQLAlchemyError, DatabaseUnavailable) as error:
        with _log_lock:
            _log_paused_until = time.monotonic() + LOG_PAUSE_SECONDS
        log.warning("query log not written (%s, %d rows); paused for %.0f s", type(error).__name__, len(rows),
                    LOG_PAUSE_SECONDS)


def record_query(app: Flask, text: str, filters: dict[str, Any], result_count: int, duration_ms: int) -> None:
    """Log one search (see :data:`QUERY_LOG_FLUSH_SECONDS`; written at once under ``GONGKAI_ENV=test``)."""
    if time.monotonic() < _log_paused_until:
        return
    row = {"query": curation.log_form(text), "filters": filters, "result_count": result_count,
           "duration_ms": max(duration_ms, 0), "created_at": utcnow()}
    if app.extensions["gongkai.settings"].environment == "test":
        _write_query_rows(app, [row])
        return
    buffer: _QueryLogBuffer | None = app.extensions.get("gongkai.query_log")
    if buffer is None:
        buffer = app.extensions.setdefault("gongkai.query_log", _QueryLogBuffer(app))
    buffer.add(row)


def resume_query_log() -> None:
    """Lift a pause of the query log (tests)."""
    global _log_paused_until
    with _log_lock:
        _log_paused_until = 0.0


# -- suggestions and related documents ----------------------------------------------------------


def suggestion_dict(suggestion: Suggestion) -> dict[str, Any]:
    return {
        "kind": "title",
        "text": suggestion.text,
        "url": suggestion.url,
        "doc_id": suggestion.doc_id,
        "doc_type": suggestion.doc_type,
        "type_label": TYPE_LABELS.get(suggestion.doc_type, suggestion.doc_type),
    }


def suggest(app: Flask, prefix: str, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """At most ``MAX_SUGGESTIONS``: popular queries starting with ``prefix`` (up to
    ``MAX_QUERY_SUGGESTIONS`` of them while titles fill the rest), then titles completing it."""
    text = normalise_query(prefix)
    if not has_words(text):
        return []
    engine, alias = content_alias(app)
    try:
        titles = engine.suggest(alias, text, limit=MAX_SUGGESTIONS, doc_types=types)
    except SearchEngineError as error:
        log.warning("search engine refused a suggestion (%s)", type(error).__name__)
        titles = []
    queries = [query for query in curation.suggestion_queries(app) if query.startswith(text) and query != text]
    room = max(MAX_QUERY_SUGGESTIONS, MAX_SUGGESTIONS - len(titles))
    chosen = [{"kind": "query", "text": query, "url": "/search/?" + urlencode({"q": query})}
              for query in queries[:room]]
    seen = {item["text"] for item in chosen}
    for suggestion in titles:
        if len(chosen) >= MAX_SUGGESTIONS:
            break
        if suggestion.text not in seen:
            chosen.append(suggestion_dict(suggestion))
            seen.add(suggestion.text)
    return chosen


def related(app: Flask, doc_id: str, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    engine, alias = content_alias(app)
    try:
        hits = engine.related(alias, doc_id, limit=RELATED_LIMIT, doc_types=types)
    except SearchEngineError as error:
        log.warning("search engine refused related documents (%s)", type(error).__name__)
        return []
    return [hit_dict(hit) for hit in hits if hit.id != doc_id][:RELATED_LIMIT]
