"""The public search API: search, suggestions as you type, related documents.

All three are public and share the search rate limit (the blueprint's). Staff signed in
with a bearer token may add ``debug=1`` to a search to see how each hit was scored.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import RAISE

from search.query import SearchParams, run_search
from search.query import related as related_documents
from search.query import suggest as suggestions_for
from search.schemas import (
    RelatedArgsSchema,
    RelatedResultSchema,
    SearchArgsSchema,
    SearchResultSchema,
    SuggestArgsSchema,
    SuggestResultSchema,
    valid_doc_id,
)
from services.auth import current_staff, public
from services.errors import error_response
from services.searchengine.port import SearchUnavailable

blp = Blueprint("search_api", __name__, url_prefix="/api/search", description="站内搜索 Site search")

UNAVAILABLE_MESSAGE = "搜索服务暂时不可用，请稍后再试。 / Search is temporarily unavailable, please try again later."
RETRY_AFTER_SECONDS = "10"


@blp.errorhandler(SearchUnavailable)
def _unavailable(error: SearchUnavailable) -> tuple[Response, int]:
    """503 with one message in Chinese and English, and when to try again."""
    current_app.logger.warning("search unavailable: %s", error)
    response, status = error_response(503, UNAVAILABLE_MESSAGE)
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response, status


@blp.get("")
@blp.arguments(SearchArgsSchema, location="query", unknown=RAISE)
@blp.response(200, SearchResultSchema)
@public
def search(args: dict[str, Any]) -> dict[str, Any]:
    """Search published policies, interpretations, answers and press responses.

    Filters: ``type`` (repeatable), ``department``, ``level``, ``form``, ``category``, ``validity``,
    ``date_from``/``date_to`` (YYYY-MM-DD, China time, inclusive); ``sort`` is ``relevance`` or
    ``date``; ``page * per_page`` may not exceed the engine's result window (10,000). Each hit has a
    Chinese type label and highlighted snippets (safe HTML: escaped, matches in ``<mark>``); best bets
    come first with ``pinned``. Unknown parameters are refused."""
    explain = bool(args.get("debug")) and current_staff() is not None
    return run_search(current_app, SearchParams.from_args(args, explain=explain))


@blp.get("/suggest")
@blp.arguments(SuggestArgsSchema, location="query", unknown=RAISE)
@blp.response(200, SuggestResultSchema)
@public
def suggest(args: dict[str, Any]) -> dict[str, Any]:
    """Up to 8 suggestions for what is being typed: popular searches starting with it, and titles
    completing it."""
    types = tuple(dict.fromkeys(args.get("type") or ()))
    return {"suggestions": suggestions_for(current_app, args.get("q") or "", types)}


@blp.get("/related/<doc_id>")
@blp.arguments(RelatedArgsSchema, location="query", unknown=RAISE)
@blp.response(200, RelatedResultSchema)
@public
def related(args: dict[str, Any], doc_id: str) -> dict[str, Any]:
    """Up to 5 published documents most like ``doc_id`` (e.g. ``policy-12``); none for an unknown document."""
    if not valid_doc_id(doc_id):
        return {"hits": []}
    types = tuple(dict.fromkeys(args.get("type") or ()))
    return {"hits": related_documents(current_app, doc_id, types)}
