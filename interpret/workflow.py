"""Policy states, the allowed transitions, and the functions that perform them.

The API, the pages and the CLI all change policies through these functions, which
write the outbox event in the caller's transaction.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from interpret.models import OutboxEvent, Policy
from services.db import utcnow
from services.outbox import emit
from services.workflow import StateMachine


class PolicyState(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


POLICY_WORKFLOW: StateMachine[PolicyState] = StateMachine(
    "policy",
    {
        "publish": (frozenset({PolicyState.DRAFT, PolicyState.WITHDRAWN}), PolicyState.PUBLISHED),
        "withdraw": (frozenset({PolicyState.PUBLISHED}), PolicyState.WITHDRAWN),
    },
)

LEVELS = ("国家", "省", "本级", "其他")


def create_policy(
    session: Session,
    *,
    title: str,
    issuer: str,
    level: str,
    body: str,
    document_number: str | None = None,
    written_on: date | None = None,
) -> Policy:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    policy = Policy(
        title=title,
        issuer=issuer,
        level=level,
        body=body,
        document_number=document_number,
        written_on=written_on,
        state=PolicyState.DRAFT,
        version=1,
    )
    session.add(policy)
    session.flush()
    return policy


def publish_policy(session: Session, policy: Policy, at: datetime | None = None) -> Policy:
    policy.state = POLICY_WORKFLOW.target(PolicyState(policy.state), "publish")
    policy.published_at = at or utcnow()
    policy.version += 1
    session.flush()
    emit(
        session,
        OutboxEvent,
        "interpret.policy.published",
        aggregate_type="policy",
        aggregate_id=policy.id,
        version=policy.version,
        payload={"document": policy_search_document(policy)},
    )
    return policy


def withdraw_policy(session: Session, policy: Policy) -> Policy:
    policy.state = POLICY_WORKFLOW.target(PolicyState(policy.state), "withdraw")
    policy.version += 1
    session.flush()
    emit(
        session,
        OutboxEvent,
        "interpret.policy.withdrawn",
        aggregate_type="policy",
        aggregate_id=policy.id,
        version=policy.version,
        payload={"doc_type": "policy"},
    )
    return policy


def policy_search_document(policy: Policy) -> dict[str, Any]:
    """The public form of a policy, as the search index and public pages show it."""
    published = policy.published_at.isoformat() if policy.published_at else None
    return {
        "id": f"policy-{policy.id}",
        "doc_type": "policy",
        "title": policy.title,
        "summary": policy.body[:160],
        "body": policy.body,
        "url": f"/interpret/policies/{policy.id}",
        "published_at": published,
        "level": policy.level,
        "department": policy.issuer,
        "document_number": policy.document_number,
        "written_on": policy.written_on.isoformat() if policy.written_on else None,
    }
