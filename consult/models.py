"""Tables owned by the consult service.

A consultation's submitter (name, phone, e-mail) lives only here: nothing that leaves this
service (events, search documents, public pages, logs) carries it.
"""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, event, text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from services.calendar import CalendarDayMixin
from services.db import UTCDateTime, make_metadata, utcnow
from services.outbox import OutboxEventMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxEventMixin, Base):
    pass


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class CalendarDay(CalendarDayMixin, Base):
    """Consult's copy of the administrators' holiday arrangement (from ``calendar.updated`` events)."""


def _deadline_now(row: Any) -> date | None:
    """``consult.workflow.current_deadline`` of anything with a consultation's attributes."""
    from consult.workflow import current_deadline

    return current_deadline(row)


def _due_on_default(context: DefaultExecutionContext) -> date | None:
    """``due_on`` of a row inserted without the ORM (bulk inserts such as the benchmark generator's)."""
    parameters: dict[str, Any] = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return _deadline_now(SimpleNamespace(
        state=parameters.get("state"), historical=bool(parameters.get("historical")),
        accept_due=parameters.get("accept_due"), reply_due=parameters.get("reply_due")))


class Consultation(Base):
    """A question from the public (咨询/留言), where it is in the workflow, and its official reply."""

    __tablename__ = "consultation"
    __table_args__ = (
        Index("ix_consultation_contact_received", "contact_key", "received_at"),
        # The staff inbox (consult.api.inbox, consult.staff_pages.inbox) and its category list: the filters,
        # then the order, then the id, so that counting and paging read this index alone, never the wide rows
        # (issue 8); the second one holds only the flagged cases.
        Index("ix_consultation_inbox", "department", "state", "category", "due_on", "received_at", "needs_routing",
              "id"),
        Index("ix_consultation_inbox_flagged", "department", "state", "category", "due_on", "received_at",
              "needs_routing", "id", postgresql_where=text("sensitive_terms IS NOT NULL"),
              sqlite_where=text("sensitive_terms IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tracking_number: Mapped[str] = mapped_column(String(32), unique=True)
    query_code_hash: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    question: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100), index=True)
    category_source: Mapped[str | None] = mapped_column(String(20))
    """asker, router, staff or import."""
    category_confidence: Mapped[float | None]
    # -- the submitter: private, never published, never logged
    name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(30))
    email: Mapped[str | None] = mapped_column(String(254))
    contact_key: Mapped[str | None] = mapped_column(String(64))
    """A keyed hash of the normalised phone and e-mail, for duplicate detection."""
    consent_to_publish: Mapped[bool] = mapped_column(Boolean, default=False)
    sensitive_terms: Mapped[str | None] = mapped_column(Text)
    """Screened words found at submission, comma-separated: the case is flagged for review."""
    # -- where it is
    state: Mapped[str] = mapped_column(String(20), index=True)
    department: Mapped[str | None] = mapped_column(String(40))
    needs_routing: Mapped[bool] = mapped_column(Boolean, default=False)
    handler_id: Mapped[int | None]
    handler_name: Mapped[str | None] = mapped_column(String(100))
    drafter_id: Mapped[int | None]
    reviewer_id: Mapped[int | None]
    reviewer_name: Mapped[str | None] = mapped_column(String(100))
    # -- deadlines (local Beijing dates, counted in working days)
    accept_due: Mapped[date | None] = mapped_column(Date)
    reply_due: Mapped[date | None] = mapped_column(Date, index=True)
    reply_working_days: Mapped[int] = mapped_column(Integer, default=5)
    due_on: Mapped[date | None] = mapped_column(Date, default=_due_on_default)
    """The deadline that matters now (``workflow.current_deadline``: acceptance, then the reply; None once
    done), stored for the inbox to filter and order on; set on every insert and update of the row."""
    clock_started_on: Mapped[date | None] = mapped_column(Date)
    """The day the reply clock started: acceptance, or the reopening."""
    deadline_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    """The deadline crosses a year without a holiday arrangement: counted Monday-Friday, to be checked."""
    paused_since: Mapped[date | None] = mapped_column(Date)
    paused_working_days: Mapped[int] = mapped_column(Integer, default=0)
    extension_working_days: Mapped[int] = mapped_column(Integer, default=0)
    reminded_for: Mapped[date | None] = mapped_column(Date)
    escalated_for: Mapped[date | None] = mapped_column(Date)
    alarm_raised_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # -- rejection, information request
    rejection_reason: Mapped[str | None] = mapped_column(String(40))
    rejection_note: Mapped[str | None] = mapped_column(Text)
    referral: Mapped[str | None] = mapped_column(String(300))
    info_request: Mapped[str | None] = mapped_column(Text)
    info_response: Mapped[str | None] = mapped_column(Text)
    # -- the reply
    reply_draft: Mapped[str | None] = mapped_column(Text)
    reply: Mapped[str | None] = mapped_column(Text)
    published_question: Mapped[str | None] = mapped_column(Text)
    published_reply: Mapped[str | None] = mapped_column(Text)
    redaction_confirmed_by: Mapped[str | None] = mapped_column(String(100))
    # -- satisfaction
    rating: Mapped[str | None] = mapped_column(String(20))
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # -- when
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    historical: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    steps: Mapped[list[ConsultationStep]] = relationship(
        back_populates="consultation", order_by="ConsultationStep.id", cascade="all, delete-orphan"
    )


@event.listens_for(Consultation, "before_insert")
@event.listens_for(Consultation, "before_update")
def _store_due_on(_mapper: Mapper[Consultation], _connection: Any, consultation: Consultation) -> None:
    due = _deadline_now(consultation)
    if consultation.due_on != due:
        consultation.due_on = due


class ConsultationStep(Base):
    """One thing that happened to a consultation: the history staff see, and (``public``) the asker sees."""

    __tablename__ = "consultation_step"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultation.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    department: Mapped[str | None] = mapped_column(String(40))
    actor_id: Mapped[int | None]
    actor_name: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)
    """For staff: the reason, the referral, the transfer's departments..."""
    public_note: Mapped[str | None] = mapped_column(Text)
    """What the asker's tracking page says about this step (never an internal note)."""
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    consultation: Mapped[Consultation] = relationship(back_populates="steps")


class InternalNote(Base):
    """A note between staff on a consultation: never shown to the asker, never published."""

    __tablename__ = "internal_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultation.id"), index=True)
    author_id: Mapped[int | None]
    author_name: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExtensionRequest(Base):
    """A handler's request for more working days, decided by a reviewer of the department."""

    __tablename__ = "extension_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultation.id"), index=True)
    working_days: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_by_id: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_note: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SubmissionAttachment(Base):
    """A file the asker sent with the question (kept private: staff only)."""

    __tablename__ = "submission_attachment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultation.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CannedReply(Base):
    """A reply template (常用答复) per category, which a handler starts a draft from."""

    __tablename__ = "canned_reply"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str | None] = mapped_column(String(100), index=True)
    """None: offered for every category."""
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CategoryDeadline(Base):
    """Working days to accept and to reply for one category (others use the settings' defaults)."""

    __tablename__ = "category_deadline"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    accept_working_days: Mapped[int] = mapped_column(Integer)
    reply_working_days: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrackingSerial(Base):
    """The last serial of the tracking numbers of one day (``ZX20261126-0007``)."""

    __tablename__ = "tracking_serial"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last_serial: Mapped[int] = mapped_column(Integer, default=0)
