"""The hourly deadline sweep: the handler is reminded before a deadline, an overdue case is escalated to the
department's reviewers, anything unanswered after 60 days raises an alarm; each once, and each reaches
the right people by e-mail (identity's task, a real SMTP server)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from consult import workflow
from consult.models import Consultation, ConsultationStep, OutboxEvent
from services.auth import StaffIdentity
from services.db import get_database
from services.permissions import Grant, Role

from support.smtp import running_smtp_sink

BEIJING = timezone(timedelta(hours=8))


def beijing(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=BEIJING).astimezone(UTC)


def staff(role: Role, user_id: int, name: str) -> StaffIdentity:
    return StaffIdentity(user_id, name, name, (Grant(role, "KJTA", ("KJTA",)),), "s", "api")


@pytest.fixture
def consult_app(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Flask:
    app = suite["consult"]
    monkeypatch.setattr(get_database("consult", app), "publisher", None)
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(app.extensions["gongkai.settings"], consult_intake_department="KJTA"))
    return app


def _submit(session: Any, settings: Any, when: datetime, title: str) -> Consultation:
    fields = workflow.Submission(title=title, question=f"{title}，请问如何办理？", name="赵六", phone="13912345678")
    return workflow.submit_consultation(session, settings, fields, now=when).consultation


def _events(session: Any, topic_prefix: str) -> list[OutboxEvent]:
    return list(session.scalars(select(OutboxEvent).where(OutboxEvent.topic.like(f"{topic_prefix}%"))
                                .order_by(OutboxEvent.created_at)))


def test_reminder_escalation_and_alarm_each_once(consult_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = consult_app.extensions["gongkai.settings"]
    dispatcher = staff(Role.DISPATCHER, 1, "dispatcher_a")
    # Received Monday 2 November 2026: to be accepted by Tuesday 3 November.
    with get_database("consult", consult_app).transaction() as session:
        waiting = _submit(session, settings, beijing(date(2026, 11, 2)), "人才公寓申请")
        answered = _submit(session, settings, beijing(date(2026, 11, 2)), "已答复的咨询")
        monkeypatch.setattr("consult.workflow.utcnow", lambda: beijing(date(2026, 11, 2), 11))
        workflow.accept(session, dispatcher, answered)
        answered.state = workflow.ConsultationState.REPLIED  # answered: no deadline any more
        assert waiting.accept_due == date(2026, 11, 3)

        # Monday: due tomorrow → the reminder, once however often the sweep runs.
        first = workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 11, 2), 15))
        again = workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 11, 2), 16))
        assert (first.reminded, first.escalated, first.alarms) == (1, 0, 0)
        assert (again.reminded, again.escalated, again.alarms) == (0, 0, 0)
        # Wednesday: the deadline has passed → escalated, once.
        late = workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 11, 4), 9))
        assert (late.reminded, late.escalated, late.alarms) == (0, 1, 0)
        assert workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 11, 4), 10)).escalated == 0
        # Sixty days after receipt, still unanswered → the alarm (the office would fail an inspection at 90).
        before_alarm = workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 12, 31), 9))
        assert before_alarm.alarms == 0
        alarm = workflow.sweep_deadlines(session, settings, now=beijing(date(2027, 1, 1), 11))
        assert alarm.alarms == 1
        assert workflow.sweep_deadlines(session, settings, now=beijing(date(2027, 1, 2), 11)).alarms == 0

        topics = [event.topic for event in _events(session, "consult.deadline.")]
        assert topics == ["consult.deadline.reminder", "consult.deadline.escalation", "consult.deadline.alarm"]
        for event in _events(session, "consult.deadline."):
            assert event.aggregate_id == str(waiting.id)
            assert "赵六" not in str(event.payload) and "13912345678" not in str(event.payload)
        staff_only = session.scalars(select(ConsultationStep).where(
            ConsultationStep.consultation_id == waiting.id, ConsultationStep.action.like("deadline_%"))).all()
        assert [step.action for step in staff_only] == ["deadline_reminder", "deadline_escalation", "deadline_alarm"]
        assert not any(step.public for step in staff_only)  # the asker's page does not show internal alarms


def test_the_alerts_reach_the_handler_then_the_reviewers_by_email(
    suite: dict[str, Flask], org: dict[str, Any], consult_app: Flask, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.identity.tasks import deliver_consult_alert

    identity = suite["identity"]
    with get_database("identity", identity).transaction() as session:
        from services.identity.models import User

        for user in session.scalars(select(User)):
            user.email = f"{user.username}@kjt.example.gov.cn"
    editor = org["users"]["editor_a"]
    settings = consult_app.extensions["gongkai.settings"]
    with get_database("consult", consult_app).transaction() as session:
        case = _submit(session, settings, beijing(date(2026, 11, 2)), "科技型中小企业评价")
        monkeypatch.setattr("consult.workflow.utcnow", lambda: beijing(date(2026, 11, 2), 11))
        workflow.accept(session, staff(Role.DISPATCHER, 1, "dispatcher_a"), case)
        workflow.assign(session, staff(Role.DISPATCHER, 1, "dispatcher_a"), case, editor.id, "editor_a")
        # Due Monday 9 November: reminded on Friday 6th, escalated on Tuesday 10th.
        assert case.reply_due == date(2026, 11, 9)
        workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 11, 6)))
        workflow.sweep_deadlines(session, settings, now=beijing(date(2026, 11, 10)))
        messages = [event.as_message() for event in _events(session, "consult.deadline.")]
    assert [message["payload"]["kind"] for message in messages] == ["reminder", "escalation"]

    with running_smtp_sink() as sink:
        monkeypatch.setitem(identity.extensions, "gongkai.settings", replace(
            identity.extensions["gongkai.settings"], smtp_host="127.0.0.1", smtp_port=sink.port))
        with identity.app_context():
            assert deliver_consult_alert(messages[0]) == "sent to 1"
            assert deliver_consult_alert(messages[0]) == "duplicate"
            assert deliver_consult_alert(messages[1]).startswith("sent to")
        (to_handler, reminder), (to_reviewers, escalation) = sink.messages
    assert to_handler == ["editor_a@kjt.example.gov.cn"]
    assert "期限 2026-11-09 将至" in str(reminder["Subject"]) and f"/consult/staff/{case.id}" in reminder.get_content()
    assert "reviewer_a@kjt.example.gov.cn" in to_reviewers and "editor_a@kjt.example.gov.cn" not in to_reviewers
    assert "reviewer_b@kjt.example.gov.cn" not in to_reviewers  # the other division's reviewers are not told
    assert "已超过期限" in str(escalation["Subject"])
    for _recipients, message in sink.messages:
        assert "13912345678" not in message.get_content() and "赵六" not in message.get_content()
