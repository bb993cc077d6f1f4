"""Schemas shared by every service's API: paging and the public document shape."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.searchengine.port import MAX_RESULT_WINDOW

MAX_RECORD_ID = 2**31 - 1
"""Record ids are the databases' INTEGER: a larger number names no record, and PostgreSQL refuses to compare
one with an INTEGER column (``integer out of range``), so ids are bounded at the edge, in URLs and bodies."""

MAX_PAGE = 500
"""Deep paging is refused rather than scanned: nobody reads page 501 of a list."""


def record_id(**kwargs: Any) -> fields.Integer:
    """A field holding the id of a record (a policy, a consultation, a topic...). 0 passes, so the operation
    answers it as any id it cannot find, after its own access checks."""
    return fields.Integer(validate=validate.Range(min=0, max=MAX_RECORD_ID), **kwargs)


def links_from(status: int, source: str, *targets: str, parameter: str, query: dict[str, str] | None = None
               ) -> dict[str, Any]:
    """OpenAPI links (for ``blp.doc(**...)``) from the ``status`` answer's ``source`` field to the operations
    ``targets`` (``"GET /api/x/{id}"``) that take it as the path ``parameter`` (and, from ``query``, query
    parameters from other fields of the answer): how a client, or the stateful API fuzzing, goes from a
    created record to what it can do with it."""
    links: dict[str, Any] = {}
    for target in targets:
        method, path = target.split(" ", 1)
        pointer = path.replace("~", "~0").replace("/", "~1")
        name = "-".join(part for part in path.split("/")[3:] if not part.startswith("{")) or "self"
        parameters = {parameter: f"$response.body#/{source}"}
        parameters.update({name_: f"$response.body#/{field}" for name_, field in (query or {}).items()})
        links[f"{method.lower()}-{name}"] = {"operationRef": f"#/paths/{pointer}/{method.lower()}",
                                           "parameters": parameters}
    return {"responses": {status: {"links": links}}}  # the key flask-smorest uses (an int), so the two merge


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=10, validate=validate.Range(min=1, max=50))


class IndexPageArgsSchema(PageArgsSchema):
    """Paging of a public list read from the shared index, which serves only its first ``MAX_RESULT_WINDOW``
    matches: a page past them is refused with 422 (``page=365&per_page=28`` answered 500)."""

    @validates_schema
    def _check_window(self, data: dict[str, Any], **_kwargs: Any) -> None:
        page, per_page = data.get("page"), data.get("per_page")
        if isinstance(page, int) and isinstance(per_page, int) and page * per_page > MAX_RESULT_WINDOW:
            raise ValidationError({"page": [
                f"最多查看前 {MAX_RESULT_WINDOW} 条：每页 {per_page} 条时页码不超过 {MAX_RESULT_WINDOW // per_page}"
                f" / page * per_page may not exceed {MAX_RESULT_WINDOW}"]})


class PublicDocumentSchema(Schema):
    id = fields.String(required=True)
    doc_type = fields.String(required=True)
    title = fields.String(required=True)
    summary = fields.String()
    url = fields.String()
    published_at = fields.String(allow_none=True)
    department = fields.String(allow_none=True)


class DocumentPageSchema(Schema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    items = fields.List(fields.Nested(PublicDocumentSchema), required=True)
