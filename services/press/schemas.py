"""Schemas of the press API (``/api/press/...``).

Choices (kind, state) are listed in the OpenAPI document; the business rules in the press
modules check what marshmallow cannot (required fields per kind, addresses, links) and answer in
Chinese with the same error shape.
"""

from __future__ import annotations

from datetime import date, datetime

from marshmallow import Schema, ValidationError, fields, validate

from services.press import dashboard as _dashboard
from services.press import rules as _rules
from services.press.workflow import ACTIONS, KIND_LABELS, MAX_LINKS, MAX_OUTLET, MAX_TITLE, MAX_URL
from services.schemas import PageArgsSchema, record_id
from services.workflow import ReviewState

# == responses to public concerns (回应关切) and media focus items (媒体聚焦) — helper B =============

RESPONSE_STATES = tuple(state.value for state in ReviewState)


class ResponseListArgsSchema(PageArgsSchema):
    state = fields.String(validate=validate.OneOf(RESPONSE_STATES))
    kind = fields.String(validate=validate.OneOf(tuple(KIND_LABELS)))
    department = fields.String(validate=validate.Length(min=1, max=32))
    q = fields.String(validate=validate.Length(min=1, max=100), metadata={"description": "标题包含的文字"})


class ResponseUpdateSchema(Schema):
    kind = fields.String(metadata={"enum": list(KIND_LABELS),
                                   "description": "response 回应关切 / media_focus 媒体聚焦"})
    title = fields.String(validate=validate.Length(max=MAX_TITLE))
    summary = fields.String(validate=validate.Length(max=4000))
    body = fields.String(validate=validate.Length(max=200_000), metadata={"description": "富文本（HTML，保存前清理）"})
    outlet = fields.String(allow_none=True, validate=validate.Length(max=MAX_OUTLET),
                           metadata={"description": "媒体聚焦：媒体名称"})
    published_on = fields.Date(allow_none=True, metadata={"description": "媒体聚焦：报道日期"})
    url = fields.String(allow_none=True, validate=validate.Length(max=MAX_URL),
                        metadata={"description": "媒体聚焦：原文地址（http/https）"})
    topic_ids = fields.List(record_id(), validate=validate.Length(max=MAX_LINKS),
                            metadata={"description": "关联的热点话题（替换原有关联）"})
    policy_ids = fields.List(fields.String(validate=validate.Length(max=40)), validate=validate.Length(max=MAX_LINKS),
                             metadata={"description": "关联的政策文件：搜索文档编号，如 policy-12（替换原有关联）"})


class ResponseCreateSchema(ResponseUpdateSchema):
    kind = fields.String(required=True, metadata={"enum": list(KIND_LABELS)})
    title = fields.String(required=True, validate=validate.Length(max=MAX_TITLE))
    department = fields.String(validate=validate.Length(min=1, max=32),
                               metadata={"description": "所属部门；只在一个部门任新闻宣传时可省略"})


class ResponseActionArgsSchema(Schema):
    comment = fields.String(validate=validate.Length(max=2000), metadata={"description": "意见（如退回理由）"})


class PolicyRefSchema(Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)


class ResponseStepSchema(Schema):
    action = fields.String(required=True)
    from_state = fields.String(allow_none=True)
    to_state = fields.String(required=True)
    actor_name = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    at = fields.DateTime(required=True)


class ResponseSummarySchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    title = fields.String(required=True)
    department = fields.String(allow_none=True)
    state = fields.String(required=True)
    version = fields.Integer(required=True)
    author_name = fields.String(allow_none=True)
    updated_at = fields.DateTime(allow_none=True)
    published_at = fields.DateTime(allow_none=True)


class ResponseSchema(ResponseSummarySchema):
    summary = fields.String()
    body = fields.String()
    outlet = fields.String(allow_none=True)
    published_on = fields.Date(allow_none=True)
    url = fields.String(allow_none=True)
    reviewer_name = fields.String(allow_none=True)
    created_at = fields.DateTime()
    topic_ids = fields.List(fields.Integer())
    policy_refs = fields.List(fields.Nested(PolicyRefSchema))
    public_url = fields.String(allow_none=True, metadata={"description": "公开页面（已发布时）"})
    allowed_actions = fields.List(fields.String(metadata={"enum": list(ACTIONS)}),
                                  metadata={"description": "当前状态下调用者可执行的操作"})
    history = fields.List(fields.Nested(ResponseStepSchema))


class ResponseListSchema(Schema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    items = fields.List(fields.Nested(ResponseSummarySchema), required=True)


# == end of helper B's schemas ===========================================================================


# == the press office console: topics, alerts, alert rules, recompute — helper C ===========================
# (imports local to this section so that it stands apart from the responses' schemas above)



def _not_in_the_future(day: date) -> None:
    if day > datetime.now(_dashboard.BEIJING).date():
        raise ValidationError("截至日期不能晚于今天")
    if day.year < 2000:
        raise ValidationError("截至日期不能早于 2000 年")


class TopicListArgsSchema(Schema):
    window = fields.String(load_default="7d", validate=validate.OneOf(tuple(_dashboard.WINDOWS)),
                           metadata={"description": "24h（小时桶）、7d 或 30d（天桶）"})
    department = fields.String(validate=validate.Length(min=1, max=40))
    category = fields.String(validate=validate.Length(min=1, max=100))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    as_of = fields.Date(validate=_not_in_the_future, metadata={
        "description": "截至日期（北京时间，YYYY-MM-DD）：窗口以该日结束；默认为现在"})


class TopicDetailArgsSchema(Schema):
    window = fields.String(load_default="7d", validate=validate.OneOf(tuple(_dashboard.WINDOWS)))
    as_of = fields.Date(validate=_not_in_the_future)


class TopicMessagesArgsSchema(PageArgsSchema):
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class AlertClockSchema(Schema):
    id = fields.Integer()
    topic_id = fields.Integer()
    topic_label = fields.String()
    rule_id = fields.Integer()
    rule_name = fields.String()
    rule_kind = fields.String()
    reason = fields.String()
    fired_at = fields.DateTime()
    response_due = fields.DateTime(metadata={"description": "回应时限"})
    responded_at = fields.DateTime(allow_none=True)
    response_id = fields.Integer(allow_none=True)
    open = fields.Boolean(metadata={"description": "尚未回应：计时中"})
    overdue = fields.Boolean()
    status = fields.String(metadata={"enum": ["running", "overdue", "responded"]})
    remaining_hours = fields.Float(metadata={"description": "距回应时限的小时数，超时为负"})


class AlertListArgsSchema(Schema):
    open = fields.Boolean(load_default=False, metadata={"description": "只列计时中的预警"})


class AlertListSchema(Schema):
    items = fields.List(fields.Nested(AlertClockSchema))


class LinkedResponseSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    title = fields.String()
    state = fields.String()
    published_at = fields.DateTime(allow_none=True)


class TopicTrendSchema(Schema):
    id = fields.Integer()
    label = fields.String()
    keywords = fields.List(fields.String(), metadata={"description": "共同关键词：为什么这些留言归为一个话题"})
    size = fields.Integer()
    askers = fields.Integer()
    likes = fields.Integer()
    current = fields.Integer(metadata={"description": "本窗口留言数"})
    previous = fields.Integer(metadata={"description": "上一窗口留言数"})
    baseline = fields.Integer()
    burst = fields.Float()
    hotness = fields.Float()
    first_at = fields.DateTime(allow_none=True)
    last_at = fields.DateTime(allow_none=True)
    counts = fields.List(fields.Integer(), metadata={"description": "本窗口每个时间桶的留言数"})
    departments = fields.List(fields.String())
    categories = fields.List(fields.String())
    samples = fields.List(fields.String(), metadata={"description": "样例问题（已隐去个人信息）"})
    responded = fields.Boolean()
    emergency = fields.Boolean()
    responses = fields.List(fields.Nested(LinkedResponseSchema))
    open_alerts = fields.List(fields.Nested(AlertClockSchema))


class TopicListSchema(Schema):
    window = fields.String()
    start = fields.DateTime()
    end = fields.DateTime()
    now = fields.DateTime()
    department = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    buckets = fields.List(fields.DateTime())
    bucket_labels = fields.List(fields.String())
    topics = fields.List(fields.Nested(TopicTrendSchema))


class LinkedDocumentSchema(Schema):
    id = fields.String()
    doc_type = fields.String()
    title = fields.String()
    summary = fields.String()
    url = fields.String()
    published_at = fields.String(allow_none=True)


class TopicDetailSchema(Schema):
    id = fields.Integer()
    label = fields.String()
    keywords = fields.List(fields.String())
    size = fields.Integer()
    askers = fields.Integer()
    likes = fields.Integer()
    near_duplicates = fields.Integer()
    departments = fields.List(fields.String())
    categories = fields.List(fields.String())
    first_at = fields.DateTime(allow_none=True)
    last_at = fields.DateTime(allow_none=True)
    emergency = fields.Boolean()
    window = fields.String()
    buckets = fields.List(fields.DateTime())
    bucket_labels = fields.List(fields.String())
    trend = fields.Nested(TopicTrendSchema, allow_none=True)
    responded = fields.Boolean()
    responses = fields.List(fields.Nested(LinkedResponseSchema))
    alerts = fields.List(fields.Nested(AlertClockSchema))
    linked_documents = fields.List(fields.Nested(LinkedDocumentSchema),
                                   metadata={"description": "相关的咨询回复和政策解读（搜索索引）"})
    search_available = fields.Boolean()


class TopicMessageSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    excerpt = fields.String()
    department = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    received_at = fields.DateTime()
    likes = fields.Integer()


class TopicMessagePageSchema(Schema):
    items = fields.List(fields.Nested(TopicMessageSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    pages = fields.Integer()


class AlertRuleInputSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=_rules.NAME_MAX))
    kind = fields.String(required=True, validate=validate.OneOf(_rules.KINDS),
                         metadata={"description": "growth 话题增长 / emergency 紧急词"})
    min_messages = fields.Integer(load_default=10, validate=validate.Range(min=1))
    within_hours = fields.Integer(load_default=24, validate=validate.Range(*_rules.HOURS_RANGE))
    min_burst = fields.Float(load_default=3.0, validate=validate.Range(min=0, max=_rules.MIN_BURST_MAX))
    terms = fields.List(fields.String(validate=validate.Length(min=1, max=_rules.TERM_MAX)), load_default=list,
                        validate=validate.Length(max=_rules.TERMS_MAX),
                        metadata={"description": "紧急词（emergency 必填）"})
    response_hours = fields.Integer(load_default=None, allow_none=True,
                                    validate=validate.Range(*_rules.HOURS_RANGE),
                                    metadata={"description": "回应时限（小时）；缺省 growth 48、emergency 5"})
    email_to = fields.List(fields.Email(), load_default=list, validate=validate.Length(max=_rules.EMAILS_MAX))
    webhook_url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"}, require_tld=False,
                             validate=validate.Length(max=_rules.WEBHOOK_MAX))
    enabled = fields.Boolean(load_default=True)


class AlertRuleSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    min_messages = fields.Integer()
    within_hours = fields.Integer()
    min_burst = fields.Float()
    terms = fields.List(fields.String())
    response_hours = fields.Integer()
    email_to = fields.List(fields.String())
    webhook_url = fields.String(allow_none=True)
    enabled = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class AlertRuleListSchema(Schema):
    items = fields.List(fields.Nested(AlertRuleSchema))


class RecomputeStatusSchema(Schema):
    id = fields.Integer(allow_none=True)
    state = fields.String(metadata={"enum": ["none", "running", "finished", "failed"]})
    stage = fields.String(allow_none=True)
    done = fields.Integer()
    total = fields.Integer()
    percent = fields.Float()
    error = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


# == end of helper C's schemas ===========================================================================
