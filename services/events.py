"""Which Celery tasks consume which domain events: the one table of subscriptions.

A service emits an event into its own outbox; the relay sends one task per
subscriber listed here. Consumers are idempotent (see ``services.outbox``).
"""

from __future__ import annotations

SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "interpret.policy.published": ("search.index_document", "press.sync_policy"),
    "interpret.policy.withdrawn": ("search.remove_document", "press.sync_policy"),
    "interpret.interpretation.published": ("search.index_document",),
    "interpret.interpretation.withdrawn": ("search.remove_document",),
    "consult.answer.published": ("search.index_document",),
    "consult.answer.unpublished": ("search.remove_document",),
    "audit.recorded": ("identity.append_audit",),
    "calendar.updated": ("consult.apply_calendar", "interpret.apply_calendar"),
    "interpret.coverage.reminder": ("identity.deliver_coverage_reminder",),
    "consult.reply.sent": ("consult.notify_asker",),
    "consult.deadline.reminder": ("identity.deliver_consult_alert",),
    "consult.deadline.escalation": ("identity.deliver_consult_alert",),
    "consult.deadline.alarm": ("identity.deliver_consult_alert",),
    # The press office keeps its copy of every consultation: the intake (redacted text), then each change.
    "consult.consultation.received": ("press.ingest_consultation",),
    "consult.consultation.submit": ("press.apply_consultation_state",),
    "consult.consultation.rate": ("press.apply_consultation_state",),
    "consult.consultation.reopen": ("press.apply_consultation_state",),
    "consult.consultation.provide_info": ("press.apply_consultation_state",),
    "consult.consultation.route": ("press.apply_consultation_state",),
    "consult.consultation.accept": ("press.apply_consultation_state",),
    "consult.consultation.reject": ("press.apply_consultation_state",),
    "consult.consultation.assign": ("press.apply_consultation_state",),
    "consult.consultation.transfer": ("press.apply_consultation_state",),
    "consult.consultation.draft": ("press.apply_consultation_state",),
    "consult.consultation.request_info": ("consult.notify_asker", "press.apply_consultation_state"),
    "consult.consultation.submit_review": ("press.apply_consultation_state",),
    "consult.consultation.return": ("press.apply_consultation_state",),
    "consult.consultation.approve": ("press.apply_consultation_state",),
    "consult.consultation.reply": ("press.apply_consultation_state",),
    "consult.consultation.redaction_confirmed": ("press.apply_consultation_state",),
    "consult.consultation.publish": ("press.apply_consultation_state",),
    "consult.consultation.keep_private": ("press.apply_consultation_state",),
    "consult.consultation.unpublish": ("press.apply_consultation_state",),
    "consult.consultation.close": ("press.apply_consultation_state",),
    "consult.consultation.extension_requested": ("press.apply_consultation_state",),
    "consult.consultation.extension_approved": ("press.apply_consultation_state",),
    "consult.consultation.extension_refused": ("press.apply_consultation_state",),
    "press.response.published": ("search.index_document",),
    "press.response.withdrawn": ("search.remove_document",),
    "press.alert.fired": ("press.deliver_alert",),
    "search.reconcile.requested": ("search.reconcile",),
}


def subscribers(topic: str) -> tuple[str, ...]:
    return SUBSCRIPTIONS.get(topic, ())
