"""Published content for the search tests, made through the services' own workflows, and the search
events those workflows emit, applied by ``search.tasks`` in-process as the worker would."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from consult import workflow as consult_workflow
from consult.models import Consultation
from consult.models import OutboxEvent as ConsultOutbox
from interpret import workflow as interpret_workflow
from interpret.models import Interpretation, Policy
from interpret.models import OutboxEvent as InterpretOutbox
from search.tasks import index_document, remove_document
from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.events import subscribers
from services.permissions import Grant, Role

DEPARTMENT = "KJT"
ANSWER_DEPARTMENT = "KJTA"
SCOPE = (DEPARTMENT, ANSWER_DEPARTMENT)
EDITOR = StaffIdentity(9101, "editor_s", "编辑", (Grant(Role.EDITOR, DEPARTMENT, SCOPE),), "s-editor", "session")
RELEASER = StaffIdentity(
    9102, "releaser_s", "审核发布",
    (Grant(Role.REVIEWER, DEPARTMENT, SCOPE), Grant(Role.DISCLOSURE_OFFICE, DEPARTMENT, SCOPE)),
    "s-releaser", "session",
)
SEARCH_TASKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "search.index_document": index_document,
    "search.remove_document": remove_document,
}

Message = dict[str, Any]


class Newsroom:
    """Publishes, revises and withdraws through interpret's and consult's workflows; hands their
    search events to the search tasks (``sync``), or holds them back to deliver in another order
    (``take`` then ``deliver``) or never (a lost event)."""

    def __init__(self, suite: dict[str, Flask]) -> None:
        self.suite = suite
        self.taken: set[str] = set()

    def _interpret(self) -> AbstractContextManager[Session]:
        return get_database("interpret", self.suite["interpret"]).transaction()

    def _consult(self) -> AbstractContextManager[Session]:
        return get_database("consult", self.suite["consult"]).transaction()

    # -- interpret -----------------------------------------------------------------------------

    def policy(self, title: str, body: str = "为做好有关工作，现通知如下。", **fields: Any) -> int:
        values: dict[str, Any] = {"issuer": "国务院", "level": "国家", "body": body, "department": DEPARTMENT}
        values.update(fields)
        with self._interpret() as session:
            policy = interpret_workflow.import_published_policy(
                session, interpret_workflow.PolicyFields(title=title, **values), utcnow())
            return policy.id

    def interpretation(self, title: str, policy_id: int) -> int:
        with self._interpret() as session:
            item = interpret_workflow.create_interpretation(session, EDITOR, interpret_workflow.InterpretationFields(
                title=title, form="文字解读", interpreter_kind="第一解读人", department=DEPARTMENT,
                body=f"<p>{title}：本解读说明文件出台的背景。</p>"))
            policy = session.get(Policy, policy_id)
            assert policy is not None
            interpret_workflow.link_policy(session, EDITOR, item, policy)
            interpret_workflow.submit(session, EDITOR, item)
            interpret_workflow.approve(session, RELEASER, item)
            interpret_workflow.publish(session, RELEASER, item)
            return item.id

    def revise_policy(self, policy_id: int, title: str, *, republish: bool = True) -> None:
        """Edit a published policy into a new draft version; publish that version too unless told not to."""
        with self._interpret() as session:
            policy = session.get(Policy, policy_id)
            assert policy is not None
            interpret_workflow.update_policy(session, EDITOR, policy, {"title": title})
            if republish:
                interpret_workflow.submit(session, EDITOR, policy)
                interpret_workflow.approve(session, RELEASER, policy)
                interpret_workflow.publish(session, RELEASER, policy)

    def withdraw_policy(self, policy_id: int) -> None:
        with self._interpret() as session:
            policy = session.get(Policy, policy_id)
            assert policy is not None
            interpret_workflow.withdraw(session, RELEASER, policy)

    def withdraw_interpretation(self, interpretation_id: int) -> None:
        with self._interpret() as session:
            item = session.get(Interpretation, interpretation_id)
            assert item is not None
            interpret_workflow.withdraw(session, RELEASER, item)

    # -- consult -------------------------------------------------------------------------------

    def answer(self, title: str, question: str = "请问相关政策如何申请？",
               reply: str = "您好，请按有关规定向主管部门申请。") -> int:
        """An answered consultation published on the public board (the historical import's path)."""
        now = utcnow()
        with self._consult() as session:
            consultation = consult_workflow.record_answered_consultation(
                session, tracking_number=f"S{uuid.uuid4().hex[:12]}", title=title, question=question, reply=reply,
                received_at=now - timedelta(days=3), replied_at=now - timedelta(days=1),
                department=ANSWER_DEPARTMENT,
            )
            consult_workflow.publish_answer(session, consultation, at=now)
            return consultation.id

    def unpublish_answer(self, consultation_id: int) -> None:
        with self._consult() as session:
            consultation = session.get(Consultation, consultation_id)
            assert consultation is not None
            consult_workflow.unpublish(session, RELEASER, consultation, "内容已过时")

    def close_answer(self, consultation_id: int) -> None:
        with self._consult() as session:
            consultation = session.get(Consultation, consultation_id)
            assert consultation is not None
            consult_workflow.close(session, None, consultation)

    def rate_answer(self, consultation_id: int) -> None:
        with self._consult() as session:
            consultation = session.get(Consultation, consultation_id)
            assert consultation is not None
            consult_workflow.rate(session, consultation, "satisfied", None)

    def republish_answer(self, consultation_id: int) -> None:
        with self._consult() as session:
            consultation = session.get(Consultation, consultation_id)
            assert consultation is not None
            consult_workflow.publish(session, RELEASER, consultation)

    # -- the search events ---------------------------------------------------------------------

    def _outbox(self) -> Iterator[Message]:
        with self._interpret() as session:
            interpret_events = [e.as_message() for e in session.scalars(
                select(InterpretOutbox).order_by(InterpretOutbox.created_at))]
        with self._consult() as session:
            consult_events = [e.as_message() for e in session.scalars(
                select(ConsultOutbox).order_by(ConsultOutbox.created_at))]
        for message in sorted(interpret_events + consult_events, key=lambda m: str(m["created_at"])):
            if any(name in SEARCH_TASKS for name in subscribers(message["topic"])):
                yield message

    def take(self) -> list[Message]:
        """The search events emitted since the last ``take`` (or ``sync``), oldest first; not applied."""
        messages = [message for message in self._outbox() if message["id"] not in self.taken]
        self.taken.update(message["id"] for message in messages)
        return messages

    def deliver(self, messages: list[Message]) -> list[str]:
        """Apply ``messages`` in the order given, as the worker would: each task's answer."""
        results = []
        with self.suite["search"].app_context():
            for message in messages:
                for name in subscribers(message["topic"]):
                    if name in SEARCH_TASKS:
                        results.append(SEARCH_TASKS[name](message))
        return results

    def sync(self) -> list[str]:
        """Apply every search event not taken yet."""
        return self.deliver(self.take())
