"""Must-show 2 of issue 5: consultation deadlines are exact in Chinese working days.

Counting convention (services/calendar.py): "N working days" is the N-th working day strictly
after the day of receipt (or of acceptance, or of the reopening); days are Beijing days.

The 2026 arrangement as ``chinesecalendar`` encodes it (checked first below):

* Mid-autumn 9月25日 (Fri) to 27日 off; National Day 10月1日 (Thu) to 7日 (Wed) off;
* make-up working days (调休上班) Sunday 9月20日 and Saturday 10月10日;
* November 2026 has no holiday (the ordinary weeks used for the pause and extension cases).

2027 is not in the package: without an administrator's arrangement the calendar counts
Monday-Friday, the consultation is marked ``deadline_estimated`` and a warning is shown and
logged; with one (``calendar_day`` rows in consult's database), the deadline follows it.

The moment "now" is controlled: ``submit_consultation(now=...)`` and a monkeypatched
``consult.workflow.utcnow`` for accept, request_info, provide_info and the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import chinese_calendar
import pytest
from flask import Flask
from sqlalchemy.orm import Session

import services.calendar
from consult import workflow
from consult.models import CalendarDay, CategoryDeadline, Consultation, ProcessedEvent
from consult.workflow import ConsultationState, Submission
from services.auth import StaffIdentity
from services.calendar import apply_calendar_event, calendar_payload, package_covers, replace_year
from services.db import get_database
from services.permissions import Grant, Role
from services.settings import Settings

from support.clock import Clock, bj

S = ConsultationState
D = date
SCOPE = ("KJTA",)
DISPATCHER = StaffIdentity(9801, "dispatcher_a", "分办员", (Grant(Role.DISPATCHER, "KJTA", SCOPE),), "s-d", "api")
EDITOR = StaffIdentity(9802, "editor_a", "承办人", (Grant(Role.EDITOR, "KJTA", SCOPE),), "s-e", "api")
REVIEWER = StaffIdentity(9803, "reviewer_a", "审核人", (Grant(Role.REVIEWER, "KJTA", SCOPE),), "s-r", "api")

ADMIN_2027: dict[date, tuple[bool, str]] = {
    D(2027, 1, 1): (False, "元旦"),
    D(2027, 1, 2): (True, "元旦调休上班"),
}
"""An administrator's 2027 entries (test data, not the State Council's): New Year's Day (a Friday) off,
and the Saturday after it a working day."""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(bj(2026, 11, 2, 9))
    monkeypatch.setattr(workflow, "utcnow", clock)
    return clock


@pytest.fixture
def settings(suite: dict[str, Flask], tmp_path: Path) -> Settings:
    """Intake at KJTA, no routing model, and a category table whose 科技项目 goes to KJTA."""
    table = tmp_path / "category_departments.csv"
    table.write_text("category,department_code,department_name\n科技项目,KJTA,政策法规处\n科技成果,KJTA,政策法规处\n",
                     encoding="utf-8")
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
def fresh_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty per-process calendar cache, so that the once-per-calendar log warning is this test's to see."""
    monkeypatch.setattr(services.calendar, "_cache", {})


_phones = itertools.count(20_000_000)


def submit(db: Session, settings: Settings, received: datetime, **fields: Any) -> Consultation:
    values: dict[str, Any] = {
        "title": "科技项目申报咨询", "question": "请问今年的科技项目申报什么时候截止？需要哪些材料？",
        "name": "王芳", "phone": f"139{next(_phones)}",
    }
    values.update(fields)
    return workflow.submit_consultation(db, settings, Submission(**values), now=received).consultation


def accept_at(db: Session, clock: Clock, consultation: Consultation, moment: datetime) -> Consultation:
    clock.set(moment)
    return workflow.accept(db, DISPATCHER, consultation)


def accepted(db: Session, settings: Settings, clock: Clock, moment: datetime) -> Consultation:
    """A consultation received and accepted at ``moment``, assigned to the editor."""
    consultation = submit(db, settings, moment)
    accept_at(db, clock, consultation, moment)
    workflow.assign(db, DISPATCHER, consultation, EDITOR.user_id, EDITOR.display_name)
    return consultation


def calendar_warnings(caplog: pytest.LogCaptureFixture, year: int) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.name == "services.calendar" and record.levelno == logging.WARNING
            and str(year) in record.getMessage()]


# -- the data the cases rely on ---------------------------------------------------------------------


def test_the_2026_arrangement_is_the_one_the_cases_assume() -> None:
    for day in (D(2026, 9, 25), D(2026, 9, 26), D(2026, 9, 27), *(D(2026, 10, n) for n in range(1, 8))):
        assert chinese_calendar.is_holiday(day), day
    for day in (D(2026, 9, 20), D(2026, 10, 10)):  # Sunday and Saturday
        assert day.weekday() >= 5 and chinese_calendar.is_workday(day), day
    for day in (D(2026, 9, 30), D(2026, 10, 8), D(2026, 10, 9), D(2026, 12, 31)):
        assert chinese_calendar.is_workday(day), day
    assert all(chinese_calendar.is_workday(D(2026, 11, n)) == (D(2026, 11, n).weekday() < 5) for n in range(1, 31))
    assert D(2026, 12, 25).weekday() == 4 and D(2027, 1, 1).weekday() == 4 and D(2027, 1, 2).weekday() == 5
    assert not package_covers(2027)


# -- National Day 2026 and make-up working days ---------------------------------------------------


def test_received_the_day_before_national_day(db: Session, settings: Settings, clock: Clock) -> None:
    # Wednesday 30 September, 07:30 in Beijing (still 29 September in UTC: the Beijing day counts).
    consultation = submit(db, settings, bj(2026, 9, 30, 7, 30))
    # 1 working day after 9-30: 10-1..10-7 are the holiday, Thursday 10-8 is the first working day.
    assert consultation.accept_due == D(2026, 10, 8)
    assert not consultation.deadline_estimated and workflow.year_warning(consultation) is None

    # Accepted on 10-8 at 09:00: 5 working days are 10-9 (Fri), 10-10 (Sat, 调休上班), 10-12, 10-13, 10-14.
    accept_at(db, clock, consultation, bj(2026, 10, 8, 9))
    assert consultation.clock_started_on == D(2026, 10, 8)
    assert consultation.reply_due == D(2026, 10, 14)
    assert not consultation.deadline_estimated

    # Accepted on the day itself (9-30, 16:00): the count runs over the holiday,
    # 10-8, 10-9, 10-10 (调休), 10-12, 10-13.
    same_day = submit(db, settings, bj(2026, 9, 30, 9), title="科技成果登记", question="科技成果登记去哪里办理？")
    accept_at(db, clock, same_day, bj(2026, 9, 30, 16))
    assert same_day.reply_due == D(2026, 10, 13)


def test_make_up_working_days_count(db: Session, settings: Settings, clock: Clock) -> None:
    # Received Friday 9-18: Saturday 9-19 is a rest day, Sunday 9-20 is a make-up working day.
    consultation = submit(db, settings, bj(2026, 9, 18, 15))
    assert consultation.accept_due == D(2026, 9, 20)
    # Accepted on that Sunday: 9-21, 9-22, 9-23, 9-24, then Mid-autumn 9-25..27 off, Monday 9-28.
    accept_at(db, clock, consultation, bj(2026, 9, 20, 10))
    assert consultation.reply_due == D(2026, 9, 28)

    # Accepted Friday 10-9: Saturday 10-10 (调休) is the 1st of 5: 10-10, 10-12, 10-13, 10-14, 10-15
    # (an ordinary week would give Friday 10-16).
    friday = submit(db, settings, bj(2026, 10, 9, 9), title="科技成果登记", question="科技成果登记去哪里办理？")
    accept_at(db, clock, friday, bj(2026, 10, 9, 11))
    assert friday.reply_due == D(2026, 10, 15)

    # Received on the make-up Saturday itself: 1 working day later is Monday 10-12.
    saturday = submit(db, settings, bj(2026, 10, 10, 10), title="项目验收", question="科技项目验收需要准备什么材料？")
    assert saturday.accept_due == D(2026, 10, 12)


# -- into 2027 ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_calendar")
def test_into_2027_without_a_calendar_counts_monday_to_friday_and_warns(
    db: Session, settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.calendar"):
        # Accepted Friday 12-25: 12-28, 12-29, 12-30, 12-31 (2026, known), then Friday 2027-01-01, a
        # working day for the Monday-Friday fallback.
        consultation = submit(db, settings, bj(2026, 12, 25, 9))
        assert consultation.accept_due == D(2026, 12, 28) and not consultation.deadline_estimated
        accept_at(db, clock, consultation, bj(2026, 12, 25, 15))
    assert consultation.reply_due == D(2027, 1, 1)
    assert consultation.deadline_estimated
    warning = workflow.year_warning(consultation)
    assert warning is not None and "尚未录入节假日安排" in warning and "周一至周五" in warning
    assert len(calendar_warnings(caplog, 2027)) == 1

    # A deadline inside 2026 is exact and carries no warning.
    early = submit(db, settings, bj(2026, 12, 14, 9), title="科技成果登记", question="科技成果登记去哪里办理？")
    accept_at(db, clock, early, bj(2026, 12, 15, 9))
    assert early.reply_due == D(2026, 12, 22)  # 16, 17, 18, 21, 22
    assert not early.deadline_estimated and workflow.year_warning(early) is None


@pytest.mark.usefixtures("fresh_calendar")
def test_a_submission_whose_acceptance_falls_in_2027_is_estimated_shown_and_logged(
    db: Session, settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.calendar"):
        result = workflow.submit_consultation(db, settings, Submission(
            title="科技项目申报咨询", question="请问明年的科技项目申报什么时候开始？", name="王芳", phone="13900001111",
        ), now=bj(2026, 12, 31, 10))
    consultation = result.consultation
    assert consultation.accept_due == D(2027, 1, 1)  # the first Monday-Friday day after Thursday 12-31
    assert consultation.deadline_estimated
    warning = workflow.year_warning(consultation)
    assert warning is not None and warning in result.warnings
    assert len(calendar_warnings(caplog, 2027)) == 1


@pytest.mark.usefixtures("fresh_calendar")
def test_into_2027_with_an_admin_entered_calendar(
    db: Session, settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    replace_year(db, CalendarDay, 2027, ADMIN_2027, updated_at=datetime.now(UTC))
    db.flush()
    with caplog.at_level(logging.WARNING, logger="services.calendar"):
        # Accepted Friday 12-25: 12-28, 12-29, 12-30, 12-31, then 2027-01-01 is 元旦 (off) and
        # Saturday 2027-01-02 is the entered make-up working day: the 5th.
        consultation = submit(db, settings, bj(2026, 12, 25, 9))
        accept_at(db, clock, consultation, bj(2026, 12, 25, 15))
        assert consultation.reply_due == D(2027, 1, 2)
        assert not consultation.deadline_estimated and workflow.year_warning(consultation) is None

        # Received Thursday 12-31: 1 working day later is that Saturday, not the holiday.
        late = submit(db, settings, bj(2026, 12, 31, 10), title="科技成果登记", question="科技成果登记去哪里办理？")
        assert late.accept_due == D(2027, 1, 2) and not late.deadline_estimated
        # Accepted on 2027-01-02 (a Saturday at work): 1-4, 1-5, 1-6, 1-7, 1-8.
        accept_at(db, clock, late, bj(2027, 1, 2, 9))
        assert late.reply_due == D(2027, 1, 8) and not late.deadline_estimated
    assert calendar_warnings(caplog, 2027) == []


def test_the_2027_calendar_arriving_as_an_identity_event_is_used(
    suite: dict[str, Flask], db: Session, settings: Settings, clock: Clock,
) -> None:
    """The way consult really gets the administrators' arrangement: identity's ``calendar.updated`` event."""
    event = {"id": str(uuid.uuid4()), "payload": calendar_payload(2027, ADMIN_2027, datetime.now(UTC))}
    outcome = apply_calendar_event(get_database("consult", suite["consult"]), CalendarDay, event,
                                   processed_model=ProcessedEvent, consumer="consult.apply_calendar")
    assert outcome == "applied"
    # Received and accepted Wednesday 12-30: 12-31, (1-1 off) 1-2 (调休), 1-4, 1-5, 1-6.
    consultation = submit(db, settings, bj(2026, 12, 30, 9))
    accept_at(db, clock, consultation, bj(2026, 12, 30, 15))
    assert consultation.reply_due == D(2027, 1, 6) and not consultation.deadline_estimated
    # Received Thursday 12-31: due to be accepted on the Saturday at work, not on the holiday.
    late = submit(db, settings, bj(2026, 12, 31, 10), title="科技成果登记", question="科技成果登记去哪里办理？")
    assert late.accept_due == D(2027, 1, 2) and not late.deadline_estimated


# -- pauses and extensions ---------------------------------------------------------------------------


def test_an_information_request_stops_the_clock(db: Session, settings: Settings, clock: Clock) -> None:
    # Accepted Monday 9-28: 9-29, 9-30, (holiday) 10-8, 10-9, 10-10 (Saturday, 调休上班).
    consultation = accepted(db, settings, clock, bj(2026, 9, 28, 9))
    assert consultation.reply_due == D(2026, 10, 10)

    clock.set(bj(2026, 9, 29, 11))  # Tuesday 9-29: the question goes back to the asker
    workflow.request_info(db, EDITOR, consultation, "请说明项目类别")
    assert consultation.state == S.AWAITING_INFO and consultation.paused_since == D(2026, 9, 29)
    assert consultation.reply_due == D(2026, 10, 10)
    assert workflow.deadline_status(consultation, workflow.consult_calendar(db), D(2026, 10, 20)) == "paused"

    # The answer on Friday 10-9: the working days 9-30, 10-8 and 10-9 were the asker's (3), so the
    # deadline moves 3 working days: 10-12, 10-13, 10-14.
    clock.set(bj(2026, 10, 9, 16))
    workflow.provide_info(db, consultation, "项目类别：重点研发计划")
    assert consultation.state == S.DRAFTING and consultation.paused_since is None
    assert consultation.paused_working_days == 3
    assert consultation.reply_due == D(2026, 10, 14)

    # A request answered the same day costs nothing; one over a weekend costs nothing either.
    clock.set(bj(2026, 10, 12, 9))
    workflow.request_info(db, EDITOR, consultation, "请补充项目编号")
    clock.set(bj(2026, 10, 12, 17))
    workflow.provide_info(db, consultation, "项目编号：2026-001")
    assert consultation.reply_due == D(2026, 10, 14)
    clock.set(bj(2026, 10, 16, 18))  # Friday evening
    workflow.request_info(db, EDITOR, consultation, "请补充联系人")
    clock.set(bj(2026, 10, 18, 10))  # answered on Sunday
    workflow.provide_info(db, consultation, "联系人已补充")
    assert consultation.paused_working_days == 3 and consultation.reply_due == D(2026, 10, 14)


def test_an_approved_extension_moves_the_deadline_and_a_refused_one_does_not(
    db: Session, settings: Settings, clock: Clock,
) -> None:
    # Accepted Monday 11-2 (an ordinary week): 11-3, 11-4, 11-5, 11-6, 11-9.
    consultation = accepted(db, settings, clock, bj(2026, 11, 2, 9))
    assert consultation.reply_due == D(2026, 11, 9)

    refused = workflow.request_extension(db, EDITOR, consultation, 4, "需征求其他处室意见")
    workflow.decide_extension(db, REVIEWER, consultation, refused, False, "期限内可以办结")
    assert refused.status == "refused"
    assert consultation.reply_due == D(2026, 11, 9) and consultation.extension_working_days == 0

    # 3 working days more: 11-10, 11-11, 11-12.
    approved = workflow.request_extension(db, EDITOR, consultation, 3, "需征求其他处室意见")
    workflow.decide_extension(db, REVIEWER, consultation, approved, True, None)
    assert approved.status == "approved" and consultation.extension_working_days == 3
    assert consultation.reply_due == D(2026, 11, 12)
    step = consultation.steps[-1]
    assert step.action == "extension_approved" and step.public
    assert step.public_note is not None and "2026-11-12" in step.public_note

    # An extension across National Day: accepted 9-28 (due 10-10, see above), 2 more are 10-12, 10-13.
    holiday = accepted(db, settings, clock, bj(2026, 9, 28, 9))
    longer = workflow.request_extension(db, EDITOR, holiday, 2, "节日期间无法征求意见")
    workflow.decide_extension(db, REVIEWER, holiday, longer, True, None)
    assert holiday.reply_due == D(2026, 10, 13)


# -- per-category deadlines -----------------------------------------------------------------------------


def test_a_category_deadline_overrides_the_defaults(db: Session, settings: Settings, clock: Clock) -> None:
    db.add(CategoryDeadline(category="科技项目", accept_working_days=2, reply_working_days=10, updated_by="admin1"))
    db.flush()
    # Received Wednesday 11-4: 2 working days to accept (11-5, 11-6) instead of 1 (11-5).
    consultation = submit(db, settings, bj(2026, 11, 4, 10), category="科技项目")
    assert consultation.category == "科技项目" and consultation.department == "KJTA"
    assert consultation.accept_due == D(2026, 11, 6) and consultation.reply_working_days == 10
    # Accepted Friday 11-6: 10 working days, 11-9..11-13 and 11-16..11-20.
    accept_at(db, clock, consultation, bj(2026, 11, 6, 9))
    assert consultation.reply_due == D(2026, 11, 20)

    # A category without a row follows the settings: the defaults (1 and 5) ...
    default = submit(db, settings, bj(2026, 11, 4, 10), category="科技成果", question="科技成果登记去哪里办理？")
    assert default.accept_due == D(2026, 11, 5) and default.reply_working_days == 5
    accept_at(db, clock, default, bj(2026, 11, 6, 9))
    assert default.reply_due == D(2026, 11, 13)
    # ... or what the office configured (3 and 7), which the category's row still overrides.
    configured = dataclasses.replace(settings, consult_accept_working_days=3, consult_reply_working_days=7)
    other = submit(db, configured, bj(2026, 11, 4, 10), category="科技成果", question="技术合同怎么登记？")
    assert other.accept_due == D(2026, 11, 9) and other.reply_working_days == 7  # 11-5, 11-6, 11-9
    accept_at(db, clock, other, bj(2026, 11, 9, 9))
    assert other.reply_due == D(2026, 11, 18)  # 11-10, 11, 12, 13, 16, 17, 18
    row = submit(db, configured, bj(2026, 11, 4, 10), category="科技项目", question="项目经费怎么报销？")
    assert row.accept_due == D(2026, 11, 6) and row.reply_working_days == 10


# -- deadline status ---------------------------------------------------------------------------------


def test_deadline_status(db: Session, settings: Settings, clock: Clock) -> None:
    calendar = workflow.consult_calendar(db)

    def status(consultation: Consultation, today: date) -> str | None:
        return workflow.deadline_status(consultation, calendar, today)

    # Accepted Monday 11-2, due Monday 11-9.
    consultation = accepted(db, settings, clock, bj(2026, 11, 2, 9))
    assert consultation.reply_due == D(2026, 11, 9)
    assert status(consultation, D(2026, 11, 2)) == "on_time"
    assert status(consultation, D(2026, 11, 5)) == "on_time"  # two working days left (11-6, 11-9)
    assert status(consultation, D(2026, 11, 6)) == "due_soon"  # Friday: due the next working day, Monday
    assert status(consultation, D(2026, 11, 7)) == "due_soon"  # Saturday
    assert status(consultation, D(2026, 11, 9)) == "due_soon"  # due today
    assert status(consultation, D(2026, 11, 10)) == "overdue"

    # Without ``today``: the Beijing day of now (23:30 on 11-9 is still 11-9; 00:30 on 11-10 is not,
    # though it is 11-9 in UTC).
    clock.set(bj(2026, 11, 9, 23, 30))
    assert workflow.deadline_status(consultation, calendar) == "due_soon"
    clock.set(bj(2026, 11, 10, 0, 30))
    assert clock.now.date() == D(2026, 11, 9)
    assert workflow.deadline_status(consultation, calendar) == "overdue"

    # Paused while the asker is asked for more, however late it is.
    workflow.request_info(db, EDITOR, consultation, "请补充项目编号")
    assert status(consultation, D(2026, 11, 30)) == "paused"

    # Before acceptance the acceptance deadline counts: received Wednesday 9-30, due 10-8, the
    # next working day after the holiday, so due soon on 9-30 though 8 calendar days away.
    waiting = submit(db, settings, bj(2026, 9, 30, 9), title="科技成果登记", question="科技成果登记去哪里办理？")
    assert waiting.state == S.SUBMITTED and waiting.accept_due == D(2026, 10, 8)
    assert status(waiting, D(2026, 9, 30)) == "due_soon"
    assert status(waiting, D(2026, 10, 9)) == "overdue"
    # Accepted Thursday 9-24, due 10-9 (9-28, 9-29, 9-30, 10-8, 10-9): on time on 9-30 with two working
    # days left across the holiday, due soon on 10-8.
    across = accepted(db, settings, clock, bj(2026, 9, 24, 9))
    assert across.reply_due == D(2026, 10, 9)
    assert status(across, D(2026, 9, 30)) == "on_time"
    assert status(across, D(2026, 10, 8)) == "due_soon"

    # Nothing is due once rejected or answered.
    rejected = submit(db, settings, bj(2026, 11, 2, 9), title="无关内容", question="这是一条没有实际内容的测试留言")
    workflow.reject(db, DISPATCHER, rejected, "no_content", None, None)
    assert status(rejected, D(2026, 11, 30)) is None
    workflow.provide_info(db, consultation, "项目编号：2026-001")
    workflow.save_draft(db, EDITOR, consultation, "您好！答复如下。")
    workflow.submit_for_review(db, EDITOR, consultation)
    workflow.approve(db, REVIEWER, consultation)
    workflow.send_reply(db, EDITOR, consultation)
    assert status(consultation, D(2026, 12, 31)) is None


def test_a_reopened_case_gets_a_new_reply_deadline(db: Session, settings: Settings, clock: Clock) -> None:
    consultation = accepted(db, settings, clock, bj(2026, 9, 24, 9))
    clock.set(bj(2026, 9, 29, 9))
    workflow.request_info(db, EDITOR, consultation, "请补充项目编号")
    clock.set(bj(2026, 9, 30, 9))
    workflow.provide_info(db, consultation, "2026-001")
    request = workflow.request_extension(db, EDITOR, consultation, 2, "需会商")
    workflow.decide_extension(db, REVIEWER, consultation, request, True, None)
    workflow.save_draft(db, EDITOR, consultation, "您好！答复如下。")
    workflow.submit_for_review(db, EDITOR, consultation)
    workflow.approve(db, REVIEWER, consultation)
    workflow.send_reply(db, EDITOR, consultation)
    workflow.rate(db, consultation, "dissatisfied", "没有回答我的问题")
    # Reopened Friday 10-9: the pause and the extension of the first round are gone; 5 working days
    # from 10-9: 10-10 (调休), 10-12, 10-13, 10-14, 10-15.
    clock.set(bj(2026, 10, 9, 10))
    workflow.reopen(db, settings, consultation, None)
    assert consultation.clock_started_on == D(2026, 10, 9)
    assert (consultation.paused_working_days, consultation.extension_working_days) == (0, 0)
    assert consultation.reply_due == D(2026, 10, 15)
    assert workflow.current_deadline(consultation) == D(2026, 10, 15)
