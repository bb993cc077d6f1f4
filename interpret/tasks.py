"""Interpret tasks: scheduled publication and the weekly coverage reminders."""

from __future__ import annotations

from datetime import date
from typing import Any

from celery import shared_task
from sqlalchemy.exc import DBAPIError

from interpret.coverage import send_coverage_reminders
from interpret.models import CalendarDay
from interpret.workflow import publish_due
from services.calendar import apply_calendar_event
from services.db import get_database


@shared_task(name="interpret.publish_due", acks_late=True, ignore_result=True)
def publish_scheduled() -> int:
    """Publish approved items whose scheduled time has come (idempotent: each is published once)."""
    with get_database("interpret").transaction() as session:
        return len(publish_due(session))


@shared_task(name="interpret.coverage_reminders", acks_late=True, ignore_result=True)
def coverage_reminders(today: str | None = None) -> int:
    """Weekly (beat: Monday 09:00 Beijing): one ``interpret.coverage.reminder`` event per department with
    own-level policies missing an interpretation or interpreted late, at most once per department per ISO week.

    ``today`` (``YYYY-MM-DD``) re-runs a given week; by default the Beijing date. E-mail delivery of these
    events to the department's staff comes with the notifications work (SMTP, issue 5).
    """
    day = date.fromisoformat(today) if today else None
    with get_database("interpret").transaction() as session:
        return len(send_coverage_reminders(session, today=day))


@shared_task(name="interpret.apply_calendar", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def apply_calendar(event: dict[str, Any]) -> str:
    """Keep interpret's copy of the holiday arrangement (for coverage deadlines) in step with the admin's."""
    return apply_calendar_event(get_database("interpret"), CalendarDay, event, consumer="interpret.apply_calendar")
