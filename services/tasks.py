"""Platform tasks: the outbox relay."""

from __future__ import annotations

import logging

from celery import current_app as current_celery
from celery import shared_task
from sqlalchemy.exc import OperationalError

from services.celery_app import CeleryPublisher
from services.db import DatabaseUnavailable, get_database
from services.outbox import relay_pending

log = logging.getLogger(__name__)


@shared_task(name="outbox.relay", acks_late=True, ignore_result=True)
def relay_outbox(service: str) -> dict[str, int]:
    database = get_database(service)
    try:
        report = relay_pending(database, database.outbox_model, CeleryPublisher(current_celery._get_current_object()))
    except (OperationalError, DatabaseUnavailable) as error:
        # The database is down (a restart, a failover): the events wait in it, and the next run, a
        # second later, sends them. One line per run instead of a traceback twice a second per service.
        log.warning("outbox relay of %s skipped: database unavailable (%s)", service,
                    str(getattr(error, "orig", None) or error).splitlines()[0])
        return {"sent": 0, "failed": 0, "pending": -1}
    return {"sent": report.sent, "failed": report.failed, "pending": report.pending}
