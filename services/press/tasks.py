"""Celery tasks of the press office: ingest consult events, update topics, deliver alerts."""

from __future__ import annotations

import logging
from typing import Any

import requests
from celery import shared_task
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from services.db import get_database, utcnow
from services.mail import MailUnavailable, delivery_message_id, send_mail
from services.outbox import first_delivery, record_attempt
from services.press import alerts, engine, ingest
from services.press.models import Alert, AlertRule, ProcessedEvent, Topic
from services.settings import Settings

log = logging.getLogger(__name__)

UPDATE_FLAG = "gongkai:press:update-scheduled"


class WebhookUnavailable(Exception):
    """The alert webhook did not answer 2xx in time; retried with backoff."""


def _settings() -> Settings:
    settings: Settings = current_app.extensions["gongkai.settings"]
    return settings


def schedule_update(settings: Settings) -> bool:
    """Enqueue one ``press.update_topics`` run ``PRESS_UPDATE_DELAY_SECONDS`` from now unless one is
    already waiting (a Redis flag, cleared when the run starts): a batch of messages, one run."""
    delay = settings.press_update_delay_seconds
    if settings.redis_url:
        import redis

        try:
            client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
            if not client.set(UPDATE_FLAG, "1", nx=True, ex=max(int(delay * 10), 30)):
                return False
        except redis.RedisError:
            log.warning("press: could not set the update flag; enqueueing anyway", exc_info=True)
    update_topics.apply_async(countdown=delay)
    return True


def _clear_flag(settings: Settings) -> None:
    if not settings.redis_url:
        return
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1).delete(UPDATE_FLAG)
    except redis.RedisError:
        log.warning("press: could not clear the update flag", exc_info=True)


@shared_task(name="press.ingest_consultation", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def ingest_consultation(event: dict[str, Any]) -> str:
    """Store a new consultation (``consult.consultation.received``) once, then schedule a topic update."""
    settings = _settings()
    with first_delivery(get_database("press"), ProcessedEvent, "press.ingest_consultation", event["id"]) as session:
        if session is None:
            return "duplicate"
        ingest.ingest_consultation(session, settings, event)
    schedule_update(settings)
    return "ingested"


@shared_task(name="press.apply_consultation_state", acks_late=True,
             autoretry_for=(DBAPIError, ingest.NotYetIngested), retry_backoff=1, retry_backoff_max=60,
             max_retries=12)
def apply_consultation_state(event: dict[str, Any]) -> str:
    """Keep a message's consult state current (``consult.consultation.<action>``), newest version wins."""
    with first_delivery(get_database("press"), ProcessedEvent, "press.apply_consultation_state",
                        event["id"]) as session:
        if session is None:
            return "duplicate"
        return ingest.apply_consultation_state(session, event)


@shared_task(name="press.update_topics", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=5)
def update_topics() -> str:
    """Assign the messages without a topic, refresh the touched topics, evaluate the alert rules."""
    settings = _settings()
    _clear_flag(settings)
    with get_database("press").transaction() as session:
        if not engine.try_lock(session):
            busy = True
        else:
            busy = False
            report = engine.update_topics(session, settings)
    if busy:
        update_topics.apply_async(countdown=settings.press_update_delay_seconds)
        return "busy: rescheduled"
    if report.assigned >= engine.BATCH_LIMIT:
        update_topics.apply_async(countdown=0)
    return f"assigned {report.assigned}, new topics {report.new_topics}, alerts {len(report.alerts)}"


@shared_task(name="press.recompute", acks_late=True, max_retries=0)
def recompute() -> str:
    """A full recompute of the topics (the console's button; ``gongkai press recompute`` runs it inline)."""
    run_id = engine.recompute(get_database("press"))
    return f"recompute run {run_id} finished"


def _email_due(database: Any, alert_id: int) -> bool:
    with database.transaction() as session:
        alert = session.get(Alert, alert_id)
        rule = session.get(AlertRule, alert.rule_id) if alert is not None else None
        return alert is not None and rule is not None and alert.emailed_at is None and bool(rule.email_to)


@shared_task(name="press.deliver_alert", acks_late=True, autoretry_for=(MailUnavailable, WebhookUnavailable),
             retry_backoff=2, retry_backoff_max=300, max_retries=None)
def deliver_alert(event: dict[str, Any]) -> str:
    """E-mail the rule's addresses and POST the webhook, each once (``emailed_at`` and ``webhook_sent_at``
    are committed right after each send, under a row lock). A worker killed between the SMTP server's
    acceptance and that commit sends the e-mail again on redelivery, with the same Message-ID (the
    attempt is recorded before the send, see ``services.mail``)."""
    settings = _settings()
    alert_id = int(event["payload"]["alert_id"])
    database = get_database("press")
    done = []
    mail_key = f"press.deliver_alert:alert-{alert_id}"
    earlier_attempt = settings.smtp_host is not None and _email_due(database, alert_id) and record_attempt(
        database, ProcessedEvent, "press.deliver_alert", f"alert-{alert_id}")
    with database.transaction() as session:
        alert = session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
        if alert is None:
            return "unknown alert"
        rule = session.get(AlertRule, alert.rule_id)
        assert rule is not None
        payload = alerts.notice(alert, rule, session.get(Topic, alert.topic_id), settings)
        if alert.emailed_at is None and rule.email_to:
            if settings.smtp_host:
                subject, body = alerts.notice_text(payload)
                if earlier_attempt:
                    log.warning("press: alert %s: an earlier e-mail attempt ended without recording a send; "
                                "sending with the same Message-ID", alert_id)
                send_mail(settings, list(rule.email_to), subject, body,
                          message_id=delivery_message_id(settings, mail_key))
                alert.emailed_at = utcnow()
                done.append("e-mailed")
            else:
                log.warning("press: alert %s not e-mailed: SMTP_HOST is not set", alert_id)
    with database.transaction() as session:
        alert = session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
        assert alert is not None
        rule = session.get(AlertRule, alert.rule_id)
        assert rule is not None
        if alert.webhook_sent_at is None and rule.webhook_url:
            try:
                answer = requests.post(rule.webhook_url, json=payload, timeout=settings.press_webhook_timeout_seconds)
                ok = 200 <= answer.status_code < 300
                problem = f"HTTP {answer.status_code}"
            except requests.RequestException as error:
                ok, problem = False, f"{type(error).__name__}: {error}"
            if not ok:
                alert.webhook_error = problem[:1000]
                failed = problem
            else:
                alert.webhook_sent_at = utcnow()
                alert.webhook_error = None
                failed = ""
                done.append("posted")
        else:
            failed = ""
    if failed:
        raise WebhookUnavailable(f"alert {alert_id}: webhook {failed}")
    return ", ".join(done) or "nothing to send"
