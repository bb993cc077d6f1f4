"""Tables owned by the press service.

The press office keeps its own copy of what it needs from the public's messages: the
*redacted* title and text, category, department, times and consult's state (carried by
consult's events), never a name or a contact detail. ``asker_key`` is a keyed hash, only
good for counting distinct askers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.db import UTCDateTime, make_metadata, utcnow
from services.outbox import OutboxEventMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxEventMixin, Base):
    pass


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class Topic(Base):
    """A group of messages about the same thing (same place, same problem)."""

    __tablename__ = "press_topic"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    """The shared keywords: why these messages were grouped (most weight first)."""
    centroid: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    """Mean TF-IDF vector of the members (word -> weight), for assigning new messages."""
    representative_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    """press_message ids of the messages closest to the centroid."""
    size: Mapped[int] = mapped_column(Integer, default=0)
    askers: Mapped[int] = mapped_column(Integer, default=0)
    likes: Mapped[int] = mapped_column(Integer, default=0)
    near_duplicates: Mapped[int] = mapped_column(Integer, default=0)
    departments: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), index=True)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    """A member mentions a configured emergency term."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow, onupdate=utcnow)


class PressMessage(Base):
    """One public message as the press office sees it: redacted, without its asker."""

    __tablename__ = "press_message"
    __table_args__ = (
        UniqueConstraint("source", "source_id"),
        Index("ix_press_message_topic_received", "topic_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    """``consult`` (from consult's events) or ``import`` (a CSV of historical messages)."""
    source_id: Mapped[str] = mapped_column(String(64))
    """Consult's consultation id, or the imported file's message number."""
    tracking_number: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(100), index=True)
    department: Mapped[str | None] = mapped_column(String(40), index=True)
    asker_key: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), index=True)
    likes: Mapped[int] = mapped_column(Integer, default=0)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Segmented once at ingest (title words repeated, see ``topics.message_keywords``)."""
    emergency_terms: Mapped[str | None] = mapped_column(String(300))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("press_topic.id"), index=True)
    state: Mapped[str | None] = mapped_column(String(20))
    """Consult's workflow state, as its latest event told."""
    reply_due: Mapped[date | None] = mapped_column(Date)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    source_version: Mapped[int] = mapped_column(Integer, default=0)
    """Consult's version of the record: an older event never overwrites a newer state."""
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)


class TopicModel(Base):
    """The corpus statistics new messages are weighed with (one row, rebuilt by a full recompute)."""

    __tablename__ = "press_topic_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    documents: Mapped[int] = mapped_column(Integer, default=0)
    document_frequency: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)


class RecomputeRun(Base):
    """A full recompute of the topics, with its progress for the console."""

    __tablename__ = "press_recompute_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default="running")
    """running, finished or failed."""
    stage: Mapped[str] = mapped_column(String(40), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))


class AlertRule(Base):
    """When the press office wants to be told: a topic that grows fast, or an emergency term."""

    __tablename__ = "press_alert_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    """``growth`` (``min_messages`` new messages within ``within_hours`` and a burst score of at
    least ``min_burst``) or ``emergency`` (any message mentions one of ``terms``)."""
    min_messages: Mapped[int] = mapped_column(Integer, default=10)
    within_hours: Mapped[int] = mapped_column(Integer, default=24)
    min_burst: Mapped[float] = mapped_column(Float, default=3.0)
    terms: Mapped[list[str]] = mapped_column(JSON, default=list)
    response_hours: Mapped[int] = mapped_column(Integer, default=48)
    """The response clock an alert of this rule starts (48 h; 5 h for emergencies)."""
    email_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Alert(Base):
    """One alert: a rule fired for a topic, once per topic per window; starts the response clock."""

    __tablename__ = "press_alert"
    __table_args__ = (UniqueConstraint("rule_id", "topic_id", "window_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("press_alert_rule.id"), index=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("press_topic.id"), index=True)
    window_key: Mapped[str] = mapped_column(String(40))
    """Which window of the rule this alert belongs to: a second alert of the same window is refused."""
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow, index=True)
    response_due: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    response_id: Mapped[int | None] = mapped_column(ForeignKey("press_response.id"))
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    webhook_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    webhook_error: Mapped[str | None] = mapped_column(Text)


class Response(Base):
    """A response to public concerns (回应关切) or a media focus item (媒体聚焦), published through
    the review workflow and indexed for search."""

    __tablename__ = "press_response"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    """``response`` (回应关切) or ``media_focus`` (媒体聚焦)."""
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    """Sanitised rich text."""
    outlet: Mapped[str | None] = mapped_column(String(100))
    """媒体聚焦: the outlet (媒体名称)."""
    published_on: Mapped[date | None] = mapped_column(Date)
    """媒体聚焦: the date the outlet published it."""
    url: Mapped[str | None] = mapped_column(String(500))
    """媒体聚焦: the address of the original."""
    department: Mapped[str | None] = mapped_column(String(40))
    policy_refs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """Linked policies: ``{"id": search document id, "title": ...}``."""
    state: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    author_id: Mapped[int | None]
    author_name: Mapped[str | None] = mapped_column(String(100))
    last_writer_id: Mapped[int | None]
    submitted_by_id: Mapped[int | None]
    reviewer_id: Mapped[int | None]
    reviewer_name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))


class ResponseTopic(Base):
    """Which topics a response answers."""

    __tablename__ = "press_response_topic"

    response_id: Mapped[int] = mapped_column(ForeignKey("press_response.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("press_topic.id"), primary_key=True)


class ResponseStep(Base):
    """The history of a response: who did what, when (with the reviewer's comment)."""

    __tablename__ = "press_response_step"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("press_response.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(30))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None]
    actor_name: Mapped[str | None] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)


class PressPolicy(Base):
    """A published policy as interpret's events told the press office (for the weekly briefing's
    "policies that draw many questions but have no interpretation"): kept by ``press.sync_policy``
    from ``interpret.policy.published`` / ``.withdrawn``, never read from interpret's tables."""

    __tablename__ = "press_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Interpret's policy id (the search document is ``policy-<id>``)."""
    title: Mapped[str] = mapped_column(String(300))
    document_number: Mapped[str | None] = mapped_column(String(64), index=True)
    department: Mapped[str | None] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(300), default="")
    interpretations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """Its published interpretations: ``{"id", "title", "url"}``."""
    published: Mapped[bool] = mapped_column(Boolean, default=True)
    """False once withdrawn (the row stays, so an older event cannot bring it back)."""
    source_version: Mapped[int] = mapped_column(Integer, default=0)
    """Interpret's ``index_version``: an older event never overwrites a newer one."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SearchQueryCount(Base):
    """One query of the public search's log, as the press office last pulled it: how often it was
    searched in the current window and in the window before (``services.press.search_interest``).

    The table is a snapshot: each pull replaces every row. The query log holds no identity, and the
    text is redacted once more before it is stored here."""

    __tablename__ = "press_search_query"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query: Mapped[str] = mapped_column(String(200), unique=True)
    """The normalised query (as the search log keeps it), redacted."""
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Its words as ``topics.keywords_of`` cuts them, each once: what links it to a topic."""
    current: Mapped[int] = mapped_column(Integer, default=0)
    """Searches in the current window ``[window_end - window_hours, window_end]``."""
    previous: Mapped[int] = mapped_column(Integer, default=0)
    """Searches in the window of the same length before."""
    window_hours: Mapped[int] = mapped_column(Integer)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    pulled_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
