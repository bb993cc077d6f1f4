"""Working-day arithmetic as properties (issue 9): any start from 2015 to 2028, any span of 0..120 working days.

The convention under test (``services/calendar.py``): ``add_working_days(start, n)`` for ``n >= 1`` is the
n-th working day strictly **after** ``start`` (the day of receipt is not counted); for ``n == 0`` it is
``start`` when ``start`` is a working day, else the next working day. ``working_days_between(start, end)``
counts the working days in ``(start, end]``: start excluded, end included. So adding then counting gives
``n`` back for every ``n >= 1``, and for ``n == 0`` gives 0 on a working day and 1 otherwise.

Every expected value is computed from an oracle written here from ``chinesecalendar``'s raw tables
(``holidays`` and ``workdays``, the make-up working days), not from ``WorkingCalendar``.
"""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.calendar import WorkingCalendar, load_calendar, package_covers, replace_year
from services.db import get_database, utcnow

FIRST, LAST = date(2015, 1, 1), date(2028, 12, 31)
LAST_PACKAGE_YEAR = 2026  # chinesecalendar 1.11 covers 2004-2026
MAX_DAYS = 120
ONE_DAY = timedelta(days=1)

PROPERTY = settings(max_examples=300, deadline=None, database=None)

Overrides = dict[date, tuple[bool, str]]


def oracle_is_working_day(day: date, overrides: Overrides | None = None) -> bool:
    """Override first, then the package's raw tables for the years it covers, else Monday-Friday."""
    if overrides and day in overrides:
        return overrides[day][0]
    if day.year <= LAST_PACKAGE_YEAR:
        return day in chinese_calendar.workdays or (day.weekday() < 5 and day not in chinese_calendar.holidays)
    return day.weekday() < 5


def oracle_count(start: date, end: date, overrides: Overrides | None = None) -> int:
    """Working days in (start, end], by walking the days one at a time."""
    assert start <= end
    return sum(oracle_is_working_day(start + timedelta(days=k), overrides) for k in range(1, (end - start).days + 1))


def oracle_uncovered(first: date, last: date, overrides: Overrides | None = None) -> list[int]:
    entered = {day.year for day in overrides or {}}
    return [year for year in range(first.year, last.year + 1) if year > LAST_PACKAGE_YEAR and year not in entered]


def named_holidays(*holidays: chinese_calendar.Holiday) -> list[date]:
    """Every day off of the given holidays from 2019 to 2026, from the package's own table."""
    wanted = {holiday.value for holiday in holidays}
    return sorted(day for day, english in chinese_calendar.holidays.items()
                  if english in wanted and 2019 <= day.year <= LAST_PACKAGE_YEAR)


GOLDEN_WEEKS = named_holidays(chinese_calendar.Holiday.national_day, chinese_calendar.Holiday.spring_festival)
"""Every day off of 国庆节 and 春节, 2019-2026."""
MAKE_UP_WEEKEND_DAYS = sorted(day for day in chinese_calendar.workdays
                              if day.weekday() >= 5 and day >= FIRST and day.year <= LAST_PACKAGE_YEAR)

# Starts anywhere in the range, and often just before a long holiday, where the arithmetic is interesting.
near_holidays = st.builds(lambda day, back: max(FIRST, day - timedelta(days=back)),
                          st.sampled_from(GOLDEN_WEEKS + MAKE_UP_WEEKEND_DAYS), st.integers(0, 20))
starts = st.dates(min_value=FIRST, max_value=LAST) | near_holidays
spans = st.integers(min_value=0, max_value=MAX_DAYS)

PACKAGE_ONLY = WorkingCalendar()


@st.composite
def override_sets(draw: st.DrawFn) -> Overrides:
    """What an administrator might enter: days of one or two years, each a day off or a working day."""
    years = draw(st.lists(st.integers(FIRST.year, LAST.year), min_size=1, max_size=2, unique=True))
    overrides: Overrides = {}
    for year in years:
        days = draw(st.lists(st.dates(date(year, 1, 1), date(year, 12, 31)), min_size=1, max_size=12, unique=True))
        for day in days:
            working = draw(st.booleans())
            overrides[day] = (working, "调休上班" if working else "休息日")
    return overrides


def test_the_generated_holidays_are_really_there() -> None:
    """The strategies above draw from non-empty tables (else the properties below prove nothing)."""
    assert len(GOLDEN_WEEKS) >= 8 * 7 * 2 - 10
    assert {day.year for day in GOLDEN_WEEKS} == set(range(2019, LAST_PACKAGE_YEAR + 1))
    assert len(MAKE_UP_WEEKEND_DAYS) > 50
    assert package_covers(LAST_PACKAGE_YEAR) and not package_covers(LAST_PACKAGE_YEAR + 1)


@PROPERTY
@given(start=starts, n=spans)
def test_adding_then_counting_round_trips(start: date, n: int) -> None:
    due = PACKAGE_ONLY.add_working_days(start, n)
    counted = PACKAGE_ONLY.working_days_between(start, due)
    # Start excluded: n >= 1 comes back as n; n == 0 is 0 on a working day, else the day found is 1 further.
    expected = n if n >= 1 or oracle_is_working_day(start) else 1
    assert counted == expected
    assert oracle_count(start, due) == expected
    # ...and the result is the first such day: the day before it is one working day short.
    if n >= 1:
        assert oracle_count(start, due - ONE_DAY) == n - 1


@PROPERTY
@given(start=starts, n=st.integers(min_value=1, max_value=MAX_DAYS))
def test_a_deadline_is_always_a_working_day(start: date, n: int) -> None:
    due = PACKAGE_ONLY.add_working_days(start, n)
    assert due > start
    assert PACKAGE_ONLY.is_working_day(due)
    assert oracle_is_working_day(due)
    assert due not in chinese_calendar.holidays


@PROPERTY
@given(holiday=st.sampled_from(GOLDEN_WEEKS), back=st.integers(0, 180), n=spans)
def test_no_day_of_national_day_or_spring_festival_is_ever_a_deadline(holiday: date, back: int, n: int) -> None:
    start = holiday - timedelta(days=back)
    assert not PACKAGE_ONLY.is_working_day(holiday)
    assert PACKAGE_ONLY.add_working_days(start, n) != holiday
    # Counting across the holiday skips it: the span up to the holiday's eve counts the same.
    if back > 0:
        assert PACKAGE_ONLY.working_days_between(start, holiday) == PACKAGE_ONLY.working_days_between(
            start, holiday - ONE_DAY)


@PROPERTY
@given(make_up=st.sampled_from(MAKE_UP_WEEKEND_DAYS), n=st.integers(min_value=1, max_value=MAX_DAYS))
def test_a_make_up_weekend_day_counts_as_a_working_day(make_up: date, n: int) -> None:
    assert make_up.weekday() >= 5  # a Saturday or Sunday...
    assert PACKAGE_ONLY.is_working_day(make_up)  # ...on which offices work (调休)
    assert (PACKAGE_ONLY.day_name(make_up) or "").endswith("调休上班")
    assert PACKAGE_ONLY.working_days_between(make_up - ONE_DAY, make_up) == 1
    # It is reached as a deadline: n working days after the day n working days before it.
    earlier = PACKAGE_ONLY.add_working_days(make_up, -n)
    assert PACKAGE_ONLY.add_working_days(earlier, n) == make_up
    assert PACKAGE_ONLY.working_days_between(earlier, make_up) == n


@PROPERTY
@given(start=starts, later_start=st.integers(0, 60), n=spans, more=st.integers(0, MAX_DAYS))
def test_more_days_or_a_later_start_never_gives_an_earlier_deadline(
    start: date, later_start: int, n: int, more: int
) -> None:
    due = PACKAGE_ONLY.add_working_days(start, n)
    assert PACKAGE_ONLY.add_working_days(start, n + more) >= due
    if n >= 1 and more >= 1:
        assert PACKAGE_ONLY.add_working_days(start, n + more) > due  # strictly, once past n == 0
    assert PACKAGE_ONLY.add_working_days(start + timedelta(days=later_start), n) >= due


@PROPERTY
@given(overrides=override_sets(), data=st.data(), n=spans)
def test_administrator_overrides_win_over_the_package(overrides: Overrides, data: st.DataObject, n: int) -> None:
    calendar = WorkingCalendar(overrides)
    for day, (working, name) in overrides.items():
        assert calendar.is_working_day(day) is working
        assert calendar.day_name(day) == name
    # Start near an overridden day, so the span usually crosses it.
    start = data.draw(st.sampled_from(sorted(overrides))) - timedelta(days=data.draw(st.integers(0, 30)))
    due, uncovered = calendar.add_working_days_checked(start, n)
    assert oracle_is_working_day(due, overrides)
    expected = n if n >= 1 or oracle_is_working_day(start, overrides) else 1
    assert calendar.working_days_between(start, due) == expected
    assert oracle_count(start, due, overrides) == expected
    assert due not in {day for day, (working, _name) in overrides.items() if not working}
    first_examined = start + ONE_DAY if n >= 1 else start
    assert uncovered == oracle_uncovered(first_examined, due, overrides)


@PROPERTY
@given(start=st.dates(min_value=date(2026, 6, 1), max_value=LAST), n=spans)
def test_years_the_package_does_not_cover_count_monday_to_friday_and_are_reported(start: date, n: int) -> None:
    due, uncovered = PACKAGE_ONLY.add_working_days_checked(start, n)  # never raises NotImplementedError
    assert oracle_is_working_day(due)
    if due.year > LAST_PACKAGE_YEAR:
        assert due.weekday() < 5
    expected = n if n >= 1 or oracle_is_working_day(start) else 1
    counted, uncovered_counting = PACKAGE_ONLY.working_days_between_checked(start, due)
    assert counted == expected == oracle_count(start, due)
    first_examined = start + ONE_DAY if n >= 1 else start
    assert uncovered == oracle_uncovered(first_examined, due)
    assert uncovered_counting == (oracle_uncovered(start + ONE_DAY, due) if due > start else [])
    # Counting in 2027-2028 is exactly counting Monday to Friday.
    if start.year > LAST_PACKAGE_YEAR:
        weekdays = sum((start + timedelta(days=k)).weekday() < 5 for k in range(1, (due - start).days + 1))
        assert counted == weekdays


# -- the overrides as each service keeps them: its own calendar_day table (real PostgreSQL) -------------------


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(overrides=override_sets(), n=st.integers(min_value=1, max_value=MAX_DAYS))
def test_overrides_saved_in_a_services_table_win_over_the_package(
    suite: dict[str, Flask], overrides: Overrides, n: int
) -> None:
    from consult.models import CalendarDay

    database = get_database("consult", suite["consult"])
    saved_at = utcnow()
    with database.transaction() as session:
        session.query(CalendarDay).delete()  # each example starts from an empty table (rolled back after the test)
        for year in sorted({day.year for day in overrides}):
            replace_year(session, CalendarDay, year, {d: v for d, v in overrides.items() if d.year == year}, saved_at)
    with database.transaction() as session:
        calendar = load_calendar(session, CalendarDay)
    for day, (working, _name) in overrides.items():
        assert calendar.is_working_day(day) is working
        start = day - timedelta(days=n)
        due = calendar.add_working_days(start, n)
        assert oracle_is_working_day(due, overrides)
        assert calendar.working_days_between(start, due) == n == oracle_count(start, due, overrides)
