"""The public search API."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint

from search.query import run_search
from search.schemas import SearchArgsSchema, SearchResultSchema
from services.auth import public

blp = Blueprint("search_api", __name__, url_prefix="/api/search", description="站内搜索 Site search")


@blp.get("")
@blp.arguments(SearchArgsSchema, location="query")
@blp.response(200, SearchResultSchema)
@public
def search(args: dict[str, Any]) -> dict[str, Any]:
    """Search published policies, interpretations, answers and press responses."""
    return run_search(current_app, args["q"], args["type"], args["page"], args["per_page"])
