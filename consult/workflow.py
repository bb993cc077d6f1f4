"""Consultation states, the allowed transitions, and the functions that perform them.

This first cut carries answered consultations to publication (the historical import);
the public submission and reply workflow grows here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from consult.models import Consultation, OutboxEvent
from services.db import utcnow
from services.outbox import emit
from services.workflow import StateMachine


class ConsultationState(StrEnum):
    REPLIED = "replied"
    PUBLISHED = "published"


CONSULTATION_WORKFLOW: StateMachine[ConsultationState] = StateMachine(
    "consultation",
    {
        "publish": (frozenset({ConsultationState.REPLIED}), ConsultationState.PUBLISHED),
        "unpublish": (frozenset({ConsultationState.PUBLISHED}), ConsultationState.REPLIED),
    },
)


def record_answered_consultation(
    session: Session,
    *,
    tracking_number: str,
    title: str,
    question: str,
    reply: str,
    received_at: datetime,
    replied_at: datetime,
    department: str | None = None,
) -> Consultation:
    """Store a consultation that was already answered elsewhere (historical import)."""
    consultation = Consultation(
        tracking_number=tracking_number,
        title=title,
        question=question,
        reply=reply,
        department=department,
        state=ConsultationState.REPLIED,
        version=1,
        received_at=received_at,
        replied_at=replied_at,
    )
    session.add(consultation)
    session.flush()
    return consultation


def publish_answer(session: Session, consultation: Consultation, at: datetime | None = None) -> Consultation:
    consultation.state = CONSULTATION_WORKFLOW.target(ConsultationState(consultation.state), "publish")
    consultation.published_at = at or utcnow()
    consultation.version += 1
    session.flush()
    emit(
        session,
        OutboxEvent,
        "consult.answer.published",
        aggregate_type="answer",
        aggregate_id=consultation.id,
        version=consultation.version,
        payload={"document": answer_search_document(consultation)},
    )
    return consultation


def answer_search_document(consultation: Consultation) -> dict[str, Any]:
    """The public form of an answered consultation: no submitter details, ever."""
    return {
        "id": f"answer-{consultation.id}",
        "doc_type": "answer",
        "title": consultation.title,
        "summary": (consultation.reply or "")[:160],
        "body": f"{consultation.question}\n\n{consultation.reply or ''}",
        "url": f"/consult/answers/{consultation.id}",
        "published_at": consultation.published_at.isoformat() if consultation.published_at else None,
        "department": consultation.department,
        "question": consultation.question,
        "reply": consultation.reply,
        "received_at": consultation.received_at.isoformat(),
        "replied_at": consultation.replied_at.isoformat() if consultation.replied_at else None,
    }
