"""What may enter the shared index: public fields only, checked on every write."""

from __future__ import annotations

from typing import Any

DOC_TYPES = ("policy", "interpretation", "answer", "press_response")

PUBLIC_FIELDS = frozenset(
    {
        "id", "doc_type", "title", "summary", "body", "url", "published_at",
        "department", "level", "form", "category", "validity",
        "document_number", "written_on", "question", "reply", "received_at", "replied_at",
        "related", "index_number", "issuer", "category_group", "source", "original_url", "replaced_by",
        "interpreter_kind", "interpreter_name", "key_points", "text_alternative", "transcript", "media_url",
        "body_html", "related_interpretations", "attachments",
    }
)
"""Anything else (a submitter's name or contact, an internal note) is refused."""


class PrivateFieldError(ValueError):
    pass


def check_public(document: dict[str, Any]) -> dict[str, Any]:
    """Return the document if every field is public; raise otherwise (never drop silently)."""
    private = set(document) - PUBLIC_FIELDS
    if private:
        raise PrivateFieldError(f"refusing to index non-public fields: {sorted(private)}")
    if document.get("doc_type") not in DOC_TYPES:
        raise PrivateFieldError(f"unknown document type {document.get('doc_type')!r}")
    return document
