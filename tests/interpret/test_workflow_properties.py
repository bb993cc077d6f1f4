"""The shared review workflow (``services.workflow.REVIEW_WORKFLOW``) as interpretations use it, under
random use of the real API (issue 9).

Hypothesis drives ``/api/interpret/manage/interpretations/...`` (the Flask test client over the whole
suite, PostgreSQL behind it) with random sequences of the table's actions (submit, return, approve,
publish now or at a later time, withdraw, revise), edits (which revise published content into a new
draft) and policy links, each by a random user of the organisation: the right role in the
interpretation's division, a wrong role, the right role in the other division, the administrator.
After every step it reads what is stored and checks:

* no answer is a 5xx; a refusal is a 4xx and writes nothing (state, version, links, published versions,
  outbox);
* an accepted action moved the interpretation exactly as ``REVIEW_WORKFLOW`` says from the state it was
  in, and only for a user holding the action's permission in its department;
* the audit entries (``audit.recorded`` in the outbox) are exactly those of the accepted actions, with
  who did them, and every immediate publication left one published version (``content_version``)
  holding the version number it published;
* a published interpretation is always linked to at least one policy.

Each example drafts a fresh interpretation (the suite fixture rolls everything back after the test).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from interpret.models import ContentVersion, Interpretation, OutboxEvent
from interpret.workflow import ACTION_PERMISSION, PolicyFields, import_published_policy
from services.db import get_database, utcnow
from services.permissions import Permission
from services.suite import PathDispatcher
from services.workflow import REVIEW_WORKFLOW, ReviewState

from support.org import STAFF_PASSWORD, add_cross_users, cross_user

S = ReviewState
ROLE_OF = {Permission.DRAFT: "editor", Permission.REVIEW: "reviewer", Permission.PUBLISH: "disclosure_office"}
ROLES = ("editor", "reviewer", "dispatcher", "disclosure_office", "press_officer", "auditor")
AUTHOR = "editor_a"


@dataclass(frozen=True)
class Action:
    table: str | None  # the REVIEW_WORKFLOW action it applies, if any
    permission: Permission


ACTIONS: dict[str, Action] = {  # forward first: hypothesis draws the first of a list more often than the rest
    "submit": Action("submit", ACTION_PERMISSION["submit"]),
    "approve": Action("approve", ACTION_PERMISSION["approve"]),
    "publish": Action("publish", ACTION_PERMISSION["publish"]),
    "schedule": Action(None, ACTION_PERMISSION["publish"]),  # publish at a later time: stays approved
    "withdraw": Action("withdraw", ACTION_PERMISSION["withdraw"]),
    "revise": Action("revise", ACTION_PERMISSION["revise"]),
    "edit": Action(None, Permission.DRAFT),  # PATCH: a draft is edited; published/withdrawn are revised first
    "return": Action("return", ACTION_PERMISSION["return"]),
    "link": Action(None, Permission.DRAFT),
    "unlink": Action(None, Permission.DRAFT),
}


def plausible(action: str, state: S) -> bool:
    """Whether the table lets ``action`` run in ``state``."""
    table = ACTIONS[action].table
    if table is not None:
        return table in REVIEW_WORKFLOW.allowed_actions(state)
    if action == "schedule":
        return "publish" in REVIEW_WORKFLOW.allowed_actions(state)
    if action == "edit":
        return state in (S.DRAFT, S.PUBLISHED, S.WITHDRAWN)
    return True


@dataclass
class Stored:
    state: str
    version: int
    scheduled: bool
    links: set[int]
    published_versions: list[int]
    audits: Counter[tuple[str, str]]  # (action, username)
    outbox_rows: int

    def unchanged_since(self, other: Stored) -> bool:
        return (self.state, self.version, self.scheduled, self.links, self.published_versions, self.audits,
                self.outbox_rows) == (other.state, other.version, other.scheduled, other.links,
                                      other.published_versions, other.audits, other.outbox_rows)


@pytest.mark.timeout(900)  # passing takes about a minute; a failure's shrinking replays many API sequences
def test_no_sequence_of_api_calls_leaves_the_review_table(
    suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = get_database("interpret", suite["interpret"])
    monkeypatch.setattr(database, "publisher", None)  # events stay in the outbox, where the test reads them
    add_cross_users(suite)
    client = Client(PathDispatcher(suite), use_cookies=False)
    tokens: dict[str, str] = {}
    with database.transaction() as session:  # two published policies of the division to link to
        policy_ids = [import_published_policy(session, PolicyFields(
            title=f"关于科技成果转化的若干措施（{n}）", issuer="科学技术厅", level="本级",
            body="现将有关措施通知如下。", department="KJTA"), utcnow()).id for n in (1, 2)]

    def token(user: str) -> str:
        if user not in tokens:
            answer = client.post("/api/auth/token", json={"username": user, "password": STAFF_PASSWORD})
            assert answer.status_code == 200, answer.get_data(as_text=True)
            tokens[user] = answer.get_json()["token"]
        return tokens[user]

    def call(user: str, method: str, path: str, body: dict[str, Any] | None = None) -> TestResponse:
        return client.open(f"/api/interpret/manage/interpretations{path}", method=method, json=body,
                           headers={"Authorization": f"Bearer {token(user)}"})

    def read(item_id: int) -> Stored:
        with database.transaction() as session:
            item = session.get(Interpretation, item_id)
            assert item is not None
            versions = session.scalars(select(ContentVersion.version).where(
                ContentVersion.content_type == "interpretation", ContentVersion.content_id == item_id,
            ).order_by(ContentVersion.id)).all()
            audits = Counter(
                (event.payload["action"], event.payload["username"])
                for event in session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded"))
                if event.payload.get("object_type") == "interpretation" and event.payload["object_id"] == str(item_id)
            )
            rows = session.scalar(select(func.count()).select_from(OutboxEvent)) or 0
            return Stored(item.state, item.version, item.scheduled_at is not None,
                          {policy.id for policy in item.policies}, list(versions), audits, rows)

    class InterpretationMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.item_id = 0
            self.state = S.DRAFT
            self.version = 1
            self.scheduled = False
            self.links: set[int] = set()
            self.published_versions: list[int] = []
            self.audits: Counter[tuple[str, str]] = Counter()
            self.last: Stored | None = None

        @initialize(form=st.sampled_from(["文字解读", "图解"]))
        def draft(self, form: str) -> None:
            for flask_app in suite.values():
                flask_app.extensions["gongkai.limiter"].reset()
            body = {"title": f"科技成果转化措施解读{uuid.uuid4().hex[:6]}", "form": form, "interpreter_kind": "处室",
                    "body": "<p>本解读说明措施出台的背景和要点。</p>", "department": "KJTA"}
            if form == "图解":
                body["text_alternative"] = "图解的文字说明。"
            created = call(AUTHOR, "POST", "", body)
            assert created.status_code == 201, created.get_data(as_text=True)
            self.item_id = created.get_json()["id"]
            self.audits[("interpretation.create", AUTHOR)] += 1
            linked = call(AUTHOR, "POST", f"/{self.item_id}/policies", {"policy_id": policy_ids[0]})
            assert linked.status_code == 200, linked.get_data(as_text=True)
            self.links = {policy_ids[0]}
            self.audits[("interpretation.link", AUTHOR)] += 1
            self.last = read(self.item_id)
            self.check_matches(self.last)

        # -- who acts ------------------------------------------------------------------------------------

        @staticmethod
        def user_for(action: str, who: str, data: st.DataObject) -> str:
            right = ROLE_OF[ACTIONS[action].permission]
            if who == "right":
                return f"{right}_a"
            if who == "wrong_department":
                return f"{right}_b"
            if who == "admin":
                return "admin1"
            if who == "cross":
                return cross_user(ACTIONS[action].permission, "KJTA")
            return f"{data.draw(st.sampled_from([role for role in ROLES if role != right]))}_a"

        @staticmethod
        def may(user: str, action: str) -> bool:
            return user == f"{ROLE_OF[ACTIONS[action].permission]}_a"  # the item is in KJTA; cross users never

        # -- the rules -----------------------------------------------------------------------------------

        @rule(data=st.data(), who=st.sampled_from(["right"] * 4 + ["wrong_role", "wrong_department", "cross"]))
        def act_as_the_table_allows(self, data: st.DataObject, who: str) -> None:
            """An action the table allows from the current state (so that long paths are walked)."""
            choices = [action for action in ACTIONS if plausible(action, self.state)]
            self.act(data.draw(st.sampled_from(choices)), who, data)

        @rule(data=st.data(), action=st.sampled_from(list(ACTIONS)),
              who=st.sampled_from(["right", "wrong_role", "wrong_department", "cross", "admin"]))
        def act_at_random(self, data: st.DataObject, action: str, who: str) -> None:
            """Any action at all, often one the state or the user does not allow."""
            self.act(action, who, data)

        def send(self, action: str, user: str, data: st.DataObject) -> tuple[TestResponse, int | None]:
            if action in ("link", "unlink"):
                policy_id = data.draw(st.sampled_from(policy_ids))
                if action == "link":
                    return call(user, "POST", f"/{self.item_id}/policies", {"policy_id": policy_id}), policy_id
                return call(user, "DELETE", f"/{self.item_id}/policies/{policy_id}"), policy_id
            if action == "edit":
                return call(user, "PATCH", f"/{self.item_id}", {"summary": f"摘要{uuid.uuid4().hex[:4]}"}), None
            if action == "schedule":
                later = datetime.now(UTC) + timedelta(days=data.draw(st.integers(1, 30)))
                return call(user, "POST", f"/{self.item_id}/publish", {"publish_at": later.isoformat()}), None
            return call(user, "POST", f"/{self.item_id}/{action}", {}), None

        def act(self, action: str, who: str, data: st.DataObject) -> None:
            assert self.last is not None
            user = self.user_for(action, who, data)
            before = self.state
            answer, policy_id = self.send(action, user, data)
            text = answer.get_data(as_text=True)
            assert answer.status_code < 500, f"{action} by {user}: {answer.status_code} {text}"
            now = read(self.item_id)
            if answer.status_code >= 400:
                assert now.unchanged_since(self.last), f"{action} by {user} refused ({answer.status_code}) but wrote"
                self.last = now
                return
            assert answer.status_code == 200, f"{action} by {user}: {answer.status_code} {text}"
            assert plausible(action, before), f"{action} accepted in state {before}"
            assert self.may(user, action), f"{action} accepted from {user}"
            self.expect(action, user, before, policy_id)
            self.last = now
            self.check_matches(now)

        def expect(self, action: str, user: str, before: S, policy_id: int | None) -> None:
            """What an accepted action must have done, from the table and the documented rules."""
            table = ACTIONS[action].table
            if table is not None:
                self.state = REVIEW_WORKFLOW.target(before, table)
                self.audits[(f"interpretation.{table}", user)] += 1
                if table == "revise":
                    self.version += 1
                if table in ("return", "publish"):
                    self.scheduled = False
                if table == "publish":
                    self.published_versions.append(self.version)
            elif action == "schedule":
                self.scheduled = True
                self.audits[("interpretation.schedule", user)] += 1
            elif action == "edit":
                if before in (S.PUBLISHED, S.WITHDRAWN):
                    self.state = REVIEW_WORKFLOW.target(before, "revise")
                    self.version += 1
                    self.audits[("interpretation.revise", user)] += 1
                self.audits[("interpretation.update", user)] += 1
            elif action == "link" and policy_id not in self.links:
                self.links.add(policy_id)  # type: ignore[arg-type]
                self.audits[("interpretation.link", user)] += 1
            elif action == "unlink" and policy_id in self.links:
                self.links.discard(policy_id)  # type: ignore[arg-type]
                self.audits[("interpretation.unlink", user)] += 1

        # -- what must hold after every step -------------------------------------------------------------

        def check_matches(self, stored: Stored) -> None:
            assert stored.state == self.state.value, (stored.state, self.state)
            assert stored.version == self.version
            assert stored.scheduled == self.scheduled
            assert stored.links == self.links
            assert stored.published_versions == self.published_versions
            assert stored.audits == self.audits

        @invariant()
        def a_published_interpretation_explains_a_policy(self) -> None:
            if self.last is not None and self.last.state == S.PUBLISHED:
                assert self.last.links

    run_state_machine_as_test(InterpretationMachine, settings=settings(
        max_examples=12, stateful_step_count=30, deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    ))

