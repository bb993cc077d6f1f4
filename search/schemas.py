"""Schemas of the search API.

Query arguments are strict: an unknown parameter is refused (422, naming it) rather than
silently ignored, so a misspelt filter never looks like "no filter". Empty values
(``department=`` from a form) mean "not given".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from search.documents import DOC_TYPES
from search.models import DOC_ID_MAX, QUERY_MAX
from services.schemas import PublicDocumentSchema
from services.searchengine.port import MAX_RESULT_WINDOW

MAX_QUERY_LENGTH = QUERY_MAX
MAX_PER_PAGE = 50
MAX_FILTER_LENGTH = 100
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2100, 12, 31)
LOCALES = ("zh_CN", "en")
MULTI_VALUED = frozenset({"type"})


def _type_field() -> fields.List[Any]:
    return fields.List(
        fields.String(validate=validate.OneOf(DOC_TYPES, error="未知的类型 / unknown type: {input}")),
        load_default=list,
        validate=validate.Length(max=len(DOC_TYPES)),
        metadata={"description": "文档类型，可多选 / document types: " + ", ".join(DOC_TYPES)},
    )


class StrictQuerySchema(Schema):
    """Unknown query parameters are errors; empty ones are left out."""

    class Meta:
        unknown = RAISE

    lang = fields.String(validate=validate.OneOf(LOCALES), metadata={"description": "zh_CN 或 en"})

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **_kwargs: Any) -> dict[str, Any]:
        cleaned: dict[str, Any] = {}
        for key in data:
            value = data[key]
            if isinstance(value, list | tuple):
                value = [item for item in value if item not in ("", None)]
                if not value:
                    continue
            elif value in ("", None):
                continue
            cleaned[key] = value
        return cleaned


class SearchArgsSchema(StrictQuerySchema):
    q = fields.String(load_default="", validate=validate.Length(max=MAX_QUERY_LENGTH),
                      metadata={"description": f"搜索词，不超过 {MAX_QUERY_LENGTH} 字 / query text"})
    type = _type_field()
    department = fields.String(validate=validate.Length(max=MAX_FILTER_LENGTH))
    level = fields.String(validate=validate.Length(max=MAX_FILTER_LENGTH))
    form = fields.String(validate=validate.Length(max=MAX_FILTER_LENGTH))
    category = fields.String(validate=validate.Length(max=MAX_FILTER_LENGTH))
    validity = fields.String(validate=validate.Length(max=MAX_FILTER_LENGTH))
    date_from = fields.Date(validate=validate.Range(min=EARLIEST_DAY, max=LATEST_DAY),
                            metadata={"description": "发布日期起 YYYY-MM-DD（北京时间）"})
    date_to = fields.Date(validate=validate.Range(min=EARLIEST_DAY, max=LATEST_DAY),
                          metadata={"description": "发布日期止 YYYY-MM-DD（含当天）"})
    sort = fields.String(load_default="relevance", validate=validate.OneOf(("relevance", "date")))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_PER_PAGE))
    debug = fields.Boolean(load_default=False,
                           metadata={"description": "工作人员（Bearer 令牌）可看每条结果的评分说明 / staff only"})

    @validates_schema
    def _check_window(self, data: dict[str, Any], **_kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        page, per_page = data.get("page"), data.get("per_page")
        if isinstance(page, int) and isinstance(per_page, int) and page * per_page > MAX_RESULT_WINDOW:
            errors["page"] = [f"最多查看前 {MAX_RESULT_WINDOW} 条结果：每页 {per_page} 条时页码不超过 "
                              f"{MAX_RESULT_WINDOW // per_page} / page * per_page may not exceed {MAX_RESULT_WINDOW}"]
        date_from, date_to = data.get("date_from"), data.get("date_to")
        if date_from and date_to and date_from > date_to:
            errors["date_to"] = ["结束日期不能早于开始日期 / date_to is before date_from"]
        if errors:
            raise ValidationError(errors)


def _empty_means_not_given(
    _converter: Any, field: fields.Field[Any], ret: dict[str, Any], **_kwargs: Any
) -> dict[str, Any]:
    """``allowEmptyValue`` on the query parameters of a :class:`StrictQuerySchema`, which reads ``lang=`` (an
    empty form field) as not given: said in the OpenAPI document, not only here (the API fuzzing sent
    ``lang=`` and found it accepted, against an enum that had no empty value)."""
    if ret.get("in") == "query" and isinstance(field.parent, StrictQuerySchema):
        return {"allowEmptyValue": True}
    return {}


def document_empty_values(rest: Any) -> None:
    """Install :func:`_empty_means_not_given` on a flask-smorest ``Api`` before its blueprints are registered."""
    rest.ma_plugin.converter.add_parameter_attribute_function(_empty_means_not_given)


class SuggestArgsSchema(StrictQuerySchema):
    q = fields.String(load_default="", validate=validate.Length(max=MAX_QUERY_LENGTH))
    type = _type_field()


class RelatedArgsSchema(StrictQuerySchema):
    type = _type_field()


class SearchHitSchema(PublicDocumentSchema):
    type_label = fields.String(required=True, metadata={"description": "类型名称，如 政策文件"})
    score = fields.Float(allow_none=True)
    highlights = fields.Dict(keys=fields.String(), values=fields.String(),
                             metadata={"description": "字段 -> 安全的 HTML 片段（已转义，命中处为 <mark>）"})
    pinned = fields.Boolean(metadata={"description": "推荐（置顶）结果"})
    pin_label = fields.String(allow_none=True)
    explanation = fields.Dict(allow_none=True, metadata={"description": "评分说明（仅工作人员调试模式）"})


class SearchResultSchema(Schema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    hits = fields.List(fields.Nested(SearchHitSchema), required=True)
    facets = fields.Dict(keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.Integer()),
                         required=True, metadata={"description": "字段 -> 取值 -> 结果数"})
    debug = fields.Dict(metadata={"description": "仅工作人员调试模式"})


class SuggestionSchema(Schema):
    kind = fields.String(required=True, metadata={"description": "query（热门搜索）或 title（文档标题）"})
    text = fields.String(required=True)
    url = fields.String(required=True)
    doc_id = fields.String()
    doc_type = fields.String()
    type_label = fields.String()


class SuggestResultSchema(Schema):
    suggestions = fields.List(fields.Nested(SuggestionSchema), required=True)


class RelatedResultSchema(Schema):
    hits = fields.List(fields.Nested(SearchHitSchema), required=True)


def valid_doc_id(doc_id: str) -> bool:
    return 0 < len(doc_id) <= DOC_ID_MAX and doc_id.isprintable()


def form_args(args: Any) -> dict[str, Any]:
    """Query arguments of a page request shaped like webargs hands them to a schema."""
    return {key: (args.getlist(key) if key in MULTI_VALUED else args.get(key)) for key in args}

