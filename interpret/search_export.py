"""What interpret publishes to the shared index, for a rebuild or a reconciliation of it.

The search service never reads interpret's tables: it calls these functions, which run
interpret's own code on interpret's own database (``get_database("interpret", app)``). They
answer exactly what the ``interpret.*.published`` / ``.withdrawn`` events have put in the
index, with the same external versions:

* a published policy or interpretation: its document as :func:`interpret.workflow.policy_document`
  / :func:`interpret.workflow.interpretation_document` build it for the events, at its
  ``index_version``;
* a published item being revised (a new draft, submitted or approved version, not
  withdrawn): the public keeps seeing the published version, so its document is the
  snapshot kept when it was published (the same builder's output), at its ``index_version``;
* anything withdrawn, or never published: nothing.

If the services ever run as separate processes, an HTTP endpoint of the interpret service
would call these same functions; they stay the single source of what is published.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session, selectinload

from interpret.models import ContentVersion, Interpretation, Policy
from interpret.workflow import ContentState, interpretation_document, policy_document
from services.db import get_database

DOC_TYPES: tuple[str, ...] = ("policy", "interpretation")
"""The document types this export answers for (reconciliation leaves other types alone)."""

BATCH_SIZE = 200

_BEING_REVISED = (ContentState.DRAFT, ContentState.SUBMITTED, ContentState.APPROVED)

Item = Policy | Interpretation


def _kind(model: type[Policy] | type[Interpretation]) -> str:
    return "policy" if model is Policy else "interpretation"


def _is_public(model: type[Policy] | type[Interpretation]) -> ColumnElement[bool]:
    """Published now, or published and revised since (no withdrawal after that publication), with
    the snapshot of what was published."""
    snapshot_kept = (
        select(ContentVersion.id)
        .where(ContentVersion.content_type == _kind(model), ContentVersion.content_id == model.id)
        .exists()
    )
    return or_(
        model.state == ContentState.PUBLISHED,
        and_(
            model.state.in_(_BEING_REVISED),
            model.published_at.is_not(None),
            or_(model.withdrawn_at.is_(None), model.withdrawn_at < model.published_at),
            snapshot_kept,
        ),
    )


def _numeric_ids(kind: str, doc_ids: Collection[str]) -> list[int]:
    prefix = f"{kind}-"
    return [int(doc_id[len(prefix):]) for doc_id in doc_ids
            if doc_id.startswith(prefix) and doc_id[len(prefix):].isdigit()]


def _published_snapshots(session: Session, kind: str, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The newest published snapshot of each item (for items being revised)."""
    if not ids:
        return {}
    versions = session.scalars(
        select(ContentVersion)
        .where(ContentVersion.content_type == kind, ContentVersion.content_id.in_(ids))
        .order_by(ContentVersion.content_id, ContentVersion.version)
    ).all()
    return {version.content_id: dict(version.snapshot) for version in versions}  # the last (newest) wins


def _batch(session: Session, model: type[Policy] | type[Interpretation], after: int, size: int,
           only: list[int] | None) -> list[tuple[int, str, dict[str, Any], int]]:
    """Up to ``size`` public items with ids above ``after``: (id, doc_id, document, version)."""
    kind = _kind(model)
    options = (
        (selectinload(Policy.interpretations), selectinload(Policy.attachments), selectinload(Policy.replaced_by))
        if model is Policy
        else (selectinload(Interpretation.policies), selectinload(Interpretation.related_items))
    )
    query = select(model).where(_is_public(model), model.id > after).order_by(model.id).limit(size)
    if only is not None:
        query = query.where(model.id.in_(only))
    items: list[Item] = list(session.scalars(query.options(*options)))
    snapshots = _published_snapshots(session, kind, [i.id for i in items if i.state != ContentState.PUBLISHED])
    rows = []
    for item in items:
        if item.state == ContentState.PUBLISHED:
            document = policy_document(item) if isinstance(item, Policy) else interpretation_document(item)
        else:
            document = snapshots[item.id]
        rows.append((item.id, f"{kind}-{item.id}", document, item.index_version))
    return rows


def published_documents(
    app: Flask | None = None, *, batch_size: int = BATCH_SIZE, doc_ids: Collection[str] | None = None
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Every published policy and interpretation as ``(doc_id, document, version)``, policies first,
    each kind in id order; only those of ``doc_ids`` when given.

    Each batch is read in a short transaction of its own and the session is closed before the
    batch is handed out, so a slow consumer (an index being written) never holds the database.
    """
    database = get_database("interpret", app)
    models: tuple[type[Policy], type[Interpretation]] = (Policy, Interpretation)
    for model in models:
        only = None if doc_ids is None else _numeric_ids(_kind(model), doc_ids)
        if only == []:
            continue
        after = 0
        while True:
            with database.transaction() as session:
                rows = _batch(session, model, after, batch_size, only)
            for _item_id, doc_id, document, version in rows:
                yield doc_id, document, version
            if len(rows) < batch_size:
                break
            after = rows[-1][0]


def document_versions(app: Flask | None = None) -> Iterator[tuple[str, int]]:
    """``(doc_id, version)`` of every published policy and interpretation: two small queries."""
    database = get_database("interpret", app)
    models: tuple[type[Policy], type[Interpretation]] = (Policy, Interpretation)
    for model in models:
        kind = _kind(model)
        with database.transaction() as session:
            rows = session.execute(
                select(model.id, model.index_version).where(_is_public(model)).order_by(model.id)
            ).all()
        for item_id, version in rows:
            yield f"{kind}-{item_id}", version
