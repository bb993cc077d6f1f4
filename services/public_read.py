"""Public lists and pages read from the shared index, never from a service's tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, abort

from services.schemas import MAX_PAGE
from services.searchengine.port import (
    KEYWORD_FIELDS,
    MAX_PER_PAGE,
    MAX_RESULT_WINDOW,
    SearchEngine,
    SearchQuery,
    parse_published_at,
)
from services.web import content_alias

CHINA = ZoneInfo("Asia/Shanghai")
"""Years of publication are counted in China's time, as the pages show dates."""
SCAN_LIMIT = 500
"""How many of the newest matches ``filtered_documents`` examines for a field the engine cannot filter on."""


@dataclass
class DocumentPage:
    total: int
    page: int
    per_page: int
    items: list[dict[str, Any]]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "page": self.page, "per_page": self.per_page, "items": self.items}


def latest_documents(app: Flask, doc_type: str, page: int = 1, per_page: int = 10) -> DocumentPage:
    engine, alias = content_alias(app)
    result = engine.search(alias, SearchQuery(doc_types=(doc_type,), sort="date", page=page, per_page=per_page))
    return DocumentPage(result.total, page, per_page, [hit.document for hit in result.hits])


@dataclass
class FilteredPage(DocumentPage):
    partial: bool = False
    """Only part of the matches could be examined (see ``filtered_documents``): the list may be incomplete."""


def filtered_documents(
    app: Flask,
    doc_type: str,
    page: int = 1,
    per_page: int = 10,
    *,
    fields: Mapping[str, str] | None = None,
    year: int | None = None,
    month: str | None = None,
    scan_limit: int | None = None,
) -> FilteredPage:
    """Published documents, newest first, whose ``fields`` equal the given values and, with ``year``
    and/or ``month`` (``YYYY-MM``), published (China time) in that year / month.

    Fields the search port filters on (``KEYWORD_FIELDS``) are filtered by the engine. Any other
    field (e.g. ``issuer``) is compared here, on the newest ``scan_limit`` (default ``SCAN_LIMIT``)
    documents the engine matched. ``year`` and ``month`` are found by a binary search of the date
    order (about 2·log2(n) one-document queries): exact boundaries in China's time. Both see
    only the engine's result window (the newest ``MAX_RESULT_WINDOW`` matches). When either cuts
    the matches short, the page says so with ``partial``. A keyword filter on the field and a date
    range in ``SearchQuery`` would make both exact and cheap. ``per_page`` should divide
    ``MAX_RESULT_WINDOW``. A malformed ``month`` raises ValueError (see :func:`parse_month`).
    """
    engine, alias = content_alias(app)
    wanted = {name: value for name, value in (fields or {}).items() if value}
    keyword = {name: value for name, value in wanted.items() if name in KEYWORD_FIELDS}
    others = {name: value for name, value in wanted.items() if name not in KEYWORD_FIELDS}
    ordered = partial(SearchQuery, doc_types=(doc_type,), filters=keyword, sort="date")
    period = _period(year, month)
    if period is None and not others:
        result = engine.search(alias, ordered(page=page, per_page=per_page))
        return FilteredPage(result.total, page, per_page, [hit.document for hit in result.hits])

    total = engine.search(alias, ordered(page=1, per_page=1)).total
    window = min(total, MAX_RESULT_WINDOW)
    start, stop = 0, window
    if period is not None:
        since, until = period
        if since >= until:  # a year and a month that do not overlap
            return FilteredPage(0, page, per_page, [])
        start = _first_older(engine, alias, ordered, 0, window, until)
        stop = _first_older(engine, alias, ordered, start, window, since)
    cut_short = total > window and stop == window  # the matches may go on past the window
    if not others:
        first = start + (page - 1) * per_page
        items = _read(engine, alias, ordered, first, min(first + per_page, stop), per_page)
        return FilteredPage(stop - start, page, per_page, items, cut_short)
    scan_stop = min(stop, start + (SCAN_LIMIT if scan_limit is None else scan_limit))
    chunk = MAX_PER_PAGE
    matching = [
        document for document in _read(engine, alias, ordered, start, scan_stop, chunk)
        if all(str(document.get(name) or "") == value for name, value in others.items())
    ]
    first = (page - 1) * per_page
    return FilteredPage(len(matching), page, per_page, matching[first:first + per_page],
                        cut_short or scan_stop < stop)


def parse_month(value: str) -> tuple[int, int]:
    """``(year, month)`` of a ``YYYY-MM`` string; ValueError otherwise."""
    if len(value) != 7 or value[4] != "-" or not (value[:4].isdigit() and value[5:].isdigit()):
        raise ValueError(f"month {value!r} is not YYYY-MM")
    year, month = int(value[:4]), int(value[5:])
    if not 1 <= year <= 9998 or not 1 <= month <= 12:
        raise ValueError(f"month {value!r} is not YYYY-MM")
    return year, month


def _period(year: int | None, month: str | None) -> tuple[datetime, datetime] | None:
    """``[since, until)`` in China's time for a year and/or a month; None for neither."""
    bounds: list[tuple[datetime, datetime]] = []
    if year is not None:
        bounds.append((datetime(year, 1, 1, tzinfo=CHINA), datetime(year + 1, 1, 1, tzinfo=CHINA)))
    if month:
        y, m = parse_month(month)
        following = (y + 1, 1) if m == 12 else (y, m + 1)
        bounds.append((datetime(y, m, 1, tzinfo=CHINA), datetime(*following, 1, tzinfo=CHINA)))
    if not bounds:
        return None
    return max(since for since, _ in bounds), min(until for _, until in bounds)


def _first_older(
    engine: SearchEngine, alias: str, ordered: Callable[..., SearchQuery], low: int, high: int, boundary: datetime
) -> int:
    """The first position in ``low..high`` of the date order published before ``boundary``
    (``high`` when none is); documents without a date sort last and count as older."""
    while low < high:
        middle = (low + high) // 2
        hits = engine.search(alias, ordered(page=middle + 1, per_page=1)).hits
        published = parse_published_at(hits[0].published_at) if hits else None
        if published is None or published < boundary:
            high = middle
        else:
            low = middle + 1
    return low


def _read(
    engine: SearchEngine, alias: str, ordered: Callable[..., SearchQuery], start: int, stop: int, chunk: int
) -> list[dict[str, Any]]:
    """Positions ``start..stop`` of the date order, read in pages of ``chunk``."""
    if stop <= start:
        return []
    first, last = start // chunk, (stop - 1) // chunk
    documents: list[dict[str, Any]] = []
    for number in range(first, last + 1):
        if (number + 1) * chunk > MAX_RESULT_WINDOW:
            break
        documents.extend(hit.document for hit in engine.search(alias, ordered(page=number + 1, per_page=chunk)).hits)
    return documents[start - first * chunk:stop - first * chunk]


def public_document(app: Flask, doc_id: str) -> dict[str, Any]:
    """A published document by id, or 404."""
    engine, alias = content_alias(app)
    document = engine.get_document(alias, doc_id)
    if document is None or document.get("deleted"):
        abort(404)
    return document


def page_number(raw: str | None) -> int:
    """A page number from a query string; anything odd reads as the first page."""
    if raw and raw.isdigit() and int(raw) > 0:
        return min(int(raw), MAX_PAGE)
    return 1
