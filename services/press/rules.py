"""Alert rules of the press office (预警规则): list, create, change, delete.

Like :mod:`consult.settings_rules`, each function checks the actor's permission, validates (raising
:class:`~services.workflow.ContentProblem` with field errors before anything is written), writes,
records an audit entry through the outbox, and flushes; the caller commits once.

A rule is ``growth`` (a topic gets ``min_messages`` new messages within ``within_hours`` with a burst
score of at least ``min_burst``) or ``emergency`` (any message mentions one of ``terms``). Each alert
it fires starts a response clock of ``response_hours`` (48 by default, 5 for an emergency rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.permissions import Permission, require
from services.press.models import Alert, AlertRule, OutboxEvent
from services.workflow import ContentProblem

KINDS = ("growth", "emergency")
KIND_LABELS = {"growth": "话题增长", "emergency": "紧急词"}
NAME_MAX = 100
HOURS_RANGE = (1, 720)
MIN_MESSAGES_MAX = 1_000_000
MIN_BURST_MAX = 1000.0
TERMS_MAX = 100
TERM_MAX = 50
EMAILS_MAX = 20
WEBHOOK_MAX = 500
DEFAULT_RESPONSE_HOURS = {"growth": 48, "emergency": 5}
"""The response clock: 48 hours to respond to public concerns, 5 for authoritative information on an emergency."""

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


@dataclass
class RuleFields:
    """What a rule says, as given (numbers may still be text from a form)."""

    name: str = ""
    kind: str = "growth"
    min_messages: Any = 10
    within_hours: Any = 24
    min_burst: Any = 3.0
    terms: list[str] = field(default_factory=list)
    response_hours: Any = None
    """None: the kind's default (:data:`DEFAULT_RESPONSE_HOURS`)."""
    email_to: list[str] = field(default_factory=list)
    webhook_url: str | None = None
    enabled: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RuleFields:
        """From the API's JSON or a form (lists as lists, or as text: one per line or comma-separated)."""
        defaults = cls()
        return cls(
            name=str(data.get("name") or ""),
            kind=str(data.get("kind") or defaults.kind),
            min_messages=data.get("min_messages", defaults.min_messages),
            within_hours=data.get("within_hours", defaults.within_hours),
            min_burst=data.get("min_burst", defaults.min_burst),
            terms=split_list(data.get("terms")),
            response_hours=data.get("response_hours") if data.get("response_hours") not in ("", None) else None,
            email_to=split_list(data.get("email_to")),
            webhook_url=str(data.get("webhook_url") or "").strip() or None,
            enabled=_truthy(data.get("enabled", True)),
        )

    @classmethod
    def of(cls, rule: AlertRule) -> RuleFields:
        return cls(rule.name, rule.kind, rule.min_messages, rule.within_hours, rule.min_burst, list(rule.terms or []),
                   rule.response_hours, list(rule.email_to or []), rule.webhook_url, rule.enabled)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "on", "yes")
    return bool(value)


def split_list(value: Any) -> list[str]:
    """A list of strings from a list, or from text with one item per line or separated by commas."""
    if value is None:
        return []
    items: Iterable[Any] = value if isinstance(value, (list, tuple)) else re.split(r"[\n,，、;；]+", str(value))
    return [" ".join(str(item).split()) for item in items if str(item).strip()]


@dataclass(frozen=True)
class ValidRule:
    name: str
    kind: str
    min_messages: int
    within_hours: int
    min_burst: float
    terms: list[str]
    response_hours: int
    email_to: list[str]
    webhook_url: str | None
    enabled: bool


def _whole(value: Any, low: int, high: int, field_name: str, message: str,
           errors: dict[str, list[str]]) -> int:
    text = str(value).strip() if value is not None else ""
    if isinstance(value, bool) or not re.fullmatch(r"\d{1,9}", text) or not low <= int(text) <= high:
        errors[field_name] = [message]
        return low
    return int(text)


def validate(fields: RuleFields) -> ValidRule:
    """The rule, checked; ContentProblem with every field's problems otherwise."""
    errors: dict[str, list[str]] = {}
    name = " ".join(fields.name.split())
    if not name:
        errors["name"] = ["请填写规则名称"]
    elif len(name) > NAME_MAX:
        errors["name"] = [f"规则名称不能超过 {NAME_MAX} 字"]
    kind = fields.kind.strip()
    if kind not in KINDS:
        errors["kind"] = ["规则类型只能是 growth（话题增长）或 emergency（紧急词）"]
    min_messages = _whole(fields.min_messages, 1, MIN_MESSAGES_MAX, "min_messages", "新增留言数须为不小于 1 的整数",
                          errors)
    low, high = HOURS_RANGE
    within_hours = _whole(fields.within_hours, low, high, "within_hours", f"时间范围须为 {low}–{high} 小时的整数",
                          errors)
    min_burst = 0.0
    try:
        min_burst = float(str(fields.min_burst).strip()) if not isinstance(fields.min_burst, bool) else -1.0
        if not 0 <= min_burst <= MIN_BURST_MAX:
            raise ValueError
    except ValueError:
        errors["min_burst"] = [f"突增分数下限须为 0–{MIN_BURST_MAX:g} 之间的数"]
    terms = list(dict.fromkeys(" ".join(term.split()) for term in fields.terms if term.strip()))
    if kind == "emergency" and not terms:
        errors["terms"] = ["紧急词规则至少需要一个紧急词"]
    elif len(terms) > TERMS_MAX:
        errors["terms"] = [f"紧急词不能超过 {TERMS_MAX} 个"]
    elif any(len(term) > TERM_MAX for term in terms):
        errors["terms"] = [f"每个紧急词不能超过 {TERM_MAX} 字"]
    response_default = DEFAULT_RESPONSE_HOURS.get(kind, 48)
    response_hours = response_default if fields.response_hours in (None, "") else _whole(
        fields.response_hours, low, high, "response_hours", f"回应时限须为 {low}–{high} 小时的整数", errors)
    emails = list(dict.fromkeys(address.strip() for address in fields.email_to if address.strip()))
    bad = [address for address in emails if len(address) > 254 or not _EMAIL.match(address)]
    if bad:
        errors["email_to"] = [f"电子邮箱地址无效：{'、'.join(bad[:5])}"]
    elif len(emails) > EMAILS_MAX:
        errors["email_to"] = [f"收件人不能超过 {EMAILS_MAX} 个"]
    webhook = (fields.webhook_url or "").strip() or None
    if webhook is not None:
        parts = urlsplit(webhook)
        if len(webhook) > WEBHOOK_MAX or parts.scheme not in ("http", "https") or not parts.hostname \
                or any(ch.isspace() for ch in webhook):
            errors["webhook_url"] = ["Webhook 地址须为 http:// 或 https:// 开头的完整网址"]
    if errors:
        raise ContentProblem(errors)
    return ValidRule(name, kind, min_messages, within_hours, min_burst, terms,
                     response_hours, emails, webhook, bool(fields.enabled))


def _audit(session: Session, actor: StaffIdentity, action: str, rule_id: int, detail: dict[str, Any]) -> None:
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "press", action, AuditResult.SUCCESS, object_type="alert_rule", object_id=str(rule_id), detail=detail,
    ))


def _detail(valid: ValidRule) -> dict[str, Any]:
    detail = asdict(valid)
    detail["email_to"] = len(valid.email_to)  # how many, not who
    detail["webhook_url"] = urlsplit(valid.webhook_url).hostname if valid.webhook_url else None
    return detail


def list_rules(session: Session) -> list[AlertRule]:
    return list(session.scalars(select(AlertRule).order_by(AlertRule.kind, AlertRule.name, AlertRule.id)))


def create_rule(session: Session, actor: StaffIdentity, fields: RuleFields) -> AlertRule:
    require(actor.grants, Permission.PRESS)
    valid = validate(fields)
    rule = AlertRule(**asdict(valid))
    session.add(rule)
    session.flush()
    _audit(session, actor, "alert_rule.create", rule.id, _detail(valid))
    return rule


def update_rule(session: Session, actor: StaffIdentity, rule: AlertRule, fields: RuleFields) -> AlertRule:
    require(actor.grants, Permission.PRESS)
    valid = validate(fields)
    for name, value in asdict(valid).items():
        setattr(rule, name, value)
    session.flush()
    _audit(session, actor, "alert_rule.update", rule.id, _detail(valid))
    return rule


def delete_rule(session: Session, actor: StaffIdentity, rule: AlertRule) -> None:
    """Delete a rule that never fired; one with alerts keeps their history and can only be disabled."""
    require(actor.grants, Permission.PRESS)
    fired = session.scalar(select(func.count()).select_from(Alert).where(Alert.rule_id == rule.id)) or 0
    if fired:
        raise ContentProblem({"rule": [f"该规则已触发 {fired} 次预警，为保留记录不能删除，请改为停用"]})
    rule_id, name = rule.id, rule.name
    session.delete(rule)
    session.flush()
    _audit(session, actor, "alert_rule.delete", rule_id, {"name": name})


def rule_dict(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.id, "name": rule.name, "kind": rule.kind, "min_messages": rule.min_messages,
        "within_hours": rule.within_hours, "min_burst": rule.min_burst, "terms": list(rule.terms or []),
        "response_hours": rule.response_hours, "email_to": list(rule.email_to or []), "webhook_url": rule.webhook_url,
        "enabled": rule.enabled, "created_at": rule.created_at, "updated_at": rule.updated_at,
    }
