"""What consult publishes to the shared index (answers), for a rebuild or a reconciliation of it.

The search service never reads consult's tables: it calls these functions, which run consult's
own code on consult's own database (``get_database("consult", app)``). They answer exactly what
the ``consult.answer.published`` / ``.unpublished`` events have put in the index:

* which answers: every consultation published at some point and not withdrawn from publication
  (``unpublish``) since its latest publication -- closing or reopening a published case sends no
  event, so its answer stays on the public board, and stays here too;
* the document: :func:`consult.workflow.answer_search_document`, the builder of the events
  (the redacted texts only: never the submitter's name or contact details);
* the version: the one the latest answer event carried (kept in consult's outbox). Should that
  row be gone, the consultation's current version stands in: it is never lower than the event's
  and always lower than any later event's, so the versioned index writes stay correct.

If the services ever run as separate processes, an HTTP endpoint of the consult service would
call these same functions; they stay the single source of what is published.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement, String, cast, func, select
from sqlalchemy.orm import Session

from consult.models import Consultation, ConsultationStep, OutboxEvent
from consult.workflow import answer_search_document
from services.db import get_database

DOC_TYPES: tuple[str, ...] = ("answer",)
"""The document types this export answers for (reconciliation leaves other types alone)."""

BATCH_SIZE = 500
PREFIX = "answer-"


def _last_step(action: str) -> ColumnElement[int]:
    return func.coalesce(
        select(func.max(ConsultationStep.id))
        .where(ConsultationStep.consultation_id == Consultation.id, ConsultationStep.action == action)
        .scalar_subquery(),
        0,
    )


def _is_public() -> ColumnElement[bool]:
    """Published, and no ``unpublish`` after the latest publication. (Imported answers are published
    without a step: for them any ``unpublish`` step is later.)"""
    return Consultation.published_at.is_not(None) & (_last_step("publish") >= _last_step("unpublish"))


def _event_versions(session: Session, ids: list[int]) -> dict[int, int]:
    """The version of the latest answer event of each consultation in ``ids``."""
    if not ids:
        return {}
    rows = session.execute(
        select(OutboxEvent.aggregate_id, func.max(OutboxEvent.aggregate_version))
        .where(OutboxEvent.aggregate_type == "answer", OutboxEvent.aggregate_id.in_([str(i) for i in ids]))
        .group_by(OutboxEvent.aggregate_id)
    ).all()
    return {int(aggregate_id): int(version) for aggregate_id, version in rows}


def _numeric_ids(doc_ids: Collection[str]) -> list[int]:
    return [int(doc_id[len(PREFIX):]) for doc_id in doc_ids
            if doc_id.startswith(PREFIX) and doc_id[len(PREFIX):].isdigit()]


def published_documents(
    app: Flask | None = None, *, batch_size: int = BATCH_SIZE, doc_ids: Collection[str] | None = None
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Every published answer as ``(doc_id, document, version)`` in id order; only those of
    ``doc_ids`` when given. Each batch is read in a short transaction of its own, closed before
    the batch is handed out."""
    database = get_database("consult", app)
    only = None if doc_ids is None else _numeric_ids(doc_ids)
    if only == []:
        return
    after = 0
    while True:
        with database.transaction() as session:
            query = select(Consultation).where(_is_public(), Consultation.id > after)
            if only is not None:
                query = query.where(Consultation.id.in_(only))
            consultations = list(session.scalars(query.order_by(Consultation.id).limit(batch_size)))
            versions = _event_versions(session, [c.id for c in consultations])
            rows = [
                (c.id, f"{PREFIX}{c.id}", answer_search_document(c), versions.get(c.id, c.version))
                for c in consultations
            ]
        for _id, doc_id, document, version in rows:
            yield doc_id, document, version
        if len(rows) < batch_size:
            return
        after = rows[-1][0]


def document_versions(app: Flask | None = None) -> Iterator[tuple[str, int]]:
    """``(doc_id, version)`` of every published answer, in one query."""
    database = get_database("consult", app)
    latest_events = (
        select(OutboxEvent.aggregate_id.label("aggregate_id"),
               func.max(OutboxEvent.aggregate_version).label("version"))
        .where(OutboxEvent.aggregate_type == "answer")
        .group_by(OutboxEvent.aggregate_id)
        .subquery()
    )
    with database.transaction() as session:
        rows = session.execute(
            select(Consultation.id, func.coalesce(latest_events.c.version, Consultation.version))
            .outerjoin(latest_events, latest_events.c.aggregate_id == cast(Consultation.id, String))
            .where(_is_public())
            .order_by(Consultation.id)
        ).all()
    for consultation_id, version in rows:
        yield f"{PREFIX}{consultation_id}", int(str(version))
