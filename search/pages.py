"""The public search page."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from search.documents import DOC_TYPES
from search.query import run_search
from search.schemas import MAX_QUERY_LENGTH
from services.auth import public
from services.public_read import page_number

bp = Blueprint("search_pages", __name__, url_prefix="/search", template_folder="templates")


@bp.get("/")
@public
def search_page() -> str:
    text = request.args.get("q", "")[:MAX_QUERY_LENGTH]
    doc_type = request.args.get("type")
    if doc_type not in DOC_TYPES:
        doc_type = None
    results = run_search(current_app, text, doc_type, page_number(request.args.get("page")), 10) if text else None
    return render_template("search/search.html", q=text, doc_type=doc_type, results=results)
