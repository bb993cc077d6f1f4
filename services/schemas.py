"""Schemas shared by every service's API: paging and the public document shape."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

MAX_PAGE = 500
"""Deep paging is refused rather than scanned: nobody reads page 501 of a list."""


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=10, validate=validate.Range(min=1, max=50))


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
