"""The consultation workflow as a state machine under random use of the real API (issue 9).

Hypothesis drives ``/api/consult/...`` (the Flask test client over the whole suite, PostgreSQL behind
it) with random sequences of staff actions by random users of the organisation — the right role in
the case's department, a wrong role, the right role in the other division — and the asker's own
actions (rating, reopening, more information) with the tracking number and query code. After every
step it reads what is stored and checks:

* no answer is a 5xx; a refusal is a 4xx and changes nothing (state, department, version, history,
  outbox: no partial write);
* an accepted action moved the case exactly as ``CONSULTATION_WORKFLOW`` says from the state it was
  in, and only for a user holding the action's permission in the case's department;
* the history (``consultation_step``) and the audit entries (``audit.recorded`` in the outbox) are
  exactly those of the accepted actions, by whom they were done, and the whole history is a path
  through the table.

Each example submits a fresh consultation (the suite fixture rolls everything back after the test).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from consult.models import Consultation, ConsultationStep, OutboxEvent
from consult.workflow import ANSWERED, CONSULTATION_WORKFLOW, ConsultationState
from services.db import get_database
from services.permissions import Permission
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD, add_cross_users, cross_user

S = ConsultationState
DIVISIONS = ("KJTA", "KJTB")
ROLE_OF = {Permission.DISPATCH: "dispatcher", Permission.DRAFT: "editor", Permission.REVIEW: "reviewer",
           Permission.PUBLISH: "disclosure_office", Permission.READ_RECORDS: "auditor"}
ROLES = ("editor", "reviewer", "dispatcher", "disclosure_office", "press_officer", "auditor")
READERS = frozenset(ROLES)  # READ_RECORDS: every role but the administrator's


@dataclass(frozen=True)
class Action:
    path: str  # after /api/consult/manage/consultations/<id>/ (staff) or /api/consult/consultations/<no>/ (asker)
    table: str | None  # the CONSULTATION_WORKFLOW action it applies, if any
    permission: Permission | None  # None: the asker's own action
    method: str = "POST"


ACTIONS: dict[str, Action] = {  # forward first: hypothesis draws the first of a list more often than the rest
    "accept": Action("accept", "accept", Permission.DISPATCH),
    "claim": Action("assign", "assign", Permission.DRAFT),  # an editor takes the case (no handler named)
    "draft": Action("draft", "draft", Permission.DRAFT, "PUT"),
    "submit-review": Action("submit-review", "submit_review", Permission.DRAFT),
    "approve": Action("approve", "approve", Permission.REVIEW),
    "reply": Action("reply", "reply", Permission.DRAFT),
    "confirm-redaction": Action("confirm-redaction", None, Permission.REVIEW),
    "publish": Action("publish", "publish", Permission.PUBLISH),
    "rate": Action("rating", None, None),
    "reopen": Action("reopen", "reopen", None),
    "information": Action("information", "provide_info", None),
    "assign": Action("assign", "assign", Permission.DISPATCH),
    "keep-private": Action("keep-private", "keep_private", Permission.PUBLISH),
    "close": Action("close", "close", Permission.DISPATCH),
    "request-info": Action("request-info", "request_info", Permission.DRAFT),
    "return": Action("return", "return", Permission.REVIEW),
    "unpublish": Action("unpublish", "unpublish", Permission.PUBLISH),
    "transfer": Action("transfer", "transfer", Permission.DISPATCH),
    "route": Action("route", "route", Permission.DISPATCH),
    "reject": Action("reject", "reject", Permission.DISPATCH),
    "note": Action("notes", None, Permission.READ_RECORDS),
}
FORWARD_WEIGHT = {
    "accept": 4, "assign": 2, "claim": 2, "draft": 4, "submit-review": 4, "approve": 4, "reply": 4,
    "confirm-redaction": 4, "publish": 3, "keep-private": 2, "close": 2, "rate": 3, "reopen": 3, "information": 3,
    "request-info": 1, "transfer": 1, "return": 1, "unpublish": 2, "route": 1, "reject": 1, "note": 0,
}
"""How often the first rule picks each action the table allows: mostly forward, so that examples reach the
publication, the rating and the reopening (a rejection ends a case's path: rarely)."""
STAGE = {S.REJECTED: 0, S.SUBMITTED: 0, S.ACCEPTED: 1, S.ASSIGNED: 2, S.DRAFTING: 3, S.AWAITING_INFO: 3,
         S.IN_REVIEW: 4, S.APPROVED: 5, S.REPLIED: 6, S.PRIVATE: 7, S.PUBLISHED: 7, S.CLOSED: 8, S.REOPENED: 9}
"""How far along a case is, for choosing actions that move it on."""
STEP_NAMES = {"confirm-redaction": "redaction_confirmed", "rate": "rate"}
"""History entries of the actions that are not transitions of the table."""


def plausible(action: str, state: S) -> bool:
    """Whether the table (or the rule of a non-transition action) lets ``action`` run in ``state``."""
    table = ACTIONS[action].table
    if table is not None:
        return table in CONSULTATION_WORKFLOW.allowed_actions(state)
    if action == "confirm-redaction":
        return state in (S.REPLIED, S.PRIVATE)
    if action == "rate":
        return state in ANSWERED
    return True


@dataclass
class Stored:
    state: str
    department: str
    version: int
    steps: list[tuple[str, str | None, str, str]]  # action, from, to, who
    audits: Counter[tuple[str, str]]  # (action, username)
    outbox_rows: int


@pytest.mark.timeout(900)  # passing takes about a minute; a failure's shrinking replays many API sequences
def test_no_sequence_of_api_calls_leaves_the_consultation_table(
    suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = suite["consult"]
    database = get_database("consult", app)
    monkeypatch.setattr(database, "publisher", None)  # events stay in the outbox, where the test reads them
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(app.extensions["gongkai.settings"], consult_intake_department="KJTA"))
    add_cross_users(suite)
    client = Client(PathDispatcher(suite), use_cookies=False)
    tokens: dict[str, str] = {}
    user_ids = {name: user.id for name, user in org["users"].items()}

    def token(user: str) -> str:
        if user not in tokens:
            answer = client.post("/api/auth/token", json={"username": user, "password": STAFF_PASSWORD})
            assert answer.status_code == 200, answer.get_data(as_text=True)
            tokens[user] = answer.get_json()["token"]
        return tokens[user]

    def read(case_id: int) -> Stored:
        with database.transaction() as session:
            case = session.get(Consultation, case_id)
            assert case is not None
            steps = session.execute(
                select(ConsultationStep.action, ConsultationStep.from_state, ConsultationStep.to_state,
                       ConsultationStep.actor_name)
                .where(ConsultationStep.consultation_id == case_id).order_by(ConsultationStep.id)
            ).all()
            audits = Counter(
                (event.payload["action"], event.payload["username"])
                for event in session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded"))
                if event.payload.get("object_type") == "consultation" and event.payload["object_id"] == str(case_id)
            )
            rows = session.scalar(select(func.count()).select_from(OutboxEvent)) or 0
            history = [(action, from_state, to_state, who) for action, from_state, to_state, who in steps]
            return Stored(case.state, case.department or "", case.version, history, audits, rows)

    class ConsultationMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.case_id = 0
            self.tracking_number = ""
            self.query_code = ""
            self.state = S.SUBMITTED
            self.department = "KJTA"
            self.steps: list[tuple[str, str | None, str, str]] = []
            self.audits: Counter[tuple[str, str]] = Counter()
            self.last = Stored("", "", 0, [], Counter(), 0)
            self.confirmed = self.rated = self.consent = self.reopened = False
            self.rating = ""

        @initialize(consent=st.booleans())
        def submit(self, consent: bool) -> None:
            for flask_app in suite.values():
                flask_app.extensions["gongkai.limiter"].reset()  # each example is a new visitor
            marker = uuid.uuid4().hex[:8]
            answer = client.post("/api/consult/consultations", json={
                "title": f"高新技术企业认定咨询{marker}", "question": f"请问认定需要提交哪些材料？编号{marker}",
                "name": "李四", "phone": f"139{uuid.uuid4().int % 10**8:08d}", "consent_to_publish": consent,
            })
            assert answer.status_code == 201, answer.get_data(as_text=True)
            receipt = answer.get_json()
            self.tracking_number, self.query_code = receipt["tracking_number"], receipt["query_code"]
            self.consent = consent
            with database.transaction() as session:
                self.case_id = int(session.scalar(select(Consultation.id).where(
                    Consultation.tracking_number == self.tracking_number)) or 0)
            self.steps = [("submit", None, S.SUBMITTED.value, "提交人")]
            self.audits = Counter({("consultation.submit", "asker"): 1})
            self.last = read(self.case_id)
            self.check_matches(self.last)

        # -- who acts ------------------------------------------------------------------------------------

        def user_for(self, action: str, who: str, data: st.DataObject) -> str | None:
            permission = ACTIONS[action].permission
            if permission is None:
                return None  # the asker
            letter = "a" if self.department == "KJTA" else "b"
            other = "b" if letter == "a" else "a"
            right = ROLE_OF[permission]
            if who == "right":
                return f"{right}_{letter}"
            if who == "wrong_department":
                return f"{right}_{other}"
            if who == "admin":
                return "admin1"  # the system administrator: manages accounts, handles no case
            if who == "cross":
                return cross_user(permission, self.department)
            wrong = [role for role in ROLES if role != right]
            return f"{data.draw(st.sampled_from(wrong))}_{letter}"

        @staticmethod
        def may(user: str | None, action: str, department: str) -> bool:
            """Whether ``user`` holds the action's permission in ``department`` (the asker's actions: always)."""
            permission = ACTIONS[action].permission
            if permission is None:
                return True
            if user is None or user == "admin1":
                return False
            if user.startswith("cross_"):
                own = f"KJT{user[-1].upper()}"
                if permission is Permission.READ_RECORDS:
                    return department in DIVISIONS
                return (department == own) == (permission is Permission.DRAFT)
            role, _, letter = user.rpartition("_")
            in_department = department == f"KJT{letter.upper()}"
            if permission is Permission.READ_RECORDS:
                return in_department and role in READERS
            return in_department and role == ROLE_OF[permission]

        # -- the request ---------------------------------------------------------------------------------

        def body(self, action: str, user: str | None, data: st.DataObject) -> dict[str, Any]:
            other = "KJTB" if self.department == "KJTA" else "KJTA"
            letter = self.department[-1].lower()
            if action == "route":
                return {"department": data.draw(st.sampled_from(DIVISIONS))}
            if action == "reject":
                return {"reason": data.draw(st.sampled_from(["duplicate", "no_content"]))}
            if action == "assign":
                return {"handler_id": user_ids[f"editor_{letter}"], "handler_name": f"editor_{letter}"}
            if action == "transfer":
                return {"department": other, "reason": "属另一处室职责"}
            if action == "draft":
                return {"reply": data.draw(st.sampled_from([
                    "您好，所需材料见附件清单。", "您好，请致电 0731-8888 1234 咨询，或发邮件至 kjt@example.gov.cn。",
                ]))}
            if action in ("request-info", "return", "unpublish", "note"):
                return {"text": "请补充说明。"}
            if action == "confirm-redaction":
                proposal = client.get(f"/api/consult/manage/consultations/{self.case_id}/personal-data",
                                      headers={"Authorization": f"Bearer {token(user or 'admin1')}"})
                assert proposal.status_code < 500, proposal.get_data(as_text=True)
                texts = proposal.get_json() if proposal.status_code == 200 else {}
                return {"published_question": texts.get("proposed_question") or "问题",
                        "published_reply": texts.get("proposed_reply") or "答复"}
            if action == "rate":
                return {"code": self.query_code,
                        "rating": data.draw(st.sampled_from(["dissatisfied", "basically_satisfied", "satisfied"]))}
            if action == "reopen":
                return {"code": self.query_code, "reason": "答复未解决问题"}
            if action == "information":
                return {"code": self.query_code, "text": "企业属于电子信息行业。"}
            return {}

        def send(self, action: str, user: str | None, body: dict[str, Any]) -> TestResponse:
            spec = ACTIONS[action]
            if user is None:
                for flask_app in suite.values():  # the asker's POSTs share the submission rate limit: not tested here
                    flask_app.extensions["gongkai.limiter"].reset()
                return client.open(f"/api/consult/consultations/{self.tracking_number}/{spec.path}",
                                   method=spec.method, json=body)
            return client.open(f"/api/consult/manage/consultations/{self.case_id}/{spec.path}", method=spec.method,
                               json=body, headers={"Authorization": f"Bearer {token(user)}"})

        # -- the rules -----------------------------------------------------------------------------------

        @rule(data=st.data(), who=st.sampled_from(["right"] * 4 + ["wrong_role", "wrong_department", "cross"]))
        def act_as_the_table_allows(self, data: st.DataObject, who: str) -> None:
            """An action the table allows from the current state (so that long paths are walked)."""
            choices = [action for action in sorted(ACTIONS, key=self.progress) if plausible(action, self.state)
                       for _ in range(FORWARD_WEIGHT[action])]
            if choices:
                self.act(data.draw(st.sampled_from(choices)), who, data)

        @rule(data=st.data(), action=st.sampled_from(list(ACTIONS)),
              who=st.sampled_from(["right", "wrong_role", "wrong_department", "cross", "admin"]))
        def act_at_random(self, data: st.DataObject, action: str, who: str) -> None:
            """Any action at all, often one the state or the user does not allow."""
            self.act(action, who, data)

        def progress(self, action: str) -> tuple[int, int]:
            """Actions that move the case on first (hypothesis favours the start of a list)."""
            table = ACTIONS[action].table
            onwards = table in CONSULTATION_WORKFLOW.allowed_actions(self.state) and STAGE[
                CONSULTATION_WORKFLOW.target(self.state, table)] > STAGE[self.state] if table else False
            needed = (action == "confirm-redaction" and not self.confirmed) or (action == "rate" and not self.rated)
            # ...unless a rule outside the table will refuse it anyway
            futile = (action == "publish" and not (self.consent and self.confirmed)) or (
                action == "reopen" and (self.rating != "dissatisfied" or self.reopened))  # once per case
            return (0 if (onwards or needed) and not futile else 1, list(ACTIONS).index(action))

        def act(self, action: str, who: str, data: st.DataObject) -> None:
            user = self.user_for(action, who, data)
            before = self.state
            body = self.body(action, user, data)
            answer = self.send(action, user, body)
            text = answer.get_data(as_text=True)
            assert answer.status_code < 500, f"{action} by {user}: {answer.status_code} {text}"
            now = read(self.case_id)
            if answer.status_code >= 400:
                # Refused: nothing written at all.
                assert (now.state, now.department, now.version, now.steps, now.audits, now.outbox_rows) == (
                    self.last.state, self.last.department, self.last.version, self.last.steps, self.last.audits,
                    self.last.outbox_rows), f"{action} by {user} refused ({answer.status_code}) but wrote"
                self.last = now
                return
            assert answer.status_code == 200, f"{action} by {user}: {answer.status_code} {text}"
            # Accepted: only from a state the table allows, only by someone holding the permission here.
            assert plausible(action, before), f"{action} accepted in state {before}"
            assert self.may(user, action, self.department), f"{action} accepted from {user} in {self.department}"
            table = ACTIONS[action].table
            after = CONSULTATION_WORKFLOW.target(before, table) if table is not None else before
            who_name = user or "提交人"
            audit_name = user or "asker"
            if table is not None and not (action == "draft" and before == S.DRAFTING):
                self.steps.append((table, before.value, after.value, who_name))
                self.audits[(f"consultation.{table}", audit_name)] += 1
            elif action == "draft":  # a later save of the draft: audited, no new step
                self.audits[("consultation.draft", audit_name)] += 1
            elif action in STEP_NAMES:
                self.steps.append((STEP_NAMES[action], before.value, after.value, who_name))
                self.audits[(f"consultation.{STEP_NAMES[action]}", audit_name)] += 1
            elif action == "note":
                self.audits[("consultation.note", audit_name)] += 1
            if action in ("route", "transfer"):
                self.department = body["department"]
            self.state = after
            if action == "reply":
                self.confirmed = self.rated = False  # a new reply needs its own confirmation and rating
            self.confirmed |= action == "confirm-redaction"
            self.rated |= action == "rate"
            self.reopened |= action == "reopen"
            if action == "rate":
                self.rating = body["rating"]
            assert now.version > self.last.version or action == "note", f"{action} accepted without a new version"
            self.last = now
            self.check_matches(now)

        # -- what must hold after every step -------------------------------------------------------------

        def check_matches(self, stored: Stored) -> None:
            assert stored.state == self.state.value, (stored.state, self.state)
            assert stored.department == self.department
            assert stored.steps == self.steps
            assert stored.audits == self.audits

        @invariant()
        def the_history_is_a_path_through_the_table(self) -> None:
            if not self.case_id:
                return
            previous: str | None = None
            for action, from_state, to_state, _who in self.last.steps:
                if action in CONSULTATION_WORKFLOW.transitions:
                    assert from_state is not None
                    assert to_state == CONSULTATION_WORKFLOW.target(S(from_state), action).value, action
                else:
                    assert action == "submit" or from_state == to_state, action
                assert previous is None or from_state == previous, (action, from_state, previous)
                previous = to_state
            assert previous == self.last.state

    run_state_machine_as_test(ConsultationMachine, settings=settings(
        max_examples=15, stateful_step_count=30, deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    ))
