"""The working-day calendar admin page: holidays and make-up working days (调休) per year.

Administrators enter a year's arrangement as published by the State Council (needed for the
years ``chinesecalendar`` does not cover yet, and to correct a covered year). Saving replaces
that year's rows in identity's ``calendar_day`` table and emits ``calendar.updated`` with the
year's full list; consult and interpret keep their own copies from that event.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, redirect, render_template, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.audit import AuditRecord, AuditResult, append_entry, audit_key
from services.auth import current_staff, requires
from services.calendar import (
    CALENDAR_TOPIC,
    calendar_payload,
    format_override_lines,
    load_calendar,
    package_covers,
    package_days,
    parse_override_lines,
    replace_year,
    weekday_name,
    year_bounds,
)
from services.db import get_session, utcnow
from services.identity.models import CalendarDay, OutboxEvent, User
from services.identity.signin import client_address, settings
from services.outbox import emit
from services.permissions import Permission

bp = Blueprint("identity_calendar", __name__, url_prefix="/staff", template_folder="templates")

FIRST_YEAR = 2000
LAST_YEAR = 2099
CHINA = ZoneInfo("Asia/Shanghai")


def _this_year() -> int:
    return datetime.now(CHINA).year


def _year(value: str | None) -> int | None:
    """The year asked for, or None if it is not a four-digit year in range."""
    if value is None or value.strip() == "":
        return _this_year()
    value = value.strip()
    if not (len(value) == 4 and value.isdigit() and FIRST_YEAR <= int(value) <= LAST_YEAR):
        return None
    return int(value)


def _year_rows(db: Session, year: int) -> dict[date, tuple[bool, str]]:
    first, last = year_bounds(year)
    rows = db.scalars(
        select(CalendarDay).where(CalendarDay.day >= first, CalendarDay.day <= last).order_by(CalendarDay.day)
    )
    return {row.day: (row.is_working_day, row.name) for row in rows}


def _render(
    year: int, *, text: str | None = None, errors: list[str] | None = None, rejected: bool = False, status: int = 200
) -> Any:
    db = get_session("identity")
    rows = _year_rows(db, year)
    calendar = load_calendar(db, CalendarDay)
    this_year = _this_year()
    missing = [y for y in (this_year, this_year + 1) if not calendar.covers(y)]
    return render_template(
        "identity/admin_calendar.html",
        year=year, rows=sorted(rows.items()), weekday_name=weekday_name,
        package_covered=package_covers(year), package_days=package_days(year),
        text=format_override_lines(rows) if text is None else text, errors=errors or [], rejected=rejected,
        saved=request.args.get("saved") == "1" and not errors, missing_years=missing,
        first_year=FIRST_YEAR, last_year=LAST_YEAR,
    ), status


@bp.get("/admin/calendar")
@requires(Permission.MANAGE_IDENTITY)
def calendar_page() -> Any:
    year = _year(request.args.get("year"))
    if year is None:
        return _render(_this_year(), errors=[f"年份应为 {FIRST_YEAR}–{LAST_YEAR} 之间的四位数字。"], status=400)
    return _render(year)


def _audit(db: Session, year: int, **detail: Any) -> None:
    """Who changed which year, and how (the lines added and removed), in the audit chain."""
    staff = current_staff()
    user = db.get(User, staff.user_id) if staff else None
    record = AuditRecord(
        service="identity", action="calendar.update", result=AuditResult.SUCCESS,
        user_id=user.id if user else None, username=user.username if user else None,
        department=",".join(sorted({a.department.code for a in user.roles})) if user else None,
        object_type="calendar_year", object_id=str(year), source_address=client_address(), detail=detail,
    )
    append_entry(db, audit_key(settings().secret_key), record)


def _describe(days: dict[date, tuple[bool, str]]) -> set[str]:
    return {f"{day.isoformat()} {'班' if working else '休'} {name}" for day, (working, name) in days.items()}


@bp.post("/admin/calendar")
@requires(Permission.MANAGE_IDENTITY)
def save_calendar() -> Any:
    db = get_session("identity")
    raw_year = request.form.get("year", "").strip()
    year = _year(raw_year) if raw_year else None
    text = request.form.get("lines", "")
    if year is None:
        return _render(_this_year(), text=text, errors=[f"年份应为 {FIRST_YEAR}–{LAST_YEAR} 之间的四位数字。"],
                       status=400)
    days, errors = parse_override_lines(year, text)
    if errors:
        return _render(year, text=text, errors=errors, rejected=True, status=400)
    before = _year_rows(db, year)
    saved_at = utcnow()
    previous = db.scalar(
        select(func.max(OutboxEvent.aggregate_version)).where(
            OutboxEvent.topic == CALENDAR_TOPIC, OutboxEvent.aggregate_id == str(year)
        )
    )
    version = (previous or 0) + 1
    replace_year(db, CalendarDay, year, days, saved_at)
    try:
        db.flush()
    except IntegrityError:  # another administrator saved the same year at the same moment
        db.rollback()
        return _render(year, text=text, errors=["另一位管理员刚刚保存了同一年份，请核对后重新提交。"], rejected=True,
                       status=409)
    emit(db, OutboxEvent, CALENDAR_TOPIC, aggregate_type="calendar_year", aggregate_id=year, version=version,
         payload=calendar_payload(year, days, saved_at))
    old, new = _describe(before), _describe(days)
    _audit(db, year, version=version, days=len(days), added=sorted(new - old), removed=sorted(old - new))
    db.commit()
    return redirect(f"/staff/admin/calendar?year={year}&saved=1")
