"""Staff API: how the latest rebuild of the content index went (``gongkai search reindex``)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from search.reindex import latest_run
from services.auth import requires
from services.permissions import Permission
from services.searchengine.port import SearchEngineError, SearchUnavailable
from services.web import get_search_engine, get_settings

blp = Blueprint("search_reindex_api", __name__, url_prefix="/api/search/reindex",
                description="重建索引 Index rebuilds (staff)")


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
