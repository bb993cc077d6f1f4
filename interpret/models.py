"""Tables owned by the interpret service."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.db import UTCDateTime, make_metadata, utcnow
from services.outbox import OutboxEventMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxEventMixin, Base):
    pass


class ProcessedEvent(ProcessedEventMixin, Base):
    pass


class Policy(Base):
    """A source policy document (源政策文件)."""

    __tablename__ = "policy"
    __table_args__ = (UniqueConstraint("issuer", "document_number", name="uq_policy_issuer_document_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    document_number: Mapped[str | None] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    written_on: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(20), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
