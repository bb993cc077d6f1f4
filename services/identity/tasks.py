"""Identity tasks: appending other services' audit entries to the chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task
from flask import current_app

from services.audit import AuditRecord, append_entry, audit_key, prune_before
from services.db import get_database


@shared_task(name="identity.append_audit", acks_late=True, autoretry_for=(Exception,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def append_audit(event: dict[str, Any]) -> str:
    """Idempotent: the event id is unique in the chain, so a redelivery appends nothing."""
    payload = dict(event["payload"])
    payload["at"] = datetime.fromisoformat(payload["at"])
    record = AuditRecord(**payload)
    settings = current_app.extensions["gongkai.settings"]
    with get_database("identity").transaction() as session:
        entry = append_entry(session, audit_key(settings.secret_key), record, event_id=event["id"])
        return f"entry {entry.id}"


@shared_task(name="identity.prune_audit", acks_late=True)
def prune_audit() -> int:
    """Daily: drop entries past the retention period (never less than 180 days)."""
    settings = current_app.extensions["gongkai.settings"]
    with get_database("identity").transaction() as session:
        return prune_before(session, settings.audit_retention_days)
