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
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from search.documents import check_public
from search.reindex import SOURCES, Apps, ExportSource, doc_type_of
from services.searchengine.port import MAX_PER_PAGE, MAX_RESULT_WINDOW, SearchEngine, SearchQuery
from services.web import content_alias

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
