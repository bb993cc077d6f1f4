"""Schemas of the consult API."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

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


CLASSIFY_MAX_CHARS = 5000


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空 / must not be blank")


class ClassifyArgsSchema(Schema):
    text = fields.String(required=True, validate=[validate.Length(min=1, max=CLASSIFY_MAX_CHARS), _not_blank])


class DepartmentSchema(Schema):
    code = fields.String()
    name = fields.String()


class ClassifyResultSchema(Schema):
    category = fields.String()
    confidence = fields.Float()
    department = fields.Nested(DepartmentSchema, allow_none=True)
    auto_assign = fields.Boolean()
