"""The consultation rules at the workflow level, against the real PostgreSQL (issue 5).

Every function of ``consult.workflow`` is called the way the API, the pages and the beat
tasks call it, in one session that is rolled back after the test. What is checked:

* the transition table: every action from every state, through the workflow functions
  themselves, is allowed from exactly the listed states (``TransitionNotAllowed`` otherwise,
  nothing changed);
* who may do what (``NotPermitted``), review by a different person, rejection reasons and
  referrals, transfers, rating and reopening;
* the public side: duplicates, the honeypot, sensitive words, tracking numbers, query codes;
* the outbox: every change writes its ``consult.consultation.<action>`` event and an audit
  entry, and no event carries the submitter's name, phone or e-mail;
* publication: consent, the reviewer's confirmed redaction, and the search document.

The moment "now" is controlled: ``submit_consultation(now=...)`` and a monkeypatched
``consult.workflow.utcnow`` for the functions that stamp the time themselves.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consult import workflow
from consult.models import Consultation, ConsultationStep, OutboxEvent, TrackingSerial
from consult.workflow import CONSULTATION_WORKFLOW, ConsultationState, Submission, SubmissionResult
from services.auth import StaffIdentity
from services.db import get_database
from services.permissions import Grant, NotPermitted, Role
from services.settings import Settings
from services.text.pii import MARKERS
from services.workflow import ContentProblem, TransitionNotAllowed

from support.clock import Clock, bj

S = ConsultationState
SCOPE = ("KJTA",)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(bj(2026, 11, 2, 9))  # Monday 2 November 2026: an ordinary working week
    monkeypatch.setattr(workflow, "utcnow", clock)
    return clock


@pytest.fixture
def settings(suite: dict[str, Flask], tmp_path: Path) -> Settings:
    """The suite's settings with the intake queue at KJTA and a category table of two divisions.

    ``data_dir`` is a fresh folder, so no routing model is installed: uncategorised submissions
    wait in the intake department's queue.
    """
    table = tmp_path / "category_departments.csv"
    table.write_text(
        "category,department_code,department_name\n科技项目,KJTA,政策法规处\n高新技术,KJTB,高新技术处\n",
        encoding="utf-8",
    )
    base: Settings = suite["consult"].extensions["gongkai.settings"]
    return dataclasses.replace(base, consult_intake_department="KJTA", data_dir=tmp_path,
                               router_departments_file=table)


@pytest.fixture
def db(suite: dict[str, Flask]) -> Iterator[Session]:
    session = get_database("consult", suite["consult"]).new_session()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def org_staff(suite: dict[str, Flask], org: dict[str, Any]) -> dict[str, StaffIdentity]:
    """The org fixture's users as the identity service issues them (``editor_a``, ``dispatcher_b``, ``admin``...)."""
    from services.identity.accounts import build_identity
    from services.identity.models import User

    identities: dict[str, StaffIdentity] = {}
    with get_database("identity", suite["identity"]).transaction() as session:
        for key, user in org["users"].items():
            loaded = session.get(User, user.id)
            assert loaded is not None
            identities[key] = build_identity(session, loaded, "api")
    return identities


CONSULT_ROLES = (Role.DISPATCHER, Role.EDITOR, Role.REVIEWER, Role.DISCLOSURE_OFFICE, Role.AUDITOR)


@pytest.fixture
def staff() -> dict[str, StaffIdentity]:
    """The same people as the org fixture's, signed identities built directly: consult reads nothing else of them
    (the permission test checks these grants against the ones the identity service issues)."""
    identities: dict[str, StaffIdentity] = {}
    for number, (role, letter) in enumerate(itertools.product(CONSULT_ROLES, "ab"), start=9001):
        name = f"{role.value}_{letter}"
        code = f"KJT{letter.upper()}"
        identities[name] = StaffIdentity(number, name, name, (Grant(role, code, (code,)),), f"s-{name}", "api")
    return identities


ALL_ROLES = StaffIdentity(
    9901, "all_roles_kjta", "全部角色", tuple(
        Grant(role, "KJTA", ("KJTA", "KJTB"))
        for role in (Role.DISPATCHER, Role.EDITOR, Role.REVIEWER, Role.DISCLOSURE_OFFICE)
    ), "s-all", "api",
)
"""One person holding every consult role, so that only the state decides (the transition table test)."""

EDITOR_REVIEWER = StaffIdentity(
    9902, "editor_reviewer_a", "起草审核人",
    (Grant(Role.EDITOR, "KJTA", SCOPE), Grant(Role.REVIEWER, "KJTA", SCOPE)), "s-er", "api",
)
OTHER_EDITOR = StaffIdentity(9903, "editor2_a", "另一编辑", (Grant(Role.EDITOR, "KJTA", SCOPE),), "s-e2", "api")

_phones = itertools.count(10_000_000)


def fresh_phone() -> str:
    """A distinct mobile number per submission, so two test submissions are never duplicates."""
    return f"139{next(_phones)}"


def ask(**fields: Any) -> Submission:
    values: dict[str, Any] = {
        "title": "高新技术企业认定咨询",
        "question": "请问申请高新技术企业认定需要提交哪些材料？研发费用占比怎么计算？",
        "name": "李明",
        "phone": fresh_phone(),
        "consent_to_publish": True,
    }
    values.update(fields)
    return Submission(**values)


def submit(db: Session, settings: Settings, clock: Clock, **fields: Any) -> SubmissionResult:
    return workflow.submit_consultation(db, settings, ask(**fields), now=clock.now)


def answered(db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity],
             **fields: Any) -> Consultation:
    """A KJTA consultation taken through the whole staff workflow to ``replied``."""
    consultation = submit(db, settings, clock, **fields).consultation
    workflow.accept(db, staff["dispatcher_a"], consultation)
    reply_through(db, staff, consultation)
    return consultation


def reply_through(db: Session, staff: dict[str, StaffIdentity], consultation: Consultation,
                  text: str = "您好！所需材料见《高新技术企业认定管理办法》第十一条。") -> None:
    """From ``accepted`` or ``reopened``: assigned to editor_a, drafted, reviewed, approved, replied."""
    workflow.assign(db, staff["dispatcher_a"], consultation, staff["editor_a"].user_id, "editor_a")
    workflow.save_draft(db, staff["editor_a"], consultation, text)
    workflow.submit_for_review(db, staff["editor_a"], consultation)
    workflow.approve(db, staff["reviewer_a"], consultation)
    workflow.send_reply(db, staff["editor_a"], consultation)
    assert consultation.state == S.REPLIED


def count(db: Session, model: Any) -> int:
    db.flush()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


# -- the transition table ------------------------------------------------------------------------

EXPECTED_TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "route": ({"submitted"}, "submitted"),
    "accept": ({"submitted"}, "accepted"),
    "reject": ({"submitted"}, "rejected"),
    "assign": ({"accepted", "assigned", "drafting", "reopened"}, "assigned"),
    "transfer": ({"accepted", "assigned", "drafting", "reopened"}, "accepted"),
    "draft": ({"assigned", "drafting"}, "drafting"),
    "request_info": ({"assigned", "drafting"}, "awaiting_info"),
    "provide_info": ({"awaiting_info"}, "drafting"),
    "submit_review": ({"drafting"}, "in_review"),
    "return": ({"in_review", "approved"}, "drafting"),
    "approve": ({"in_review"}, "approved"),
    "reply": ({"approved"}, "replied"),
    "publish": ({"replied", "private"}, "published"),
    "keep_private": ({"replied"}, "private"),
    "unpublish": ({"published"}, "private"),
    "close": ({"replied", "published", "private"}, "closed"),
    "reopen": ({"replied", "published", "private", "closed"}, "reopened"),
}
"""Issue 5's states written out by hand: submitted → accepted or rejected → assigned → drafting
(⇄ awaiting information) → in review (⇄ returned) → approved → replied → published or private;
closed; reopened (from an answer, by a dissatisfied asker)."""

ACTIONS: dict[str, Callable[[Session, Settings, Consultation], object]] = {
    "route": lambda db, settings, c: workflow.route(db, ALL_ROLES, c, "KJTA", None, settings),
    "accept": lambda db, settings, c: workflow.accept(db, ALL_ROLES, c),
    "reject": lambda db, settings, c: workflow.reject(db, ALL_ROLES, c, "no_content", None, None),
    "assign": lambda db, settings, c: workflow.assign(db, ALL_ROLES, c, 4242, "承办人"),
    "transfer": lambda db, settings, c: workflow.transfer(db, ALL_ROLES, c, "KJTB", "属高新技术处职责"),
    "draft": lambda db, settings, c: workflow.save_draft(db, ALL_ROLES, c, "答复草稿"),
    "request_info": lambda db, settings, c: workflow.request_info(db, ALL_ROLES, c, "请补充企业名称"),
    "provide_info": lambda db, settings, c: workflow.provide_info(db, c, "企业名称：某某科技有限公司"),
    "submit_review": lambda db, settings, c: workflow.submit_for_review(db, ALL_ROLES, c),
    "return": lambda db, settings, c: workflow.return_for_changes(db, ALL_ROLES, c, "请补充政策依据"),
    "approve": lambda db, settings, c: workflow.approve(db, ALL_ROLES, c),
    "reply": lambda db, settings, c: workflow.send_reply(db, ALL_ROLES, c),
    "publish": lambda db, settings, c: workflow.publish(db, ALL_ROLES, c),
    "keep_private": lambda db, settings, c: workflow.keep_private(db, ALL_ROLES, c),
    "unpublish": lambda db, settings, c: workflow.unpublish(db, ALL_ROLES, c, "误公开"),
    "close": lambda db, settings, c: workflow.close(db, ALL_ROLES, c),
    "reopen": lambda db, settings, c: workflow.reopen(db, settings, c, "答复没有回答我的问题"),
}

_cases = itertools.count(1)


def case_in(db: Session, state: ConsultationState, now: datetime) -> Consultation:
    """A KJTA consultation put straight into ``state``, with every other precondition of every action met
    (a draft, the asker's consent, confirmed texts, a dissatisfied rating of a fresh reply...)."""
    today = workflow.local_day(now)
    consultation = Consultation(
        tracking_number=f"ZXTABLE-{next(_cases):05d}", title="高新技术企业认定咨询", question="需要哪些材料？",
        name="李明", phone="13800138000", contact_key="table", consent_to_publish=True, state=state,
        department="KJTA", needs_routing=False, accept_due=today, reply_due=today + timedelta(days=7),
        reply_working_days=5, clock_started_on=today, paused_since=today, paused_working_days=0,
        extension_working_days=0, reopen_count=0, reply_draft="答复草稿", reply="答复",
        published_question="高新技术企业认定咨询\n需要哪些材料？", published_reply="答复",
        redaction_confirmed_by="审核人", rating="dissatisfied", rated_at=now, replied_at=now - timedelta(hours=1),
        received_at=now - timedelta(days=3), created_at=now - timedelta(days=3), version=1, historical=False,
    )
    db.add(consultation)
    db.flush()
    return consultation


def test_the_transition_table_is_the_one_of_the_issue() -> None:
    assert set(CONSULTATION_WORKFLOW.transitions) == set(EXPECTED_TRANSITIONS) == set(ACTIONS)
    for state in ConsultationState:
        for action, (sources, target) in EXPECTED_TRANSITIONS.items():
            if state.value in sources:
                assert CONSULTATION_WORKFLOW.target(state, action) == target, (state, action)
            else:
                with pytest.raises(TransitionNotAllowed):
                    CONSULTATION_WORKFLOW.target(state, action)
        with pytest.raises(TransitionNotAllowed):
            CONSULTATION_WORKFLOW.target(state, "no_such_action")


@pytest.mark.parametrize("action", sorted(EXPECTED_TRANSITIONS))
def test_every_action_is_allowed_from_exactly_its_states(
    action: str, db: Session, settings: Settings, clock: Clock
) -> None:
    """Through the workflow function itself, by someone holding every role: only the state decides."""
    sources, target = EXPECTED_TRANSITIONS[action]
    wrong: list[str] = []
    for state in ConsultationState:
        consultation = case_in(db, state, clock.now)
        events_before = count(db, OutboxEvent)
        if state.value in sources:
            ACTIONS[action](db, settings, consultation)
            db.flush()
            if consultation.state != target:
                wrong.append(f"{action} from {state}: ended in {consultation.state}, expected {target}")
        else:
            try:
                ACTIONS[action](db, settings, consultation)
            except TransitionNotAllowed:
                if (consultation.state, consultation.version, count(db, OutboxEvent)) != (state, 1, events_before):
                    wrong.append(f"{action} from {state}: refused but something changed")
            else:
                wrong.append(f"{action} from {state}: allowed, ended in {consultation.state}")
    assert wrong == []


# -- permissions -------------------------------------------------------------------------------


def test_each_step_needs_its_role_in_the_consultations_department(
    db: Session, settings: Settings, clock: Clock, org_staff: dict[str, StaffIdentity],
    staff: dict[str, StaffIdentity],
) -> None:
    """With the identities the identity service issues for the org fixture's users."""
    for name, identity in staff.items():  # the quicker stand-ins of the other tests hold the same grants
        assert org_staff[name].grants == identity.grants, name
    staff = org_staff
    consultation = submit(db, settings, clock).consultation
    assert consultation.department == "KJTA" and consultation.state == S.SUBMITTED

    def refused(call: Callable[[], object]) -> None:
        state, version = consultation.state, consultation.version
        with pytest.raises(NotPermitted):
            call()
        assert (consultation.state, consultation.version) == (state, version)

    # Accepting is the dispatcher's, and only in his own division.
    for who in ("editor_a", "reviewer_a", "disclosure_office_a", "auditor_a", "admin", "dispatcher_b"):
        refused(partial(workflow.accept, db, staff[who], consultation))
    refused(lambda: workflow.reject(db, staff["dispatcher_b"], consultation, "no_content", None, None))
    workflow.accept(db, staff["dispatcher_a"], consultation)

    # Assigning: a dispatcher of the division chooses, an editor of the division may claim it; KJTB may not.
    refused(lambda: workflow.assign(db, staff["dispatcher_b"], consultation, staff["editor_b"].user_id, "editor_b"))
    refused(lambda: workflow.assign(db, staff["editor_b"], consultation, None, None))
    refused(lambda: workflow.assign(db, staff["reviewer_a"], consultation, None, None))
    workflow.assign(db, staff["editor_a"], consultation, None, None)
    assert consultation.handler_id == staff["editor_a"].user_id

    # Drafting: an editor of the division; another editor of it may not take over the handler's case.
    refused(lambda: workflow.save_draft(db, staff["editor_b"], consultation, "答复"))
    refused(lambda: workflow.save_draft(db, staff["dispatcher_a"], consultation, "答复"))
    with pytest.raises(ContentProblem) as taken:
        workflow.save_draft(db, OTHER_EDITOR, consultation, "答复")
    assert "handler" in taken.value.errors
    workflow.save_draft(db, staff["editor_a"], consultation, "您好！所需材料见认定办法第十一条。")
    workflow.submit_for_review(db, staff["editor_a"], consultation)

    # Approving: a reviewer of the division, never a dispatcher or KJTB's reviewer.
    for who in ("dispatcher_a", "disclosure_office_a", "reviewer_b"):
        refused(partial(workflow.approve, db, staff[who], consultation))
    refused(lambda: workflow.return_for_changes(db, staff["reviewer_b"], consultation, "请修改"))
    workflow.approve(db, staff["reviewer_a"], consultation)

    refused(lambda: workflow.send_reply(db, staff["editor_b"], consultation))
    refused(lambda: workflow.send_reply(db, staff["dispatcher_a"], consultation))
    workflow.send_reply(db, staff["editor_a"], consultation)

    # Publishing: the reviewer confirms the redaction, the disclosure office publishes; KJTB does neither.
    review = workflow.personal_data_review(consultation)
    for who in ("reviewer_b", "editor_a", "disclosure_office_a"):
        with pytest.raises(NotPermitted):
            workflow.confirm_redaction(db, staff[who], consultation, review.proposed_question, review.proposed_reply)
    assert consultation.published_question is None
    workflow.confirm_redaction(db, staff["reviewer_a"], consultation, review.proposed_question, review.proposed_reply)
    for who in ("disclosure_office_b", "reviewer_a", "dispatcher_a"):
        refused(partial(workflow.publish, db, staff[who], consultation))
    refused(lambda: workflow.close(db, staff["dispatcher_b"], consultation))
    workflow.publish(db, staff["disclosure_office_a"], consultation)
    assert consultation.state == S.PUBLISHED

    # Notes and extensions: KJTB staff cannot touch a KJTA case either.
    with pytest.raises(NotPermitted):
        workflow.add_note(db, staff["editor_b"], consultation, "内部备注")
    with pytest.raises(NotPermitted):
        workflow.request_extension(db, staff["editor_b"], consultation, 2, "需会商")
    workflow.add_note(db, staff["auditor_a"], consultation, "已核对")  # reading records is enough for a note


def test_a_reviewer_cannot_approve_a_reply_he_wrote(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    """Review by a different person: someone holding both roles cannot pass his own text."""
    own = submit(db, settings, clock).consultation
    workflow.accept(db, staff["dispatcher_a"], own)
    workflow.assign(db, EDITOR_REVIEWER, own, None, None)
    workflow.save_draft(db, EDITOR_REVIEWER, own, "您好！请按认定办法准备材料。")
    workflow.submit_for_review(db, EDITOR_REVIEWER, own)
    with pytest.raises(ContentProblem) as refused:
        workflow.approve(db, EDITOR_REVIEWER, own)
    assert "reviewer" in refused.value.errors
    assert own.state == S.IN_REVIEW and own.reviewer_id is None
    workflow.approve(db, staff["reviewer_a"], own)
    assert own.state == S.APPROVED and own.reviewer_name == "reviewer_a"


def test_a_reviewer_who_rewrote_the_handlers_draft_cannot_approve_it(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    """A reviewer may step into a handler's draft, but then he wrote the text: the handler submitting it
    for review does not make the reviewer a second pair of eyes on his own words."""
    consultation = submit(db, settings, clock).consultation
    workflow.accept(db, staff["dispatcher_a"], consultation)
    workflow.assign(db, staff["dispatcher_a"], consultation, staff["editor_a"].user_id, "editor_a")
    workflow.save_draft(db, staff["editor_a"], consultation, "初稿")
    workflow.save_draft(db, EDITOR_REVIEWER, consultation, "您好！经研究，答复如下：……")  # the reviewer steps in
    workflow.submit_for_review(db, staff["editor_a"], consultation)
    with pytest.raises(ContentProblem) as refused:
        workflow.approve(db, EDITOR_REVIEWER, consultation)
    assert "reviewer" in refused.value.errors
    assert consultation.state == S.IN_REVIEW


# -- rejection and transfer -----------------------------------------------------------------------


def test_rejection_needs_a_listed_reason_and_a_referral_when_not_our_duty(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    dispatcher = staff["dispatcher_a"]
    consultation = submit(db, settings, clock).consultation
    for reason, referral, field in (("spam", None, "reason"), ("", None, "reason"),
                                    ("not_our_duty", None, "referral"), ("not_our_duty", "   ", "referral")):
        with pytest.raises(ContentProblem) as refused:
            workflow.reject(db, dispatcher, consultation, reason, None, referral)
        assert field in refused.value.errors, (reason, referral)
        assert consultation.state == S.SUBMITTED and consultation.version == 1

    workflow.reject(db, dispatcher, consultation, "not_our_duty", "属市场监管职责", "市市场监督管理局")
    assert consultation.state == S.REJECTED
    assert (consultation.rejection_reason, consultation.referral) == ("not_our_duty", "市市场监督管理局")
    assert consultation.rejection_note == "属市场监管职责" and consultation.closed_at == clock.now
    step = consultation.steps[-1]
    assert step.action == "reject" and step.public
    assert step.public_note is not None and "不属于本机关职责" in step.public_note
    assert "市市场监督管理局" in step.public_note
    assert workflow.current_deadline(consultation) is None
    with pytest.raises(TransitionNotAllowed):
        workflow.accept(db, dispatcher, consultation)

    # Every reason of the list is accepted.
    for reason in workflow.REJECTION_REASONS:
        other = submit(db, settings, clock).consultation
        workflow.reject(db, dispatcher, other, reason, None, "市市场监督管理局" if reason == "not_our_duty" else None)
        assert other.state == S.REJECTED and other.rejection_reason == reason


def test_a_transfer_keeps_the_history_and_the_deadline_and_changes_the_department(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    consultation = submit(db, settings, clock).consultation
    workflow.accept(db, staff["dispatcher_a"], consultation)
    workflow.assign(db, staff["dispatcher_a"], consultation, staff["editor_a"].user_id, "editor_a")
    workflow.save_draft(db, staff["editor_a"], consultation, "初稿")
    db.flush()
    accept_due, reply_due, received = consultation.accept_due, consultation.reply_due, consultation.received_at
    history = [(step.id, step.action) for step in consultation.steps]
    assert reply_due is not None and [action for _id, action in history] == ["submit", "accept", "assign", "draft"]

    with pytest.raises(ContentProblem) as refused:
        workflow.transfer(db, staff["dispatcher_a"], consultation, "KJTB", "  ")
    assert "reason" in refused.value.errors
    with pytest.raises(ContentProblem):
        workflow.transfer(db, staff["dispatcher_a"], consultation, "KJTA", "本部门")
    with pytest.raises(NotPermitted):
        workflow.transfer(db, staff["dispatcher_b"], consultation, "KJTB", "属高新技术处职责")
    assert consultation.department == "KJTA" and consultation.state == S.DRAFTING

    clock.advance(timedelta(days=1))
    workflow.transfer(db, staff["dispatcher_a"], consultation, "kjtb", "属高新技术处职责")
    db.flush()
    db.expire(consultation)
    assert consultation.department == "KJTB" and consultation.state == S.ACCEPTED
    assert (consultation.accept_due, consultation.reply_due, consultation.received_at) == (
        accept_due, reply_due, received)
    assert consultation.handler_id is None and consultation.handler_name is None
    assert [(step.id, step.action) for step in consultation.steps][:-1] == history
    step = consultation.steps[-1]
    assert step.action == "transfer" and step.detail is not None and "KJTA → KJTB" in step.detail
    assert "属高新技术处职责" in step.detail
    # Now it is KJTB's work and no longer KJTA's.
    with pytest.raises(NotPermitted):
        workflow.assign(db, staff["dispatcher_a"], consultation, staff["editor_a"].user_id, "editor_a")
    workflow.assign(db, staff["dispatcher_b"], consultation, staff["editor_b"].user_id, "editor_b")
    assert consultation.state == S.ASSIGNED and consultation.reply_due == reply_due


# -- rating and reopening -----------------------------------------------------------------------------


def test_rating_once_per_reply_and_only_after_it(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    pending = submit(db, settings, clock).consultation
    with pytest.raises(ContentProblem):
        workflow.rate(db, pending, "satisfied", None)
    consultation = answered(db, settings, clock, staff)
    with pytest.raises(ContentProblem):
        workflow.rate(db, consultation, "great", None)
    with pytest.raises(ContentProblem):
        workflow.reopen(db, settings, consultation, "还没评价")  # only after a 不满意 rating
    workflow.rate(db, consultation, "satisfied", "  很及时 ")
    assert (consultation.rating, consultation.rating_comment, consultation.rated_at) == (
        "satisfied", "很及时", clock.now)
    with pytest.raises(ContentProblem):
        workflow.rate(db, consultation, "dissatisfied", "改主意了")
    with pytest.raises(ContentProblem) as refused:
        workflow.reopen(db, settings, consultation, "想重新办理")
    assert "rating" in refused.value.errors
    assert consultation.state == S.REPLIED and consultation.rating == "satisfied"


def test_a_dissatisfied_asker_reopens_once_within_the_period(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    consultation = answered(db, settings, clock, staff)
    replied_at = consultation.replied_at
    assert replied_at == clock.now
    assert workflow.reopen_deadline(settings, consultation) == replied_at + timedelta(days=settings.consult_reopen_days)
    workflow.rate(db, consultation, "dissatisfied", "没有回答研发费用的问题")

    # The last minute of the period: Tuesday 17 November 2026, 08:59 Beijing (reply: Monday 2 November 09:00).
    clock.set(replied_at + timedelta(days=settings.consult_reopen_days) - timedelta(minutes=1))
    workflow.reopen(db, settings, consultation, None)
    assert consultation.state == S.REOPENED and consultation.reopen_count == 1
    assert consultation.handler_id is None
    assert consultation.clock_started_on == date(2026, 11, 17)
    assert consultation.reply_due == date(2026, 11, 24)  # 5 working days: 18, 19, 20, 23, 24 November
    step = consultation.steps[-1]
    assert step.action == "reopen" and step.public and step.detail == "没有回答研发费用的问题"
    with pytest.raises(ContentProblem):
        workflow.reopen(db, settings, consultation, "再来一次")

    # Answered again, rated 不满意 again: no second reopening.
    reply_through(db, staff, consultation, "您好！研发费用占比按认定办法附件计算。")
    workflow.rate(db, consultation, "dissatisfied", "还是不满意")
    assert workflow.reopen_deadline(settings, consultation) is None
    with pytest.raises(ContentProblem) as refused:
        workflow.reopen(db, settings, consultation, "再次申请")
    assert "reopen" in refused.value.errors
    assert consultation.state == S.REPLIED and consultation.reopen_count == 1


def test_reopening_after_the_configured_period_is_refused(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    short = dataclasses.replace(settings, consult_reopen_days=3)
    consultation = answered(db, short, clock, staff)
    workflow.close(db, staff["dispatcher_a"], consultation)
    workflow.rate(db, consultation, "dissatisfied", None)
    clock.advance(timedelta(days=3, minutes=1))
    with pytest.raises(ContentProblem) as refused:
        workflow.reopen(db, short, consultation, "太晚了")
    assert "reopen" in refused.value.errors and "3 天" in refused.value.errors["reopen"][0]
    assert consultation.state == S.CLOSED and consultation.reopen_count == 0
    # The same moment is within the default 15 days: the period is the setting's.
    workflow.reopen(db, settings, consultation, "还在期限内")
    assert consultation.state == S.REOPENED


# -- the public side --------------------------------------------------------------------------------


def test_a_repeated_submission_within_24_hours_returns_the_same_tracking_number(
    db: Session, settings: Settings, clock: Clock
) -> None:
    phone = fresh_phone()
    first = submit(db, settings, clock, phone=phone)
    assert first.query_code is not None and not first.duplicate
    stored = count(db, Consultation)

    clock.advance(timedelta(hours=23, minutes=59))
    again = submit(db, settings, clock, phone=f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}",
                   question="请问申请高新技术企业认定，需要提交哪些材料？研发费用占比怎么计算？？")
    assert again.duplicate and again.query_code is None
    assert again.consultation.tracking_number == first.consultation.tracking_number
    assert count(db, Consultation) == stored

    different = submit(db, settings, clock, phone=phone, title="技术合同登记",
                       question="技术合同认定登记需要多长时间？在哪里办理？")
    assert not different.duplicate and different.query_code is not None
    assert different.consultation.tracking_number != first.consultation.tracking_number

    clock.set(first.consultation.received_at + timedelta(hours=24, seconds=1))
    later = submit(db, settings, clock, phone=phone)
    assert not later.duplicate and later.query_code is not None
    assert later.consultation.tracking_number not in (first.consultation.tracking_number,
                                                      different.consultation.tracking_number)
    assert count(db, Consultation) == stored + 2


def test_the_honeypot_raises_and_stores_nothing(db: Session, settings: Settings, clock: Clock) -> None:
    before = [count(db, model) for model in (Consultation, ConsultationStep, OutboxEvent, TrackingSerial)]
    with pytest.raises(workflow.AutomatedSubmission):
        submit(db, settings, clock, website="http://cheap-pills.example")
    with pytest.raises(workflow.AutomatedSubmission):
        submit(db, settings, clock, website="x", title="")  # even before validation
    assert [count(db, model) for model in (Consultation, ConsultationStep, OutboxEvent, TrackingSerial)] == before
    assert not submit(db, settings, clock, website="   ").duplicate  # an empty honeypot is a person


def test_sensitive_words_flag_the_case_which_is_still_stored_and_tracked(
    db: Session, settings: Settings, clock: Clock
) -> None:
    result = submit(db, settings, clock, title="举报线索", question="小区附近有人搭建赌 博网站，请问向哪个部门反映？")
    consultation = result.consultation
    assert consultation.id is not None and consultation.sensitive_terms == "赌博网站"
    assert result.query_code is not None and workflow.check_query_code(consultation, result.query_code)
    assert re.fullmatch(r"ZX\d{8}-\d{4}", consultation.tracking_number)
    assert consultation.state == S.SUBMITTED
    assert any("人工审核" in warning for warning in result.warnings)
    submitted = consultation.steps[0]
    assert submitted.action == "submit" and submitted.detail is not None and "赌博网站" in submitted.detail
    assert submitted.public_note == "您的咨询已提交。"  # the asker sees no mention of screening
    plain = submit(db, settings, clock)
    assert plain.consultation.sensitive_terms is None and plain.warnings == []


def test_tracking_numbers_carry_the_beijing_day_and_increase_within_it(
    db: Session, settings: Settings, clock: Clock
) -> None:
    clock.set(datetime(2026, 11, 25, 16, 30, tzinfo=UTC))  # Thursday 26 November 00:30 in Beijing
    first = submit(db, settings, clock).consultation.tracking_number
    second = submit(db, settings, clock).consultation.tracking_number
    clock.set(datetime(2026, 11, 26, 15, 59, tzinfo=UTC))  # 23:59 the same Beijing day
    third = submit(db, settings, clock).consultation.tracking_number
    pattern = re.compile(r"ZX20261126-(\d{4})")
    serials = []
    for number in (first, second, third):
        match = pattern.fullmatch(number)
        assert match is not None, number
        serials.append(int(match.group(1)))
    assert serials[1] == serials[0] + 1 and serials[2] == serials[0] + 2
    clock.set(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))  # Friday 27 November 00:00 in Beijing
    assert re.fullmatch(r"ZX20261127-\d{4}", submit(db, settings, clock).consultation.tracking_number)


def test_the_query_code_is_checked_case_insensitively(db: Session, settings: Settings, clock: Clock) -> None:
    result = submit(db, settings, clock)
    code = result.query_code
    assert code is not None and len(code) == workflow.QUERY_CODE_LENGTH
    consultation = result.consultation
    assert code not in (consultation.query_code_hash or "")  # stored hashed
    assert workflow.check_query_code(consultation, code)
    assert workflow.check_query_code(consultation, code.lower())
    assert workflow.check_query_code(consultation, f"  {code} ")
    wrong = ("A" if code[0] != "A" else "B") + code[1:]
    assert not workflow.check_query_code(consultation, wrong)
    assert not workflow.check_query_code(consultation, "")
    assert not workflow.check_query_code(consultation, None)
    assert not workflow.check_query_code(None, code)
    other = submit(db, settings, clock).consultation
    assert not workflow.check_query_code(other, code)


# -- the outbox: events, audit, and no personal data -----------------------------------------------------

ASKER_NAME = "欧阳晓明"
ASKER_PHONE = "13912345678"
ASKER_EMAIL = "ouyang.xm@example.com"


class Outbox:
    """The outbox rows each call added."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.seen: set[str] = set()
        self.actions: set[str] = set()
        self.new()

    def new(self) -> list[OutboxEvent]:
        self.db.flush()
        events = [event for event in self.db.scalars(select(OutboxEvent)) if event.id not in self.seen]
        self.seen.update(event.id for event in events)
        return events

    def expect(self, consultation: Consultation, action: str) -> list[OutboxEvent]:
        events = self.new()
        changed = [event for event in events if event.topic == f"consult.consultation.{action}"]
        assert len(changed) == 1, (action, [event.topic for event in events])
        assert changed[0].aggregate_id == str(consultation.id)
        assert changed[0].aggregate_version == consultation.version
        assert changed[0].payload["consultation"]["state"] == consultation.state
        audits = [event.payload for event in events if event.topic == "audit.recorded"]
        assert [(audit["service"], audit["action"], audit["object_id"], audit["result"]) for audit in audits] == [
            ("consult", f"consultation.{action}", str(consultation.id), "success")], action
        self.actions.add(action)
        return events


def test_every_change_writes_an_event_and_an_audit_entry_and_none_carries_the_submitter(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    outbox = Outbox(db)
    result = submit(
        db, settings, clock, name=ASKER_NAME, phone=ASKER_PHONE, email=ASKER_EMAIL,
        title=f"高新技术企业认定咨询（电话{ASKER_PHONE}）",
        question=f"我叫{ASKER_NAME}，请问认定需要哪些材料？材料清单请发到 {ASKER_EMAIL}，或致电 139 1234 5678。",
    )
    c = result.consultation
    submitted = outbox.expect(c, "submit")
    assert submitted[0].payload["consultation"]["tracking_number"] == c.tracking_number
    dispatcher, editor, reviewer, office = (staff[key] for key in (
        "dispatcher_a", "editor_a", "reviewer_a", "disclosure_office_a"))

    workflow.route(db, dispatcher, c, "KJTB", "高新技术", settings)
    outbox.expect(c, "route")
    workflow.accept(db, staff["dispatcher_b"], c)
    outbox.expect(c, "accept")
    workflow.assign(db, staff["dispatcher_b"], c, staff["editor_b"].user_id, "editor_b")
    outbox.expect(c, "assign")
    workflow.transfer(db, staff["dispatcher_b"], c, "KJTA", "属政策法规处职责")
    outbox.expect(c, "transfer")
    workflow.assign(db, dispatcher, c, editor.user_id, "editor_a")
    outbox.expect(c, "assign")
    workflow.save_draft(db, editor, c, "初稿")
    outbox.expect(c, "draft")
    workflow.request_info(db, editor, c, "请说明企业所属行业")
    outbox.expect(c, "request_info")
    workflow.provide_info(db, c, f"电子信息行业。联系人{ASKER_NAME}，电话{ASKER_PHONE}")
    outbox.expect(c, "provide_info")
    workflow.save_draft(db, editor, c, f"您好！材料清单已发送至 {ASKER_EMAIL}，请查收。")
    outbox.expect(c, "draft")  # a later save: audited too, without a new step
    workflow.submit_for_review(db, editor, c)
    outbox.expect(c, "submit_review")
    workflow.return_for_changes(db, reviewer, c, "请引用政策依据")
    outbox.expect(c, "return")
    workflow.save_draft(db, editor, c, f"您好！依据认定办法第十一条，材料清单已发送至 {ASKER_EMAIL}，请查收。")
    outbox.expect(c, "draft")  # a later save: audited too, without a new step
    workflow.submit_for_review(db, editor, c)
    outbox.expect(c, "submit_review")
    workflow.approve(db, reviewer, c)
    outbox.expect(c, "approve")
    workflow.send_reply(db, editor, c)
    assert "consult.reply.sent" in [event.topic for event in outbox.expect(c, "reply")]
    workflow.rate(db, c, "basically_satisfied", f"请以后打我电话 {ASKER_PHONE}")
    outbox.expect(c, "rate")
    workflow.keep_private(db, office, c)
    outbox.expect(c, "keep_private")
    review = workflow.personal_data_review(c)
    workflow.confirm_redaction(db, reviewer, c, review.proposed_question, review.proposed_reply)
    outbox.expect(c, "redaction_confirmed")
    workflow.publish(db, office, c)
    published = outbox.expect(c, "publish")
    documents = [event.payload["document"] for event in published if event.topic == "consult.answer.published"]
    assert len(documents) == 1 and MARKERS["phone"] in documents[0]["title"]
    workflow.unpublish(db, office, c, "答复需要更新")
    assert "consult.answer.unpublished" in [event.topic for event in outbox.expect(c, "unpublish")]
    workflow.close(db, dispatcher, c)
    outbox.expect(c, "close")

    other = submit(db, settings, clock, name=ASKER_NAME, phone=ASKER_PHONE, email=ASKER_EMAIL,
                   title="技术合同登记", question=f"技术合同认定登记在哪里办理？我是{ASKER_NAME}。")
    outbox.expect(other.consultation, "submit")
    workflow.accept(db, dispatcher, other.consultation)
    outbox.expect(other.consultation, "accept")
    workflow.assign(db, editor, other.consultation, None, None)
    outbox.expect(other.consultation, "assign")
    extension = workflow.request_extension(db, editor, other.consultation, 3, "需征求高新技术处意见")
    outbox.expect(other.consultation, "extension_requested")
    workflow.decide_extension(db, reviewer, other.consultation, extension, True, None)
    outbox.expect(other.consultation, "extension_approved")
    rejected = submit(db, settings, clock, name=ASKER_NAME, phone=ASKER_PHONE, email=ASKER_EMAIL,
                      title="无关内容", question=f"测试测试测试测试测试 {ASKER_EMAIL}")
    outbox.expect(rejected.consultation, "submit")
    workflow.reject(db, dispatcher, rejected.consultation, "no_content", None, None)
    outbox.expect(rejected.consultation, "reject")

    reopened = answered(db, settings, clock, staff, name=ASKER_NAME, phone=ASKER_PHONE, email=ASKER_EMAIL,
                        title="科技项目申报", question=f"项目申报截止时间是哪天？{ASKER_NAME}")
    outbox.new()
    workflow.rate(db, reopened, "dissatisfied", f"{ASKER_NAME}不满意")
    outbox.expect(reopened, "rate")
    workflow.reopen(db, settings, reopened, f"请回电 {ASKER_PHONE}")
    outbox.expect(reopened, "reopen")

    assert set(CONSULTATION_WORKFLOW.transitions) <= outbox.actions  # every transition was seen

    # Nothing that leaves the service carries the submitter's name or contact details.
    dumped = [json.dumps(event.payload, ensure_ascii=False) for event in db.scalars(select(OutboxEvent))]
    assert len(dumped) > 40
    for secret in (ASKER_NAME, ASKER_PHONE, "139 1234 5678", ASKER_EMAIL, "ouyang"):
        leaking = [text for text in dumped if secret in text]
        assert leaking == [], (secret, leaking[:1])


# -- publication -------------------------------------------------------------------------------------


def test_publication_needs_the_askers_consent_and_a_confirmed_redaction(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    reviewer, office = staff["reviewer_a"], staff["disclosure_office_a"]
    private = answered(db, settings, clock, staff, consent_to_publish=False)
    review = workflow.personal_data_review(private)
    workflow.confirm_redaction(db, reviewer, private, review.proposed_question, review.proposed_reply)
    with pytest.raises(ContentProblem) as refused:
        workflow.publish(db, office, private)
    assert "consent_to_publish" in refused.value.errors
    assert private.state == S.REPLIED and private.published_at is None
    workflow.keep_private(db, office, private)
    with pytest.raises(ContentProblem):
        workflow.publish(db, office, private)
    assert private.state == S.PRIVATE

    consenting = answered(db, settings, clock, staff)
    with pytest.raises(ContentProblem) as refused:
        workflow.publish(db, office, consenting)
    assert "redaction" in refused.value.errors and consenting.state == S.REPLIED
    review = workflow.personal_data_review(consenting)
    workflow.confirm_redaction(db, reviewer, consenting, review.proposed_question, review.proposed_reply)
    assert consenting.redaction_confirmed_by == "reviewer_a"
    workflow.publish(db, office, consenting)
    assert consenting.state == S.PUBLISHED and consenting.published_at == clock.now

    # A new reply (after reopening) must be confirmed again before it is published.
    workflow.rate(db, consenting, "dissatisfied", "不够具体")
    workflow.reopen(db, settings, consenting, None)
    reply_through(db, staff, consenting, "您好！补充答复如下。")
    assert consenting.published_question is None and consenting.published_reply is None
    with pytest.raises(ContentProblem) as refused:
        workflow.publish(db, office, consenting)
    assert "redaction" in refused.value.errors


STILL_PERSONAL: list[tuple[str, str, str, str | None]] = [
    ("请问材料？电话 13912345678", "您好。", "published_question", "phone"),
    ("请问材料？电话 139-1234-5678", "您好。", "published_question", "phone"),
    ("请问材料？电话 １３９１２３４５６７８", "您好。", "published_question", "phone"),
    ("身份证 11010519491231002X 的认定材料", "您好。", "published_question", "id_card"),
    ("请问材料？", "材料已发至 ouyang.xm@example.com", "published_reply", "email"),
    ("请问材料？", "退款请转入 6222 0212 3456 7890 128", "published_reply", "bank_card"),
    ("请问材料？", "", "published_reply", None),
    ("   ", "您好。", "published_question", None),
]
"""(published question, published reply, the field refused, the kind named in the message)."""


def test_confirm_redaction_refuses_texts_that_still_hold_personal_data(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    consultation = answered(db, settings, clock, staff)
    version = consultation.version
    for question, reply, field, kind in STILL_PERSONAL:
        with pytest.raises(ContentProblem) as refused:
            workflow.confirm_redaction(db, staff["reviewer_a"], consultation, question, reply)
        assert field in refused.value.errors, (question, reply)
        if kind is not None:
            assert kind in refused.value.errors[field][0], (question, reply)
        assert consultation.published_question is None and consultation.published_reply is None
        assert consultation.redaction_confirmed_by is None and consultation.version == version
    workflow.confirm_redaction(db, staff["reviewer_a"], consultation, "请问材料？电话［已隐去：电话号码］", "您好。")
    assert consultation.published_question == "请问材料？电话［已隐去：电话号码］"


def test_confirm_redaction_only_between_reply_and_publication(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    consultation = submit(db, settings, clock).consultation
    workflow.accept(db, staff["dispatcher_a"], consultation)
    with pytest.raises(ContentProblem) as refused:
        workflow.confirm_redaction(db, staff["reviewer_a"], consultation, "问题", "答复")
    assert "state" in refused.value.errors and consultation.published_question is None


def test_the_answer_search_document_holds_the_markers_and_no_personal_data(
    db: Session, settings: Settings, clock: Clock, staff: dict[str, StaffIdentity]
) -> None:
    consultation = answered(
        db, settings, clock, staff, name=ASKER_NAME, phone=ASKER_PHONE, email=ASKER_EMAIL,
        title=f"认定材料咨询（电话{ASKER_PHONE}）",
        question=f"我叫{ASKER_NAME}，材料清单请发到 {ASKER_EMAIL}。",
    )
    consultation.reply = f"您好！材料清单已发送至 {ASKER_EMAIL}，如有疑问请致电 0731-88886666。"
    review = workflow.personal_data_review(consultation)
    kinds = {finding["kind"] for finding in review.question_findings}
    assert {"phone", "email", "name"} <= kinds
    workflow.confirm_redaction(db, staff["reviewer_a"], consultation, review.proposed_question, review.proposed_reply)
    workflow.publish(db, staff["disclosure_office_a"], consultation)

    document = workflow.answer_search_document(consultation)
    assert document["id"] == f"answer-{consultation.id}" and document["doc_type"] == "answer"
    assert document["title"] == f"认定材料咨询（电话{MARKERS['phone']}）"
    assert MARKERS["name"] in document["question"] and MARKERS["email"] in document["question"]
    assert MARKERS["email"] in document["reply"] and MARKERS["phone"] in document["reply"]
    assert document["published_at"] == clock.now.isoformat()
    text = json.dumps(document, ensure_ascii=False)
    for secret in (ASKER_NAME, ASKER_PHONE, ASKER_EMAIL, "0731-88886666", "ouyang"):
        assert secret not in text, secret
    assert not {"name", "phone", "email", "contact_key"} & set(document)
    # The asker still sees the original texts.
    assert ASKER_EMAIL in consultation.question and ASKER_EMAIL in (consultation.reply or "")

    # A record with no confirmed texts (an import) is redacted on the way out all the same.
    historical = workflow.record_answered_consultation(
        db, tracking_number="ZX20200101-0001", title=f"旧咨询（{ASKER_PHONE}）", question=f"邮箱 {ASKER_EMAIL}",
        reply=f"已回复至 {ASKER_EMAIL}", received_at=bj(2020, 1, 1), replied_at=bj(2020, 1, 3),
    )
    historical.published_question = historical.published_reply = None
    text = json.dumps(workflow.answer_search_document(historical), ensure_ascii=False)
    assert MARKERS["phone"] in text and MARKERS["email"] in text
    assert ASKER_PHONE not in text and ASKER_EMAIL not in text
