"""Platform tasks: the outbox relay."""

from __future__ import annotations

from celery import current_app as current_celery
from celery import shared_task

from services.celery_app import CeleryPublisher
from services.db import get_database
from services.outbox import relay_pending


@shared_task(name="outbox.relay", acks_late=True, ignore_result=True)
def relay_outbox(service: str) -> dict[str, int]:
    database = get_database(service)
    report = relay_pending(database, database.outbox_model, CeleryPublisher(current_celery._get_current_object()))
    return {"sent": report.sent, "failed": report.failed, "pending": report.pending}
