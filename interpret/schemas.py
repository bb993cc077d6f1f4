"""Schemas of the interpret API: the public reads, and the staff API under ``/api/interpret/manage``.

Choices (level, validity, form, interpreter) are listed in the OpenAPI document but checked by
the workflow, which answers in Chinese with the same error shape; marshmallow checks types,
lengths and unknown fields.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from marshmallow import Schema, fields, validate

from interpret.workflow import FORMS, INTERPRETER_KINDS, LEVELS, VALIDITIES, ContentState
from services.schemas import (
    DocumentPageSchema,
    IndexPageArgsSchema,
    PageArgsSchema,
    PublicDocumentSchema,
    record_id,
)

CHINA = ZoneInfo("Asia/Shanghai")
"""A publication time given without an offset is read as Beijing time."""

STATES = tuple(state.value for state in ContentState)


def _choice(choices: tuple[str, ...], **kwargs: object) -> fields.String:
    """A string whose allowed values the OpenAPI document lists (the workflow checks them)."""
    return fields.String(metadata={"enum": list(choices)}, **kwargs)  # type: ignore[arg-type]


# -- public reads -------------------------------------------------------------------------------


class PolicyListArgsSchema(IndexPageArgsSchema):
    pass


class PublicPolicySchema(PublicDocumentSchema):
    body = fields.String()
    level = fields.String(allow_none=True)
    document_number = fields.String(allow_none=True)
    written_on = fields.String(allow_none=True)


class PolicyPageSchema(DocumentPageSchema):
    pass


# -- staff: lists --------------------------------------------------------------------------------


class ManageListArgsSchema(PageArgsSchema):
    state = fields.String(validate=validate.OneOf(STATES))
    department = fields.String(validate=validate.Length(min=1, max=32))
    q = fields.String(validate=validate.Length(min=1, max=100), metadata={"description": "标题包含的文字"})


class ManagePolicyListArgsSchema(ManageListArgsSchema):
    level = fields.String(validate=validate.OneOf(LEVELS))


class ManageInterpretationListArgsSchema(ManageListArgsSchema):
    form = fields.String(validate=validate.OneOf(FORMS))


class EditorialSummarySchema(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    department = fields.String(required=True)
    state = fields.String(required=True)
    version = fields.Integer(required=True)
    author_name = fields.String(allow_none=True)
    scheduled_at = fields.DateTime(allow_none=True)
    published_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime(allow_none=True)


class PolicySummarySchema(EditorialSummarySchema):
    index_number = fields.String(allow_none=True)
    document_number = fields.String(allow_none=True)
    issuer = fields.String(required=True)
    level = fields.String(required=True)
    validity = fields.String(required=True)


class InterpretationSummarySchema(EditorialSummarySchema):
    form = fields.String(required=True)
    interpreter_kind = fields.String(required=True)


class PolicyListSchema(Schema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    items = fields.List(fields.Nested(PolicySummarySchema), required=True)


class InterpretationListSchema(Schema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    items = fields.List(fields.Nested(InterpretationSummarySchema), required=True)


# -- staff: one record ----------------------------------------------------------------------------


class LinkSchema(Schema):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    department = fields.String(required=True)
    state = fields.String(required=True)


class PolicyLinkSchema(LinkSchema):
    document_number = fields.String(allow_none=True)
    level = fields.String(required=True)


class InterpretationLinkSchema(LinkSchema):
    form = fields.String(required=True)


class VersionSchema(Schema):
    version = fields.Integer(required=True)
    title = fields.String(allow_none=True)
    published_at = fields.DateTime(required=True)
    published_by = fields.String(allow_none=True)


class AttachmentSchema(Schema):
    id = fields.Integer(required=True)
    filename = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    public_url = fields.String(
        required=True, metadata={"description": "公开下载地址（政策文件发布后可用）"}
    )


class AttachmentListSchema(Schema):
    items = fields.List(fields.Nested(AttachmentSchema), required=True)


class EditorialDetailSchema(EditorialSummarySchema):
    index_version = fields.Integer(required=True)
    author_id = fields.Integer(allow_none=True)
    approver_id = fields.Integer(allow_none=True)
    submitted_at = fields.DateTime(allow_none=True)
    approved_at = fields.DateTime(allow_none=True)
    first_published_at = fields.DateTime(allow_none=True)
    withdrawn_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    allowed_actions = fields.List(
        fields.String(), required=True,
        metadata={"description": "当前状态下、调用者有权执行的操作（状态机）"},
    )
    history = fields.List(
        fields.Nested(VersionSchema), required=True, metadata={"description": "已发布的各版本（不可修改）"}
    )


class PolicySchema(EditorialDetailSchema, PolicySummarySchema):
    category_group = fields.String(allow_none=True)
    topic = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    body = fields.String(required=True)
    written_on = fields.Date(allow_none=True)
    replaced_by_id = fields.Integer(allow_none=True)
    original_url = fields.String(allow_none=True)
    interpretations = fields.List(fields.Nested(InterpretationLinkSchema), required=True)
    attachments = fields.List(fields.Nested(AttachmentSchema), required=True)
    package_actions = fields.List(
        fields.String(), required=True,
        metadata={"description": "本级政策文件与其解读一并办理时可用的操作（submit、approve、publish）"},
    )


class InterpretationSchema(EditorialDetailSchema, InterpretationSummarySchema):
    interpreter_name = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)
    body = fields.String(required=True)
    key_points = fields.List(fields.String(), required=True)
    text_alternative = fields.String(allow_none=True)
    transcript = fields.String(allow_none=True)
    media_url = fields.String(allow_none=True)
    policies = fields.List(fields.Nested(PolicyLinkSchema), required=True)
    related = fields.List(fields.Nested(InterpretationLinkSchema), required=True)


# -- staff: input -----------------------------------------------------------------------------------


class PolicyUpdateSchema(Schema):
    """The fields of a policy an editor may change (PATCH: only those sent change)."""

    title = fields.String(validate=validate.Length(max=300))
    issuer = fields.String(validate=validate.Length(min=1, max=200))
    level = _choice(LEVELS, validate=validate.Length(max=20))
    body = fields.String(validate=validate.Length(max=500_000))
    document_number = fields.String(allow_none=True, validate=validate.Length(max=100))
    category_group = fields.String(allow_none=True, validate=validate.Length(max=50))
    topic = fields.String(allow_none=True, validate=validate.Length(max=100))
    source = fields.String(allow_none=True, validate=validate.Length(max=200))
    written_on = fields.Date(allow_none=True)
    validity = _choice(VALIDITIES, validate=validate.Length(max=10))
    replaced_by_id = record_id(allow_none=True, strict=True)
    original_url = fields.Url(allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500))


class PolicyCreateSchema(PolicyUpdateSchema):
    title = fields.String(required=True, validate=validate.Length(max=300))
    issuer = fields.String(required=True, validate=validate.Length(min=1, max=200))
    level = _choice(LEVELS, required=True, validate=validate.Length(max=20))
    body = fields.String(load_default="", validate=validate.Length(max=500_000))
    department = fields.String(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "所属部门代码；只在一个部门有起草权限时可省略"},
    )


class InterpretationUpdateSchema(Schema):
    title = fields.String(validate=validate.Length(max=300))
    form = _choice(FORMS, validate=validate.Length(max=20))
    interpreter_kind = _choice(INTERPRETER_KINDS, validate=validate.Length(max=20))
    interpreter_name = fields.String(allow_none=True, validate=validate.Length(max=100))
    summary = fields.String(allow_none=True, validate=validate.Length(max=2000))
    body = fields.String(validate=validate.Length(max=500_000))
    key_points = fields.List(fields.String(validate=validate.Length(min=1, max=500)), allow_none=True,
                             validate=validate.Length(max=50))
    text_alternative = fields.String(allow_none=True, validate=validate.Length(max=100_000))
    transcript = fields.String(allow_none=True, validate=validate.Length(max=500_000))
    media_url = fields.Url(allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500))


class InterpretationCreateSchema(InterpretationUpdateSchema):
    title = fields.String(required=True, validate=validate.Length(max=300))
    form = _choice(FORMS, required=True, validate=validate.Length(max=20))
    interpreter_kind = _choice(INTERPRETER_KINDS, required=True, validate=validate.Length(max=20))
    body = fields.String(load_default="", validate=validate.Length(max=500_000))
    department = fields.String(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "所属部门代码；只在一个部门有起草权限时可省略"},
    )


class PublishArgsSchema(Schema):
    publish_at = fields.AwareDateTime(
        load_default=None, allow_none=True, default_timezone=CHINA,
        metadata={"description": "定时发布时间（ISO 8601；不带时区按北京时间）；省略则立即发布"},
    )


class PolicyLinkArgsSchema(Schema):
    policy_id = record_id(required=True)


class RelatedArgsSchema(Schema):
    related_id = record_id(required=True)
