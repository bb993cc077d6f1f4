"""The search port: what the suite asks of a search engine, whichever engine it is.

Two adapters implement it (Elasticsearch 8 in production, SQLite FTS5 on one machine) and
one conformance suite (tests/services/searchengine) runs against both.

Indices and aliases
    A logical index is an alias (e.g. ``gongkai``) pointing at one concrete, versioned
    index named ``{alias}-v{N}-{YYYYmmddHHMMSS}`` (UTC). A rebuild writes a new version and
    swaps the alias in one atomic step; ``prune`` then removes older versions.

Documents and versions
    Writes carry an external version (e.g. the source row's version). A write whose
    version is not newer than the stored one is ignored, and a delete leaves a tombstone
    holding its version, so an event that arrives late never resurrects or overwrites
    newer data.

Text matching (``search`` with non-empty text)
    A document matches when either
      * every phrase of the query (the parts between spaces/punctuation) occurs in its
        title or body, compared as CJK bigrams (recall: any 2+ character substring), or
      * every jieba word of the query (stop words removed) occurs in its title or body
        (precision).
    Relevance is BM25 over both forms with the title weighted ``TITLE_WEIGHT`` times the
    body; ties fall back to ``published_at`` (newest first), then ``id``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

DOC_TYPES: tuple[str, ...] = ("policy", "interpretation", "answer", "press_response")
KEYWORD_FIELDS: tuple[str, ...] = ("department", "level", "form", "category", "validity")
FACET_FIELDS: tuple[str, ...] = ("doc_type", *KEYWORD_FIELDS)
TEXT_FIELDS: tuple[str, ...] = ("title", "summary", "body", "url")

#: Keys the adapters compute or use for bookkeeping; callers may not supply them.
RESERVED_FIELDS: frozenset[str] = frozenset({"title_seg", "body_seg", "suggest", "tombstone", "deleted_at", "_version"})

TITLE_WEIGHT = 3.0
MAX_PER_PAGE = 100
#: Elasticsearch's default ``index.max_result_window``: page * per_page may not exceed it.
MAX_RESULT_WINDOW = 10_000
MAX_VERSION = 2**63 - 1

SortOrder = Literal["relevance", "date"]

_ALIAS_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class SearchUnavailable(Exception):
    """The engine cannot be reached or used right now; retry later.

    搜索服务暂不可用 (the search engine is unavailable)."""


class SearchEngineError(Exception):
    """The engine refused a request (unknown index, bad mapping, unexpected reply)."""


class IndexNotFound(SearchEngineError):
    """The index or alias named does not exist (never created, dropped, or lost with the engine's data)."""


@dataclass(frozen=True)
class EngineHealth:
    ok: bool
    detail: str


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    doc_types: tuple[str, ...] = ()
    #: exact matches on KEYWORD_FIELDS, e.g. {"department": "市住建局"}
    filters: dict[str, str] = field(default_factory=dict)
    sort: SortOrder = "relevance"
    page: int = 1
    per_page: int = 10
    #: published_at within [date_from, date_to], both inclusive, as days in China's time (UTC+8)
    date_from: date | None = None
    date_to: date | None = None
    #: count the matches per value of these fields (any of FACET_FIELDS) over the whole result
    facets: tuple[str, ...] = ()
    #: fill SearchHit.highlights with safe HTML fragments (escaped text, matches in <mark>)
    highlight: bool = False
    #: groups of equivalent terms (公积金 / 住房公积金): a query term of a group matches any member
    synonyms: tuple[tuple[str, ...], ...] = ()
    #: fill SearchHit.explanation with how the score was made (staff debug mode)
    explain: bool = False

    def __post_init__(self) -> None:
        unknown_types = set(self.doc_types) - set(DOC_TYPES)
        if unknown_types:
            raise ValueError(f"unknown doc_types {sorted(unknown_types)}; expected some of {DOC_TYPES}")
        unknown_filters = set(self.filters) - set(KEYWORD_FIELDS)
        if unknown_filters:
            raise ValueError(f"unknown filters {sorted(unknown_filters)}; expected some of {KEYWORD_FIELDS}")
        if self.sort not in ("relevance", "date"):
            raise ValueError(f"sort must be 'relevance' or 'date', not {self.sort!r}")
        if self.page < 1 or not 1 <= self.per_page <= MAX_PER_PAGE:
            raise ValueError(f"page must be >= 1 and per_page within 1..{MAX_PER_PAGE}")
        if self.page * self.per_page > MAX_RESULT_WINDOW:
            raise ValueError(f"page * per_page may not exceed {MAX_RESULT_WINDOW}")
        unknown_facets = set(self.facets) - set(FACET_FIELDS)
        if unknown_facets:
            raise ValueError(f"unknown facets {sorted(unknown_facets)}; expected some of {FACET_FIELDS}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def has_text(self) -> bool:
        """False when the text holds no letter or digit (only spaces or punctuation)."""
        return any(ch.isalnum() for ch in self.text)

    @property
    def sorts_by_date(self) -> bool:
        """Empty text lists everything, newest first, whatever ``sort`` says."""
        return self.sort == "date" or not self.has_text


@dataclass(frozen=True)
class SearchHit:
    id: str
    doc_type: str
    title: str
    summary: str
    url: str
    published_at: str | None
    #: relevance score; None when the results are sorted by date
    score: float | None
    #: the document as it was indexed
    document: dict[str, Any]
    #: field -> safe HTML fragment (escaped, matches wrapped in <mark>); with SearchQuery.highlight
    highlights: dict[str, str] = field(default_factory=dict)
    #: how the score was made; with SearchQuery.explain
    explanation: dict[str, Any] | None = None


@dataclass(frozen=True)
class SearchResult:
    total: int
    hits: list[SearchHit]
    #: field -> value -> number of matching documents (the fields asked in SearchQuery.facets)
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Suggestion:
    """A completion for what is being typed: a document title."""

    text: str
    doc_id: str
    doc_type: str
    url: str


@runtime_checkable
class SearchEngine(Protocol):
    """The operations every adapter offers. ``target`` is an alias or a concrete index."""

    def health(self) -> EngineHealth:
        """Never raises: ok=False with a readable detail when the engine is not usable."""
        ...

    def ensure_alias(self, alias: str) -> str:
        """Make sure ``alias`` exists (creating its first index); return its index."""
        ...

    def create_index(self, alias: str) -> str:
        """Create the next versioned index of ``alias`` (not behind the alias yet)."""
        ...

    def swap_alias(self, alias: str, new_index: str) -> str | None:
        """Point ``alias`` at ``new_index`` atomically; return the index it left."""
        ...

    def current_index(self, alias: str) -> str | None: ...

    def list_indices(self, alias: str) -> list[str]:
        """The versioned indices of ``alias``, oldest first."""
        ...

    def prune(self, alias: str, keep: int = 1) -> list[str]:
        """Delete versions older than the current one, keeping the current index and the
        ``keep - 1`` newest older ones (for rollback). Versions newer than the current
        one are never pruned: they may be a rebuild in progress. Returns what was dropped;
        nothing when the alias does not exist."""
        ...

    def drop_index(self, index: str) -> None:
        """Delete a concrete index (no-op when missing). Refuses the index behind an alias."""
        ...

    def index_document(self, target: str, doc_id: str, document: dict[str, Any], version: int) -> bool:
        """Store ``document`` unless the stored version (or tombstone) is >= ``version``.
        Returns False when ignored as stale."""
        ...

    def index_documents(self, target: str, documents: Sequence[tuple[str, dict[str, Any], int]]) -> list[bool]:
        """``index_document`` for each ``(doc_id, document, version)``, in one request (a rebuild's
        batch): the same version rules, one result per document in order. Every document is
        checked first: a ValueError writes none of them."""
        ...

    def delete_document(self, target: str, doc_id: str, version: int) -> bool:
        """Replace the document by a tombstone holding ``version`` unless the stored
        version is newer. Returns False when ignored as stale."""
        ...

    def get_document(self, target: str, doc_id: str) -> dict[str, Any] | None:
        """The document with ``_version``; None when missing or deleted."""
        ...

    def count(self, target: str, doc_type: str | None = None) -> int: ...

    def refresh(self, target: str) -> None:
        """Make recent writes visible to search and count."""
        ...

    def search(self, alias: str, query: SearchQuery) -> SearchResult: ...

    def suggest(self, alias: str, prefix: str, limit: int = 8, doc_types: tuple[str, ...] = ()) -> list[Suggestion]:
        """Titles that complete ``prefix`` (live documents only), best first."""
        ...

    def related(self, alias: str, doc_id: str, limit: int = 5, doc_types: tuple[str, ...] = ()) -> list[SearchHit]:
        """Documents most like ``doc_id`` (more-like-this on title and body), never itself; [] when unknown."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# -- helpers shared by the adapters ---------------------------------------------------


def validate_alias(alias: str) -> str:
    if not _ALIAS_NAME.match(alias):
        raise ValueError(
            f"invalid alias {alias!r}: use 1-64 lowercase letters, digits or '_', starting with a letter or digit"
        )
    return alias


def versioned_index_name(alias: str, number: int, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return f"{alias}-v{number}-{stamp}"


def index_number(alias: str, index: str) -> int | None:
    """N of ``{alias}-v{N}-{timestamp}``; None when ``index`` is not a version of ``alias``."""
    match = re.fullmatch(rf"{re.escape(alias)}-v(\d+)-\d{{14}}", index)
    return int(match.group(1)) if match else None


def sort_by_number(alias: str, indices: list[str]) -> list[str]:
    """The versioned indices of ``alias`` among ``indices``, oldest first."""
    numbered = [(index_number(alias, name), name) for name in indices]
    return [name for number, name in sorted((n, name) for n, name in numbered if n is not None)]


def indices_to_prune(alias: str, indices: list[str], current: str | None, keep: int) -> list[str]:
    """See ``SearchEngine.prune``."""
    if keep < 1:
        raise ValueError("keep must be >= 1 (the current index is always kept)")
    if current is None or current not in indices:
        return []
    ordered = sort_by_number(alias, indices)
    older = ordered[: ordered.index(current)]
    return older[: max(len(older) - (keep - 1), 0)]


def parse_published_at(value: Any) -> datetime | None:
    """An ISO 8601 date or date-time; a value without offset is taken as UTC (as
    Elasticsearch does)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"published_at must be an ISO 8601 string, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"published_at {value!r} is not an ISO 8601 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def validate_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version must be an integer within 0..{MAX_VERSION}, not {version!r}")
    return version


def validate_document(doc_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """A checked copy of ``document`` with ``id`` set; raises ValueError on bad input."""
    if not isinstance(doc_id, str) or not doc_id or len(doc_id.encode()) > 512:
        raise ValueError("doc_id must be a non-empty string of at most 512 bytes")
    if document.get("id", doc_id) != doc_id:
        raise ValueError(f"document id {document.get('id')!r} differs from doc_id {doc_id!r}")
    reserved = RESERVED_FIELDS & set(document)
    if reserved:
        raise ValueError(f"document may not set the reserved fields {sorted(reserved)}")
    if document.get("doc_type") not in DOC_TYPES:
        raise ValueError(f"doc_type must be one of {DOC_TYPES}, not {document.get('doc_type')!r}")
    for name in (*TEXT_FIELDS, *KEYWORD_FIELDS):
        if document.get(name) is not None and not isinstance(document[name], str):
            raise ValueError(f"{name} must be a string")
    parse_published_at(document.get("published_at"))
    return {**document, "id": doc_id}


def hit_from_document(document: dict[str, Any], score: float | None) -> SearchHit:
    return SearchHit(
        id=document["id"],
        doc_type=document["doc_type"],
        title=document.get("title") or "",
        summary=document.get("summary") or "",
        url=document.get("url") or "",
        published_at=document.get("published_at") or None,
        score=score,
        document=document,
    )


# -- an alias that must exist --------------------------------------------------------------


class KeptAlias:
    """``engine``, for callers of one alias that must always exist: an operation on ``alias`` that finds
    it gone recreates it (a new, empty index) and runs once more.

    The alias is gone when the engine lost its data: an Elasticsearch cluster restarted without its
    volume (osmem-server, the test engine, keeps everything in memory), the embedded index file removed.
    Recreating it at once keeps index writes landing and searches answering (with what has been written
    since) instead of refusing both until someone runs a command; reconciliation (``search.reconcile``:
    hourly, ``gongkai search reconcile``, the admin page) then puts back what was lost.
    Operations on other targets (the concrete indices of a rebuild) are passed through unchanged."""

    def __init__(self, engine: SearchEngine, alias: str) -> None:
        self.engine = engine
        self.alias = alias

    def _kept(self, target: str, operation: Callable[[], _T]) -> _T:
        try:
            return operation()
        except IndexNotFound:
            if target != self.alias:
                raise
        index = self.engine.ensure_alias(self.alias)
        _log.warning("search alias %s was missing (the engine lost its index?): now %s, refilled by the "
                     "events from now on and by reconciliation (gongkai search reconcile)", self.alias, index)
        return operation()

    def health(self) -> EngineHealth:
        return self.engine.health()

    def ensure_alias(self, alias: str) -> str:
        return self.engine.ensure_alias(alias)

    def create_index(self, alias: str) -> str:
        return self.engine.create_index(alias)

    def swap_alias(self, alias: str, new_index: str) -> str | None:
        return self.engine.swap_alias(alias, new_index)

    def current_index(self, alias: str) -> str | None:
        return self.engine.current_index(alias)

    def list_indices(self, alias: str) -> list[str]:
        return self.engine.list_indices(alias)

    def prune(self, alias: str, keep: int = 1) -> list[str]:
        return self.engine.prune(alias, keep)

    def drop_index(self, index: str) -> None:
        self.engine.drop_index(index)

    def index_document(self, target: str, doc_id: str, document: dict[str, Any], version: int) -> bool:
        return self._kept(target, lambda: self.engine.index_document(target, doc_id, document, version))

    def index_documents(self, target: str, documents: Sequence[tuple[str, dict[str, Any], int]]) -> list[bool]:
        return self._kept(target, lambda: self.engine.index_documents(target, documents))

    def delete_document(self, target: str, doc_id: str, version: int) -> bool:
        return self._kept(target, lambda: self.engine.delete_document(target, doc_id, version))

    def get_document(self, target: str, doc_id: str) -> dict[str, Any] | None:
        return self._kept(target, lambda: self.engine.get_document(target, doc_id))

    def count(self, target: str, doc_type: str | None = None) -> int:
        return self._kept(target, lambda: self.engine.count(target, doc_type))

    def refresh(self, target: str) -> None:
        self._kept(target, lambda: self.engine.refresh(target))

    def search(self, alias: str, query: SearchQuery) -> SearchResult:
        return self._kept(alias, lambda: self.engine.search(alias, query))

    def suggest(self, alias: str, prefix: str, limit: int = 8, doc_types: tuple[str, ...] = ()) -> list[Suggestion]:
        return self._kept(alias, lambda: self.engine.suggest(alias, prefix, limit, doc_types))

    def related(self, alias: str, doc_id: str, limit: int = 5, doc_types: tuple[str, ...] = ()) -> list[SearchHit]:
        return self._kept(alias, lambda: self.engine.related(alias, doc_id, limit, doc_types))

    def close(self) -> None:
        self.engine.close()
