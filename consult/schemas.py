"""Schemas of the consult API: what the public sends and sees, and the staff API."""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate

from consult.workflow import MAX_EXTENSION_DAYS, NOTE_MAX, QUESTION_MAX, RATINGS, REJECTION_REASONS, REPLY_MAX
from services.public_read import parse_month
from services.schemas import (
    DocumentPageSchema,
    IndexPageArgsSchema,
    PageArgsSchema,
    PublicDocumentSchema,
    record_id,
)

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


def _month_with_a_year(value: str) -> None:
    """A ``YYYY-MM`` the calendar has (``0000-01`` matched the pattern and then failed in the lookup: a 500)."""
    if not re.match(MONTH, value):
        return  # the pattern's own message says it
    try:
        parse_month(value)
    except ValueError:
        raise ValidationError("月份格式为 YYYY-MM，例如 2026-10 / month must be YYYY-MM") from None


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空 / must not be blank")


# -- published answers and statistics --------------------------------------------------------


class AnswerListArgsSchema(IndexPageArgsSchema):
    department = fields.String(validate=validate.Length(max=40))
    category = fields.String(validate=validate.Length(max=100))
    month = fields.String(validate=[validate.Regexp(MONTH, error="月份格式为 YYYY-MM"), _month_with_a_year])


class PublicAnswerSchema(PublicDocumentSchema):
    question = fields.String()
    reply = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    received_at = fields.String()
    replied_at = fields.String(allow_none=True)


class AnswerPageSchema(DocumentPageSchema):
    pass


class StatisticsArgsSchema(Schema):
    year = fields.Integer(validate=validate.Range(min=2000, max=2100))


class CategorySchema(Schema):
    name = fields.String()
    department = fields.String(allow_none=True)


class CategoryListSchema(Schema):
    categories = fields.List(fields.Nested(CategorySchema))
    rejection_reasons = fields.Dict(keys=fields.String(), values=fields.String())
    ratings = fields.Dict(keys=fields.String(), values=fields.String())


# -- category suggestion ----------------------------------------------------------------------

CLASSIFY_MAX_CHARS = 5000


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


# -- the asker ----------------------------------------------------------------------------------


class SubmissionSchema(Schema):
    """A question from the public. Lengths and formats are checked by the workflow (one set of rules
    for the form and the API); here only the types and the outer bounds."""

    title = fields.String(required=True, validate=validate.Length(max=1000))
    question = fields.String(required=True, validate=validate.Length(max=QUESTION_MAX * 2))
    name = fields.String(required=True, validate=validate.Length(max=500))
    phone = fields.String(allow_none=True, validate=validate.Length(max=100))
    email = fields.String(allow_none=True, validate=validate.Length(max=500))
    category = fields.String(allow_none=True, validate=validate.Length(max=200))
    consent_to_publish = fields.Boolean(load_default=False)
    website = fields.String(allow_none=True, metadata={"description": "leave empty (a field people never see)"})


class SubmissionResultSchema(Schema):
    tracking_number = fields.String()
    query_code = fields.String(allow_none=True, metadata={"description": "shown once; null for a duplicate"})
    deadline = fields.Date(allow_none=True, metadata={"description": "acceptance deadline (受理期限)"})
    duplicate = fields.Boolean()
    warnings = fields.List(fields.String())


class QueryCodeArgsSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=40))


class RatingSchema(QueryCodeArgsSchema):
    rating = fields.String(required=True, validate=validate.OneOf(list(RATINGS)))
    comment = fields.String(allow_none=True, validate=validate.Length(max=NOTE_MAX))


class ReopenSchema(QueryCodeArgsSchema):
    reason = fields.String(allow_none=True, validate=validate.Length(max=NOTE_MAX))


class InformationSchema(QueryCodeArgsSchema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=QUESTION_MAX))


class PublicStepSchema(Schema):
    at = fields.DateTime()
    action = fields.String()
    label = fields.String()
    note = fields.String(allow_none=True)


class TrackingSchema(Schema):
    """What the asker sees with the tracking number and query code (their own reply unredacted)."""

    tracking_number = fields.String()
    title = fields.String()
    question = fields.String()
    state = fields.String()
    state_label = fields.String()
    category = fields.String(allow_none=True)
    received_at = fields.DateTime()
    deadline = fields.Date(allow_none=True)
    deadline_status = fields.String(allow_none=True)
    deadline_warning = fields.String(allow_none=True)
    info_request = fields.String(allow_none=True)
    reply = fields.String(allow_none=True)
    replied_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    referral = fields.String(allow_none=True)
    rating = fields.String(allow_none=True)
    can_rate = fields.Boolean()
    can_reopen_until = fields.DateTime(allow_none=True)
    steps = fields.List(fields.Nested(PublicStepSchema))


# -- the staff API ------------------------------------------------------------------------------


class InboxArgsSchema(PageArgsSchema):
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    state = fields.String(validate=validate.Length(max=20))
    department = fields.String(validate=validate.Length(max=40))
    category = fields.String(validate=validate.Length(max=100))
    due = fields.String(validate=validate.OneOf(["overdue", "due_soon", "paused", "on_time"]))
    flagged = fields.Boolean()
    needs_routing = fields.Boolean()


class StepSchema(Schema):
    at = fields.DateTime()
    action = fields.String()
    from_state = fields.String(allow_none=True)
    to_state = fields.String()
    department = fields.String(allow_none=True)
    actor_name = fields.String()
    detail = fields.String(allow_none=True)
    public = fields.Boolean()
    public_note = fields.String(allow_none=True)


class NoteSchema(Schema):
    id = fields.Integer()
    author_name = fields.String()
    body = fields.String()
    created_at = fields.DateTime()


class ExtensionSchema(Schema):
    id = fields.Integer()
    working_days = fields.Integer()
    reason = fields.String()
    requested_by = fields.String()
    status = fields.String()
    decided_by = fields.String(allow_none=True)
    decision_note = fields.String(allow_none=True)
    requested_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


class ConsultationSummarySchema(Schema):
    id = fields.Integer()
    tracking_number = fields.String()
    title = fields.String()
    category = fields.String(allow_none=True)
    department = fields.String(allow_none=True)
    state = fields.String()
    state_label = fields.String()
    handler_id = fields.Integer(allow_none=True)
    handler_name = fields.String(allow_none=True)
    received_at = fields.DateTime()
    deadline = fields.Date(allow_none=True)
    deadline_status = fields.String(allow_none=True)
    needs_routing = fields.Boolean()
    flagged = fields.Boolean()
    version = fields.Integer()


class InboxSchema(Schema):
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    items = fields.List(fields.Nested(ConsultationSummarySchema))


class ConsultationDetailSchema(ConsultationSummarySchema):
    question = fields.String()
    name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    consent_to_publish = fields.Boolean()
    category_source = fields.String(allow_none=True)
    category_confidence = fields.Float(allow_none=True)
    sensitive_terms = fields.String(allow_none=True)
    accept_due = fields.Date(allow_none=True)
    reply_due = fields.Date(allow_none=True)
    deadline_warning = fields.String(allow_none=True)
    paused_working_days = fields.Integer()
    extension_working_days = fields.Integer()
    info_request = fields.String(allow_none=True)
    info_response = fields.String(allow_none=True)
    reply_draft = fields.String(allow_none=True)
    reply = fields.String(allow_none=True)
    published_question = fields.String(allow_none=True)
    published_reply = fields.String(allow_none=True)
    redaction_confirmed_by = fields.String(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    referral = fields.String(allow_none=True)
    rating = fields.String(allow_none=True)
    rating_comment = fields.String(allow_none=True)
    reopen_count = fields.Integer()
    accepted_at = fields.DateTime(allow_none=True)
    replied_at = fields.DateTime(allow_none=True)
    published_at = fields.DateTime(allow_none=True)
    allowed_actions = fields.List(fields.String())
    steps = fields.List(fields.Nested(StepSchema))
    notes = fields.List(fields.Nested(NoteSchema))
    extensions = fields.List(fields.Nested(ExtensionSchema))
    attachments = fields.List(fields.Dict())


class EmptySchema(Schema):
    pass


class RouteSchema(Schema):
    department = fields.String(required=True, validate=validate.Length(min=1, max=40))
    category = fields.String(allow_none=True, validate=validate.Length(max=100))


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(list(REJECTION_REASONS)))
    referral = fields.String(allow_none=True, validate=validate.Length(max=300))
    note = fields.String(allow_none=True, validate=validate.Length(max=NOTE_MAX))


class AssignSchema(Schema):
    handler_id = record_id(allow_none=True, metadata={"description": "omit to take the case yourself"})
    handler_name = fields.String(allow_none=True, validate=validate.Length(max=100))


class BulkAssignSchema(AssignSchema):
    consultation_ids = fields.List(record_id(), required=True, validate=validate.Length(min=1, max=200))


class BulkAssignResultSchema(Schema):
    assigned = fields.List(fields.String())


class TransferSchema(Schema):
    department = fields.String(required=True, validate=validate.Length(min=1, max=40))
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=NOTE_MAX), _not_blank])


class DraftSchema(Schema):
    reply = fields.String(required=True, validate=validate.Length(max=REPLY_MAX))


class TextSchema(Schema):
    """A required short text: the question to the asker, the reason, the note."""

    text = fields.String(required=True, validate=[validate.Length(min=1, max=NOTE_MAX), _not_blank])


class OptionalTextSchema(Schema):
    text = fields.String(allow_none=True, validate=validate.Length(max=NOTE_MAX))


class RedactionSchema(Schema):
    published_question = fields.String(required=True, validate=validate.Length(min=1, max=QUESTION_MAX + 200))
    published_reply = fields.String(required=True, validate=validate.Length(min=1, max=REPLY_MAX))


class FindingSchema(Schema):
    kind = fields.String()
    start = fields.Integer()
    end = fields.Integer()
    text = fields.String()
    confidence = fields.Float()


class PersonalDataReviewSchema(Schema):
    question_findings = fields.List(fields.Nested(FindingSchema))
    reply_findings = fields.List(fields.Nested(FindingSchema))
    proposed_question = fields.String()
    proposed_reply = fields.String()


class ExtensionRequestSchema(Schema):
    working_days = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_EXTENSION_DAYS))
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=NOTE_MAX), _not_blank])


class ExtensionDecisionSchema(Schema):
    approve = fields.Boolean(required=True)
    note = fields.String(allow_none=True, validate=validate.Length(max=NOTE_MAX))


class ExportArgsSchema(Schema):
    start = fields.Date(data_key="from", metadata={"description": "default: the first day of this month"})
    end = fields.Date(data_key="to", metadata={"description": "default: today (Beijing)"})
    department = fields.String(validate=validate.Length(max=40))
