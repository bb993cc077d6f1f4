"""Schemas of the consult API."""

from __future__ import annotations

from marshmallow import fields

from services.schemas import DocumentPageSchema, PageArgsSchema, PublicDocumentSchema


class AnswerListArgsSchema(PageArgsSchema):
    pass


class PublicAnswerSchema(PublicDocumentSchema):
    question = fields.String()
    reply = fields.String(allow_none=True)
    received_at = fields.String()
    replied_at = fields.String(allow_none=True)


class AnswerPageSchema(DocumentPageSchema):
    pass
