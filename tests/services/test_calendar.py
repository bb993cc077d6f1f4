"""Working-day deadlines: statutory holidays, make-up working days (调休), years the package lacks."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import chinese_calendar
import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from services.calendar import (
    WorkingCalendar,
    apply_calendar_event,
    calendar_payload,
    format_override_lines,
    load_calendar,
    package_covers,
    parse_override_lines,
)

D = date
ADMIN_2027 = {
    # Example data an administrator would enter for 2027 (not the official arrangement).
    D(2027, 1, 1): (False, "元旦"),
    D(2027, 2, 6): (False, "春节"),
    D(2027, 2, 8): (False, "春节"),
    D(2027, 2, 9): (False, "春节"),
    D(2027, 2, 10): (False, "春节"),
    D(2027, 2, 11): (False, "春节"),
    D(2027, 2, 12): (False, "春节"),
    D(2027, 2, 20): (True, "春节调休上班"),
}
CALENDARS = {"package only": WorkingCalendar(), "with 2027 entered": WorkingCalendar(ADMIN_2027)}


# -- the 2026 National Day holiday as chinesecalendar 1.11 encodes it ------------------
# 国庆节、中秋节: 10月1日至7日放假，共7天；9月20日（周日）、10月10日（周六）上班。中秋节 9月25日至27日。


def test_the_2026_national_day_arrangement() -> None:
    cal = WorkingCalendar()
    for day in range(1, 8):
        assert not cal.is_working_day(D(2026, 10, day))
        assert cal.day_name(D(2026, 10, day)) == "国庆节"
    assert cal.is_working_day(D(2026, 10, 8))
    for make_up in (D(2026, 9, 20), D(2026, 10, 10)):
        assert make_up.weekday() >= 5
        assert cal.is_working_day(make_up)
        assert cal.day_name(make_up) == "国庆节调休上班"
    assert not cal.is_working_day(D(2026, 10, 11))  # an ordinary Sunday
    assert cal.day_name(D(2026, 10, 11)) is None
    assert [cal.is_working_day(D(2026, 9, day)) for day in (25, 26, 27)] == [False, False, False]
    assert cal.day_name(D(2026, 9, 25)) == "中秋节"


@pytest.mark.parametrize(("start", "n", "due"), [
    (D(2026, 9, 30), 1, D(2026, 10, 8)),   # the holiday week is skipped
    (D(2026, 9, 30), 3, D(2026, 10, 10)),  # ...and Saturday 10 October is a make-up working day
    (D(2026, 9, 30), 4, D(2026, 10, 12)),  # ...but Sunday 11 October is not
    (D(2026, 9, 18), 1, D(2026, 9, 20)),   # Sunday 20 September is a make-up working day
    (D(2026, 9, 24), 15, D(2026, 10, 22)),  # Mid-autumn, National Day and one make-up Saturday
    (D(2026, 10, 3), 0, D(2026, 10, 8)),   # n=0 on a holiday: the next working day
    (D(2026, 10, 10), 0, D(2026, 10, 10)),  # n=0 on a make-up day: that day
    (D(2026, 10, 8), -1, D(2026, 9, 30)),  # backwards over the holiday
])
def test_deadlines_across_national_day_2026(start: date, n: int, due: date) -> None:
    cal = WorkingCalendar()
    assert cal.add_working_days_checked(start, n) == (due, [])
    assert cal.add_working_days(start, n) == due


def test_working_days_between_counts_make_up_days() -> None:
    cal = WorkingCalendar()
    assert cal.working_days_between(D(2026, 9, 30), D(2026, 10, 10)) == 3  # 8, 9 and Saturday 10
    assert cal.working_days_between(D(2026, 10, 10), D(2026, 9, 30)) == -3
    assert cal.working_days_between(D(2026, 9, 19), D(2026, 9, 20)) == 1  # Sunday 20 September
    assert cal.working_days_between(D(2026, 10, 1), D(2026, 10, 7)) == 0
    assert cal.working_days_between(D(2026, 10, 1), D(2026, 10, 1)) == 0


# -- crossing into 2027 ------------------------------------------------------------------


def test_into_2027_without_a_calendar_falls_back_to_monday_to_friday_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not package_covers(2027)
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(D(2027, 1, 4))  # what the package itself does
    cal = WorkingCalendar()
    assert not cal.covers(2027)
    # 12-25, 28, 29, 30, 31, then Friday 2027-01-01 (a working day in the fallback), 4, 5, 6, 7.
    assert cal.add_working_days_checked(D(2026, 12, 24), 10) == (D(2027, 1, 7), [2027])
    assert cal.working_days_between_checked(D(2026, 12, 24), D(2027, 1, 7)) == (10, [2027])
    assert cal.add_working_days_checked(D(2026, 12, 24), 5) == (D(2026, 12, 31), [])
    with caplog.at_level(logging.WARNING, logger="services.calendar"):
        assert cal.add_working_days(D(2026, 12, 24), 10) == D(2027, 1, 7)
        assert cal.add_working_days(D(2026, 12, 24), 11) == D(2027, 1, 8)
    warnings = [record for record in caplog.records if "2027" in record.getMessage()]
    assert len(warnings) == 1  # once per year, not once per computation
    # Far outside the package in both directions: still no exception.
    assert cal.is_working_day(D(2031, 3, 3)) and not cal.is_working_day(D(2031, 3, 2))
    assert cal.is_working_day(D(2003, 1, 1))  # before 2004, the fallback too
    assert cal.add_working_days_checked(D(2003, 12, 31), 1) == (D(2004, 1, 2), [])  # 2004-01-01 元旦


def test_into_2027_with_an_admin_entered_calendar() -> None:
    cal = WorkingCalendar(ADMIN_2027)
    assert cal.covers(2027) and not package_covers(2027)
    assert not cal.is_working_day(D(2027, 1, 1))
    assert cal.day_name(D(2027, 1, 1)) == "元旦"
    assert cal.add_working_days_checked(D(2026, 12, 24), 10) == (D(2027, 1, 8), [])
    assert cal.working_days_between_checked(D(2026, 12, 31), D(2027, 1, 4)) == (1, [])
    # The entered make-up Saturday counts; the Spring Festival week does not.
    assert cal.add_working_days(D(2027, 2, 5), 1) == D(2027, 2, 15)
    assert cal.add_working_days(D(2027, 2, 19), 1) == D(2027, 2, 20)
    assert cal.day_name(D(2027, 2, 20)) == "春节调休上班"
    # An override also corrects a covered year.
    fixed = WorkingCalendar({D(2026, 10, 8): (False, "国庆节（示例更正）")})
    assert fixed.add_working_days(D(2026, 9, 30), 1) == D(2026, 10, 9)


def test_datetimes_and_absurd_spans_are_refused() -> None:
    cal = WorkingCalendar()
    with pytest.raises(TypeError):
        cal.is_working_day(datetime(2026, 10, 1, tzinfo=UTC))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refusing"):
        cal.add_working_days(D(2026, 1, 1), 100_000)


def test_the_text_format_round_trips_and_names_bad_lines() -> None:
    days, errors = parse_override_lines(2027, "2027-01-01 休 元旦\n\n# 注释\n2027/2/20\u3000班 春节调休\n2027-03-01 班")
    assert errors == []
    assert days == {D(2027, 1, 1): (False, "元旦"), D(2027, 2, 20): (True, "春节调休"),
                    D(2027, 3, 1): (True, "调休上班")}
    assert parse_override_lines(2027, format_override_lines(days)) == (days, [])
    _days, errors = parse_override_lines(2027, "2027-01-01 休 元旦\n2027-02-30 休\n2026-12-31 休\n2027-01-01 班\nx")
    assert [error.split("「")[0] for error in errors] == ["第 2 行", "第 3 行", "第 4 行", "第 5 行"]
    assert "不是有效日期" in errors[0] and "不属于 2027 年" in errors[1] and "与第 1 行重复" in errors[2]


# -- properties ------------------------------------------------------------------------

FIRST, LAST = D(2024, 1, 1), D(2027, 12, 31)
starts = st.dates(min_value=FIRST, max_value=LAST)


def oracle_is_working_day(day: date, overrides: dict[date, tuple[bool, str]]) -> bool:
    """Written from the package's raw tables, independently of WorkingCalendar."""
    if day in overrides:
        return overrides[day][0]
    if day.year <= 2026:
        return day in chinese_calendar.workdays or (day.weekday() < 5 and day not in chinese_calendar.holidays)
    return day.weekday() < 5


MAKE_UP_DAYS = sorted(day for day in chinese_calendar.workdays if day >= FIRST and day.year <= 2026)


@settings(max_examples=300, deadline=None, database=None)
@given(start=starts, n=st.integers(min_value=0, max_value=60), which=st.sampled_from(sorted(CALENDARS)))
def test_adding_then_counting_round_trips(start: date, n: int, which: str) -> None:
    cal = CALENDARS[which]
    overrides = ADMIN_2027 if which == "with 2027 entered" else {}
    due, uncovered = cal.add_working_days_checked(start, n)
    assert due >= start
    assert cal.is_working_day(due)
    assert oracle_is_working_day(due, overrides)
    assert due not in chinese_calendar.holidays  # a statutory holiday is never a deadline
    assert due not in {day for day, (working, _name) in overrides.items() if not working}
    counted, uncovered_again = cal.working_days_between_checked(start, due)
    expected = n if (n > 0 or cal.is_working_day(start)) else 1
    assert counted == expected
    # The same count from the raw tables: make-up days (weekend days in `workdays`) are counted.
    span = [start + timedelta(days=k) for k in range(1, (due - start).days + 1)]
    assert sum(oracle_is_working_day(day, overrides) for day in span) == expected
    # Nothing earlier would do: the day before the deadline leaves one working day short.
    if n > 0:
        assert cal.working_days_between(start, due - timedelta(days=1)) == n - 1
    first_examined = start if n == 0 else start + timedelta(days=1)
    entered = {day.year for day in overrides}
    assert uncovered == [year for year in range(first_examined.year, due.year + 1)
                         if year >= 2027 and year not in entered]
    if n > 0:
        assert uncovered_again == uncovered


@settings(max_examples=200, deadline=None, database=None)
@given(start=starts, n=st.integers(min_value=1, max_value=60))
def test_going_backwards_mirrors_going_forwards(start: date, n: int) -> None:
    cal = CALENDARS["with 2027 entered"]
    earlier = cal.add_working_days(start, -n)
    assert earlier < start and cal.is_working_day(earlier)
    # The n-th working day strictly before start: n - 1 working days lie between the two.
    assert cal.working_days_between(earlier, start - timedelta(days=1)) == n - 1
    expected = n if cal.is_working_day(start) else n - 1
    assert cal.working_days_between(earlier, start) == expected
    assert cal.working_days_between(start, earlier) == -expected
    assert cal.add_working_days(earlier, n) == cal.add_working_days(start, 0)


@settings(max_examples=200, deadline=None, database=None)
@given(a=starts, b=starts, c=starts)
def test_counting_is_antisymmetric_and_additive(a: date, b: date, c: date) -> None:
    cal = CALENDARS["package only"]
    assert cal.working_days_between(a, b) == -cal.working_days_between(b, a)
    assert cal.working_days_between(a, b) + cal.working_days_between(b, c) == cal.working_days_between(a, c)


@settings(max_examples=100, deadline=None, database=None)
@given(make_up=st.sampled_from(MAKE_UP_DAYS), n=st.integers(min_value=1, max_value=20))
def test_a_make_up_day_is_a_deadline_like_any_working_day(make_up: date, n: int) -> None:
    cal = WorkingCalendar()
    assert make_up.weekday() >= 5 and cal.is_working_day(make_up)
    assert (cal.day_name(make_up) or "").endswith("调休上班")
    before = cal.add_working_days(make_up, -n)
    assert cal.add_working_days(before, n) == make_up
    assert cal.working_days_between(make_up - timedelta(days=1), make_up) == 1


# -- each service's own table (real PostgreSQL) -------------------------------------------


def _event(event_id: str, year: int, days: dict[date, tuple[bool, str]], at: datetime) -> dict[str, Any]:
    return {"id": event_id, "topic": "calendar.updated", "aggregate_type": "calendar_year",
            "aggregate_id": str(year), "version": 1, "payload": calendar_payload(year, days, at),
            "created_at": at.isoformat()}


def test_applying_events_is_idempotent_and_ignores_stale_ones(suite: dict[str, Flask]) -> None:
    from consult.models import CalendarDay, ProcessedEvent
    from services.db import get_database

    database = get_database("consult", suite["consult"])
    first_at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    second_at = first_at + timedelta(minutes=5)
    first = _event("00000000-0000-0000-0000-000000000001", 2027, ADMIN_2027, first_at)
    second_days = {D(2027, 1, 1): (False, "元旦"), D(2027, 1, 2): (False, "元旦")}
    second = _event("00000000-0000-0000-0000-000000000002", 2027, second_days, second_at)

    def apply(event: dict[str, Any]) -> str:
        return apply_calendar_event(database, CalendarDay, event, processed_model=ProcessedEvent)

    with database.transaction() as session:
        assert not load_calendar(session, CalendarDay).covers(2027)
    assert apply(first) == "applied"
    assert apply(first) == "duplicate"
    with database.transaction() as session:
        calendar = load_calendar(session, CalendarDay)
        assert calendar.overrides(2027) == WorkingCalendar(ADMIN_2027).overrides(2027)
        assert calendar.add_working_days(D(2026, 12, 31), 1) == D(2027, 1, 4)
    assert apply(second) == "applied"
    with database.transaction() as session:
        calendar = load_calendar(session, CalendarDay)  # the cache notices the change
        assert calendar.overrides(2027) == WorkingCalendar(second_days).overrides(2027)
    late_copy_of_first = {**first, "id": "00000000-0000-0000-0000-000000000003"}
    assert apply(late_copy_of_first) == "stale"
    with database.transaction() as session:
        assert {row.day for row in session.query(CalendarDay)} == set(second_days)
        assert all(row.updated_at == second_at for row in session.query(CalendarDay))
    bad = _event("00000000-0000-0000-0000-000000000004", 2028, ADMIN_2027, second_at)
    with pytest.raises(ValueError, match="days outside"):
        apply(bad)
