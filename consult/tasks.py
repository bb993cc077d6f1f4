"""Consult tasks: keeping consult's own copy of the working-day calendar."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.exc import DBAPIError

from consult.models import CalendarDay, ProcessedEvent
from services.calendar import apply_calendar_event
from services.db import get_database


@shared_task(name="consult.apply_calendar", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def apply_calendar(event: dict[str, Any]) -> str:
    """Replace a year of consult's ``calendar_day`` rows from identity's ``calendar.updated`` event.

    Idempotent (the event id is recorded with the rows) and order-safe (an older event than the
    stored year is skipped). A database error (e.g. two deliveries racing on the same year) retries.
    """
    return apply_calendar_event(get_database("consult"), CalendarDay, event, processed_model=ProcessedEvent,
                                consumer="consult.apply_calendar")
