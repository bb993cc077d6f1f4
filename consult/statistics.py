"""Public reply statistics (咨询统计): received, answered, on-time share and median working days to answer.

Government sites must publish these figures (受理, 答复, 按期答复率), so they are computed from the
consult database itself, historical imports included, not from the search index (which only holds
published answers).

Definitions (every day is a Beijing calendar day):

* **received** (受理/收到): every consultation received in the period (``received_at``), whatever its
  state (a rejected one was received too).
* **answered** (已答复): those with a reply (``replied_at`` set).
* **on time** (按期答复): answered ones with a reply deadline (``reply_due``) whose reply day is on or
  before it; **on-time share** = on time ÷ answered with a deadline (None when there is none).
* **median working days** (答复用时中位数): the median, over answered ones, of the working days from
  the day received to the day replied (``WorkingCalendar.working_days_between``: the working days in
  ``(received day, replied day]``, so a reply the same day counts 0, holidays and make-up working days
  counted as the calendar says).
* rows are grouped **by department** (the current one; None while unrouted) and **by month**
  (``YYYY-MM`` of the day received).

One query reads the few columns needed (fine for tens of thousands of rows), and working days are
counted from one cumulative table built once for the span of the data instead of day by day per row.
"""

from __future__ import annotations

import statistics as stats
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypedDict, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consult.models import Consultation
from consult.workflow import BEIJING, local_day
from services.calendar import WorkingCalendar


class Figures(TypedDict):
    """The figures of one group of consultations."""

    received: int
    answered: int
    answered_with_deadline: int
    on_time: int
    on_time_share: float | None
    """``on_time / answered_with_deadline`` (0..1), None when no answered consultation has a deadline."""
    median_working_days: float | None
    """None when nothing was answered."""


class DepartmentFigures(Figures):
    department: str | None


class MonthFigures(Figures):
    month: str
    """``YYYY-MM`` of the day received (Beijing time)."""


class Statistics(TypedDict):
    """What :func:`compute` returns: plain JSON types only (``json.dumps`` takes it as it is)."""

    year: int | None
    overall: Figures
    by_department: list[DepartmentFigures]
    """Sorted by department code, the unrouted (None) last."""
    by_month: list[MonthFigures]
    """Oldest month first; only months with at least one consultation."""


@dataclass
class _Tally:
    received: int = 0
    answered: int = 0
    answered_with_deadline: int = 0
    on_time: int = 0
    durations: list[int] = field(default_factory=list)

    def figures(self) -> Figures:
        return {
            "received": self.received,
            "answered": self.answered,
            "answered_with_deadline": self.answered_with_deadline,
            "on_time": self.on_time,
            "on_time_share": self.on_time / self.answered_with_deadline if self.answered_with_deadline else None,
            "median_working_days": float(stats.median(self.durations)) if self.durations else None,
        }


class WorkingDayCounter:
    """``working_days_between`` for many spans within a known range, by a cumulative count built once."""

    def __init__(self, calendar: WorkingCalendar, first: date, last: date) -> None:
        self.calendar = calendar
        self.first = first
        self.cumulative: list[int] = []
        running, day = 0, first
        while day <= last:
            running += calendar.is_working_day(day)
            self.cumulative.append(running)
            day += timedelta(days=1)

    def between(self, start: date, end: date) -> int:
        """Working days in ``(start, end]`` (negative when ``end < start``), as ``WorkingCalendar`` counts."""
        low, high = (start - self.first).days, (end - self.first).days
        if 0 <= low < len(self.cumulative) and 0 <= high < len(self.cumulative):
            return self.cumulative[high] - self.cumulative[low]
        return self.calendar.working_days_between(start, end)


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """``[since, until)`` of a Beijing calendar year, as aware datetimes."""
    return datetime(year, 1, 1, tzinfo=BEIJING), datetime(year + 1, 1, 1, tzinfo=BEIJING)


def compute(session: Session, calendar: WorkingCalendar, year: int | None = None) -> dict[str, Any]:
    """The public reply statistics, for every consultation or those received in ``year`` (Beijing time).

    Returns a plain dict, shaped as :class:`Statistics` (JSON types only)::

        {
          "year": 2026 | None,
          "overall": {"received": 12, "answered": 10, "answered_with_deadline": 9, "on_time": 8,
                      "on_time_share": 0.888..., "median_working_days": 3.0},
          "by_department": [{"department": "KJTA", ...same figures...}, ..., {"department": None, ...}],
          "by_month": [{"month": "2026-09", ...same figures...}, {"month": "2026-10", ...}],
        }

    ``on_time_share`` is a fraction (0..1, unrounded) or None; ``median_working_days`` may be a half
    (the median of an even number of values) or None. See the module docstring for the definitions.
    """
    query = select(Consultation.department, Consultation.received_at, Consultation.replied_at,
                   Consultation.reply_due)
    if year is not None:
        since, until = year_bounds(year)
        query = query.where(Consultation.received_at >= since, Consultation.received_at < until)
    rows = session.execute(query).all()
    return cast(dict[str, Any], summarise(((row[0], row[1], row[2], row[3]) for row in rows), calendar, year))


Row = tuple[str | None, datetime, datetime | None, date | None]
"""(department, received_at, replied_at, reply_due)."""


def summarise(rows: Iterable[Row], calendar: WorkingCalendar, year: int | None = None) -> Statistics:
    """The statistics of already-read rows (what :func:`compute` does after its query)."""
    days = [(department, local_day(received), local_day(replied) if replied else None, due)
            for department, received, replied, due in rows]
    spans = [day for _, received_on, replied_on, _ in days for day in (received_on, replied_on) if day]
    counter = WorkingDayCounter(calendar, min(spans), max(spans)) if spans else None
    overall = _Tally()
    departments: dict[str | None, _Tally] = {}
    months: dict[str, _Tally] = {}
    for department, received_on, replied_on, due in days:
        tallies = (overall, departments.setdefault(department, _Tally()),
                   months.setdefault(f"{received_on:%Y-%m}", _Tally()))
        duration = counter.between(received_on, replied_on) if counter and replied_on else None
        for tally in tallies:
            tally.received += 1
            if replied_on is None:
                continue
            tally.answered += 1
            assert duration is not None
            tally.durations.append(duration)
            if due is not None:
                tally.answered_with_deadline += 1
                tally.on_time += replied_on <= due
    return {
        "year": year,
        "overall": overall.figures(),
        "by_department": [
            {"department": department, **departments[department].figures()}  # type: ignore[typeddict-item]
            for department in sorted(departments, key=lambda code: (code is None, code or ""))
        ],
        "by_month": [
            {"month": month, **months[month].figures()}  # type: ignore[typeddict-item]
            for month in sorted(months)
        ],
    }


def first_year(session: Session) -> int | None:
    """The Beijing year of the oldest consultation (for the page's year choice); None when there is none."""
    oldest = session.scalar(select(func.min(Consultation.received_at)))
    return local_day(oldest).year if oldest is not None else None
