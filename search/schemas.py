"""Schemas of the search API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from search.documents import DOC_TYPES
from services.schemas import PageArgsSchema, PublicDocumentSchema

MAX_QUERY_LENGTH = 100


class SearchArgsSchema(PageArgsSchema):
    q = fields.String(load_default="", validate=validate.Length(max=MAX_QUERY_LENGTH))
    type = fields.String(load_default=None, validate=validate.OneOf(DOC_TYPES))


class SearchHitSchema(PublicDocumentSchema):
    score = fields.Float()


class SearchResultSchema(Schema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    hits = fields.List(fields.Nested(SearchHitSchema), required=True)
    facets = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)
