"""Which Celery tasks consume which domain events: the one table of subscriptions.

A service emits an event into its own outbox; the relay sends one task per
subscriber listed here. Consumers are idempotent (see ``services.outbox``).
"""

from __future__ import annotations

SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "interpret.policy.published": ("search.index_document",),
    "interpret.policy.withdrawn": ("search.remove_document",),
    "interpret.interpretation.published": ("search.index_document",),
    "interpret.interpretation.withdrawn": ("search.remove_document",),
    "consult.answer.published": ("search.index_document",),
    "consult.answer.unpublished": ("search.remove_document",),
    "audit.recorded": ("identity.append_audit",),
    "calendar.updated": ("consult.apply_calendar", "interpret.apply_calendar"),
    "interpret.coverage.reminder": ("identity.deliver_coverage_reminder",),
    "consult.reply.sent": ("consult.notify_asker",),
    "consult.consultation.request_info": ("consult.notify_asker",),
    "consult.deadline.reminder": ("identity.deliver_consult_alert",),
    "consult.deadline.escalation": ("identity.deliver_consult_alert",),
    "consult.deadline.alarm": ("identity.deliver_consult_alert",),
}


def subscribers(topic: str) -> tuple[str, ...]:
    return SUBSCRIPTIONS.get(topic, ())
