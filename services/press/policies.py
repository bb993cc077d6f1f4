"""Which policies the public asks about, and which of them have no interpretation yet.

The press office keeps its own small table of published policies (``press_policy``): it never reads
interpret's tables. It is fed by interpret's events, the same ones the search index is fed by:

* ``interpret.policy.published`` carries the policy's public document (see
  ``interpret.workflow.policy_document``): id, title, 文号 (``document_number``), department, url and
  ``related``, its *published* interpretations. Interpret emits it again for every published policy
  linked to an interpretation that is published or withdrawn, so ``related`` is always current and
  the interpretation events need no consumer of their own;
* ``interpret.policy.withdrawn`` marks the row unpublished.

Each event carries interpret's ``index_version``: an older event never overwrites a newer one, and
a repeated delivery is recorded once (``services.outbox.first_delivery``). For a database that
starts after policies were published, :func:`sync_policies` replays what interpret publishes (its
``search_export.published_documents``, the function the search rebuild uses) through the same upsert.

Matching a message to a policy (:func:`match_policies`)
-------------------------------------------------------
A message (its redacted title and text) asks about a policy when

1. it names the policy's 文号: any ``机关代字〔年份〕序号号`` in the text (``interpret.workflow.
   DOCUMENT_NUMBER_IN_TEXT``, any bracket style, normalised to 〔〕) equal to the policy's, the
   characters just before the 机关代字 aside (请问皖科政〔2017〕12号 names 皖科政〔2017〕12号); or
2. it quotes the policy's title in 《》 (the quote equals the title, the title's own 《》 and spaces
   ignored); or
3. the title appears in the message as it stands (titles of at least :data:`MIN_BARE_TITLE` characters,
   so that a short title such as 《通知》 never matches by accident).

A message counts once per policy however many times it names it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from interpret.workflow import DOCUMENT_NUMBER_IN_TEXT, normalise_document_number
from services.db import get_database
from services.outbox import first_delivery
from services.press.models import PressPolicy, ProcessedEvent

log = logging.getLogger(__name__)

CONSUMER = "press.sync_policy"
MIN_BARE_TITLE = 6
"""Shortest policy title matched without 《》 around it."""
_KEY = 4
"""Characters of a title used to find candidates quickly (titles of MIN_BARE_TITLE and more)."""
_QUOTED = re.compile(r"《([^《》]{1,200})》")
_SPACES = re.compile(r"\s+")


def _clean_title(title: str) -> str:
    return _SPACES.sub("", title).replace("《", "").replace("》", "")


# -- keeping the table --------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def apply_policy_document(session: Session, policy_id: int, document: dict[str, Any], version: int) -> bool:
    """Store a published policy's document at ``version``; False when a newer one is stored."""
    row = session.get(PressPolicy, policy_id, with_for_update=True)
    if row is not None and row.source_version > version:
        return False
    if row is None:
        row = PressPolicy(id=policy_id)
        session.add(row)
    number = document.get("document_number")
    row.title = str(document.get("title") or "")[:300]
    row.document_number = normalise_document_number(str(number))[:64] if number else None
    row.department = str(document.get("department"))[:40] if document.get("department") else None
    row.url = str(document.get("url") or f"/interpret/policies/{policy_id}")[:300]
    row.interpretations = [
        {"id": item.get("id"), "title": str(item.get("title") or ""), "url": str(item.get("url") or "")}
        for item in document.get("related") or [] if isinstance(item, dict)
    ]
    row.published = True
    row.source_version = version
    session.flush()
    return True


def apply_policy_withdrawal(session: Session, policy_id: int, version: int) -> bool:
    """Mark a policy withdrawn at ``version``; False when a newer event is stored."""
    row = session.get(PressPolicy, policy_id, with_for_update=True)
    if row is not None and row.source_version > version:
        return False
    if row is None:
        row = PressPolicy(id=policy_id, title="", url=f"/interpret/policies/{policy_id}", interpretations=[])
        session.add(row)
    row.published = False
    row.source_version = version
    session.flush()
    return True


@shared_task(name=CONSUMER, acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=None)
def sync_policy(event: dict[str, Any]) -> str:
    """Keep ``press_policy`` from ``interpret.policy.published`` / ``.withdrawn`` (idempotent, order-safe;
    two first deliveries racing on a new row retry on the database error)."""
    policy_id = _int(event.get("aggregate_id"))
    if event.get("aggregate_type") != "policy" or policy_id is None:
        return "ignored"
    version = int(event.get("version") or 0)
    database = get_database("press")
    with first_delivery(database, ProcessedEvent, CONSUMER, event["id"]) as session:
        if session is None:
            return "duplicate"
        if event.get("topic") == "interpret.policy.withdrawn":
            return "withdrawn" if apply_policy_withdrawal(session, policy_id, version) else "stale"
        document = (event.get("payload") or {}).get("document") or {}
        return "stored" if apply_policy_document(session, policy_id, document, version) else "stale"


def sync_policies(app: Flask | None = None, interpret_app: Flask | None = None) -> int:
    """Replay every published policy from interpret's export (``interpret.search_export``, interpret's
    own code on its own database, as the search rebuild does) into ``press_policy``, for a press database
    that started late or drifted; policies no longer published are marked so. Returns the rows written.

    ``app`` holds the press database, ``interpret_app`` interpret's (the same app in a worker or the CLI).
    """
    from interpret.search_export import published_documents

    app = app or current_app
    published: set[int] = set()
    written = 0
    database = get_database("press", app)
    for doc_id, document, version in published_documents(interpret_app or app):
        policy_id = _int(doc_id.removeprefix("policy-")) if doc_id.startswith("policy-") else None
        if policy_id is None:
            continue
        published.add(policy_id)
        with database.transaction() as session:
            written += apply_policy_document(session, policy_id, document, version)
    with database.transaction() as session:
        for row in session.scalars(select(PressPolicy).where(PressPolicy.published.is_(True))):
            if row.id not in published:
                row.published = False
                written += 1
    return written


@shared_task(name="press.sync_policies", acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=2,
             retry_backoff_max=60, max_retries=3, ignore_result=True)
def sync_policies_task() -> int:
    """:func:`sync_policies` in the worker (whose one app holds every service's database): for beat, daily."""
    return sync_policies(current_app)


# -- matching messages to policies ---------------------------------------------------------------


@dataclass(frozen=True)
class KnownPolicy:
    id: int
    title: str
    document_number: str | None
    department: str | None
    url: str
    interpreted: bool


class PolicyMatcher:
    """Finds the policies a text asks about (rule in the module docstring)."""

    def __init__(self, policies: Iterable[KnownPolicy]) -> None:
        self.policies = {policy.id: policy for policy in policies}
        self._by_number: dict[str, list[int]] = {}
        self._by_title: dict[str, list[int]] = {}
        self._by_key: dict[str, list[tuple[str, int]]] = {}
        for policy in self.policies.values():
            if policy.document_number:
                self._by_number.setdefault(policy.document_number, []).append(policy.id)
            title = _clean_title(policy.title)
            if not title:
                continue
            self._by_title.setdefault(title, []).append(policy.id)
            if len(title) >= MIN_BARE_TITLE:
                self._by_key.setdefault(title[:_KEY], []).append((title, policy.id))

    def match(self, text: str) -> set[int]:
        found: set[int] = set()
        for number in DOCUMENT_NUMBER_IN_TEXT.findall(text):
            issuer, bracket, rest = normalise_document_number(number).partition("〔")
            # The pattern takes up to 12 characters before the bracket: 请问皖科政〔2017〕12号 names 皖科政〔2017〕12号.
            for start in range(len(issuer)):
                found.update(self._by_number.get(f"{issuer[start:]}{bracket}{rest}", ()))
        for quoted in _QUOTED.findall(text):
            found.update(self._by_title.get(_clean_title(quoted), ()))
        compact = _SPACES.sub("", text)
        for start in range(max(len(compact) - _KEY + 1, 0)):
            for title, policy_id in self._by_key.get(compact[start:start + _KEY], ()):
                if compact.startswith(title, start):
                    found.add(policy_id)
        return found


def known_policies(session: Session) -> list[KnownPolicy]:
    """The published policies the press office knows of."""
    rows = session.scalars(select(PressPolicy).where(PressPolicy.published.is_(True)).order_by(PressPolicy.id))
    return [
        KnownPolicy(id=row.id, title=row.title, document_number=row.document_number, department=row.department,
                    url=row.url, interpreted=bool(row.interpretations))
        for row in rows
    ]


def match_policies(policies: Sequence[KnownPolicy], text: str) -> set[int]:
    """The ids of the policies ``text`` asks about (one-off; build a :class:`PolicyMatcher` for many)."""
    return PolicyMatcher(policies).match(text)
