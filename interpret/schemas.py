"""Schemas of the interpret API."""

from __future__ import annotations

from marshmallow import fields

from services.schemas import DocumentPageSchema, PageArgsSchema, PublicDocumentSchema


class PolicyListArgsSchema(PageArgsSchema):
    pass


class PublicPolicySchema(PublicDocumentSchema):
    body = fields.String()
    level = fields.String(allow_none=True)
    document_number = fields.String(allow_none=True)
    written_on = fields.String(allow_none=True)


class PolicyPageSchema(DocumentPageSchema):
    pass
