"""The public reply statistics (咨询统计): exact figures for hand-made consultations, the page, and the cost.

Seed (Beijing times; working days as the 2026 arrangement has them: Mid-Autumn 09-25..27 off with
Sunday 09-20 worked, National Day 10-01..07 off with Saturday 10-10 worked, New Year 01-01..03 off
with Sunday 01-04 worked):

===  ======  ===================  ===================  ==========  =====================================
     dept    received             replied              reply due   working days received → replied
===  ======  ===================  ===================  ==========  =====================================
A    KJTA    2026-09-30 10:00     2026-10-09 10:00     2026-10-09  2 (10-08, 10-09): on time, on the day
B    KJTA    2026-09-29 16:00     2026-10-10 09:00     2026-10-09  4 (09-30, 10-08, 10-09, Sat 10-10): late
C    KJTB    2026-10-12 09:00     2026-10-12 17:00     2026-10-19  0 (same day): on time
D    KJTB    2026-10-15 10:00     —                    2026-10-22  not answered
E    KJTA    2025-12-31 23:30     2026-01-05 10:00     —           2 (Sun 01-04, 01-05); no deadline
F    —       2026-01-01 00:30     —                    —           unrouted, not answered
G    KJTB    2026-09-18 10:00     2026-09-28 10:00     2026-09-25  6 (Sun 09-20, 09-21..24, 09-28): late
===  ======  ===================  ===================  ==========  =====================================

E and F are a minute apart in UTC (2025-12-31 15:30 and 16:30) but in different Beijing years.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session
from werkzeug.test import Client

from consult import statistics, workflow
from consult.models import Consultation
from services.calendar import WorkingCalendar
from services.db import get_database
from services.suite import PathDispatcher


def bj(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00").astimezone(UTC)


SEED: list[tuple[str, str | None, str, str | None, str | None]] = [
    ("A", "KJTA", "2026-09-30T10:00", "2026-10-09T10:00", "2026-10-09"),
    ("B", "KJTA", "2026-09-29T16:00", "2026-10-10T09:00", "2026-10-09"),
    ("C", "KJTB", "2026-10-12T09:00", "2026-10-12T17:00", "2026-10-19"),
    ("D", "KJTB", "2026-10-15T10:00", None, "2026-10-22"),
    ("E", "KJTA", "2025-12-31T23:30", "2026-01-05T10:00", None),
    ("F", None, "2026-01-01T00:30", None, None),
    ("G", "KJTB", "2026-09-18T10:00", "2026-09-28T10:00", "2026-09-25"),
]


def figures(received: int, answered: int, with_deadline: int, on_time: int, share: float | None,
            median: float | None) -> dict[str, Any]:
    return {"received": received, "answered": answered, "answered_with_deadline": with_deadline,
            "on_time": on_time, "on_time_share": share, "median_working_days": median}


def seed(session: Session) -> None:
    for label, department, received, replied, due in SEED:
        if replied is not None:
            item = workflow.record_answered_consultation(
                session, tracking_number=f"ZX{label}{uuid.uuid4().hex[:10]}", title=f"咨询{label}",
                question="请问如何办理？", reply="请到办事大厅办理。", received_at=bj(received),
                replied_at=bj(replied), department=department,
            )
            item.reply_due = date.fromisoformat(due) if due else None
        else:
            session.add(Consultation(
                tracking_number=f"ZX{label}{uuid.uuid4().hex[:10]}", title=f"咨询{label}", question="请问如何办理？",
                state="drafting" if department else "submitted", department=department, received_at=bj(received),
                created_at=bj(received), reply_due=date.fromisoformat(due) if due else None, version=1,
                reply_working_days=5, paused_working_days=0, extension_working_days=0, reopen_count=0,
            ))
    session.flush()


@pytest.fixture
def session(suite: dict[str, Flask]) -> Iterator[Session]:
    with get_database("consult", suite["consult"]).transaction() as session:
        seed(session)
        yield session


def test_the_seed_spans_the_holidays_as_the_calendar_has_them() -> None:
    """Guards the hand counts of the table above against a different calendar release."""
    calendar = WorkingCalendar()
    for label, _department, received, replied, _due in SEED:
        if replied:
            counted = calendar.working_days_between(bj(received).astimezone(workflow.BEIJING).date(),
                                                    bj(replied).astimezone(workflow.BEIJING).date())
            assert counted == {"A": 2, "B": 4, "C": 0, "E": 2, "G": 6}[label], label
    assert not calendar.is_working_day(date(2026, 10, 7)) and calendar.is_working_day(date(2026, 10, 10))


def test_overall_by_department_and_by_month(session: Session) -> None:
    result = statistics.compute(session, workflow.consult_calendar(session))
    assert result["year"] is None
    # Answered A B C E G (durations 2 4 0 2 6: median 2); with a deadline A B C G, on time A C.
    assert result["overall"] == figures(7, 5, 4, 2, 0.5, 2.0)
    assert result["by_department"] == [
        {"department": "KJTA", **figures(3, 3, 2, 1, 0.5, 2.0)},  # A B E: 2 4 2
        {"department": "KJTB", **figures(3, 2, 2, 1, 0.5, 3.0)},  # C D G: 0 6
        {"department": None, **figures(1, 0, 0, 0, None, None)},  # F
    ]
    assert result["by_month"] == [
        {"month": "2025-12", **figures(1, 1, 0, 0, None, 2.0)},  # E, received 23:30 on New Year's Eve
        {"month": "2026-01", **figures(1, 0, 0, 0, None, None)},  # F, received 00:30 on New Year's Day
        {"month": "2026-09", **figures(3, 3, 3, 1, 1 / 3, 4.0)},  # A B G: 2 4 6
        {"month": "2026-10", **figures(2, 1, 1, 1, 1.0, 0.0)},  # C D
    ]


def test_a_year_counts_the_consultations_received_in_it_in_beijing_time(session: Session) -> None:
    calendar = workflow.consult_calendar(session)
    in_2026 = statistics.compute(session, calendar, year=2026)
    assert in_2026["year"] == 2026
    assert in_2026["overall"] == figures(6, 4, 4, 2, 0.5, 3.0)  # without E: 2 4 0 6
    assert [row["month"] for row in in_2026["by_month"]] == ["2026-01", "2026-09", "2026-10"]
    assert [row["department"] for row in in_2026["by_department"]] == ["KJTA", "KJTB", None]
    in_2025 = statistics.compute(session, calendar, year=2025)
    assert in_2025["overall"] == figures(1, 1, 0, 0, None, 2.0)
    assert statistics.compute(session, calendar, year=2024)["overall"] == figures(0, 0, 0, 0, None, None)


def test_the_result_is_plain_json(session: Session) -> None:
    import json

    result = statistics.compute(session, workflow.consult_calendar(session))
    assert json.loads(json.dumps(result)) == result


def test_one_query_reads_the_rows(session: Session) -> None:
    calendar = workflow.consult_calendar(session)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        statistics.compute(session, calendar, year=2026)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1 and "consultation" in statements[0]


class CountingCalendar(WorkingCalendar):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def is_working_day(self, day: date) -> bool:
        self.lookups += 1
        return super().is_working_day(day)


def test_ten_thousand_rows_look_up_each_day_once() -> None:
    """Working days come from one cumulative table over the data's span, not a day-by-day walk per row."""
    start = datetime(2024, 1, 1, 2, tzinfo=UTC)
    rows: list[statistics.Row] = []
    for n in range(10_000):
        received = start + timedelta(hours=5 * n)  # about 5.7 years of consultations
        replied = received + timedelta(days=n % 40) if n % 7 else None
        rows.append(("KJTA" if n % 2 else "KJTB", received, replied, (received + timedelta(days=9)).date()))
    calendar = CountingCalendar()
    result = statistics.summarise(rows, calendar)
    span = (rows[-1][1] + timedelta(days=40) - start).days + 2
    assert calendar.lookups <= span
    assert result["overall"]["received"] == 10_000
    assert result["overall"]["answered"] == sum(1 for row in rows if row[2] is not None)
    check = WorkingCalendar()
    sample = [row for row in rows[:500] if row[2] is not None]
    expected = sorted(check.working_days_between(workflow.local_day(received), workflow.local_day(replied))
                      for _department, received, replied, _due in sample if replied is not None)
    assert statistics.summarise(sample, CountingCalendar())["overall"]["median_working_days"] == (
        float(expected[len(expected) // 2]) if len(expected) % 2
        else (expected[len(expected) // 2 - 1] + expected[len(expected) // 2]) / 2)


# -- the page -------------------------------------------------------------------------------------


def _cells(page: str, table_id: str, key: str) -> dict[str, list[str]]:
    table = re.search(rf'<table class="data" id="{table_id}".*?</table>', page, re.S)
    assert table, table_id
    rows: dict[str, list[str]] = {}
    for attribute, body in re.findall(rf'<tr data-{key}="([^"]*)">(.*?)</tr>', table.group(0), re.S):
        rows[attribute] = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", body)]
    return rows


def test_the_statistics_page_shows_the_tables(suite: dict[str, Flask], session: Session) -> None:
    client = Client(PathDispatcher(suite))
    answer = client.get("/consult/statistics")
    assert answer.status_code == 200
    assert "max-age=60" in answer.headers["Cache-Control"] and answer.headers["ETag"]
    page = answer.get_data(as_text=True)
    assert "咨询统计" in page and "<script" not in page.split("</head>")[1]
    overall = re.search(r'<table class="data" id="overall".*?</table>', page, re.S)
    assert overall and [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                              overall.group(0))] == [
        "7", "5", "2/4", "50.0%", "2"]
    assert _cells(page, "by-department", "department") == {
        "KJTA": ["3", "3", "1/2", "50.0%", "2"],
        "KJTB": ["3", "2", "1/2", "50.0%", "3"],
        "": ["1", "0", "0/0", "—", "—"],
    }
    assert _cells(page, "by-month", "month") == {
        "2025-12": ["1", "1", "0/0", "—", "2"],
        "2026-01": ["1", "0", "0/0", "—", "—"],
        "2026-09": ["3", "3", "1/3", "33.3%", "4"],
        "2026-10": ["2", "1", "1/1", "100.0%", "0"],
    }
    assert re.search(r'<option value="2025"', page) and re.search(r'<option value="2026"', page)

    page_2026 = client.get("/consult/statistics", query_string={"year": "2026"}).get_data(as_text=True)
    assert '<option value="2026" selected>' in page_2026
    assert list(_cells(page_2026, "by-month", "month")) == ["2026-01", "2026-09", "2026-10"]
    assert client.get("/consult/statistics", query_string={"year": "abc"}).status_code == 200  # read as no year
