"""Export of a period's consultations to Excel (.xlsx), for the office's own records and reports.

One row per consultation received in the period (Beijing dates) with its tracking number, title,
category, department, state, dates, working days taken, whether it was answered on time and the
asker's rating, and a summary sheet (汇总) with per-department counts. No name, phone number or
e-mail address is ever written: contact details never leave the service in bulk, and the title
is written with personal data redacted as on the public board.

:func:`export_period` is what the CLI (``gongkai consult export``) and the staff API call;
:func:`parse_day` and :func:`check_period` validate their input the same way for both.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from consult.models import Consultation
from consult.workflow import (
    ANSWERED,
    BEIJING,
    RATINGS,
    STATE_LABELS,
    ConsultationState,
    deadline_status,
    local_day,
)
from services.calendar import WorkingCalendar
from services.db import utcnow
from services.text.pii import redact
from services.workflow import problem

MAX_PERIOD_DAYS = 366
DETAIL_SHEET = "咨询明细"
SUMMARY_SHEET = "汇总"
DATE_FORMAT = "yyyy-mm-dd"

COLUMNS: tuple[tuple[str, int], ...] = (
    ("受理编号", 18), ("标题", 48), ("类别", 16), ("部门", 12), ("状态", 16), ("收到日期", 12), ("受理日期", 12),
    ("答复期限", 12), ("答复日期", 12), ("用时（工作日）", 14), ("是否按期", 12), ("评价", 10),
)
"""The detail sheet's headers and column widths (characters)."""
HEADERS: tuple[str, ...] = tuple(header for header, _width in COLUMNS)

SUMMARY_COLUMNS: tuple[tuple[str, int], ...] = (
    ("部门", 16), ("收到", 10), ("已答复", 10), ("按期答复", 10), ("按期答复率", 12), ("逾期未答复", 12),
)
SUMMARY_HEADERS: tuple[str, ...] = tuple(header for header, _width in SUMMARY_COLUMNS)
TOTAL_LABEL = "合计"
SUMMARY_NOTE = "按期答复率 = 按期答复 ÷ 已答复；逾期未答复：尚未答复且已过答复期限（不含暂停计时）"

ON_TIME, LATE, OVERDUE, OPEN, PAUSED = "是", "否", "逾期未答复", "未到期", "暂停计时"
"""The values of 是否按期: answered by the deadline or not; still open and past it, within it, or paused."""

_FIELDS = (
    Consultation.id, Consultation.tracking_number, Consultation.title, Consultation.category,
    Consultation.department, Consultation.state, Consultation.received_at, Consultation.accepted_at,
    Consultation.accept_due, Consultation.reply_due, Consultation.replied_at, Consultation.rating,
    Consultation.historical,
)


# -- the period --------------------------------------------------------------------------------


def parse_day(text: str | None, field: str) -> date:
    """A ``YYYY-MM-DD`` date, or a ContentProblem naming ``field``."""
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise problem(field, f"日期格式应为 YYYY-MM-DD，收到 {text!r} / expected YYYY-MM-DD") from None


def check_period(start: date, end: date) -> None:
    """Refuse a period that ends before it starts or is longer than :data:`MAX_PERIOD_DAYS` days."""
    if end < start:
        raise problem("to", "结束日期早于开始日期 / the end is before the start")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise problem("to", f"导出期间不能超过 {MAX_PERIOD_DAYS} 天 / at most {MAX_PERIOD_DAYS} days at a time")


def _period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end + 1 day 00:00)`` in Beijing time, as UTC moments."""
    first = datetime.combine(start, time(0), tzinfo=BEIJING).astimezone(UTC)
    after = datetime.combine(end + timedelta(days=1), time(0), tzinfo=BEIJING).astimezone(UTC)
    return first, after


# -- the rows ----------------------------------------------------------------------------------


@dataclass
class DepartmentCounts:
    received: int = 0
    answered: int = 0
    on_time: int = 0
    overdue_open: int = 0

    def add(self, other: DepartmentCounts) -> None:
        self.received += other.received
        self.answered += other.answered
        self.on_time += other.on_time
        self.overdue_open += other.overdue_open

    @property
    def on_time_share(self) -> float | None:
        return self.on_time / self.answered if self.answered else None


def _rows(session: Session, start: date, end: date, departments: Collection[str] | None) -> Iterator[Consultation]:
    first, after = _period_bounds(start, end)
    query = (
        select(Consultation)
        .options(load_only(*_FIELDS, raiseload=True))
        .where(Consultation.received_at >= first, Consultation.received_at < after)
        .order_by(Consultation.received_at, Consultation.id)
        .execution_options(yield_per=500)
    )
    if departments is not None:
        query = query.where(Consultation.department.in_(sorted(departments)))
    yield from session.scalars(query)


def _punctuality(consultation: Consultation, calendar: WorkingCalendar, today: date) -> str | None:
    """是否按期 for one consultation (None when it does not apply: rejected, or no deadline known)."""
    if consultation.state in ANSWERED:
        if consultation.replied_at is None or consultation.reply_due is None:
            return None
        return ON_TIME if local_day(consultation.replied_at) <= consultation.reply_due else LATE
    status = deadline_status(consultation, calendar, today)
    return {"overdue": OVERDUE, "paused": PAUSED, "due_soon": OPEN, "on_time": OPEN}.get(status or "")


def _working_days(calendar: WorkingCalendar, received: date, replied: date | None) -> int | None:
    if replied is None:
        return None
    return calendar.working_days_between_checked(received, replied)[0]


def _detail_values(consultation: Consultation, calendar: WorkingCalendar, today: date) -> tuple[list[Any], str | None]:
    received = local_day(consultation.received_at)
    replied = local_day(consultation.replied_at) if consultation.replied_at else None
    answered = consultation.state in ANSWERED
    punctuality = _punctuality(consultation, calendar, today)
    values = [
        consultation.tracking_number,
        redact(consultation.title).text,
        consultation.category,
        consultation.department,
        STATE_LABELS.get(ConsultationState(consultation.state), consultation.state),
        received,
        local_day(consultation.accepted_at) if consultation.accepted_at else None,
        consultation.reply_due,
        replied,
        _working_days(calendar, received, replied) if answered else None,
        punctuality,
        RATINGS.get(consultation.rating or ""),
    ]
    return values, punctuality


# -- the workbook ------------------------------------------------------------------------------


def export_period(
    session: Session,
    calendar: WorkingCalendar,
    start: date,
    end: date,
    departments: set[str] | None,
    *,
    today: date | None = None,
) -> bytes:
    """The consultations received from ``start`` to ``end`` (Beijing dates, both included) as ``.xlsx`` bytes.

    ``departments``: the department codes to include (None: every department; an empty set gives an
    empty export). The first sheet (咨询明细) has one row per consultation, the second (汇总) the
    counts per department and their total. ``today`` (default: today in Beijing) decides whether an
    open consultation is overdue. The period is not checked here: call :func:`check_period` first.

    Written in openpyxl's write-only mode, so memory stays flat however many rows the period holds.
    No name, phone number or e-mail address is written.
    """
    from openpyxl import Workbook

    today = today or local_day(utcnow())
    book = Workbook(write_only=True)
    book.properties.title = f"咨询办理情况 {start.isoformat()} 至 {end.isoformat()}"
    detail = book.create_sheet(DETAIL_SHEET)
    _prepare(detail, COLUMNS)
    counts: dict[str, DepartmentCounts] = {}
    for consultation in _rows(session, start, end, departments):
        values, punctuality = _detail_values(consultation, calendar, today)
        detail.append(_cells(detail, values))
        department = counts.setdefault(consultation.department or "", DepartmentCounts())
        department.received += 1
        if consultation.state in ANSWERED:
            department.answered += 1
            department.on_time += punctuality == ON_TIME
        department.overdue_open += punctuality == OVERDUE

    summary = book.create_sheet(SUMMARY_SHEET)
    _prepare(summary, SUMMARY_COLUMNS)
    total = DepartmentCounts()
    for code in sorted(counts):
        total.add(counts[code])
        summary.append(_cells(summary, _summary_values(code or "（未分部门）", counts[code])))
    summary.append(_cells(summary, _summary_values(TOTAL_LABEL, total), bold=True))
    summary.append([])
    summary.append(_cells(summary, [f"统计期间：{start.isoformat()} 至 {end.isoformat()}（按北京时间收到日期）"]))
    summary.append(_cells(summary, [SUMMARY_NOTE]))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _summary_values(label: str, counts: DepartmentCounts) -> list[Any]:
    return [label, counts.received, counts.answered, counts.on_time, counts.on_time_share, counts.overdue_open]


def _prepare(sheet: Any, columns: tuple[tuple[str, int], ...]) -> None:
    """Column widths, the frozen header row and the bold headers (before any other row: write-only)."""
    from openpyxl.utils import get_column_letter

    for index, (_header, width) in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    sheet.append(_cells(sheet, [header for header, _width in columns], bold=True))


def _cells(sheet: Any, values: list[Any], *, bold: bool = False) -> list[Any]:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    cells = []
    for value in values:
        cell = WriteOnlyCell(sheet, value=value)
        if isinstance(value, date):
            cell.number_format = DATE_FORMAT
        elif isinstance(value, float):
            cell.number_format = "0.0%"
        elif isinstance(value, str) and cell.data_type == "f":
            cell.data_type = "s"  # a title starting with "=" is text, never a formula
        if bold:
            cell.font = Font(bold=True)
        cells.append(cell)
    return cells


def period_filename(start: date, end: date) -> str:
    """A file name for a period's export (ASCII, for Content-Disposition)."""
    return f"consultations-{start.isoformat()}-{end.isoformat()}.xlsx"

