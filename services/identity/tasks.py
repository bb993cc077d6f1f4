"""Identity tasks: appending other services' audit entries to the chain, e-mailing staff reminders."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from celery import shared_task
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.audit import AuditRecord, append_entry, audit_key, prune_before
from services.db import get_database
from services.identity.models import Department, ProcessedEvent, RoleAssignment, User
from services.mail import MailUnavailable, mail_delivery
from services.permissions import Role
from services.settings import Settings

log = logging.getLogger(__name__)

REMINDER_ROLES = (Role.EDITOR, Role.REVIEWER)
"""Who receives a department's coverage reminder (a role held in a parent department counts too)."""


@shared_task(name="identity.append_audit", acks_late=True, autoretry_for=(Exception,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def append_audit(event: dict[str, Any]) -> str:
    """Idempotent: the event id is unique in the chain, so a redelivery appends nothing."""
    payload = dict(event["payload"])
    payload["at"] = datetime.fromisoformat(payload["at"])
    record = AuditRecord(**payload)
    settings = current_app.extensions["gongkai.settings"]
    with get_database("identity").transaction() as session:
        entry = append_entry(session, audit_key(settings.secret_key), record, event_id=event["id"])
        return f"entry {entry.id}"


@shared_task(name="identity.prune_audit", acks_late=True)
def prune_audit() -> int:
    """Daily: drop entries past the retention period (never less than 180 days)."""
    settings = current_app.extensions["gongkai.settings"]
    with get_database("identity").transaction() as session:
        return prune_before(session, settings.audit_retention_days)


def reminder_recipients(session: Session, department_code: str,
                        roles: tuple[Role, ...] = REMINDER_ROLES) -> list[str]:
    """E-mail addresses of active users holding one of ``roles`` in the department or any department above it."""
    department = session.scalar(select(Department).where(Department.code == department_code))
    ancestor_ids: list[int] = []
    while department is not None and department.id not in ancestor_ids:
        ancestor_ids.append(department.id)
        department = session.get(Department, department.parent_id) if department.parent_id is not None else None
    if not ancestor_ids:
        return []
    emails = session.scalars(
        select(User.email).distinct()
        .join(RoleAssignment, RoleAssignment.user_id == User.id)
        .join(Department, Department.id == RoleAssignment.department_id)
        .where(RoleAssignment.department_id.in_(ancestor_ids), Department.active.is_(True),
               RoleAssignment.role.in_([role.value for role in roles]),
               User.active.is_(True), User.email.is_not(None), User.email != "")
    )
    return sorted({email.strip() for email in emails if email and email.strip()})


def _week_label(week: str) -> str:
    """``"2026-W43"`` → ``"2026年第43"`` (the subject adds ``周``)."""
    year, _, number = week.partition("-W")
    return f"{year}年第{int(number)}" if year.isdigit() and number.isdigit() else f"第{week}"


def coverage_reminder_mail(settings: Settings, payload: dict[str, Any]) -> tuple[str, str]:
    """The subject and plain-text body of a department's weekly coverage reminder."""
    department = str(payload["department"])
    count = int(payload.get("missing_count", 0)) + int(payload.get("late_count", 0))
    subject = f"【政策解读提醒】{department} {_week_label(str(payload['week']))}周：{count} 件本级政策缺少或逾期解读"
    base = settings.public_base_url.rstrip("/")
    lines = [f"{department} 本级政策解读情况（{payload['week']}，生成于 {payload.get('generated_on', '')}）：", ""]

    def item_line(item: dict[str, Any]) -> str:
        index = item.get("index_number") or "无索引号"
        line = f"- {item['title']}（索引号：{index}；发布于 {item.get('published_on', '')}）"
        return line + (f"\n  {base}{item['url']}" if item.get("url") else "")

    missing, late = payload.get("missing") or [], payload.get("late") or []
    if missing:
        period = payload.get("missing_period") or {}
        lines.append(f"缺少解读（{payload.get('missing_count', len(missing))} 件，"
                     f"{period.get('start', '')} 至 {period.get('end', '')} 发布）：")
        lines.extend(item_line(item) for item in missing)
        lines.append("")
    if late:
        period = payload.get("late_period") or {}
        lines.append(f"逾期解读（{payload.get('late_count', len(late))} 件，"
                     f"解读于 {period.get('start', '')} 至 {period.get('end', '')} 发布，"
                     f"超过 {payload.get('late_working_days', 0)} 个工作日）：")
        lines.extend(
            item_line(item) + f"\n  解读发布于 {item.get('interpreted_on', '')}，"
                              f"逾期 {item.get('working_days_late', '')} 个工作日"
            for item in late
        )
        lines.append("")
    if payload.get("truncated"):
        lines.extend(["（清单过长，仅列出部分，完整清单见工作台。）", ""])
    lines.append(f"查看工作台：{base}/interpret/dashboard?{urlencode({'department': department})}")
    lines.extend(["", "此邮件由政务公开系统自动发送，请勿直接回复。"])
    return subject, "\n".join(lines) + "\n"


@shared_task(name="identity.deliver_coverage_reminder", acks_late=True, autoretry_for=(MailUnavailable,),
             retry_backoff=2, retry_backoff_max=600, max_retries=None)
def deliver_coverage_reminder(event: dict[str, Any]) -> str:
    """E-mail interpret's weekly ``interpret.coverage.reminder`` to the department's editors and reviewers.

    One message to all of them, sent through ``mail_delivery`` so a redelivered event sends nothing
    more (a crash between the server's acceptance and the commit sends it again, with the same
    Message-ID). The SMTP server being unreachable rolls back and retries with backoff; with
    ``SMTP_HOST`` unset the event is recorded as processed, skipped with one warning.
    """
    payload = event["payload"]
    department = str(payload["department"])
    settings: Settings = current_app.extensions["gongkai.settings"]
    consumer = "identity.deliver_coverage_reminder"
    with mail_delivery(settings, get_database("identity"), ProcessedEvent, consumer, event["id"]) as delivery:
        if delivery is None:
            return "duplicate"
        session = delivery.session
        if not settings.smtp_host:
            log.warning("coverage reminder for %s (%s) not e-mailed: SMTP_HOST is not set", department,
                        payload.get("week"))
            return "skipped: e-mail disabled"
        recipients = reminder_recipients(session, department)
        if not recipients:
            log.info("coverage reminder for %s (%s): no editor or reviewer with an e-mail address",
                     department, payload.get("week"))
            return "skipped: no recipients"
        subject, body = coverage_reminder_mail(settings, payload)
        delivery.send(recipients, subject, body)
        return f"sent to {len(recipients)}"


CONSULT_ALERT_ROLES: dict[str, tuple[Role, ...]] = {
    "reminder": (Role.DISPATCHER,),
    "escalation": (Role.REVIEWER,),
    "alarm": (Role.REVIEWER, Role.DISCLOSURE_OFFICE),
}
"""Who hears of a consultation's deadline: the handler (or, with none yet, the dispatchers) before it,
the department's reviewers once it has passed, reviewers and the disclosure office at the 60-day alarm."""

CONSULT_ALERT_SUBJECTS = {
    "reminder": "【咨询办理提醒】{number} 期限 {due} 将至",
    "escalation": "【咨询逾期】{number} 已超过期限 {due}",
    "alarm": "【咨询告警】{number} 长期未答复",
}


def consult_alert_recipients(session: Session, kind: str, department: str, handler_id: int | None) -> list[str]:
    if kind == "reminder" and handler_id is not None:
        handler = session.get(User, handler_id)
        if handler is not None and handler.active and handler.email and handler.email.strip():
            return [handler.email.strip()]
    return reminder_recipients(session, department, CONSULT_ALERT_ROLES[kind])


@shared_task(name="identity.deliver_consult_alert", acks_late=True, autoretry_for=(MailUnavailable,),
             retry_backoff=2, retry_backoff_max=600, max_retries=None)
def deliver_consult_alert(event: dict[str, Any]) -> str:
    """E-mail consult's ``consult.deadline.*`` events to the staff concerned (once per event)."""
    payload = event["payload"]
    kind = str(payload["kind"])
    consultation = payload["consultation"]
    settings: Settings = current_app.extensions["gongkai.settings"]
    with mail_delivery(settings, get_database("identity"), ProcessedEvent, "identity.deliver_consult_alert",
                       event["id"]) as delivery:
        if delivery is None:
            return "duplicate"
        session = delivery.session
        if not settings.smtp_host:
            log.warning("consult %s for %s not e-mailed: SMTP_HOST is not set", kind, consultation["tracking_number"])
            return "skipped: e-mail disabled"
        recipients = consult_alert_recipients(session, kind, str(payload["department"]), payload.get("handler_id"))
        if not recipients:
            log.info("consult %s for %s: nobody with an e-mail address", kind, consultation["tracking_number"])
            return "skipped: no recipients"
        base = settings.public_base_url.rstrip("/")
        subject = CONSULT_ALERT_SUBJECTS[kind].format(number=consultation["tracking_number"], due=payload.get("due"))
        body = (f"{consultation['title']}\n受理编号：{consultation['tracking_number']}\n"
                f"部门：{payload['department']}\n期限：{payload.get('due') or '—'}\n\n"
                f"办理页面：{base}/consult/staff/{consultation['id']}\n\n此邮件由政务公开系统自动发送，请勿直接回复。\n")
        delivery.send(recipients, subject, body)
        return f"sent to {len(recipients)}"
