"""Rebuilding the content index without downtime (``gongkai search reindex``).

A rebuild fills a new versioned index from what the services publish, then points the alias
at it in one atomic step; the old index serves every query meanwhile.

Where the documents come from
    Each service exports its published documents itself (``interpret.search_export``,
    ``consult.search_export``, ``services.press.search_export``: see :data:`SOURCES`), with the
    document builders and the external versions of its publish events. The search service calls
    those functions with the app that holds the service's database; it never reads another
    service's tables.

Why nothing published during the rebuild is lost
    The run is recorded in the search database (``reindex_run``, state ``building``, with
    the new index's name) before the export starts. The indexing tasks
    (``search.tasks``) read the building indices (cached for
    :data:`BUILDING_CACHE_SECONDS`) and write every event to them as well as to the alias.
    The export only starts :data:`SETTLE_SECONDS` later, once every worker's cache has seen
    the run. So a change either committed before the export read it (the export carries it)
    or its event reaches the new index directly; external versions make the double writes,
    and writes in any order, converge on the newest version (a removal leaves a tombstone
    that an older export row cannot overwrite).

When it fails
    Any error (or Ctrl-C) before the swap marks the run ``failed``, drops the unfinished
    index and leaves the alias as it was. A run killed outright stops giving signs of life
    (``heartbeat_at``); after :data:`STALE_AFTER` the tasks stop writing to its index, and
    the next rebuild marks it ``abandoned`` and drops whatever it left. A run that was only
    paused that long (or was marked abandoned meanwhile) notices at its next heartbeat and
    fails rather than put an index that may have missed events behind the alias.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from search.documents import check_public
from search.models import ReindexRun
from services.db import ServiceDatabase, get_database, utcnow
from services.searchengine.port import DOC_TYPES, SearchEngine, SearchUnavailable, index_number
from services.settings import SERVICES
from services.web import content_alias, get_search_engine, get_settings

log = logging.getLogger(__name__)

BUILDING = "building"
FINISHED = "finished"
FAILED = "failed"
ABANDONED = "abandoned"

BUILDING_CACHE_SECONDS = 2.0
"""How long an indexing process trusts what it read of the building indices."""
SETTLE_SECONDS = BUILDING_CACHE_SECONDS + 1.0
"""How long a rebuild waits, after recording its index, before it starts exporting."""
STALE_AFTER = timedelta(minutes=10)
"""A building run without a heartbeat for this long is taken as dead."""
HEARTBEAT_SECONDS = 30.0
"""A rebuild records its progress (and a sign of life) at least this often, and after every batch."""
DEFAULT_KEEP = 2
BATCH_SIZE = 500
WRITE_RETRY_PAUSES = (1.0, 2.0, 4.0)

Apps = Mapping[str, Flask]
"""Service name -> an app holding that service's database (the worker app holds them all)."""

Progress = Callable[[str, int, int], None]
"""Called with (doc_type, done, total) as a rebuild goes."""


# -- the services' exports -------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSource:
    """A service that publishes documents to the index, and the module of its export functions:
    ``DOC_TYPES``, ``published_documents(app, *, batch_size, doc_ids)`` and ``document_versions(app)``."""

    service: str
    module: str

    def _module(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def doc_types(self) -> tuple[str, ...]:
        doc_types: tuple[str, ...] = self._module().DOC_TYPES
        return doc_types

    def documents(
        self, apps: Apps, *, batch_size: int = BATCH_SIZE, doc_ids: Collection[str] | None = None
    ) -> Iterator[tuple[str, dict[str, Any], int]]:
        rows: Iterator[tuple[str, dict[str, Any], int]] = self._module().published_documents(
            apps[self.service], batch_size=batch_size, doc_ids=doc_ids
        )
        return rows

    def versions(self, apps: Apps) -> dict[str, int]:
        return dict(self._module().document_versions(apps[self.service]))


SOURCES: tuple[ExportSource, ...] = (
    ExportSource("interpret", "interpret.search_export"),
    ExportSource("consult", "consult.search_export"),
    ExportSource("press", "services.press.search_export"),
)
"""Every service whose documents the index holds."""


def worker_apps(app: Flask) -> dict[str, Flask]:
    """The apps argument for a process whose one app holds every service's database (worker, CLI)."""
    return {service: app for service in SERVICES}


def doc_type_of(doc_id: str) -> str | None:
    """``policy`` of ``policy-12``; None when the id names no document type."""
    kind = doc_id.rpartition("-")[0]
    return kind if kind in DOC_TYPES else None


# -- which indices are being built (read by the indexing tasks) ----------------------------------

_CACHE_KEY = "gongkai.search.building_indices"
_cache_lock = threading.Lock()


@dataclass
class _BuildingCache:
    generation: int = 0
    engine: SearchEngine | None = None
    expires: float = 0.0
    indices: tuple[str, ...] = ()


def _cache(app: Flask) -> _BuildingCache:
    with _cache_lock:
        cache: _BuildingCache = app.extensions.setdefault(_CACHE_KEY, _BuildingCache())
        return cache


def _read_building(database: ServiceDatabase, alias: str) -> tuple[str, ...]:
    alive_since = utcnow() - STALE_AFTER
    with database.transaction() as session:
        names = session.scalars(
            select(ReindexRun.index_name)
            .where(ReindexRun.alias == alias, ReindexRun.state == BUILDING, ReindexRun.index_name.is_not(None),
                   ReindexRun.heartbeat_at >= alive_since)
            .order_by(ReindexRun.id)
        ).all()
    return tuple(name for name in names if name)


def building_indices(app: Flask) -> tuple[str, ...]:
    """The indices of the content alias being rebuilt right now, which every index write must
    also reach. Read from the search database at most every ``BUILDING_CACHE_SECONDS``."""
    cache = _cache(app)
    engine = get_search_engine(app)
    now = time.monotonic()
    with _cache_lock:
        if cache.engine is engine and cache.expires > now:
            return cache.indices
        generation = cache.generation
    indices = _read_building(get_database("search", app), get_settings(app).search_alias)
    with _cache_lock:
        # A rebuild that changed state while we read has bumped the generation: do not keep
        # what may predate it (the next call reads again).
        if cache.generation == generation:
            cache.engine, cache.expires, cache.indices = engine, now + BUILDING_CACHE_SECONDS, indices
    return indices


def forget_building_indices(app: Flask) -> None:
    """Make this process read the building indices again at the next write."""
    cache = _cache(app)
    with _cache_lock:
        cache.generation += 1
        cache.engine, cache.expires, cache.indices = None, 0.0, ()


# -- the run record ------------------------------------------------------------------------------


class ReindexInProgress(Exception):
    """Another rebuild of the same alias is running."""


class ReindexAbandoned(Exception):
    """This rebuild cannot be finished safely (it was silent too long, or taken for dead)."""


@dataclass
class ReindexReport:
    run_id: int
    alias: str
    index: str
    previous: str | None
    counts: dict[str, int]
    pruned: list[str] = field(default_factory=list)
    prune_error: str | None = None
    seconds: float = 0.0


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def _claim(database: ServiceDatabase, alias: str, started_by: str) -> int:
    """Record a new building run; mark dead ones abandoned; refuse while another one lives."""
    now = utcnow()
    try:
        with database.transaction() as session:
            for run in session.scalars(select(ReindexRun).where(ReindexRun.alias == alias,
                                                                ReindexRun.state == BUILDING)):
                if run.heartbeat_at >= now - STALE_AFTER:
                    raise ReindexInProgress(
                        f"a rebuild of {alias} is already running (run {run.id}, started "
                        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC by {run.started_by}, index {run.index_name})"
                    )
                run.state, run.building_slot, run.finished_at = ABANDONED, None, now
                run.error = f"no sign of life since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
            session.flush()
            run = ReindexRun(alias=alias, building_slot=alias, state=BUILDING, progress={}, pruned=[],
                             started_by=started_by[:100], started_at=now, heartbeat_at=now)
            session.add(run)
            session.flush()
            return run.id
    except IntegrityError:
        raise ReindexInProgress(f"a rebuild of {alias} has just started elsewhere") from None


def _update(database: ServiceDatabase, run_id: int, **values: Any) -> None:
    with database.transaction() as session:
        run = session.get(ReindexRun, run_id)
        if run is None:
            return
        for name, value in values.items():
            setattr(run, name, value)
        run.heartbeat_at = utcnow()


def _heartbeat(database: ServiceDatabase, run_id: int, **values: Any) -> None:
    """Record progress and a sign of life, after checking the run may still finish: nobody took it
    for dead (a rebuild marks runs silent for ``STALE_AFTER`` abandoned, and the indexing tasks stop
    writing to their index), and it was not silent itself for long enough to be taken for dead."""
    now = utcnow()
    with database.transaction() as session:
        run = session.get(ReindexRun, run_id)
        if run is None or run.state != BUILDING:
            raise ReindexAbandoned(f"rebuild {run_id} was marked {run.state if run else 'deleted'} meanwhile")
        if now - run.heartbeat_at > STALE_AFTER / 2:
            raise ReindexAbandoned(
                f"rebuild {run_id} was paused {int((now - run.heartbeat_at).total_seconds())} s: events of that time "
                "may have missed its index; run it again")
        for name, value in values.items():
            setattr(run, name, value)
        run.heartbeat_at = now


def _progress_record(done: dict[str, int], totals: dict[str, int]) -> dict[str, dict[str, int]]:
    return {doc_type: {"done": done.get(doc_type, 0), "total": max(totals.get(doc_type, 0), done.get(doc_type, 0))}
            for doc_type in totals}


def _drop_leftovers(engine: SearchEngine, alias: str) -> list[str]:
    """Drop indices newer than the alias's own: what failed or killed rebuilds left behind (the
    caller holds the building slot, so none of them is being built)."""
    current = engine.current_index(alias)
    current_number = index_number(alias, current) if current else None
    if current_number is None:
        return []
    dropped = []
    for name in engine.list_indices(alias):
        number = index_number(alias, name)
        if number is not None and number > current_number:
            engine.drop_index(name)
            dropped.append(name)
    if dropped:
        log.info("dropped indices left by unfinished rebuilds: %s", ", ".join(dropped))
    return dropped


# -- the rebuild ---------------------------------------------------------------------------------


def _totals(apps: Apps) -> dict[str, int]:
    totals: dict[str, int] = {}
    for source in SOURCES:
        for doc_type in source.doc_types:
            totals.setdefault(doc_type, 0)
        for doc_id in source.versions(apps):
            kind = doc_type_of(doc_id)
            if kind is not None:
                totals[kind] = totals.get(kind, 0) + 1
    return totals


Batch = list[tuple[str, dict[str, Any], int]]


def _write_patiently(engine: SearchEngine, index: str, batch: Batch) -> list[bool]:
    """One batch of index writes (one transaction on FTS5, one ``_bulk`` request on Elasticsearch),
    sent again after a short pause when the engine does not answer: a hiccup of the engine should
    not throw away a long rebuild (a longer outage still ends it). Sending a batch twice is safe:
    the external versions make a write that already landed a no-op."""
    for pause in WRITE_RETRY_PAUSES:
        try:
            return engine.index_documents(index, batch)
        except SearchUnavailable as error:
            log.warning("index write failed (%s); trying again in %.0f s", type(error).__name__, pause)
            time.sleep(pause)
    return engine.index_documents(index, batch)


def _fill(engine: SearchEngine, index: str, apps: Apps, database: ServiceDatabase, run_id: int,
          totals: dict[str, int], batch_size: int, progress: Progress | None) -> dict[str, int]:
    done = {doc_type: 0 for doc_type in totals}

    def report() -> None:
        _heartbeat(database, run_id, progress=_progress_record(done, totals))
        if progress is not None:
            for doc_type, count in done.items():
                progress(doc_type, count, max(totals.get(doc_type, 0), count))

    batch: Batch = []

    def flush() -> None:
        _write_patiently(engine, index, batch)
        for _, document, _ in batch:
            doc_type = str(document["doc_type"])
            done[doc_type] = done.get(doc_type, 0) + 1
        batch.clear()

    reported_at = time.monotonic()
    for source in SOURCES:
        for doc_id, document, version in source.documents(apps, batch_size=batch_size):
            batch.append((doc_id, check_public(dict(document)), version))
            if len(batch) >= batch_size:
                flush()
                report()  # after every batch: progress, and a sign of life
                reported_at = time.monotonic()
            elif time.monotonic() - reported_at > HEARTBEAT_SECONDS:
                report()
                reported_at = time.monotonic()
    flush()
    report()
    return done


def reindex(
    apps: Apps,
    *,
    keep: int = DEFAULT_KEEP,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    started_by: str = "cli",
) -> ReindexReport:
    """Build a new index of the content alias from the services' exports, swap the alias to it,
    prune old versions (keeping ``keep``, the new one included). See the module's docstring."""
    if keep < 1:
        raise ValueError("keep must be >= 1 (the new index is always kept)")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    started = time.monotonic()
    search_app = apps["search"]
    engine, alias = content_alias(search_app)
    database = get_database("search", search_app)
    run_id = _claim(database, alias, started_by)
    index: str | None = None
    try:
        _drop_leftovers(engine, alias)
        index = engine.create_index(alias)
        totals = _totals(apps)
        _update(database, run_id, index_name=index, progress=_progress_record({}, totals))
        forget_building_indices(search_app)
        if settle_seconds > 0:
            time.sleep(settle_seconds)  # other processes' caches see the run by now
        counts = _fill(engine, index, apps, database, run_id, totals, batch_size, progress)
        engine.refresh(index)
        _heartbeat(database, run_id)  # still ours, and never silent long enough to miss events
        previous = engine.swap_alias(alias, index)
    except BaseException as error:
        _abort(engine, database, search_app, run_id, index, error)
        raise
    report = ReindexReport(run_id, alias, index, previous, counts)
    try:
        report.pruned = engine.prune(alias, keep)
    except Exception as error:  # the new index serves already; old versions go at the next prune
        report.prune_error = _first_line(error)
        log.warning("rebuild %s: pruning old indices failed: %s", run_id, report.prune_error)
    _update(database, run_id, state=FINISHED, building_slot=None, previous_index=previous, pruned=report.pruned,
            error=f"prune: {report.prune_error}" if report.prune_error else None, finished_at=utcnow(),
            progress=_progress_record(counts, counts))  # the totals were estimates; now they are known
    forget_building_indices(search_app)
    report.seconds = time.monotonic() - started
    log.info("rebuilt %s into %s (%s) in %.1f s", alias, index,
             ", ".join(f"{doc_type} {count}" for doc_type, count in counts.items()), report.seconds)
    return report


def _abort(engine: SearchEngine, database: ServiceDatabase, app: Flask, run_id: int, index: str | None,
           error: BaseException) -> None:
    """The rebuild failed before the swap: record it, stop the double writes, drop its index."""
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else _first_line(error)
    try:
        _update(database, run_id, state=FAILED, building_slot=None, error=reason, finished_at=utcnow())
    except Exception:
        log.exception("rebuild %s failed (%s) and could not be marked failed", run_id, reason)
    forget_building_indices(app)
    if index is not None:
        try:
            engine.drop_index(index)
        except Exception as drop_error:  # the next rebuild drops it (see _drop_leftovers)
            log.warning("rebuild %s: unfinished index %s not dropped: %s", run_id, index, _first_line(drop_error))
    log.warning("rebuild %s failed, the alias is unchanged: %s", run_id, reason)


# -- the status ----------------------------------------------------------------------------------


def latest_run(app: Flask) -> dict[str, Any] | None:
    """The newest run of the app's content alias, as the status endpoint shows it."""
    alias = get_settings(app).search_alias
    with get_database("search", app).transaction() as session:
        run = session.scalars(
            select(ReindexRun).where(ReindexRun.alias == alias).order_by(ReindexRun.id.desc()).limit(1)
        ).first()
        if run is None:
            return None
        return {
            "run_id": run.id,
            "state": run.state,
            "alias": run.alias,
            "index": run.index_name,
            "previous_index": run.previous_index,
            "progress": dict(run.progress or {}),
            "pruned": list(run.pruned or []),
            "error": run.error,
            "started_by": run.started_by,
            "started_at": run.started_at,
            "heartbeat_at": run.heartbeat_at,
            "finished_at": run.finished_at,
            "stalled": run.state == BUILDING and run.heartbeat_at < utcnow() - STALE_AFTER,
        }
