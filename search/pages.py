"""The public search page ``/search/``: a plain GET form that works without JavaScript.

The same validated arguments and the same code path as ``GET /api/search``
(:func:`search.query.run_search`); bad input re-renders the form with the messages (422),
an engine that is down gives the form with a notice (503), never an error page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, render_template, request
from marshmallow import EXCLUDE, ValidationError

from search import curation
from search.query import TYPE_LABELS, SearchParams, run_search
from search.schemas import MAX_QUERY_LENGTH, SearchArgsSchema, form_args
from services.auth import public
from services.searchengine.port import KEYWORD_FIELDS, MAX_RESULT_WINDOW, SearchUnavailable
from services.web import cacheable

bp = Blueprint("search_pages", __name__, url_prefix="/search", template_folder="templates")

PER_PAGE = 10
FACET_VALUES_SHOWN = 12
EMPTY_RESULT_SUGGESTIONS = 6
FIELD_LABELS: dict[str, str] = {
    "q": "关键词", "type": "类型", "department": "部门", "level": "层级", "form": "形式", "category": "类别",
    "validity": "有效性", "date_from": "开始日期", "date_to": "结束日期", "sort": "排序", "page": "页码",
    "per_page": "每页条数",
}
FACET_LABELS: dict[str, str] = {
    "department": "部门", "level": "层级", "form": "解读形式", "category": "类别", "validity": "有效性",
}


class SearchLinks:
    """Links to the same search with some arguments changed (filters kept, back to page 1)."""

    def __init__(self, params: SearchParams) -> None:
        self.params = params

    def _args(self) -> dict[str, Any]:
        params = self.params
        args: dict[str, Any] = {"q": params.q, "type": list(params.types), **params.filters,
                                "date_from": params.date_from.isoformat() if params.date_from else "",
                                "date_to": params.date_to.isoformat() if params.date_to else "",
                                "sort": params.sort if params.sort != "relevance" else ""}
        return args

    @staticmethod
    def _url(args: dict[str, Any]) -> str:
        pairs = [(key, item) for key, value in args.items()
                 for item in (value if isinstance(value, list) else [value]) if item not in ("", None)]
        return "/search/?" + urlencode(pairs) if pairs else "/search/"

    def page(self, number: int) -> str:
        args = self._args()
        if number > 1:
            args["page"] = number
        return self._url(args)

    def with_filter(self, name: str, value: str | None) -> str:
        args = self._args()
        args[name] = value or ""
        return self._url(args)

    def toggle_type(self, doc_type: str) -> str:
        args = self._args()
        types: list[str] = args["type"]
        args["type"] = [item for item in types if item != doc_type] if doc_type in types else [*types, doc_type]
        return self._url(args)

    def without_filters(self) -> str:
        return self._url({"q": self.params.q})


def _render(status: int = 200, **context: Any) -> Any:
    context.setdefault("results", None)
    context.setdefault("errors", {})
    context.setdefault("search_down", False)
    context.setdefault("params", SearchParams())
    context.setdefault("suggestions", [])
    params: SearchParams = context["params"]
    results = context["results"]
    last_page = 1
    if results is not None:
        last_page = max(1, min(-(-results["total"] // params.per_page), MAX_RESULT_WINDOW // params.per_page))
    html = render_template(
        "search/search.html", links=SearchLinks(params), type_labels=TYPE_LABELS, facet_labels=FACET_LABELS,
        field_labels=FIELD_LABELS, keyword_fields=KEYWORD_FIELDS, max_length=MAX_QUERY_LENGTH, last_page=last_page,
        facet_values_shown=FACET_VALUES_SHOWN, **context,
    )
    if status != 200:
        return html, status
    return cacheable(html)


@bp.get("/")
@public
def search_page() -> Any:
    raw = form_args(request.args)
    raw.pop("debug", None)  # the page has no debug mode
    raw.setdefault("per_page", str(PER_PAGE))
    try:
        args = SearchArgsSchema(unknown=EXCLUDE).load(raw)
    except ValidationError as error:
        messages: dict[str, Any] = error.normalized_messages()  # type: ignore[no-untyped-call]
        errors = {name: [str(text) for text in (value if isinstance(value, list) else [value])]
                  for name, value in messages.items()}
        typed = (request.args.get("q") or "")[: MAX_QUERY_LENGTH * 2]
        return _render(422, errors=errors, params=SearchParams(q=typed))
    params = SearchParams.from_args(args)
    if not params.q.strip() and not params.has_filters:
        return _render(params=params)
    try:
        results = run_search(current_app, params)
    except SearchUnavailable as error:
        current_app.logger.warning("search page without results: %s", error)
        return _render(503, params=params, search_down=True)
    suggestions: list[str] = []
    if not results["hits"]:
        suggestions = [query for query in curation.suggestion_queries(current_app)
                       if query != curation.normalise_query(params.q)][:EMPTY_RESULT_SUGGESTIONS]
    return _render(params=params, results=results, suggestions=suggestions)
