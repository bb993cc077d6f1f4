"""Tables owned by the interpret service: source policies, interpretations, their links and versions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.calendar import CalendarDayMixin
from services.db import UTCDateTime, make_metadata, utcnow
from services.outbox import OutboxEventMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxEventMixin, Base):
    pass


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class EditorialMixin:
    """What policies and interpretations share: owner, workflow state, authorship, versions."""

    department: Mapped[str] = mapped_column(String(32), index=True, default="ORG", server_default="ORG")
    state: Mapped[str] = mapped_column(String(20), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    index_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped on every change the search index must follow (external version of index writes)."""
    author_id: Mapped[int | None] = mapped_column(Integer)
    author_name: Mapped[str | None] = mapped_column(String(64))
    approver_id: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Policy(EditorialMixin, Base):
    """A source policy document (源政策文件) with its disclosure-catalogue metadata."""

    __tablename__ = "policy"
    __table_args__ = (UniqueConstraint("issuer", "document_number", name="uq_policy_issuer_document_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    index_number: Mapped[str | None] = mapped_column(String(48), unique=True)
    """索引号: ``{department code}/{YYYYMM}-{5-digit serial}``."""
    category_group: Mapped[str | None] = mapped_column(String(50))
    """组配分类"""
    title: Mapped[str] = mapped_column(String(300))
    document_number: Mapped[str | None] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str | None] = mapped_column(String(100))
    """主题分类"""
    source: Mapped[str | None] = mapped_column(String(200))
    """信息来源"""
    level: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    written_on: Mapped[date | None] = mapped_column(Date)
    validity: Mapped[str] = mapped_column(String(10), default="有效", server_default="有效")
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("policy.id"))
    original_url: Mapped[str | None] = mapped_column(String(500))

    replaced_by: Mapped[Policy | None] = relationship(remote_side=[id])
    attachments: Mapped[list[Attachment]] = relationship(
        primaryjoin="and_(Attachment.owner_type == 'policy', foreign(Attachment.owner_id) == Policy.id)",
        order_by="Attachment.id",
        viewonly=True,
    )
    interpretations: Mapped[list[Interpretation]] = relationship(
        secondary="interpretation_policy", back_populates="policies", order_by="Interpretation.id"
    )


class Interpretation(EditorialMixin, Base):
    """An interpretation (政策解读) of one or more policies."""

    __tablename__ = "interpretation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    form: Mapped[str] = mapped_column(String(20))
    interpreter_kind: Mapped[str] = mapped_column(String(20))
    interpreter_name: Mapped[str | None] = mapped_column(String(100))
    summary: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    key_points: Mapped[list[str]] = mapped_column(JSON, default=list)
    text_alternative: Mapped[str | None] = mapped_column(Text)
    """The text an infographic (图解) says, for screen readers and search."""
    transcript: Mapped[str | None] = mapped_column(Text)
    """What a video or audio interpretation says, for deaf visitors and search."""
    media_url: Mapped[str | None] = mapped_column(String(500))

    policies: Mapped[list[Policy]] = relationship(
        secondary="interpretation_policy", back_populates="interpretations", order_by="Policy.id"
    )
    related_items: Mapped[list[Interpretation]] = relationship(
        secondary="related_interpretation",
        primaryjoin="Interpretation.id == RelatedInterpretation.interpretation_id",
        secondaryjoin="Interpretation.id == RelatedInterpretation.related_id",
        order_by="Interpretation.id",
        viewonly=True,
    )


class InterpretationPolicy(Base):
    __tablename__ = "interpretation_policy"

    interpretation_id: Mapped[int] = mapped_column(
        ForeignKey("interpretation.id", ondelete="CASCADE"), primary_key=True
    )
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RelatedInterpretation(Base):
    """A see-also link between two interpretations (stored once per direction)."""

    __tablename__ = "related_interpretation"

    interpretation_id: Mapped[int] = mapped_column(
        ForeignKey("interpretation.id", ondelete="CASCADE"), primary_key=True
    )
    related_id: Mapped[int] = mapped_column(ForeignKey("interpretation.id", ondelete="CASCADE"), primary_key=True)


class Attachment(Base):
    __tablename__ = "attachment"
    __table_args__ = (Index("ix_attachment_owner", "owner_type", "owner_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContentVersion(Base):
    """An immutable snapshot of what was published."""

    __tablename__ = "content_version"
    __table_args__ = (UniqueConstraint("content_type", "content_id", "version", name="uq_content_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_type: Mapped[str] = mapped_column(String(20))
    content_id: Mapped[int] = mapped_column(Integer, index=True)
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_by: Mapped[str | None] = mapped_column(String(64))


class CalendarDay(CalendarDayMixin, Base):
    """Interpret's copy of the admin-entered holiday arrangement (``calendar.updated``)."""


class IndexNumberSerial(Base):
    """The last serial used in 索引号 per department and month."""

    __tablename__ = "index_number_serial"

    department: Mapped[str] = mapped_column(String(32), primary_key=True)
    month: Mapped[str] = mapped_column(String(6), primary_key=True)
    last_serial: Mapped[int] = mapped_column(Integer, default=0)
