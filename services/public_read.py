"""Public lists and pages read from the shared index, never from a service's tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, abort

from services.schemas import MAX_PAGE
from services.searchengine.port import SearchQuery
from services.web import content_alias


@dataclass
class DocumentPage:
    total: int
    page: int
    per_page: int
    items: list[dict[str, Any]]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "page": self.page, "per_page": self.per_page, "items": self.items}


def latest_documents(app: Flask, doc_type: str, page: int = 1, per_page: int = 10) -> DocumentPage:
    engine, alias = content_alias(app)
    result = engine.search(alias, SearchQuery(doc_types=(doc_type,), sort="date", page=page, per_page=per_page))
    return DocumentPage(result.total, page, per_page, [hit.document for hit in result.hits])


def public_document(app: Flask, doc_id: str) -> dict[str, Any]:
    """A published document by id, or 404."""
    engine, alias = content_alias(app)
    document = engine.get_document(alias, doc_id)
    if document is None or document.get("deleted"):
        abort(404)
    return document


def page_number(raw: str | None) -> int:
    """A page number from a query string; anything odd reads as the first page."""
    if raw and raw.isdigit() and int(raw) > 0:
        return min(int(raw), MAX_PAGE)
    return 1
