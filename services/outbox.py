"""Transactional outbox and idempotent consumption.

A service calls :func:`emit` inside the transaction that changes its data, so the
event and the change commit together or not at all. After commit the events are
sent at once when the broker answers; :func:`relay_pending` (a beat task) sends
whatever is still pending, so an outage only delays delivery. Delivery is
at-least-once; consumers wrap their effect in :func:`first_delivery`, which records
the event id in the consumer's own database in the same transaction as the effect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from services.db import ServiceDatabase, UTCDateTime, utcnow
from services.events import subscribers
from services.observability import current_request_id

log = logging.getLogger(__name__)

RELAY_MIN_AGE = timedelta(seconds=3)
"""Events younger than this are left to the after-commit send, so both rarely race."""


class OutboxEventMixin:
    """Columns of a service's ``outbox_event`` table."""

    __tablename__ = "outbox_event"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    aggregate_type: Mapped[str] = mapped_column(String(50))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    aggregate_version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:  # noqa: N805 (SQLAlchemy passes the class)
        return (Index("ix_outbox_event_pending", "sent_at", "created_at"),)

    def as_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "version": self.aggregate_version,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
        }


class ProcessedEventMixin:
    """Columns of a consumer's ``processed_event`` table (the idempotency record)."""

    __tablename__ = "processed_event"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def emit(
    session: Session,
    model: type[OutboxEventMixin],
    topic: str,
    *,
    aggregate_type: str,
    aggregate_id: str | int,
    version: int,
    payload: dict[str, Any],
) -> OutboxEventMixin:
    """Add an event to the outbox in the caller's transaction."""
    factory: Any = model  # mypy cannot see the mapped constructor of a mixin
    event: OutboxEventMixin = factory(
        id=str(uuid.uuid4()),
        topic=topic,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        aggregate_version=version,
        payload=payload,
        request_id=current_request_id(),
        created_at=utcnow(),
        attempts=0,
    )
    session.add(event)
    session.info.setdefault("outbox_emitted", []).append(event.id)
    return event


class BrokerUnavailable(Exception):
    """The message broker did not accept a task."""


Publisher = Callable[[str, dict[str, Any], str | None], None]
"""Sends one task by name with the event message and the originating request id."""


@dataclass
class RelayReport:
    sent: int = 0
    failed: int = 0
    pending: int = 0


def _publish_event(publish: Publisher, event: OutboxEventMixin) -> None:
    message = event.as_message()
    for task_name in subscribers(event.topic):
        publish(task_name, message, event.request_id)


def relay_pending(
    database: ServiceDatabase,
    model: type[OutboxEventMixin],
    publish: Publisher,
    *,
    batch_size: int = 500,
    min_age: timedelta = RELAY_MIN_AGE,
) -> RelayReport:
    """Send pending events older than ``min_age``, oldest first; stop at the first broker failure."""
    report = RelayReport()
    cutoff = utcnow() - min_age
    with database.transaction() as session:
        query = (
            select(model)
            .where(model.sent_at.is_(None), model.created_at <= cutoff)
            .order_by(model.created_at)
            .limit(batch_size)
        )
        if not database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        events = session.scalars(query).all()
        for event in events:
            try:
                _publish_event(publish, event)
            except BrokerUnavailable as error:
                event.attempts += 1
                event.last_error = str(error)[:500]
                report.failed = 1
                log.warning("outbox relay stopped: broker unavailable", extra={"service": database.service})
                break
            event.sent_at = utcnow()
            event.attempts += 1
            report.sent += 1
        report.pending = len(events) - report.sent
    return report


def send_after_commit(
    database: ServiceDatabase,
    model: type[OutboxEventMixin],
    publish: Publisher,
    event_ids: list[str],
) -> int:
    """Send just-committed events now; on any broker failure leave them to the relay."""
    if not event_ids:
        return 0
    with database.transaction() as session:
        events = session.scalars(
            select(model).where(model.id.in_(event_ids), model.sent_at.is_(None)).order_by(model.created_at)
        ).all()
        sent_ids = []
        for event in events:
            try:
                _publish_event(publish, event)
            except BrokerUnavailable:
                break
            sent_ids.append(event.id)
        if sent_ids:
            session.execute(
                update(model).where(model.id.in_(sent_ids)).values(sent_at=utcnow(), attempts=model.attempts + 1)
            )
    return len(sent_ids)


def pending_count(database: ServiceDatabase, model: type[OutboxEventMixin]) -> int:
    with database.transaction() as session:
        return len(session.scalars(select(model.id).where(model.sent_at.is_(None))).all())


@contextmanager
def first_delivery(
    database: ServiceDatabase,
    model: type[ProcessedEventMixin],
    consumer: str,
    event_id: str,
) -> Iterator[Session | None]:
    """Yield a session if this consumer has not processed the event yet, else None.

    The idempotency record and the consumer's own writes commit together; an
    effect outside the database (an index write, an e-mail) must itself be safe to
    repeat, since a crash between it and the commit leads to a redelivery.
    """
    session = database.new_session()
    try:
        if session.get(model, (event_id, consumer)) is not None:
            yield None
            return
        factory: Any = model
        session.add(factory(event_id=event_id, consumer=consumer, processed_at=utcnow()))
        try:
            session.flush()
        except IntegrityError:
            # Another worker took the same delivery first.
            session.rollback()
            yield None
            return
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


ATTEMPT_SUFFIX = "#attempt"
"""A consumer's name with this suffix in ``processed_event`` records that an attempt of its effect began."""


def record_attempt(database: ServiceDatabase, model: type[ProcessedEventMixin], consumer: str, event_id: str) -> bool:
    """Commit, before an effect outside the database (an e-mail), that an attempt of it begins.

    True when an earlier attempt began already: if that one never recorded its end (``first_delivery``),
    its outcome is unknown (a worker killed mid-send) or it failed.
    """
    key = (event_id, f"{consumer}{ATTEMPT_SUFFIX}")
    try:
        with database.transaction() as session:
            if session.get(model, key) is not None:
                return True
            factory: Any = model
            session.add(factory(event_id=key[0], consumer=key[1], processed_at=utcnow()))
    except IntegrityError:  # a concurrent attempt recorded it first
        return True
    return False


def _send_emitted_after_commit(session: Session) -> None:
    emitted: list[str] | None = session.info.pop("outbox_emitted", None)
    database: ServiceDatabase | None = session.info.get("gongkai_database")
    if not emitted or database is None or database.publisher is None or database.outbox_model is None:
        return
    try:
        send_after_commit(database, database.outbox_model, database.publisher, emitted)
    except Exception:  # the relay sends them later; the request has already succeeded
        log.warning("sending events after commit failed; the relay will send them", exc_info=True)


def _forget_emitted(session: Session) -> None:
    session.info.pop("outbox_emitted", None)


def install_after_commit_send() -> None:
    """Send a session's outbox events right after it commits (idempotent to install)."""
    if not event.contains(Session, "after_commit", _send_emitted_after_commit):
        event.listen(Session, "after_commit", _send_emitted_after_commit)
        event.listen(Session, "after_rollback", _forget_emitted)
