"""Staff API: how the latest rebuild of the content index went (``gongkai search reindex``), and the
last reconciliations of the index with the services (``search.reconcile``)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from search.reconcile import COUNT_NAMES, recent_runs
from search.reindex import latest_run
from services.auth import requires
from services.db import get_session
from services.permissions import Permission
from services.searchengine.port import SearchEngineError, SearchUnavailable
from services.web import get_search_engine, get_settings

blp = Blueprint("search_reindex_api", __name__, url_prefix="/api/search/reindex",
                description="重建索引 Index rebuilds (staff)")
reconcile_blp = Blueprint("search_reconcile_api", __name__, url_prefix="/api/search/reconcile",
                          description="索引核对 Index reconciliation (staff)")


class TypeProgressSchema(Schema):
    done = fields.Integer(required=True)
    total = fields.Integer(required=True)


class ReindexStatusSchema(Schema):
    state = fields.String(required=True, metadata={
        "description": "none (never rebuilt), building, finished, failed or abandoned"})
    alias = fields.String(required=True)
    current_index = fields.String(allow_none=True, metadata={
        "description": "the index the alias points at now (null when the engine cannot be asked)"})
    run_id = fields.Integer(allow_none=True)
    index = fields.String(allow_none=True, metadata={"description": "the index the run built"})
    previous_index = fields.String(allow_none=True, metadata={"description": "what the alias left at the swap"})
    progress = fields.Dict(keys=fields.String(), values=fields.Nested(TypeProgressSchema),
                           metadata={"description": "documents written per type"})
    pruned = fields.List(fields.String())
    error = fields.String(allow_none=True)
    started_by = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    heartbeat_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    stalled = fields.Boolean(metadata={"description": "building, but no sign of life for a long time"})


@blp.get("/status")
@blp.response(200, ReindexStatusSchema)
@requires(Permission.PUBLISH)
def reindex_status() -> dict[str, Any]:
    """The latest rebuild of the content index: its state, indices, progress per type and times."""
    alias = get_settings(current_app).search_alias
    try:
        current: str | None = get_search_engine(current_app).current_index(alias)
    except (SearchUnavailable, SearchEngineError):
        current = None
    run = latest_run(current_app)
    if run is None:
        return {"state": "none", "alias": alias, "current_index": current, "progress": {}, "pruned": [],
                "stalled": False}
    return {**run, "current_index": current}


TypeCountsSchema = Schema.from_dict(
    {name: fields.Integer(required=True) for name in COUNT_NAMES}, name="ReconcileTypeCounts")


class ReconcileRunSchema(Schema):
    id = fields.Integer(required=True)
    trigger = fields.String(required=True, metadata={
        "description": "schedule (hourly), command (gongkai search reconcile) or staff (the admin page)"})
    requested_by = fields.String(allow_none=True, metadata={"description": "who asked, for a staff run"})
    repair = fields.Boolean(required=True, metadata={"description": "false for a dry run: drift reported only"})
    state = fields.String(required=True, metadata={
        "description": "queued, running, finished, failed or abandoned (its worker stopped)"})
    alias = fields.String(required=True)
    error = fields.String(allow_none=True)
    requested_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    seconds = fields.Float(allow_none=True)
    types = fields.Dict(keys=fields.String(), values=fields.Nested(TypeCountsSchema), metadata={
        "description": "per document type: published, indexed (before repair), missing, stale, extra, repaired, "
                       "unrepaired"})
    totals = fields.Nested(TypeCountsSchema, required=True)
    drift = fields.Integer(required=True, metadata={"description": "missing + stale + extra"})


class ReconcileRunsSchema(Schema):
    runs = fields.List(fields.Nested(ReconcileRunSchema), required=True, metadata={"description": "newest first"})


@reconcile_blp.get("")
@reconcile_blp.response(200, ReconcileRunsSchema)
@requires(Permission.PUBLISH)
def reconcile_runs() -> dict[str, Any]:
    """The last reconciliations of the index with what the services publish (the admin page "索引核对"
    shows the same): when, how started, their state, and the counts per document type."""
    return {"runs": recent_runs(get_session("search"))}
