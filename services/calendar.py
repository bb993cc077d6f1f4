"""Chinese working days: statutory holidays and make-up working days (调休), for deadlines.

The calendar of a day comes from, in order:

1. an **override row** (``calendar_day``) an administrator entered in the identity console and
   every consuming service keeps a copy of (``calendar.updated`` events), for any year: the
   State Council publishes each year's arrangement in the autumn before, usually long before a
   new ``chinesecalendar`` release;
2. the ``chinesecalendar`` package, for the years it covers (2004–2026 in 1.11);
3. otherwise the **fallback**: Monday–Friday are working days. A computation that relied on the
   fallback reports the years involved (``*_checked`` methods) and logs a warning once per year
   and calendar; it never raises (the package raises ``NotImplementedError`` for such years:
   caught here).

Counting conventions (the usual one for statutory time limits, "N 个工作日内"):

* ``add_working_days(start, n)`` for ``n >= 1`` is the n-th working day strictly **after**
  ``start``: the day of receipt is not counted, so a request received on Friday 2026-09-25 with
  ``n=1`` is due on Monday 2026-09-28. For ``n == 0`` it is ``start`` itself when ``start`` is a
  working day, else the next working day ("today, or the first working day from today"). For
  ``n < 0`` it is the ``|n|``-th working day strictly before ``start``.
* ``working_days_between(start, end)`` counts the working days in ``(start, end]``, and is
  negative (minus the working days in ``(end, start]``) when ``end < start``.

So ``working_days_between(start, add_working_days(start, n)) == n`` for every ``n >= 1``; for
``n == 0`` it is ``0`` when ``start`` is a working day and ``1`` otherwise; for ``n <= -1`` it is
``n`` when ``start`` is a working day and ``n + 1`` otherwise (``start`` itself is then in the
counted interval ``(result, start]`` but not a working day). ``working_days_between`` is
antisymmetric: ``working_days_between(a, b) == -working_days_between(b, a)``, so "working days
left until the deadline" is ``working_days_between(today, deadline)``.

Days are calendar dates in China Standard Time; a ``datetime`` is refused, since which day it
falls on depends on its zone (convert with ``astimezone(ZoneInfo("Asia/Shanghai")).date()``).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import chinese_calendar
from sqlalchemy import Boolean, Date, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.db import ServiceDatabase, UTCDateTime, utcnow
from services.outbox import ProcessedEventMixin, first_delivery

log = logging.getLogger(__name__)

CALENDAR_TOPIC = "calendar.updated"
"""The event identity emits when an administrator replaces a year's overrides."""

MAX_WORKING_DAYS = 10_000
"""``add_working_days`` refuses larger ``|n|`` (about 40 years): a bug, never a real time limit."""

NAME_MAX_LENGTH = 50
DEFAULT_OFF_NAME = "休息日"
DEFAULT_WORKING_NAME = "调休上班"

_ONE_DAY = timedelta(days=1)

_CHINESE_HOLIDAY_NAMES = {
    "清明": "清明节",
    "端午": "端午节",
    "中秋": "中秋节",
}


# -- the package's data, one year at a time -------------------------------------------


@functools.cache
def _package_year(year: int) -> Mapping[date, tuple[bool, str | None]] | None:
    """``{day: (is_working_day, chinese_name)}`` for one year from ``chinesecalendar``, or None if not covered."""
    days: dict[date, tuple[bool, str | None]] = {}
    day = date(year, 1, 1)
    try:
        while day.year == year:
            is_holiday, english = chinese_calendar.get_holiday_detail(day)
            days[day] = (not is_holiday, _package_day_name(not is_holiday, english))
            day += _ONE_DAY
    except NotImplementedError:
        return None
    return days


def _package_day_name(working: bool, english: str | None) -> str | None:
    if english is None:
        return None
    try:
        chinese = str(chinese_calendar.Holiday(english).chinese)
    except ValueError:  # a holiday a newer package release added: keep its English name
        chinese = english
    chinese = _CHINESE_HOLIDAY_NAMES.get(chinese, chinese)
    return f"{chinese}{DEFAULT_WORKING_NAME}" if working else chinese


def package_covers(year: int) -> bool:
    """Whether the installed ``chinesecalendar`` knows the given year's arrangement."""
    return _package_year(year) is not None


def package_days(year: int) -> list[tuple[date, bool, str]]:
    """The package's holidays and make-up working days of a year (empty when it does not cover the year)."""
    days = _package_year(year) or {}
    return [(day, working, name) for day, (working, name) in sorted(days.items()) if name is not None]


# -- the calendar --------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarOverride:
    is_working_day: bool
    name: str


class WorkingCalendar:
    """Working days from ``chinesecalendar``, patched and extended by administrator overrides.

    ``overrides`` maps a date to ``(is_working_day, name)``; a year with at least one override
    counts as covered, and its other days follow the normal week (so enter every holiday and
    every make-up working day of such a year).
    """

    def __init__(self, overrides: Mapping[date, tuple[bool, str]] | None = None) -> None:
        self._overrides: dict[date, CalendarOverride] = {
            _check_date(day): CalendarOverride(bool(working), name)
            for day, (working, name) in (overrides or {}).items()
        }
        self._override_years = frozenset(day.year for day in self._overrides)
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_rows(cls, rows: Iterable[CalendarDayMixin]) -> WorkingCalendar:
        return cls({row.day: (row.is_working_day, row.name) for row in rows})

    # -- single days

    def is_working_day(self, day: date) -> bool:
        return self._lookup(_check_date(day))[0]

    def day_name(self, day: date) -> str | None:
        """The override's name, the holiday's Chinese name (元旦, 国庆节, 春节调休上班...), else None."""
        return self._lookup(_check_date(day))[1]

    def covers(self, year: int) -> bool:
        """Whether the year's arrangement is known (package or overrides) rather than guessed."""
        return year in self._override_years or package_covers(year)

    @property
    def override_years(self) -> frozenset[int]:
        return self._override_years

    def overrides(self, year: int | None = None) -> list[tuple[date, CalendarOverride]]:
        return sorted(
            (day, override) for day, override in self._overrides.items() if year is None or day.year == year
        )

    def _lookup(self, day: date) -> tuple[bool, str | None]:
        override = self._overrides.get(day)
        if override is not None:
            return override.is_working_day, override.name
        package = _package_year(day.year)
        if package is not None:
            return package[day]
        return day.weekday() < 5, None

    # -- spans

    def add_working_days(self, start: date, n: int) -> date:
        """See the module docstring for the convention; logs a warning for uncovered years."""
        result, uncovered = self.add_working_days_checked(start, n)
        self._warn(uncovered)
        return result

    def add_working_days_checked(self, start: date, n: int) -> tuple[date, list[int]]:
        """``(the day, the years it relied on the Monday–Friday fallback for)``."""
        start = _check_date(start)
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("n must be an int")
        if abs(n) > MAX_WORKING_DAYS:
            raise ValueError(f"refusing to count more than {MAX_WORKING_DAYS} working days")
        if n == 0:
            day = start
            while not self.is_working_day(day):
                day += _ONE_DAY
            return day, self.uncovered_years(start, day)
        step = _ONE_DAY if n > 0 else -_ONE_DAY
        day, remaining = start, abs(n)
        while remaining:
            day += step
            if self.is_working_day(day):
                remaining -= 1
        first, last = (start + _ONE_DAY, day) if n > 0 else (day, start - _ONE_DAY)
        return day, self.uncovered_years(first, last)

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in ``(start, end]``; negative when ``end < start``."""
        count, uncovered = self.working_days_between_checked(start, end)
        self._warn(uncovered)
        return count

    def working_days_between_checked(self, start: date, end: date) -> tuple[int, list[int]]:
        start, end = _check_date(start), _check_date(end)
        if end == start:
            return 0, []
        low, high, sign = (start, end, 1) if start < end else (end, start, -1)
        count = sum(1 for day in _days(low + _ONE_DAY, high) if self.is_working_day(day))
        return sign * count, self.uncovered_years(low + _ONE_DAY, high)

    def uncovered_years(self, first: date, last: date) -> list[int]:
        """The years of ``[first, last]`` neither the package nor an override covers."""
        if last < first:
            return []
        return [year for year in range(first.year, last.year + 1) if not self.covers(year)]

    def _warn(self, years: list[int]) -> None:
        with self._lock:
            new = [year for year in years if year not in self._warned]
            self._warned.update(new)
        for year in new:
            log.warning(
                "working-day calendar: no holiday arrangement for %s; counting Monday-Friday as working days "
                "(enter the year at /staff/admin/calendar)", year, extra={"calendar_year": year},
            )


def _check_date(day: date) -> date:
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"a calendar date is required, not {type(day).__name__}")
    return day


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += _ONE_DAY


# -- the administrators' text format ---------------------------------------------------

DAY_KINDS: dict[str, bool] = {"休": False, "假": False, "放假": False, "班": True, "上班": True}
"""The second item of a line: whether the day is a working day."""

MAX_LINES = 400
MAX_TEXT_LENGTH = 20_000
_DATE_PATTERN = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_WEEKDAYS = "一二三四五六日"


def weekday_name(day: date) -> str:
    return f"周{_WEEKDAYS[day.weekday()]}"


def format_override_lines(days: Mapping[date, tuple[bool, str]]) -> str:
    """The text form of overrides (what :func:`parse_override_lines` reads back)."""
    return "".join(f"{day.isoformat()} {'班' if working else '休'} {name}\n" for day, (working, name) in sorted(
        days.items()))


def parse_override_lines(year: int, text: str) -> tuple[dict[date, tuple[bool, str]], list[str]]:
    """Read lines like ``2027-01-01 休 元旦`` / ``2027-02-07 班 春节调休`` for one year.

    Returns ``(days, errors)``; each error names its line number, in Chinese. Blank lines and
    lines starting with ``#`` are skipped; the name is optional (``休息日`` / ``调休上班``). The
    caller saves nothing unless ``errors`` is empty.
    """
    if len(text) > MAX_TEXT_LENGTH:
        return {}, [f"内容过长（最多 {MAX_TEXT_LENGTH} 个字符）。"]
    days: dict[date, tuple[bool, str]] = {}
    first_seen: dict[date, int] = {}
    errors: list[str] = []
    entries = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries += 1
        if entries > MAX_LINES:
            errors.append(f"第 {number} 行：条目过多（每年最多 {MAX_LINES} 条）。")
            break
        problem, parsed = _parse_line(year, line)
        if problem is not None:
            errors.append(f"第 {number} 行「{line[:60]}」：{problem}")
            continue
        assert parsed is not None
        day, working, name = parsed
        if day in first_seen:
            errors.append(f"第 {number} 行「{line[:60]}」：日期 {day.isoformat()} 与第 {first_seen[day]} 行重复。")
            continue
        first_seen[day] = number
        days[day] = (working, name)
    return days, errors


def _parse_line(year: int, line: str) -> tuple[str | None, tuple[date, bool, str] | None]:
    parts = line.split()
    if len(parts) < 2:
        return "格式应为“日期 休/班 名称”，例如“2027-01-01 休 元旦”。", None
    match = _DATE_PATTERN.match(parts[0])
    if match is None:
        return f"日期“{parts[0][:20]}”格式不对，应为 YYYY-MM-DD（例如 {year}-01-01）。", None
    try:
        day = date(*(int(group) for group in match.groups()))
    except ValueError:
        return f"“{parts[0]}”不是有效日期。", None
    if day.year != year:
        return f"日期 {day.isoformat()} 不属于 {year} 年。", None
    working = DAY_KINDS.get(parts[1])
    if working is None:
        return f"第二项应为“休”（放假）或“班”（上班），而不是“{parts[1][:10]}”。", None
    name = " ".join(parts[2:]) or (DEFAULT_WORKING_NAME if working else DEFAULT_OFF_NAME)
    if len(name) > NAME_MAX_LENGTH:
        return f"名称过长（最多 {NAME_MAX_LENGTH} 个字）。", None
    return None, (day, working, name)


# -- the table each service keeps ------------------------------------------------------


class CalendarDayMixin:
    """Columns of a service's ``calendar_day`` table: the administrator's overrides.

    In identity (the source) ``updated_at`` is when the year was saved; in the consumers it is
    the same moment, copied from the event, so that a late, older event is recognised as stale.
    """

    __tablename__ = "calendar_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_working_day: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def year_bounds(year: int) -> tuple[date, date]:
    return date(year, 1, 1), date(year, 12, 31)


_cache: dict[tuple[Any, ...], WorkingCalendar] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 16


def load_calendar(session: Session, model: type[CalendarDayMixin]) -> WorkingCalendar:
    """The calendar with this service's override rows, cached per process.

    A cached calendar is reused only while the table's fingerprint (row count, oldest and
    newest ``updated_at``) is unchanged, so a save or an applied event takes effect at once;
    the check is one aggregate query on a table of a few dozen rows a year.
    """
    fingerprint = session.execute(
        select(func.count(), func.min(model.updated_at), func.max(model.updated_at)).select_from(model)
    ).one()
    database = session.info.get("gongkai_database")
    where = (str(database.url), database.schema) if database is not None else (id(session.get_bind()),)
    key = (model, *where, *fingerprint)
    with _cache_lock:
        calendar = _cache.get(key)
    if calendar is not None:
        return calendar
    calendar = WorkingCalendar.from_rows(session.scalars(select(model)))
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = calendar
    return calendar


def replace_year(
    session: Session, model: type[CalendarDayMixin], year: int, days: Mapping[date, tuple[bool, str]],
    updated_at: datetime,
) -> None:
    """Replace one year's override rows in the caller's transaction."""
    first, last = year_bounds(year)
    outside = sorted(day for day in days if day.year != year)
    if outside:
        raise ValueError(f"days outside {year}: {outside[:3]}")
    session.execute(delete(model).where(model.day >= first, model.day <= last).execution_options(
        synchronize_session=False))
    factory: Any = model  # mypy cannot see the mapped constructor of a mixin
    session.add_all(
        factory(day=day, is_working_day=working, name=name, updated_at=updated_at)
        for day, (working, name) in sorted(days.items())
    )


# -- the event -------------------------------------------------------------------------


def calendar_payload(year: int, days: Mapping[date, tuple[bool, str]], updated_at: datetime) -> dict[str, Any]:
    """The ``calendar.updated`` payload: the year's full override list (it replaces the consumer's)."""
    return {
        "year": year,
        "updated_at": updated_at.isoformat(),
        "days": [
            {"day": day.isoformat(), "is_working_day": working, "name": name}
            for day, (working, name) in sorted(days.items())
        ],
    }


def parse_calendar_payload(payload: Mapping[str, Any]) -> tuple[int, dict[date, tuple[bool, str]], datetime]:
    """``(year, days, updated_at)`` from a ``calendar.updated`` payload; ValueError if malformed."""
    try:
        year = int(payload["year"])
        updated_at = datetime.fromisoformat(payload["updated_at"])
        days = {
            date.fromisoformat(item["day"]): (bool(item["is_working_day"]), str(item["name"])[:NAME_MAX_LENGTH])
            for item in payload["days"]
        }
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed {CALENDAR_TOPIC} payload: {error!r}") from None
    if updated_at.tzinfo is None:
        raise ValueError(f"{CALENDAR_TOPIC}: updated_at has no time zone")
    if any(day.year != year for day in days):
        raise ValueError(f"{CALENDAR_TOPIC}: days outside {year}")
    return year, days, updated_at


def apply_calendar_event(
    database: ServiceDatabase,
    model: type[CalendarDayMixin],
    event: Mapping[str, Any],
    *,
    processed_model: type[ProcessedEventMixin] | None = None,
    consumer: str | None = None,
) -> str:
    """Replace the year's rows in this service's own ``calendar_day`` table from a ``calendar.updated`` event.

    Idempotent: a repeated delivery is recorded once (``first_delivery``, consumer
    ``<service>.apply_calendar`` unless given), and an event older than what the table already
    holds for that year is recorded but not applied. Returns ``"applied"``, ``"duplicate"`` or
    ``"stale"``. (A year cleared to nothing leaves no row to compare with, so a much-delayed older
    event for it would be applied; an administrator re-saving the year repairs that.)
    """
    year, days, updated_at = parse_calendar_payload(event["payload"])
    processed = processed_model or database.processed_model
    if processed is None:
        raise ValueError(f"{database.service} has no processed_event model")
    name = consumer or f"{database.service}.apply_calendar"
    first, last = year_bounds(year)
    with first_delivery(database, processed, name, str(event["id"])) as session:
        if session is None:
            return "duplicate"
        newest = session.scalar(select(func.max(model.updated_at)).where(model.day >= first, model.day <= last))
        if newest is not None and newest > updated_at:
            log.info("calendar event for %s is older than the stored year; skipped", year,
                     extra={"event_id": event["id"], "calendar_year": year})
            return "stale"
        replace_year(session, model, year, days, updated_at)
        return "applied"
