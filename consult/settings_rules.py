"""Small settings of the consult office: canned replies (常用答复) and working days per category.

Like :mod:`consult.workflow`, each function checks the actor's permission, validates (raising
:class:`~services.workflow.ContentProblem` with field errors before anything is written), writes,
records an audit entry through the outbox, and flushes; the caller commits once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from consult.models import CannedReply, CategoryDeadline, OutboxEvent
from consult.workflow import REPLY_MAX, categories
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.db import utcnow
from services.permissions import Permission, require
from services.settings import Settings
from services.workflow import ContentProblem

CANNED_TITLE_MAX = 200
ACCEPT_DAYS_RANGE = (1, 10)
REPLY_DAYS_RANGE = (1, 60)


def _audit(session: Session, actor: StaffIdentity, action: str, object_type: str, object_id: str,
           detail: dict[str, object] | None = None) -> None:
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "consult", action, AuditResult.SUCCESS, object_type=object_type, object_id=object_id, detail=detail,
    ))


# -- canned replies ---------------------------------------------------------------------------


def canned_replies(session: Session, category: str | None = None, *, every: bool = False) -> list[CannedReply]:
    """The canned replies offered for ``category`` (its own and the general ones), or all of them."""
    query = select(CannedReply).order_by(CannedReply.category.is_not(None), CannedReply.category, CannedReply.title,
                                         CannedReply.id)
    if not every:
        query = query.where(CannedReply.category.is_(None) if category is None
                            else (CannedReply.category == category) | CannedReply.category.is_(None))
    return list(session.scalars(query))


def add_canned_reply(session: Session, settings: Settings, actor: StaffIdentity, category: str | None, title: str,
                     body: str) -> CannedReply:
    require(actor.grants, Permission.REVIEW)
    category = (category or "").strip() or None
    title = " ".join(title.split())
    body = body.strip()
    errors: dict[str, list[str]] = {}
    if category is not None and category not in categories(settings):
        errors["category"] = ["请从列表中选择类别，或选“通用”"]
    if not title:
        errors["title"] = ["请填写标题"]
    elif len(title) > CANNED_TITLE_MAX:
        errors["title"] = [f"标题不能超过 {CANNED_TITLE_MAX} 字"]
    if not body:
        errors["body"] = ["请填写答复内容"]
    elif len(body) > REPLY_MAX:
        errors["body"] = [f"答复内容不能超过 {REPLY_MAX} 字"]
    if errors:
        raise ContentProblem(errors)
    reply = CannedReply(category=category, title=title, body=body, created_by=actor.display_name or actor.username,
                        created_at=utcnow())
    session.add(reply)
    session.flush()
    _audit(session, actor, "canned_reply.add", "canned_reply", str(reply.id), {"category": category, "title": title})
    return reply


def delete_canned_reply(session: Session, actor: StaffIdentity, reply_id: int) -> bool:
    """Delete a canned reply; False when it was already gone (deleting twice is no error)."""
    require(actor.grants, Permission.REVIEW)
    reply = session.get(CannedReply, reply_id)
    if reply is None:
        return False
    detail: dict[str, object] = {"category": reply.category, "title": reply.title}
    session.delete(reply)
    session.flush()
    _audit(session, actor, "canned_reply.delete", "canned_reply", str(reply_id), detail)
    return True


# -- working days per category -------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryDays:
    category: str
    accept_working_days: int
    reply_working_days: int
    custom: bool
    """A row of its own (else the settings' defaults)."""


def category_days(session: Session, settings: Settings) -> list[CategoryDays]:
    """Every category with the working days that apply to it now."""
    rows = {row.category: row for row in session.scalars(select(CategoryDeadline))}
    result = []
    for category in categories(settings):
        row = rows.get(category)
        if row is None:
            result.append(CategoryDays(category, settings.consult_accept_working_days,
                                       settings.consult_reply_working_days, False))
        else:
            result.append(CategoryDays(category, row.accept_working_days, row.reply_working_days, True))
    return result


def _days(raw: str | None, low: int, high: int, what: str) -> tuple[int | None, str | None]:
    value = (raw or "").strip()
    if not value.isdigit() or len(value) > 3:
        return None, f"{what}须为 {low} 至 {high} 的整数"
    number = int(value)
    if not low <= number <= high:
        return None, f"{what}须为 {low} 至 {high} 的整数"
    return number, None


def set_category_days(session: Session, settings: Settings, actor: StaffIdentity,
                      values: Mapping[str, tuple[str | None, str | None]]) -> list[str]:
    """Save the working days (to accept, to reply) given per category as form text; all or nothing.

    ``values`` maps a category to its raw (accept, reply) values. Field errors are keyed
    ``accept:<category>`` / ``reply:<category>``. Returns the categories that changed.
    """
    require(actor.grants, Permission.PUBLISH)
    known = categories(settings)
    errors: dict[str, list[str]] = {}
    parsed: dict[str, tuple[int, int]] = {}
    for category, (raw_accept, raw_reply) in values.items():
        if category not in known:
            errors[f"category:{category}"] = ["没有这个类别"]
            continue
        accept, accept_error = _days(raw_accept, *ACCEPT_DAYS_RANGE, "受理时限")
        reply, reply_error = _days(raw_reply, *REPLY_DAYS_RANGE, "答复时限")
        if accept_error:
            errors[f"accept:{category}"] = [accept_error]
        if reply_error:
            errors[f"reply:{category}"] = [reply_error]
        if accept is not None and reply is not None:
            parsed[category] = (accept, reply)
    if not values:
        errors["categories"] = ["没有提交任何类别"]
    if errors:
        raise ContentProblem(errors)
    current = {item.category: item for item in category_days(session, settings)}
    changed: list[str] = []
    name = actor.display_name or actor.username
    now = utcnow()
    for category, (accept, reply) in parsed.items():
        before = current[category]
        if (before.accept_working_days, before.reply_working_days) == (accept, reply):
            continue
        row = session.get(CategoryDeadline, category)
        if row is None:
            session.add(CategoryDeadline(category=category, accept_working_days=accept, reply_working_days=reply,
                                         updated_by=name, updated_at=now))
        else:
            row.accept_working_days, row.reply_working_days = accept, reply
            row.updated_by, row.updated_at = name, now
        changed.append(category)
    if changed:
        session.flush()
        _audit(session, actor, "category_deadline.update", "category_deadline",
               changed[0] if len(changed) == 1 else f"{len(changed)} categories", {
            "changes": {category: list(parsed[category]) for category in changed},
        })
    return changed
