"""Responses to public concerns (回应关切) and media focus items (媒体聚焦): the rules that change them.

They go through the same review workflow as interpret's policies and interpretations
(``services.workflow.REVIEW_WORKFLOW``): a press officer drafts and submits, a reviewer of the
department returns or approves (never what they wrote or submitted themselves), and the press
office publishes and withdraws what was approved -- the response is the office's own voice, so
publishing is the press officer's step (``Permission.PRESS``), not the disclosure office's.

The API, the pages and any command call these functions; each checks the actor's permission in the
response's department, applies one transition of the table, bumps ``version``, appends a
``ResponseStep`` to the history and writes the outbox events (search index, audit) in the caller's
transaction. They only flush: the caller commits once.

What the index holds is :func:`response_document`, versioned by ``Response.version`` (every change
bumps it, so a later event always carries a higher version). There is no kept snapshot of a
published version: revising (or editing) a published response takes it off the public pages and
search until the new version is published.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.db import utcnow
from services.outbox import emit
from services.permissions import GRANTS, Permission, require
from services.press.alerts import record_response
from services.press.models import OutboxEvent, Response, ResponseStep, ResponseTopic, Topic
from services.text.pii import BANK_CARD, EMAIL, ID_CARD, PHONE, redact
from services.text.richtext import has_markup_beyond_allowed, plain_text, sanitise_html
from services.workflow import (
    REVIEW_ACTION_LABELS,
    REVIEW_STATE_LABELS,
    REVIEW_WORKFLOW,
    ContentProblem,
    ReviewState,
    problem,
)

S = ReviewState
WORKFLOW = REVIEW_WORKFLOW
STATE_LABELS = REVIEW_STATE_LABELS
ACTION_LABELS = REVIEW_ACTION_LABELS
ACTIONS: tuple[str, ...] = ("submit", "return", "approve", "publish", "withdraw", "revise")

ACTION_PERMISSION: dict[str, Permission] = {
    "submit": Permission.PRESS,
    "revise": Permission.PRESS,
    "return": Permission.REVIEW,
    "approve": Permission.REVIEW,
    "publish": Permission.PRESS,
    "withdraw": Permission.PRESS,
}
"""Who takes each step, in the response's department (see the module docstring)."""

KIND_LABELS: dict[str, str] = {"response": "回应关切", "media_focus": "媒体聚焦"}
DOC_TYPE = "press_response"
DOC_PREFIX = f"{DOC_TYPE}-"

MAX_TITLE = 200
MAX_SUMMARY = 2000
MAX_OUTLET = 100
MAX_URL = 500
MAX_LINKS = 50
PUBLIC_PII = (PHONE, ID_CARD, EMAIL, BANK_CARD)
"""Personal data that never reaches a published response, whoever wrote it in."""
_POLICY_ID = re.compile(r"^policy-\d{1,12}$")

PolicyLookup = Callable[[str], dict[str, Any] | None]
"""A search document by id (``SearchEngine.get_document`` on the content alias), or None."""


@dataclass
class ResponseFields:
    kind: str
    title: str
    summary: str = ""
    body: str = ""
    outlet: str | None = None
    published_on: date | None = None
    url: str | None = None


FIELD_NAMES = tuple(ResponseFields.__dataclass_fields__)


def _clean(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def check_fields(fields: ResponseFields) -> ResponseFields:
    """The fields normalised, or ContentProblem with every field error at once."""
    errors: dict[str, list[str]] = {}
    fields.title = (fields.title or "").strip()
    fields.summary = (fields.summary or "").strip()
    fields.body = fields.body or ""
    fields.outlet, fields.url = _clean(fields.outlet), _clean(fields.url)
    if fields.kind not in KIND_LABELS:
        errors.setdefault("kind", []).append(f"类型应为 {'、'.join(KIND_LABELS)} 之一（回应关切 / 媒体聚焦）")
    if not fields.title:
        errors.setdefault("title", []).append("请填写标题")
    elif len(fields.title) > MAX_TITLE:
        errors.setdefault("title", []).append(f"标题不能超过 {MAX_TITLE} 字")
    if len(fields.summary) > MAX_SUMMARY:
        errors.setdefault("summary", []).append(f"摘要不能超过 {MAX_SUMMARY} 字")
    if fields.body and has_markup_beyond_allowed(fields.body):
        errors.setdefault("body", []).append("正文含有不允许的标记（如脚本），请删除后再保存")
    if fields.outlet and len(fields.outlet) > MAX_OUTLET:
        errors.setdefault("outlet", []).append(f"媒体名称不能超过 {MAX_OUTLET} 字")
    if fields.url:
        parts = urlsplit(fields.url)
        if len(fields.url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.netloc:
            errors.setdefault("url", []).append("原文地址须为 http:// 或 https:// 开头的网址")
    if fields.kind == "media_focus":
        if not fields.outlet:
            errors.setdefault("outlet", []).append("媒体聚焦须填写媒体名称")
        if fields.published_on is None:
            errors.setdefault("published_on", []).append("媒体聚焦须填写报道日期")
        elif fields.published_on > utcnow().date():
            errors.setdefault("published_on", []).append("报道日期不能晚于今天")
        if not fields.url:
            errors.setdefault("url", []).append("媒体聚焦须填写原文地址")
        if not fields.summary:
            errors.setdefault("summary", []).append("媒体聚焦须填写摘要")
    if errors:
        raise ContentProblem(errors)
    fields.body = sanitise_html(fields.body) if fields.body else ""
    return fields


def check_topics(session: Session, topic_ids: Iterable[int]) -> list[int]:
    """Existing topic ids, in the order given (duplicates dropped)."""
    wanted = list(dict.fromkeys(topic_ids))
    if len(wanted) > MAX_LINKS:
        raise problem("topic_ids", f"最多关联 {MAX_LINKS} 个话题")
    if not wanted:
        return []
    found = set(session.scalars(select(Topic.id).where(Topic.id.in_(wanted))))
    missing = [str(topic_id) for topic_id in wanted if topic_id not in found]
    if missing:
        raise problem("topic_ids", f"话题不存在：{'、'.join(missing)}")
    return wanted


def check_policies(lookup: PolicyLookup, policy_ids: Iterable[str]) -> list[dict[str, Any]]:
    """``{"id", "title"}`` of each published policy in the shared index (search document ids such as
    ``policy-12``), or ContentProblem naming those that are not."""
    wanted = list(dict.fromkeys(policy_id.strip() for policy_id in policy_ids))
    if len(wanted) > MAX_LINKS:
        raise problem("policy_ids", f"最多关联 {MAX_LINKS} 个政策文件")
    refs: list[dict[str, Any]] = []
    missing: list[str] = []
    for policy_id in wanted:
        document = lookup(policy_id) if _POLICY_ID.match(policy_id) else None
        if not document or document.get("deleted") or document.get("doc_type") != "policy":
            missing.append(policy_id[:40])
        else:
            refs.append({"id": policy_id, "title": str(document.get("title") or "")})
    if missing:
        raise problem("policy_ids", f"未找到已发布的政策文件：{'、'.join(missing)}")
    return refs


def index_lookup(engine: Any, alias: str) -> PolicyLookup:
    """A :data:`PolicyLookup` on the shared index (``engine`` is a ``SearchEngine``)."""

    def lookup(doc_id: str) -> dict[str, Any] | None:
        document: dict[str, Any] | None = engine.get_document(alias, doc_id)
        return document

    return lookup


# -- creation and editing -------------------------------------------------------------------------


def department_for_new(actor: StaffIdentity, requested: str | None) -> str:
    """The department a new response belongs to: as asked, or the one where the actor is press officer."""
    if requested:
        return requested
    press = sorted({grant.department for grant in actor.grants if grant.role in GRANTS[Permission.PRESS]})
    if len(press) != 1:
        raise problem("department", "请指明所属部门")
    return press[0]


def create_response(
    session: Session,
    actor: StaffIdentity,
    fields: ResponseFields,
    department: str,
    *,
    topic_ids: Iterable[int] = (),
    policy_refs: list[dict[str, Any]] | None = None,
) -> Response:
    """A draft response; ``policy_refs`` as :func:`check_policies` answers them."""
    require(actor.grants, Permission.PRESS, department)
    check_fields(fields)
    topics = check_topics(session, topic_ids)
    response = Response(
        **{name: getattr(fields, name) for name in FIELD_NAMES},
        department=department, policy_refs=list(policy_refs or []), state=S.DRAFT.value, version=1,
        author_id=actor.user_id, author_name=actor.username, last_writer_id=actor.user_id,
    )
    session.add(response)
    session.flush()
    _set_topics(session, response, topics)
    _step(session, actor, response, "create", None)
    _audit(session, actor, "create", response)
    return response


def update_response(
    session: Session,
    actor: StaffIdentity,
    response: Response,
    changes: dict[str, Any],
    *,
    topic_ids: Iterable[int] | None = None,
    policy_refs: list[dict[str, Any]] | None = None,
) -> Response:
    """Edit a draft (fields absent from ``changes`` keep their value; ``topic_ids`` / ``policy_refs``
    None keep the links). A published or withdrawn response is revised into a new draft first."""
    require(actor.grants, Permission.PRESS, response.department)
    if response.state in (S.PUBLISHED, S.WITHDRAWN):
        transition(session, actor, response, "revise")
    if response.state != S.DRAFT:
        raise problem("state", "只有草稿可以修改；已提交的请先退回")
    fields = check_fields(ResponseFields(**{name: changes.get(name, getattr(response, name)) for name in FIELD_NAMES}))
    topics = check_topics(session, topic_ids) if topic_ids is not None else None
    for name in FIELD_NAMES:
        setattr(response, name, getattr(fields, name))
    if policy_refs is not None:
        response.policy_refs = list(policy_refs)
    if topics is not None:
        _set_topics(session, response, topics)
    response.last_writer_id = actor.user_id
    response.version += 1
    session.flush()
    _step(session, actor, response, "update", response.state)
    _audit(session, actor, "update", response)
    return response


def topic_ids_of(session: Session, response: Response) -> list[int]:
    return list(session.scalars(
        select(ResponseTopic.topic_id).where(ResponseTopic.response_id == response.id).order_by(ResponseTopic.topic_id)
    ))


def _set_topics(session: Session, response: Response, topic_ids: list[int]) -> None:
    current = set(topic_ids_of(session, response))
    for link in session.scalars(select(ResponseTopic).where(ResponseTopic.response_id == response.id)):
        if link.topic_id not in topic_ids:
            session.delete(link)
    for topic_id in topic_ids:
        if topic_id not in current:
            session.add(ResponseTopic(response_id=response.id, topic_id=topic_id))
    session.flush()


# -- transitions --------------------------------------------------------------------------------------


def may(actor: StaffIdentity, response: Response, action: str) -> bool:
    """Whether the actor may take ``action`` on the response (its permission, and no self-approval)."""
    if not actor.can(ACTION_PERMISSION[action], response.department):
        return False
    return not (action == "approve" and _wrote_or_submitted(actor, response))


def allowed_actions(actor: StaffIdentity, response: Response) -> list[str]:
    """What the state machine allows from here and the actor may do now."""
    return [action for action in WORKFLOW.allowed_actions(S(response.state)) if may(actor, response, action)]


def _wrote_or_submitted(actor: StaffIdentity, response: Response) -> bool:
    return actor.user_id in (response.author_id, response.last_writer_id, response.submitted_by_id)


def _submit_problems(response: Response) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if response.kind == "response" and not plain_text(response.body) and not response.summary.strip():
        errors["body"] = ["回应关切须填写正文或摘要后再提交"]
    return errors


def transition(
    session: Session, actor: StaffIdentity, response: Response, action: str, comment: str | None = None
) -> Response:
    """Apply one action of the review workflow (TransitionNotAllowed → 409, NotPermitted → 403,
    ContentProblem → 422) with its history step, audit entry and, on publish / withdraw, its events."""
    current = S(response.state)
    target = WORKFLOW.target(current, action)
    require(actor.grants, ACTION_PERMISSION[action], response.department)
    if action == "approve" and _wrote_or_submitted(actor, response):
        raise problem("approver", "审核人不能审核自己撰写或提交的内容")
    if action == "submit" and (errors := _submit_problems(response)):
        raise ContentProblem(errors)
    now = utcnow()
    if action == "submit":
        response.submitted_by_id = actor.user_id
    elif action == "approve":
        response.reviewer_id, response.reviewer_name = actor.user_id, actor.username
    elif action == "return":
        response.reviewer_id, response.reviewer_name = None, None
    response.state = target.value
    response.version += 1
    if action == "publish":
        response.published_at = now
    session.flush()
    if action == "publish":
        emit(session, OutboxEvent, "press.response.published", aggregate_type=DOC_TYPE, aggregate_id=response.id,
             version=response.version, payload={"document": response_document(response)})
        record_response(session, topic_ids_of(session, response), response.id, now)
    elif action == "withdraw" or (action == "revise" and current == S.PUBLISHED):
        emit(session, OutboxEvent, "press.response.withdrawn", aggregate_type=DOC_TYPE, aggregate_id=response.id,
             version=response.version, payload={"doc_type": DOC_TYPE})
    _step(session, actor, response, action, current.value, comment)
    _audit(session, actor, action, response, comment=comment or None)
    return response


def history(session: Session, response: Response) -> list[ResponseStep]:
    return list(session.scalars(
        select(ResponseStep).where(ResponseStep.response_id == response.id).order_by(ResponseStep.at, ResponseStep.id)
    ))


def _step(session: Session, actor: StaffIdentity, response: Response, action: str, from_state: str | None,
          comment: str | None = None) -> None:
    session.add(ResponseStep(
        response_id=response.id, action=action, from_state=from_state, to_state=response.state,
        actor_id=actor.user_id, actor_name=actor.username, comment=(comment or "").strip() or None, at=utcnow(),
    ))
    session.flush()


def _audit(session: Session, actor: StaffIdentity, action: str, response: Response, **detail: Any) -> None:
    extra = {name: value for name, value in detail.items() if value is not None}
    extra["version"] = response.version
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "press", f"press_response.{action}", AuditResult.SUCCESS, object_type="press_response",
        object_id=str(response.id), detail=extra,
    ))


# -- what the index and the public pages see -----------------------------------------------------------


def public_text(text: str) -> str:
    """Text as the public may see it: phone, ID, e-mail and bank card numbers replaced by a marker."""
    return redact(text, kinds=PUBLIC_PII).text if text else text


def public_url(response_id: int) -> str:
    return f"/press/responses/{response_id}"


def response_document(response: Response) -> dict[str, Any]:
    """The public form of a published response (only fields ``search.documents`` lets in):
    ``form`` carries the kind's label (回应关切 / 媒体聚焦), and a media focus item its outlet as
    ``source``, its date as ``written_on`` and the address of the original as ``original_url``."""
    body_html = public_text(sanitise_html(response.body or ""))
    text = public_text(plain_text(response.body or ""))
    summary = public_text(response.summary) or text[:160]
    document: dict[str, Any] = {
        "id": f"{DOC_PREFIX}{response.id}",
        "doc_type": DOC_TYPE,
        "title": public_text(response.title),
        "summary": summary,
        "body": text or summary,
        "body_html": body_html,
        "url": public_url(response.id),
        "published_at": response.published_at.isoformat() if response.published_at else None,
        "department": response.department,
        "form": KIND_LABELS.get(response.kind, response.kind),
        "category": KIND_LABELS.get(response.kind, response.kind),
        "related": [
            {"id": ref["id"], "title": ref.get("title") or "",
             "url": f"/interpret/policies/{str(ref['id']).removeprefix('policy-')}"}
            for ref in response.policy_refs or [] if isinstance(ref, dict) and _POLICY_ID.match(str(ref.get("id")))
        ],
    }
    if response.kind == "media_focus":
        document.update(
            source=public_text(response.outlet or ""),
            written_on=response.published_on.isoformat() if response.published_on else None,
            original_url=response.url,
        )
    return document

