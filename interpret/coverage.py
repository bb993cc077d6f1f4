"""Coverage of own-level policies by their interpretations: what is missing, what came late, statistics.

The national rules want an own-level (本级) policy and its interpretation released together
(同步发布). This module measures that for the staff dashboard, the statistics (and their Excel
download) and the weekly reminders.

**Which policies count.** Own-level policies (``level == "本级"``) of the given departments that
are *public*: first published, and not withdrawn since their last publication (a published
policy being revised stays public). The period selects them by the Beijing date of their
``first_published_at`` (both ends inclusive). Higher-level policies (国家, 省) never count.

**Missing.** No public interpretation is linked to the policy (a linked draft, or a withdrawn
interpretation, does not count; an interpretation of any department does).

**Late.** Let P be the Beijing date of the policy's ``first_published_at`` and I that of the
*earliest* public linked interpretation's ``first_published_at``, and N the setting
``INTERPRETATION_LATE_WORKING_DAYS`` (default 0: the same release). With the working-day
calendar (statutory holidays and 调休 make-up working days),

    working_days_after = working_days_between(P, I)   # the working days in (P, I]
    late  when working_days_after > N, by  working_days_after - N  working days.

So with N = 0 an interpretation on the policy's own day is on time, as is one on the
non-working days right after it (policy on Friday, interpretation on Saturday); a policy of
Wednesday 2026-09-30 interpreted on Thursday 2026-10-08, the first working day after the
National Day holiday, is 1 working day late (0 with N = 1); a policy of Friday 2026-10-09
interpreted on Saturday 2026-10-10 (a make-up working day) is 1 working day late. An
interpretation published before its policy is on time. ``due_on`` is the last calendar day on
which an interpretation is still on time: the day before the (N+1)-th working day after P.

**Shares** (statistics): coverage = own-level policies with a public interpretation / own-level
policies; on time = own-level policies whose interpretation was on time / own-level policies
(a missing one is not on time). Both are None when a department published no own-level policy.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.orm import Session

from interpret.models import CalendarDay, Interpretation, InterpretationPolicy, OutboxEvent, Policy
from interpret.workflow import FORMS
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.calendar import WorkingCalendar, load_calendar
from services.outbox import emit
from services.settings import Settings, load_settings

CHINA = ZoneInfo("Asia/Shanghai")
OWN_LEVEL = "本级"
MAX_PERIOD_DAYS = 3660
"""A period longer than about ten years is refused (each item's working days are counted day by day)."""

REMINDER_TOPIC = "interpret.coverage.reminder"
REMINDER_AGGREGATE = "department"
REMINDER_LIST_LIMIT = 200
"""At most this many items of each list travel in one reminder (the totals are always exact)."""
REMINDER_LOCK_KEY = 0x676B_696E_7472_6370
"""PostgreSQL advisory lock held by a reminder run, so that two runs cannot both send a week's reminder."""


# -- the calendar, dates and periods ---------------------------------------------------------------



def interpret_calendar(session: Session) -> WorkingCalendar:
    """The working-day calendar interpret counts with: chinesecalendar plus interpret's copy of the
    administrator's overrides (kept in step by ``calendar.updated`` events)."""
    return load_calendar(session, CalendarDay)


def beijing_date(moment: datetime) -> date:
    """The calendar day a moment falls on in China Standard Time."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: its Beijing date is unknown")
    return moment.astimezone(CHINA).date()


def beijing_today() -> date:
    return datetime.now(CHINA).date()


class PeriodError(ValueError):
    """A period that cannot be used; the message is in Chinese, for the page or the API."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


@dataclass(frozen=True)
class Period:
    """Beijing calendar days from ``start`` to ``end``, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise PeriodError("end", "结束日期不能早于开始日期")
        if (self.end - self.start).days >= MAX_PERIOD_DAYS:
            raise PeriodError("start", f"统计期间最长 {MAX_PERIOD_DAYS} 天")

    @classmethod
    def resolve(cls, start: date | None, end: date | None, today: date | None = None) -> Period:
        """The period asked for; by default from 1 January of the end's year to today (Beijing)."""
        end = end or today or beijing_today()
        start = start or date(end.year, 1, 1)
        return cls(start, end)

    @classmethod
    def parse(cls, start: str | None, end: str | None, today: date | None = None) -> Period:
        """From ``YYYY-MM-DD`` texts (blank: the default); PeriodError names the bad one."""
        return cls.resolve(_parse_day("start", start), _parse_day("end", end), today)

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """``[first moment, first moment after)`` of the period, in UTC."""
        first = datetime.combine(self.start, time.min, tzinfo=CHINA).astimezone(UTC)
        after = datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=CHINA).astimezone(UTC)
        return first, after

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()} 至 {self.end.isoformat()}"


def _parse_day(field_name: str, value: str | None) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        label = "开始日期" if field_name == "start" else "结束日期"
        raise PeriodError(field_name, f"{label}格式应为 YYYY-MM-DD") from None


def configured_settings() -> Settings:
    if has_app_context():
        settings: Settings = current_app.extensions["gongkai.settings"]
        return settings
    return load_settings()


def configured_late_working_days() -> int:
    """``INTERPRETATION_LATE_WORKING_DAYS``: the working days an interpretation may follow its policy."""
    return configured_settings().interpretation_late_working_days


# -- what the dashboard lists ----------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageItem:
    """An own-level policy on the dashboard (a missing one, or the policy part of a late one)."""

    policy_id: int
    department: str
    title: str
    index_number: str | None
    document_number: str | None
    published_on: date
    """The Beijing date of the policy's first publication."""
    due_on: date
    """The last day on which its interpretation is on time."""

    @property
    def url(self) -> str:
        return f"/interpret/policies/{self.policy_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id, "department": self.department, "title": self.title,
            "index_number": self.index_number, "document_number": self.document_number,
            "published_on": self.published_on.isoformat(), "due_on": self.due_on.isoformat(), "url": self.url,
        }


@dataclass(frozen=True)
class LateItem(CoverageItem):
    """An own-level policy whose earliest interpretation came more than N working days after it."""

    interpretation_id: int
    interpretation_title: str
    interpreted_on: date
    """The Beijing date of the earliest public interpretation's first publication."""
    working_days_after: int
    """Working days in ``(published_on, interpreted_on]``."""
    working_days_late: int
    """``working_days_after - N``: always at least 1."""

    @property
    def interpretation_url(self) -> str:
        return f"/interpret/interpretations/{self.interpretation_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "interpretation_id": self.interpretation_id, "interpretation_title": self.interpretation_title,
            "interpretation_url": self.interpretation_url, "interpreted_on": self.interpreted_on.isoformat(),
            "working_days_after": self.working_days_after, "working_days_late": self.working_days_late,
        }


@dataclass(frozen=True)
class CoverageReport:
    period: Period
    departments: tuple[str, ...]
    late_working_days: int
    own_level: int
    """Own-level public policies of the departments first published in the period."""
    on_time: int
    missing: list[CoverageItem]
    late: list[LateItem]
    uncovered_years: list[int] = field(default_factory=list)
    """Years counted Monday to Friday because no holiday arrangement is known for them."""

    @property
    def covered(self) -> int:
        return self.own_level - len(self.missing)

    @property
    def start(self) -> date:
        return self.period.start

    @property
    def end(self) -> date:
        return self.period.end

    @property
    def missing_count(self) -> int:
        return len(self.missing)

    @property
    def late_count(self) -> int:
        return len(self.late)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "departments": list(self.departments),
            "late_working_days": self.late_working_days, "own_level": self.own_level, "covered": self.covered,
            "on_time": self.on_time, "missing_count": self.missing_count, "late_count": self.late_count,
            "missing": [item.as_dict() for item in self.missing], "late": [item.as_dict() for item in self.late],
            "uncovered_years": list(self.uncovered_years),
        }


@dataclass(frozen=True)
class _Outcome:
    """One counted policy and what became of its interpretation."""

    item: CoverageItem
    late: LateItem | None
    interpreted: bool

    @property
    def on_time(self) -> bool:
        return self.interpreted and self.late is None


def is_public(model: type[Policy] | type[Interpretation]) -> ColumnElement[bool]:
    """Published once and not withdrawn since the last publication (a revision in progress stays public)."""
    return and_(
        model.first_published_at.is_not(None),
        or_(model.withdrawn_at.is_(None), model.withdrawn_at < model.published_at),
    )


def _counted_policies(departments: Collection[str] | None, period: Period) -> ColumnElement[bool]:
    """Own-level public policies first published in the period (of the departments, unless None: all)."""
    first, after = period.utc_bounds()
    conditions = [
        Policy.level == OWN_LEVEL, is_public(Policy), Policy.first_published_at >= first,
        Policy.first_published_at < after,
    ]
    if departments is not None:
        conditions.append(Policy.department.in_(sorted(departments)))
    return and_(*conditions)


def due_on(calendar: WorkingCalendar, published_on: date, late_working_days: int) -> date:
    """The last day an interpretation of a policy published on ``published_on`` is on time."""
    return calendar.add_working_days(published_on, late_working_days + 1) - timedelta(days=1)


def _outcomes(
    session: Session, departments: Collection[str], period: Period, late_working_days: int,
    calendar: WorkingCalendar,
) -> list[_Outcome]:
    if not departments:
        return []
    if late_working_days < 0:
        raise ValueError("late_working_days must not be negative")
    counted = _counted_policies(departments, period)
    policies = session.execute(
        select(Policy.id, Policy.department, Policy.title, Policy.index_number, Policy.document_number,
               Policy.first_published_at)
        .where(counted).order_by(Policy.first_published_at, Policy.id)
    ).all()
    earliest: dict[int, Any] = {}
    for link in session.execute(
        select(InterpretationPolicy.policy_id, Interpretation.id, Interpretation.title,
               Interpretation.first_published_at)
        .join(Interpretation, Interpretation.id == InterpretationPolicy.interpretation_id)
        .join(Policy, Policy.id == InterpretationPolicy.policy_id)
        .where(counted, is_public(Interpretation))
        .order_by(InterpretationPolicy.policy_id, Interpretation.first_published_at, Interpretation.id)
    ):
        earliest.setdefault(link.policy_id, link)
    outcomes = []
    for row in policies:
        published_on = beijing_date(row.first_published_at)
        item = CoverageItem(
            policy_id=row.id, department=row.department, title=row.title, index_number=row.index_number,
            document_number=row.document_number, published_on=published_on,
            due_on=due_on(calendar, published_on, late_working_days),
        )
        first = earliest.get(row.id)
        if first is None:
            outcomes.append(_Outcome(item, None, interpreted=False))
            continue
        interpreted_on = beijing_date(first.first_published_at)
        after = calendar.working_days_between(published_on, interpreted_on)
        late = None
        if after > late_working_days:
            late = LateItem(
                **{name: getattr(item, name) for name in CoverageItem.__dataclass_fields__},
                interpretation_id=first.id, interpretation_title=first.title, interpreted_on=interpreted_on,
                working_days_after=after, working_days_late=after - late_working_days,
            )
        outcomes.append(_Outcome(item, late, interpreted=True))
    return outcomes


def _uncovered_years(calendar: WorkingCalendar, period: Period, outcomes: Iterable[_Outcome]) -> list[int]:
    last = max([period.end, *(o.late.interpreted_on for o in outcomes if o.late is not None)])
    return calendar.uncovered_years(period.start, last)


def _report(
    departments: Collection[str], period: Period, late_working_days: int, calendar: WorkingCalendar,
    outcomes: Sequence[_Outcome],
) -> CoverageReport:
    return CoverageReport(
        period=period, departments=tuple(sorted(departments)), late_working_days=late_working_days,
        own_level=len(outcomes), on_time=sum(1 for o in outcomes if o.on_time),
        missing=[o.item for o in outcomes if not o.interpreted],
        late=[o.late for o in outcomes if o.late is not None],
        uncovered_years=_uncovered_years(calendar, period, outcomes),
    )


def coverage(
    session: Session,
    departments: Collection[str],
    period: Period,
    *,
    late_working_days: int | None = None,
    calendar: WorkingCalendar | None = None,
) -> CoverageReport:
    """The missing and late own-level policies of ``departments`` first published in ``period``.

    ``late_working_days`` defaults to the setting ``INTERPRETATION_LATE_WORKING_DAYS``.
    """
    late_days = configured_late_working_days() if late_working_days is None else late_working_days
    calendar = calendar or interpret_calendar(session)
    outcomes = _outcomes(session, departments, period, late_days, calendar)
    return _report(departments, period, late_days, calendar, outcomes)


# -- statistics ------------------------------------------------------------------------------------


TOTAL_LABEL = "合计"


@dataclass(frozen=True)
class DepartmentStatistics:
    department: str
    policies: int
    """Public policies of any level first published in the period."""
    own_level: int
    """Of which own-level."""
    interpretations: int
    """Public interpretations of the department first published in the period."""
    covered: int
    """Own-level policies of the period with a public interpretation."""
    on_time: int
    """Own-level policies of the period whose interpretation was on time."""
    forms: dict[str, int]
    """Interpretations of the period per form (every standard form listed, zeros included)."""

    @property
    def coverage_share(self) -> float | None:
        return self.covered / self.own_level if self.own_level else None

    @property
    def on_time_share(self) -> float | None:
        return self.on_time / self.own_level if self.own_level else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "department": self.department, "policies": self.policies, "own_level": self.own_level,
            "interpretations": self.interpretations, "covered": self.covered, "on_time": self.on_time,
            "coverage_share": self.coverage_share, "on_time_share": self.on_time_share, "forms": dict(self.forms),
        }


def _statistics_rows(
    session: Session, departments: Collection[str], period: Period, outcomes: Sequence[_Outcome]
) -> list[DepartmentStatistics]:
    if not departments:
        return []
    first, after = period.utc_bounds()
    chosen = sorted(departments)
    policies = dict(session.execute(  # type: ignore[arg-type]
        select(Policy.department, func.count())
        .where(Policy.department.in_(chosen), is_public(Policy), Policy.first_published_at >= first,
               Policy.first_published_at < after)
        .group_by(Policy.department)
    ).all())
    forms: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FORMS, 0))
    for department, form, count in session.execute(
        select(Interpretation.department, Interpretation.form, func.count())
        .where(Interpretation.department.in_(chosen), is_public(Interpretation),
               Interpretation.first_published_at >= first, Interpretation.first_published_at < after)
        .group_by(Interpretation.department, Interpretation.form)
    ):
        forms[department][form] = forms[department].get(form, 0) + count
    own: dict[str, list[_Outcome]] = defaultdict(list)
    for outcome in outcomes:
        own[outcome.item.department].append(outcome)
    return [
        DepartmentStatistics(
            department=department, policies=policies.get(department, 0), own_level=len(own[department]),
            interpretations=sum(forms[department].values()),
            covered=sum(1 for o in own[department] if o.interpreted),
            on_time=sum(1 for o in own[department] if o.on_time), forms=dict(forms[department]),
        )
        for department in chosen
    ]


def statistics(
    session: Session,
    departments: Collection[str],
    start: date,
    end: date,
    *,
    late_working_days: int | None = None,
    calendar: WorkingCalendar | None = None,
) -> list[DepartmentStatistics]:
    """One row per department (sorted by code, zeros included) for the Beijing days ``start``..``end``."""
    period = Period(start, end)
    late_days = configured_late_working_days() if late_working_days is None else late_working_days
    outcomes = _outcomes(session, departments, period, late_days, calendar or interpret_calendar(session))
    return _statistics_rows(session, departments, period, outcomes)


def total_statistics(rows: Iterable[DepartmentStatistics]) -> DepartmentStatistics:
    """The 合计 row."""
    rows = list(rows)
    forms: dict[str, int] = dict.fromkeys(FORMS, 0)
    for row in rows:
        for form, count in row.forms.items():
            forms[form] = forms.get(form, 0) + count
    return DepartmentStatistics(
        department=TOTAL_LABEL, policies=sum(r.policies for r in rows), own_level=sum(r.own_level for r in rows),
        interpretations=sum(r.interpretations for r in rows), covered=sum(r.covered for r in rows),
        on_time=sum(r.on_time for r in rows), forms=forms,
    )


# -- the Excel download ----------------------------------------------------------------------------

STATISTICS_SHEET = "部门统计"
FORMS_SHEET = "解读形式"
MISSING_SHEET = "缺少解读"
LATE_SHEET = "解读逾期"
NOTES_SHEET = "说明"
STATISTICS_HEADERS = (
    "部门", "发布政策文件", "其中本级政策文件", "发布政策解读", "已解读的本级政策", "解读覆盖率",
    "按时解读的本级政策", "按时率",
)
FORMS_HEADERS = ("部门", *FORMS)
MISSING_HEADERS = ("部门", "索引号", "政策文件", "文号", "发布日期", "解读截止日期")
LATE_HEADERS = (
    "部门", "索引号", "政策文件", "文号", "发布日期", "首个解读", "解读发布日期", "间隔工作日", "逾期工作日",
)


def statistics_workbook(
    session: Session,
    departments: Collection[str],
    start: date,
    end: date,
    *,
    late_working_days: int | None = None,
    calendar: WorkingCalendar | None = None,
) -> bytes:
    """The statistics as an ``.xlsx`` file: one sheet per table, Chinese headers in the first row."""
    from openpyxl import Workbook

    period = Period(start, end)
    late_days = configured_late_working_days() if late_working_days is None else late_working_days
    calendar = calendar or interpret_calendar(session)
    outcomes = _outcomes(session, departments, period, late_days, calendar)
    rows = _statistics_rows(session, departments, period, outcomes)
    report = _report(departments, period, late_days, calendar, outcomes)
    total = total_statistics(rows)

    book = Workbook()
    sheet = book.active
    sheet.title = STATISTICS_SHEET
    _write_table(sheet, STATISTICS_HEADERS, [
        [row.department, row.policies, row.own_level, row.interpretations, row.covered, row.coverage_share,
         row.on_time, row.on_time_share] for row in [*rows, total]
    ], percent_columns={6, 8})
    _write_table(book.create_sheet(FORMS_SHEET), FORMS_HEADERS, [
        [row.department, *(row.forms.get(form, 0) for form in FORMS)] for row in [*rows, total]
    ])
    _write_table(book.create_sheet(MISSING_SHEET), MISSING_HEADERS, [
        [item.department, item.index_number, item.title, item.document_number, item.published_on, item.due_on]
        for item in report.missing
    ])
    _write_table(book.create_sheet(LATE_SHEET), LATE_HEADERS, [
        [item.department, item.index_number, item.title, item.document_number, item.published_on,
         item.interpretation_title, item.interpreted_on, item.working_days_after, item.working_days_late]
        for item in report.late
    ])
    notes = [
        ["统计期间", period.label],
        ["部门", "、".join(report.departments) or "（无）"],
        ["逾期标准", f"本级政策文件发布后超过 {late_days} 个工作日才发布解读（按北京时间日期与法定节假日、调休计算）"],
        ["解读覆盖率", "已发布解读的本级政策文件 ÷ 本级政策文件"],
        ["按时率", "按时发布解读的本级政策文件 ÷ 本级政策文件（缺少解读的不计为按时）"],
        ["生成时间", datetime.now(CHINA).strftime("%Y-%m-%d %H:%M")],
    ]
    if report.uncovered_years:
        years = "、".join(str(year) for year in report.uncovered_years)
        notes.append(["提示", f"{years} 年的节假日安排未知，按周一至周五为工作日计算"])
    _write_table(book.create_sheet(NOTES_SHEET), ("项目", "内容"), notes)
    book.properties.title = f"政策解读统计 {period.label}"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _write_table(
    sheet: Any, headers: Sequence[str], rows: Iterable[Sequence[Any]], percent_columns: Collection[int] = ()
) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet.append(list(headers))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = [max(8, len(header) * 2 + 2) for header in headers]
    for values in rows:
        sheet.append(list(values))
        for column, cell in enumerate(sheet[sheet.max_row], start=1):
            if isinstance(cell.value, str) and cell.data_type == "f":
                cell.data_type = "s"  # a title starting with "=" is text, never a formula
            elif isinstance(cell.value, date):
                cell.number_format = "yyyy-mm-dd"
            if column in percent_columns:
                cell.number_format = "0.0%"
            length = len(str(cell.value)) * 2 if isinstance(cell.value, str) else 12
            widths[column - 1] = min(60, max(widths[column - 1], length))
    for column, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"


# -- weekly reminders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reminder:
    department: str
    week: str
    event_id: str
    missing: int
    late: int


def iso_week(day: date) -> tuple[str, int]:
    """``("2026-W43", 202643)``: the ISO week of a day, as a label and as the event's version number."""
    year, week, _weekday = day.isocalendar()
    return f"{year}-W{week:02d}", year * 100 + week


def _reminded(session: Session, department: str, week_key: int) -> bool:
    return session.scalar(
        select(OutboxEvent.id).where(
            OutboxEvent.topic == REMINDER_TOPIC, OutboxEvent.aggregate_type == REMINDER_AGGREGATE,
            OutboxEvent.aggregate_id == department, OutboxEvent.aggregate_version == week_key,
        ).limit(1)
    ) is not None


def send_coverage_reminders(
    session: Session,
    *,
    today: date | None = None,
    late_working_days: int | None = None,
    lookback_days: int | None = None,
    calendar: WorkingCalendar | None = None,
) -> list[Reminder]:
    """Emit one ``interpret.coverage.reminder`` per department with something to fix, once per ISO week.

    A department's reminder lists its own-level policies first published in the last
    ``lookback_days`` (``INTERPRETATION_REMINDER_LOOKBACK_DAYS``) that still have no public
    interpretation, and its late interpretations first published in the previous ISO week (so each
    late one is reported once). A department already reminded this week (an event with its code and
    the week's number is in the outbox) is skipped, so running twice in a week sends nothing more.
    Each reminder is audited. Returns the reminders sent by this run.

    Who reads them: identity's ``identity.deliver_coverage_reminder`` e-mails each event to the
    department's editors and reviewers (when ``SMTP_HOST`` is set); the dashboard shows the same lists.
    """
    if late_working_days is None or lookback_days is None:
        settings = configured_settings()
        late_working_days = settings.interpretation_late_working_days if late_working_days is None \
            else late_working_days
        lookback_days = settings.interpretation_reminder_lookback_days if lookback_days is None else lookback_days
    late_days, lookback = late_working_days, lookback_days
    today = today or beijing_today()
    calendar = calendar or interpret_calendar(session)
    week, week_key = iso_week(today)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REMINDER_LOCK_KEY})

    window = Period(today - timedelta(days=min(lookback, MAX_PERIOD_DAYS - 1)), today)
    monday = today - timedelta(days=today.weekday())
    last_week = Period(monday - timedelta(days=7), monday - timedelta(days=1))
    departments = sorted(session.scalars(
        select(Policy.department).distinct().where(_counted_policies(None, window))
    ))
    by_department: dict[str, list[_Outcome]] = defaultdict(list)
    for outcome in _outcomes(session, departments, window, late_days, calendar):
        by_department[outcome.item.department].append(outcome)

    sent = []
    for department in departments:
        missing = [o.item for o in by_department[department] if not o.interpreted]
        late = [o.late for o in by_department[department]
                if o.late is not None and o.late.interpreted_on in last_week]
        if not missing and not late:
            continue
        if _reminded(session, department, week_key):
            continue
        payload = {
            "department": department,
            "week": week,
            "generated_on": today.isoformat(),
            "late_working_days": late_days,
            "missing_period": {"start": window.start.isoformat(), "end": window.end.isoformat()},
            "late_period": {"start": last_week.start.isoformat(), "end": last_week.end.isoformat()},
            "missing_count": len(missing),
            "late_count": len(late),
            "missing": [item.as_dict() for item in missing[:REMINDER_LIST_LIMIT]],
            "late": [item.as_dict() for item in late[:REMINDER_LIST_LIMIT]],
            "truncated": len(missing) > REMINDER_LIST_LIMIT or len(late) > REMINDER_LIST_LIMIT,
            "dashboard_url": f"/interpret/dashboard?department={department}",
        }
        event = emit(session, OutboxEvent, REMINDER_TOPIC, aggregate_type=REMINDER_AGGREGATE,
                     aggregate_id=department, version=week_key, payload=payload)
        record_via_outbox(session, OutboxEvent, AuditRecord(
            service="interpret", action="coverage.reminder", result=AuditResult.SUCCESS, username="system",
            department=department, object_type="department", object_id=department,
            detail={"week": week, "missing": len(missing), "late": len(late), "event_id": event.id},
        ))
        sent.append(Reminder(department, week, event.id, len(missing), len(late)))
    session.flush()
    return sent
