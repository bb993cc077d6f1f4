"""Consult tasks: the working-day calendar copy, e-mail to askers, and the hourly deadline sweep."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import DBAPIError

from consult import workflow
from consult.models import CalendarDay, Consultation, ProcessedEvent
from services.calendar import apply_calendar_event
from services.db import get_database
from services.mail import MailUnavailable, mail_delivery
from services.settings import Settings

log = logging.getLogger(__name__)


@shared_task(name="consult.apply_calendar", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def apply_calendar(event: dict[str, Any]) -> str:
    """Replace a year of consult's ``calendar_day`` rows from identity's ``calendar.updated`` event, then count
    the open cases' deadlines again (an estimated Monday-Friday deadline becomes exact).

    Idempotent (the event id is recorded with the rows) and order-safe (an older event than the
    stored year is skipped). A database error (e.g. two deliveries racing on the same year) retries.
    """
    database = get_database("consult")
    outcome = apply_calendar_event(database, CalendarDay, event, processed_model=ProcessedEvent,
                                   consumer="consult.apply_calendar")
    if outcome == "applied":
        with database.transaction() as session:
            changed = workflow.recompute_open_deadlines(session, current_app.extensions["gongkai.settings"])
        log.info("consult: holiday arrangement applied; %d open consultation deadlines recounted", changed)
    return outcome


ASKER_MAILS = {
    "reply": ("【咨询答复】您的咨询已答复（{number}）",
              "您好：\n\n您提交的咨询（受理编号 {number}）已答复。请凭受理编号和查询码在以下页面查看答复并评价：\n"
              "{base}/consult/track\n\n此邮件由系统发送，请勿直接回复。"),
    "request_info": ("【咨询办理】请补充材料（{number}）",
                     "您好：\n\n办理您的咨询（受理编号 {number}）需要补充材料。"
                     "请凭受理编号和查询码在以下页面查看并补充：\n"
                     "{base}/consult/track\n\n补充之前，办理期限暂停计算。此邮件由系统发送，请勿直接回复。"),
}


@shared_task(name="consult.notify_asker", acks_late=True, autoretry_for=(MailUnavailable,), retry_backoff=2,
             retry_backoff_max=600, max_retries=None)
def notify_asker(event: dict[str, Any]) -> str:
    """E-mail the asker that a reply is ready (or that information is requested), once per event.

    The message carries the tracking number and the link, never the reply or the query code. No
    e-mail address (the asker gave a phone only) or ``SMTP_HOST`` unset: recorded, skipped.
    """
    settings: Settings = current_app.extensions["gongkai.settings"]
    kind = "reply" if event["topic"] == "consult.reply.sent" else "request_info"
    consumer = "consult.notify_asker"
    with mail_delivery(settings, get_database("consult"), ProcessedEvent, consumer, event["id"]) as delivery:
        if delivery is None:
            return "duplicate"
        consultation = delivery.session.get(Consultation, int(event["aggregate_id"]))
        if consultation is None or not consultation.email:
            return "skipped: no e-mail address"
        if not settings.smtp_host:
            log.warning("consult: %s notice for %s not e-mailed: SMTP_HOST is not set", kind,
                        consultation.tracking_number)
            return "skipped: e-mail disabled"
        subject, body = ASKER_MAILS[kind]
        values = {"number": consultation.tracking_number, "base": settings.public_base_url}
        delivery.send([consultation.email], subject.format(**values), body.format(**values))
        return "sent"


@shared_task(name="consult.sweep_deadlines", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=3)
def sweep_deadlines() -> str:
    """Hourly: remind before deadlines, escalate overdue cases, raise alarms for long-unanswered ones."""
    settings: Settings = current_app.extensions["gongkai.settings"]
    with get_database("consult").transaction() as session:
        report = workflow.sweep_deadlines(session, settings)
    if report.alarms:
        log.error("consult: %d consultation(s) unanswered for more than %d days", report.alarms,
                  settings.consult_alarm_days)
    return f"reminded {report.reminded}, escalated {report.escalated}, alarms {report.alarms}"
