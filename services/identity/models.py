"""Tables owned by the identity service."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from services.db import make_metadata
from services.outbox import OutboxEventMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxEventMixin, Base):
    pass


class ProcessedEvent(ProcessedEventMixin, Base):
    pass
