"""Index writes driven by the other services' outbox events, and the reconciliation job.

Each write carries the source's version as the external version, so a late, stale
event can never overwrite a newer document; a repeated delivery is recorded once.
While the index is being rebuilt (``search.reindex``), every write also goes to the
index being built, so the rebuilt index misses nothing published meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from flask import current_app

from search.documents import check_public
from search.reindex import building_indices, worker_apps
from services.db import get_database
from services.outbox import first_delivery
from services.searchengine.port import SearchEngineError, SearchUnavailable
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


def _also_to_building(indices: tuple[str, ...], write: Callable[[str], bool]) -> None:
    """Repeat a write on the indices being rebuilt. An index that has gone meanwhile (its rebuild
    failed and dropped it) is skipped; an engine that is down fails the task, which retries."""
    for index in indices:
        try:
            write(index)
        except SearchUnavailable:
            raise
        except SearchEngineError as error:
            log.warning("index write not repeated on %s (rebuild ended?): %s", index, type(error).__name__)


@shared_task(name="search.index_document", **RETRY)
def index_document(event: dict[str, Any]) -> str:
    database = get_database("search")
    document = check_public(dict(event["payload"]["document"]))
    doc_id, version = _document_id(event), event["version"]
    building = building_indices(current_app)
    with first_delivery(database, database.processed_model, "search.index_document", event["id"]) as session:
        if session is None:
            return "duplicate"
        engine, alias = content_alias(current_app)
        written = engine.index_document(alias, doc_id, document, version)
        _also_to_building(building, lambda index: engine.index_document(index, doc_id, document, version))
        return "indexed" if written else "stale"


@shared_task(name="search.remove_document", **RETRY)
def remove_document(event: dict[str, Any]) -> str:
    database = get_database("search")
    doc_id, version = _document_id(event), event["version"]
    building = building_indices(current_app)
    with first_delivery(database, database.processed_model, "search.remove_document", event["id"]) as session:
        if session is None:
            return "duplicate"
        engine, alias = content_alias(current_app)
        removed = engine.delete_document(alias, doc_id, version)
        _also_to_building(building, lambda index: engine.delete_document(index, doc_id, version))
        return "removed" if removed else "stale"


@shared_task(name="search.reconcile", acks_late=True, ignore_result=True)
def reconcile_index(event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare the index with what the services publish and repair the drift: hourly (beat), or the
    run staff queued on the admin page (``event``: its ``search.reconcile.requested`` event). Each run
    is recorded with its report (``search.reconcile.reconcile_recorded``)."""
    from search.reconcile import SCHEDULE, STAFF, reconcile_recorded

    run_id = int(event["payload"]["run_id"]) if event else None
    try:
        recorded, report = reconcile_recorded(worker_apps(current_app), trigger=STAFF if event else SCHEDULE,
                                              run_id=run_id)
    except SearchUnavailable as error:
        log.warning("reconciliation skipped, the search engine is unavailable: %s", error)
        return {"skipped": "search unavailable"}
    if report is None:
        return {"duplicate": run_id}
    summary = {**report.as_dict(), "run_id": recorded}
    if report.drift:
        log.warning("index drift repaired: %s", report.summary())
    else:
        log.info("index reconciled, no drift: %s", report.summary())
    return summary


@shared_task(name="search.prune_query_log", acks_late=True, ignore_result=True)
def prune_query_log() -> int:
    """Daily: delete query log rows older than ``QUERY_LOG_RETENTION_DAYS``."""
    from search.curation import prune_query_log as prune

    settings = current_app.extensions["gongkai.settings"]
    with get_database("search").transaction() as session:
        removed = prune(session, settings.query_log_retention_days)
    log.info("query log: %d rows older than %d days deleted", removed, settings.query_log_retention_days)
    return removed
