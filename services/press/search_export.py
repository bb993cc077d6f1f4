"""What the press office publishes to the shared index (responses to public concerns and media focus
items), for a rebuild or a reconciliation of it.

The search service never reads the press tables: it calls these functions, which run the press
office's own code on its own database (``get_database("press", app)``). They answer exactly what the
``press.response.published`` / ``.withdrawn`` events have put in the index:

* which responses: those published now (a revised or withdrawn response has been removed from the
  index by its event, see :mod:`services.press.workflow`);
* the document: :func:`services.press.workflow.response_document`, the builder of the events;
* the version: ``Response.version``; nothing changes a published response without a transition, so
  it is the version the publish event carried.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from flask import Flask
from sqlalchemy import select

from services.db import get_database
from services.press.models import Response
from services.press.workflow import DOC_PREFIX, DOC_TYPE, S, response_document

DOC_TYPES: tuple[str, ...] = (DOC_TYPE,)
"""The document types this export answers for (reconciliation leaves other types alone)."""

BATCH_SIZE = 500


def _numeric_ids(doc_ids: Collection[str]) -> list[int]:
    return [int(doc_id[len(DOC_PREFIX):]) for doc_id in doc_ids
            if doc_id.startswith(DOC_PREFIX) and doc_id[len(DOC_PREFIX):].isdigit()]


def published_documents(
    app: Flask | None = None, *, batch_size: int = BATCH_SIZE, doc_ids: Collection[str] | None = None
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Every published response as ``(doc_id, document, version)`` in id order; only those of ``doc_ids``
    when given. Each batch is read in a short transaction of its own, closed before it is handed out."""
    database = get_database("press", app)
    only = None if doc_ids is None else _numeric_ids(doc_ids)
    if only == []:
        return
    after = 0
    while True:
        with database.transaction() as session:
            query = select(Response).where(Response.state == S.PUBLISHED.value, Response.id > after)
            if only is not None:
                query = query.where(Response.id.in_(only))
            rows = [
                (response.id, f"{DOC_PREFIX}{response.id}", response_document(response), response.version)
                for response in session.scalars(query.order_by(Response.id).limit(batch_size))
            ]
        for _id, doc_id, document, version in rows:
            yield doc_id, document, version
        if len(rows) < batch_size:
            return
        after = rows[-1][0]


def document_versions(app: Flask | None = None) -> Iterator[tuple[str, int]]:
    """``(doc_id, version)`` of every published response, in one query."""
    database = get_database("press", app)
    with database.transaction() as session:
        rows = session.execute(
            select(Response.id, Response.version).where(Response.state == S.PUBLISHED.value).order_by(Response.id)
        ).all()
    for response_id, version in rows:
        yield f"{DOC_PREFIX}{response_id}", int(version)
