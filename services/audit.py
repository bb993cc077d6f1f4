"""The audit log: every staff action and sign-in, append-only, chained by a keyed hash.

Each entry's hash covers its content and the previous entry's hash, keyed with a
secret derived from SECRET_KEY, so an edited, inserted or deleted entry breaks the
chain at a place :func:`verify_chain` names, and the chain cannot be recomputed
without the key. The identity service keeps the log; other services send their
entries as outbox events (``audit.recorded``) in the transaction of the action itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.auth import StaffIdentity
from services.db import utcnow
from services.outbox import OutboxEventMixin, emit

GENESIS_HASH = "0" * 64


class AuditResult:
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


def audit_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"gongkai.audit-chain", hashlib.sha256).digest()


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_fields(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "service": entry.service,
        "user_id": entry.user_id,
        "username": entry.username,
        "department": entry.department,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "result": entry.result,
        "source_address": entry.source_address,
        "detail": entry.detail or {},
    }


def chain_hash(key: bytes, prev_hash: str, fields: dict[str, Any]) -> str:
    return hmac.new(key, prev_hash.encode() + b"\n" + _canonical(fields), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """What happened, as a service reports it."""

    service: str
    action: str
    result: str
    user_id: int | None = None
    username: str | None = None
    department: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    source_address: str | None = None
    detail: dict[str, Any] | None = None
    at: datetime | None = None

    @classmethod
    def by(cls, identity: StaffIdentity | None, service: str, action: str, result: str, **fields: Any) -> AuditRecord:
        if identity is not None:
            fields.setdefault("user_id", identity.user_id)
            fields.setdefault("username", identity.username)
            fields.setdefault("department", ",".join(identity.departments) or None)
        return cls(service=service, action=action, result=result, **fields)

    def as_payload(self) -> dict[str, Any]:
        payload = {name: getattr(self, name) for name in self.__dataclass_fields__}
        payload["at"] = (self.at or utcnow()).isoformat()
        return payload


def append_entry(session: Session, key: bytes, record: AuditRecord, event_id: str | None = None) -> Any:
    """Append to the chain in the caller's transaction (identity's own database)."""
    from services.identity.models import AuditEntry, AuditHead

    if event_id is not None:
        existing = session.scalar(select(AuditEntry).where(AuditEntry.event_id == event_id))
        if existing is not None:
            return existing
    # Touching the head row first takes its lock (PostgreSQL) or the write lock (SQLite),
    # so concurrent appends queue up instead of forking the chain.
    touched = session.execute(update(AuditHead).where(AuditHead.id == 1).values(appends=AuditHead.appends + 1))
    if touched.rowcount == 0:  # type: ignore[attr-defined]
        # The first append ever. Two first appends can race (a login and an event from a worker):
        # the loser's insert fails on the primary key once the winner commits, and it queues on
        # the winner's head row instead.
        try:
            with session.begin_nested():
                session.add(AuditHead(id=1, last_entry_id=0, last_hash=GENESIS_HASH, appends=1, pruned_before_id=0))
        except IntegrityError:
            session.execute(update(AuditHead).where(AuditHead.id == 1).values(appends=AuditHead.appends + 1))
    head = session.get(AuditHead, 1, populate_existing=True)
    assert head is not None
    entry = AuditEntry(
        # The next number under the head's lock, not the table's sequence: PostgreSQL does not give back
        # a number taken by an append that then rolled back (a database restart, a killed worker), and a
        # gap in the numbers is what ``verify_chain`` reports as a deleted entry.
        id=head.last_entry_id + 1,
        at=record.at or utcnow(), service=record.service, user_id=record.user_id, username=record.username,
        department=record.department, action=record.action, object_type=record.object_type,
        object_id=record.object_id, result=record.result, source_address=record.source_address,
        detail=record.detail or {}, event_id=event_id, prev_hash=head.last_hash, entry_hash="",
    )
    session.add(entry)
    session.flush()
    entry.entry_hash = chain_hash(key, head.last_hash, entry_fields(entry))
    head.last_hash = entry.entry_hash
    head.last_entry_id = entry.id
    session.flush()
    return entry


def record_via_outbox(session: Session, outbox_model: type[OutboxEventMixin], record: AuditRecord) -> None:
    """For services other than identity: the entry travels with the action's own transaction."""
    emit(
        session, outbox_model, "audit.recorded", aggregate_type="audit", aggregate_id=record.action,
        version=1, payload=record.as_payload(),
    )


@dataclass
class ChainReport:
    ok: bool
    checked: int
    bad_entry_id: int | None = None
    reason: str = ""


def verify_chain(session: Session, key: bytes, batch: int = 1000) -> ChainReport:
    """Walk the chain from its start (or the pruning point) to the head."""
    from services.identity.models import AuditEntry, AuditHead

    head = session.get(AuditHead, 1)
    if head is None:
        count = session.scalar(select(AuditEntry.id).limit(1))
        if count is None:
            return ChainReport(True, 0)
        return ChainReport(False, 0, count, "the chain head is missing")
    expected_prev = head.pruned_prev_hash or GENESIS_HASH
    expected_id: int | None = head.pruned_before_id or None
    checked = 0
    last_id = 0
    while True:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id).limit(batch)
        ).all()
        if not entries:
            break
        for entry in entries:
            if expected_id is not None and entry.id != expected_id:
                return ChainReport(False, checked, expected_id, f"entry {expected_id} is missing (deleted)")
            if entry.prev_hash != expected_prev:
                return ChainReport(False, checked, entry.id, f"entry {entry.id} does not follow the entry before it")
            if entry.entry_hash != chain_hash(key, entry.prev_hash, entry_fields(entry)):
                return ChainReport(False, checked, entry.id, f"entry {entry.id} was altered (hash mismatch)")
            if entry.id == head.last_entry_id and entry.entry_hash != head.last_hash:
                return ChainReport(False, checked, entry.id, f"entry {entry.id} is not the one the chain head records")
            expected_prev = entry.entry_hash
            expected_id = entry.id + 1
            checked += 1
            last_id = entry.id
    # Entries past the head read above were appended while the walk ran: they chain on (checked above).
    if (checked and last_id < head.last_entry_id) or (not checked and expected_prev != head.last_hash):
        return ChainReport(False, checked, head.last_entry_id, f"entries after {last_id} are missing (deleted)")
    return ChainReport(True, checked)


def prune_before(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Drop entries older than the retention period, keeping the chain verifiable from the new start."""
    from services.identity.models import AuditEntry, AuditHead

    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    last_old = session.scalar(select(AuditEntry).where(AuditEntry.at < cutoff).order_by(AuditEntry.id.desc()).limit(1))
    if last_old is None:
        return 0
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(appends=AuditHead.appends + 1))
    head = session.get(AuditHead, 1, populate_existing=True)
    assert head is not None
    removed = session.execute(delete(AuditEntry).where(AuditEntry.id <= last_old.id)).rowcount  # type: ignore[attr-defined]
    head.pruned_before_id = last_old.id + 1
    head.pruned_prev_hash = last_old.entry_hash
    session.flush()
    return int(removed)
