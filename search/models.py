"""Tables owned by the search service.

The index itself lives in the search engine; these tables hold what the search service
decides on its own: the query log (what the public search for, never who), and the rules
the disclosure office curates (synonym groups and best bets), applied at query time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.db import UTCDateTime, make_metadata, utcnow
from services.outbox import OutboxEventMixin, ProcessedEventMixin

QUERY_MAX = 200
"""The longest query the API accepts, and so the longest the log keeps."""
TERM_MAX = 50
LABEL_MAX = 50
DOC_ID_MAX = 200


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxEventMixin, Base):
    pass


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class QueryLog(Base):
    """One public search: the normalised query, its filters, how many results, how long it took.

    Deliberately nothing about who searched: no address, identity, user agent, session or
    referrer. Only first pages of searches with some text are logged (paging through the
    same results is not another search)."""

    __tablename__ = "query_log"
    __table_args__ = (
        Index("ix_query_log_created_at", "created_at"),
        Index("ix_query_log_query_created_at", "query", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query: Mapped[str] = mapped_column(String(QUERY_MAX))
    """NFKC, spaces collapsed, Latin letters lower-cased, numbers that look like personal data masked."""
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result_count: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SynonymGroup(Base):
    """Terms the public use for the same thing (公积金 / 住房公积金): a query term of the group
    also finds documents using any other term of it."""

    __tablename__ = "synonym_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    terms: Mapped[list[str]] = mapped_column(JSON)
    """Normalised terms, at least two, none in another group."""
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BestBet(Base):
    """A document pinned at the top of the results of one query (推荐), up to and including a day."""

    __tablename__ = "best_bet"
    __table_args__ = (UniqueConstraint("query", "doc_id", name="uq_best_bet_query_doc_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query: Mapped[str] = mapped_column(String(QUERY_MAX), index=True)
    """Normalised like the query log: a search whose normalised text equals it gets the pin."""
    doc_id: Mapped[str] = mapped_column(String(DOC_ID_MAX))
    label: Mapped[str | None] = mapped_column(String(LABEL_MAX))
    until: Mapped[date] = mapped_column(Date)
    """The last day (China time) the pin is shown."""
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReindexRun(Base):
    """One rebuild of the content index (``gongkai search reindex``): which index it builds, how far
    it got, how it ended. While a run is ``building``, the indexing tasks write every event to its
    index as well as to the alias, so nothing published during the rebuild is missed."""

    __tablename__ = "reindex_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(64))
    building_slot: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The alias while the run is building, else NULL: a second rebuild of the same alias cannot start."""
    index_name: Mapped[str | None] = mapped_column(String(200))
    previous_index: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), index=True)
    """building, finished, failed or abandoned."""
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """doc_type -> {"done": n, "total": n}."""
    pruned: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(String(500))
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReconcileRun(Base):
    """One comparison of the content index with what the services publish (``search.reconcile``),
    whoever started it: the hourly schedule, ``gongkai search reconcile``, or staff on the admin page
    (then it is ``queued`` until a worker takes it). ``report`` holds the counts per document type."""

    __tablename__ = "reconcile_run"
    __table_args__ = (Index("ix_reconcile_run_requested_at", "requested_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(20))
    """schedule, command or staff."""
    requested_by: Mapped[str | None] = mapped_column(String(100))
    """The staff member's username when started from the admin page."""
    repair: Mapped[bool] = mapped_column(Boolean, default=True)
    """False for a dry run (drift reported, nothing repaired)."""
    state: Mapped[str] = mapped_column(String(20), index=True)
    """queued, running, finished, failed or abandoned."""
    alias: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """doc_type -> {"published", "indexed", "missing", "stale", "extra", "repaired", "unrepaired"}."""
    error: Mapped[str | None] = mapped_column(String(500))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
