"""Reconciliation: compare the index with what the services publish, and repair the drift.

Per document type of each export source (``search.reindex.SOURCES``):

* **missing** -- published by the service, absent from the index (an event lost, an index
  restored from an old copy): indexed from the service's export;
* **stale** -- in the index with an older version than the service's: rewritten;
* **extra** -- live in the index, no longer published by the service (a removal lost): deleted
  with the version the index holds.

Every repair is an ordinary versioned write, so it can never undo an event applied meanwhile:
a write the index refuses because it holds something newer is counted as ``unrepaired`` (a
rebuild, ``gongkai search reindex``, starts afresh). A document looks extra only when it is
absent from two readings of the service's versions, one before and one after the index was
listed, so something published while the job runs is never taken for drift.

The index is listed through the port's search (live documents of one type, newest first),
which reaches ``MAX_RESULT_WINDOW`` documents per query: beyond that the listing is split
into date ranges (documents without a publication date are then not listed).

Every run is recorded (``reconcile_run``, :func:`reconcile_recorded`) with its counts per type, whoever
started it: the hourly schedule, ``gongkai search reconcile``, or staff on the admin page "索引核对"
(:func:`request_run` queues it for a worker); the page and ``GET /api/search/reconcile`` show the last runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from search.documents import check_public
from search.models import OutboxEvent, ReconcileRun
from search.reindex import SOURCES, Apps, ExportSource, doc_type_of
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.outbox import emit
from services.permissions import Permission, require
from services.searchengine.port import MAX_PER_PAGE, MAX_RESULT_WINDOW, SearchEngine, SearchQuery, SearchUnavailable
from services.web import content_alias, get_settings

log = logging.getLogger(__name__)

EARLIEST = date(1949, 10, 1)
LATEST = date(2199, 12, 31)


@dataclass
class TypeReport:
    doc_type: str
    published: int = 0
    """Documents the service publishes."""
    indexed: int = 0
    """Live documents of the type in the index, before any repair."""
    missing: int = 0
    stale: int = 0
    extra: int = 0
    repaired: int = 0
    unrepaired: int = 0

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.extra


@dataclass
class ReconcileReport:
    alias: str
    repair: bool
    types: dict[str, TypeReport] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def drift(self) -> int:
        return sum(report.drift for report in self.types.values())

    @property
    def unrepaired(self) -> int:
        return sum(report.unrepaired for report in self.types.values())

    def summary(self) -> str:
        parts = [
            f"{r.doc_type}: {r.published} published, {r.missing} missing, {r.stale} stale, {r.extra} extra, "
            f"{r.repaired} repaired" + (f", {r.unrepaired} unrepaired" if r.unrepaired else "")
            for r in self.types.values()
        ]
        return "; ".join(parts)

    def lines(self) -> list[str]:
        """The report as a table (the CLI prints it)."""
        columns = ("published", "indexed", "missing", "stale", "extra", "repaired", "unrepaired")
        width = max([len("type"), *(len(name) for name in self.types)])
        lines = [f"{'type':<{width}}  " + "  ".join(f"{name:>10}" for name in columns)]
        for report in self.types.values():
            lines.append(f"{report.doc_type:<{width}}  "
                         + "  ".join(f"{getattr(report, name):>10}" for name in columns))
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "repair": self.repair,
            "seconds": round(self.seconds, 3),
            "types": {name: asdict(report) for name, report in self.types.items()},
        }


# -- listing the index -------------------------------------------------------------------------


def _listed(engine: SearchEngine, alias: str, query: SearchQuery, total: int) -> set[str]:
    ids: set[str] = set()
    pages = (min(total, MAX_RESULT_WINDOW) + MAX_PER_PAGE - 1) // MAX_PER_PAGE
    for page in range(1, pages + 1):
        result = engine.search(alias, SearchQuery(doc_types=query.doc_types, date_from=query.date_from,
                                                  date_to=query.date_to, page=page, per_page=MAX_PER_PAGE))
        ids.update(hit.id for hit in result.hits)
        if len(result.hits) < MAX_PER_PAGE:
            break
    return ids


def index_ids(engine: SearchEngine, alias: str, doc_type: str) -> set[str]:
    """The ids of the live documents of ``doc_type`` in the index."""
    whole = SearchQuery(doc_types=(doc_type,), per_page=1)
    total = engine.search(alias, whole).total
    if total <= MAX_RESULT_WINDOW:
        return _listed(engine, alias, whole, total)
    ids: set[str] = set()
    windows = [(EARLIEST, LATEST)]
    while windows:
        first, last = windows.pop()
        window = SearchQuery(doc_types=(doc_type,), date_from=first, date_to=last, per_page=1)
        count = engine.search(alias, window).total
        if count <= MAX_RESULT_WINDOW or first == last:
            if count > MAX_RESULT_WINDOW:
                log.warning("reconciliation lists only %d of the %d %s documents of %s",
                            MAX_RESULT_WINDOW, count, doc_type, first)
            ids |= _listed(engine, alias, window, count)
        else:
            middle = first + timedelta(days=(last - first).days // 2)
            windows += [(first, middle), (middle + timedelta(days=1), last)]
    return ids


# -- reconciling -------------------------------------------------------------------------------


def _reconcile_source(engine: SearchEngine, alias: str, apps: Apps, source: ExportSource, repair: bool,
                      batch_size: int, reports: dict[str, TypeReport]) -> None:
    doc_types = source.doc_types
    expected = {doc_id: version for doc_id, version in source.versions(apps).items()
                if doc_type_of(doc_id) in doc_types}
    for doc_type in doc_types:
        reports[doc_type] = TypeReport(doc_type, published=sum(1 for d in expected if doc_type_of(d) == doc_type),
                                       indexed=engine.count(alias, doc_type))
    present = dict.fromkeys(doc_types, 0)
    to_write: set[str] = set()
    for doc_id, version in expected.items():
        kind = str(doc_type_of(doc_id))
        stored = engine.get_document(alias, doc_id)
        if stored is None:
            reports[kind].missing += 1
            to_write.add(doc_id)
            continue
        present[kind] += 1
        if int(stored["_version"]) < version:
            reports[kind].stale += 1
            to_write.add(doc_id)
    if repair and to_write:
        for doc_id, document, version in source.documents(apps, batch_size=batch_size, doc_ids=to_write):
            doc_type = str(document["doc_type"])
            if engine.index_document(alias, doc_id, check_public(dict(document)), version):
                reports[doc_type].repaired += 1
            else:
                reports[doc_type].unrepaired += 1
    fresh: set[str] | None = None
    for doc_type in doc_types:
        if reports[doc_type].indexed <= present[doc_type]:
            continue  # every live document of the type is one the service publishes
        candidates = index_ids(engine, alias, doc_type) - set(expected)
        if candidates and fresh is None:
            fresh = set(source.versions(apps))
        extras = sorted(candidates - (fresh or set()))
        reports[doc_type].extra = len(extras)
        if not repair:
            continue
        for doc_id in extras:
            stored = engine.get_document(alias, doc_id)
            if stored is None:
                continue  # removed meanwhile
            if engine.delete_document(alias, doc_id, int(stored["_version"])):
                reports[doc_type].repaired += 1
            else:
                reports[doc_type].unrepaired += 1


def reconcile(apps: Apps, *, repair: bool = True, batch_size: int = 500) -> ReconcileReport:
    """Compare the content alias with every export source; repair the drift unless ``repair`` is
    False (then only report it)."""
    started = time.monotonic()
    engine, alias = content_alias(apps["search"])
    engine.refresh(alias)
    report = ReconcileReport(alias, repair)
    for source in SOURCES:
        _reconcile_source(engine, alias, apps, source, repair, batch_size, report.types)
    if repair and report.drift:
        engine.refresh(alias)
    report.seconds = time.monotonic() - started
    return report


# -- the record of the runs ----------------------------------------------------------------------

SCHEDULE, COMMAND, STAFF = "schedule", "command", "staff"
QUEUED, RUNNING, FINISHED, FAILED, ABANDONED = "queued", "running", "finished", "failed", "abandoned"
ACTIVE_STATES = (QUEUED, RUNNING)
REQUESTED_TOPIC = "search.reconcile.requested"
"""The outbox event of a run asked for on the admin page; ``search.reconcile`` takes it."""
RUNS_SHOWN = 20
STALE_AFTER = timedelta(hours=2)
"""A run queued or running for this long has lost its worker (killed, or the broker lost the task)."""
COUNT_NAMES = ("published", "indexed", "missing", "stale", "extra", "repaired", "unrepaired")
UNAVAILABLE_ERROR = "搜索服务不可用，未能核对 / the search engine was unavailable"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def _abandon_stale(session: Session) -> None:
    cutoff = utcnow() - STALE_AFTER
    for run in session.scalars(select(ReconcileRun).where(ReconcileRun.state.in_(ACTIVE_STATES),
                                                          ReconcileRun.requested_at < cutoff)):
        run.state, run.finished_at = ABANDONED, utcnow()
        run.error = "未完成：处理它的进程已停止 / never finished: its worker stopped"


def active_run(session: Session) -> ReconcileRun | None:
    """A run asked for and not finished yet (the page offers no second one meanwhile)."""
    cutoff = utcnow() - STALE_AFTER
    found: ReconcileRun | None = session.scalars(
        select(ReconcileRun).where(ReconcileRun.state.in_(ACTIVE_STATES), ReconcileRun.requested_at >= cutoff)
        .order_by(ReconcileRun.id.desc()).limit(1)
    ).first()
    return found


def request_run(session: Session, actor: StaffIdentity, alias: str) -> tuple[ReconcileRun, bool]:
    """Queue a run for a worker (``search.reconcile``, through the outbox), audited; when one is
    already queued or running, that one, and False."""
    require(actor.grants, Permission.PUBLISH)
    _abandon_stale(session)
    running = active_run(session)
    if running is not None:
        return running, False
    run = ReconcileRun(trigger=STAFF, requested_by=actor.username[:100], repair=True, state=QUEUED, alias=alias,
                       report={}, requested_at=utcnow())
    session.add(run)
    session.flush()
    emit(session, OutboxEvent, REQUESTED_TOPIC, aggregate_type="reconcile_run", aggregate_id=run.id, version=1,
         payload={"run_id": run.id})
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "search", "search.reconcile.request", AuditResult.SUCCESS, object_type="reconcile_run",
        object_id=str(run.id), detail={"alias": alias},
    ))
    return run, True


def _start(apps: Apps, trigger: str, repair: bool, run_id: int | None) -> int | None:
    """The run to record into, marked running: the one asked for (None when it already ended: a
    repeated delivery), or a new one."""
    with get_database("search", apps["search"]).transaction() as session:
        _abandon_stale(session)
        if run_id is not None:
            run = session.get(ReconcileRun, run_id)
            if run is None or run.state not in ACTIVE_STATES:
                return None
        else:
            run = ReconcileRun(trigger=trigger, repair=repair, alias=get_settings(apps["search"]).search_alias,
                               report={}, requested_at=utcnow())
            session.add(run)
        run.state, run.started_at = RUNNING, utcnow()
        session.flush()
        return run.id


def _finish(apps: Apps, run_id: int, **values: Any) -> None:
    with get_database("search", apps["search"]).transaction() as session:
        run = session.get(ReconcileRun, run_id)
        if run is not None:
            for name, value in values.items():
                setattr(run, name, value)
            run.finished_at = utcnow()


def reconcile_recorded(apps: Apps, *, trigger: str, repair: bool = True,
                       run_id: int | None = None) -> tuple[int | None, ReconcileReport | None]:
    """``reconcile``, recorded as a run (``run_id``: the queued one to carry out). Returns the run's id
    and the report; (None, None) when the queued run had already ended. A failure is recorded, then raised."""
    recorded = _start(apps, trigger, repair, run_id)
    if recorded is None:
        return None, None
    try:
        report = reconcile(apps, repair=repair)
    except SearchUnavailable:
        _finish(apps, recorded, state=FAILED, error=UNAVAILABLE_ERROR)
        raise
    except Exception as error:
        _finish(apps, recorded, state=FAILED, error=_first_line(error))
        raise
    types = {name: {count: getattr(counts, count) for count in COUNT_NAMES} for name, counts in report.types.items()}
    _finish(apps, recorded, state=FINISHED, alias=report.alias, report=types)
    return recorded, report


def run_view(run: ReconcileRun) -> dict[str, Any]:
    """A run as the page and the API show it: its counts per type and their totals."""
    types: dict[str, dict[str, int]] = {name: {count: int(counts.get(count, 0)) for count in COUNT_NAMES}
                                        for name, counts in (run.report or {}).items()}
    totals = {count: sum(counts[count] for counts in types.values()) for count in COUNT_NAMES}
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
    return {
        "id": run.id, "trigger": run.trigger, "requested_by": run.requested_by, "repair": run.repair,
        "state": run.state, "alias": run.alias, "error": run.error, "requested_at": run.requested_at,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "seconds": round(seconds, 1) if seconds is not None else None,
        "types": types, "totals": totals,
        "drift": totals["missing"] + totals["stale"] + totals["extra"],
    }


def recent_runs(session: Session, limit: int = RUNS_SHOWN) -> list[dict[str, Any]]:
    """The last runs, newest first."""
    runs = session.scalars(select(ReconcileRun).order_by(ReconcileRun.id.desc()).limit(limit))
    return [run_view(run) for run in runs]
