"""Running a public search: the one function the API and the search page call."""

from __future__ import annotations

from typing import Any

from flask import Flask

from services.searchengine.port import SearchQuery
from services.web import content_alias


def run_search(app: Flask, text: str, doc_type: str | None, page: int, per_page: int) -> dict[str, Any]:
    engine, alias = content_alias(app)
    query = SearchQuery(
        text=" ".join(text.split()),
        doc_types=(doc_type,) if doc_type else (),
        sort="relevance" if text.strip() else "date",
        page=page,
        per_page=per_page,
    )
    result = engine.search(alias, query)
    hits = [
        {
            "id": hit.id,
            "doc_type": hit.doc_type,
            "title": hit.title,
            "summary": hit.summary,
            "url": hit.url,
            "published_at": hit.published_at,
            "department": hit.document.get("department"),
            "score": hit.score,
        }
        for hit in result.hits
    ]
    return {"total": result.total, "page": page, "per_page": per_page, "hits": hits, "facets": {}}
