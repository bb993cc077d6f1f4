"""Index writes driven by the other services' outbox events.

Each write carries the source's version as the external version, so a late, stale
event can never overwrite a newer document; a repeated delivery is recorded once.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from flask import current_app

from search.documents import check_public
from services.db import get_database
from services.outbox import first_delivery
from services.searchengine.port import SearchUnavailable
from services.web import content_alias

log = logging.getLogger(__name__)

RETRY = {
    "acks_late": True,
    "autoretry_for": (SearchUnavailable,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": None,
}


def _document_id(event: dict[str, Any]) -> str:
    return f"{event['aggregate_type']}-{event['aggregate_id']}"


@shared_task(name="search.index_document", **RETRY)
def index_document(event: dict[str, Any]) -> str:
    database = get_database("search")
    document = check_public(dict(event["payload"]["document"]))
    with first_delivery(database, database.processed_model, "search.index_document", event["id"]) as session:
        if session is None:
            return "duplicate"
        engine, alias = content_alias(current_app)
        written = engine.index_document(alias, _document_id(event), document, event["version"])
        return "indexed" if written else "stale"


@shared_task(name="search.remove_document", **RETRY)
def remove_document(event: dict[str, Any]) -> str:
    database = get_database("search")
    with first_delivery(database, database.processed_model, "search.remove_document", event["id"]) as session:
        if session is None:
            return "duplicate"
        engine, alias = content_alias(current_app)
        removed = engine.delete_document(alias, _document_id(event), event["version"])
        return "removed" if removed else "stale"
