"""The working-day calendar admin page, its audit entry and event, and consult's copy of the year."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client

from services.calendar import CALENDAR_TOPIC, load_calendar
from services.db import get_database
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

YEAR_2027 = """# 2027 年（示例数据）
2027-01-01 休 元旦

2027-02-06 休 春节
2027-02-08 休 春节
2027-02-20 班 春节调休
"""


def _csrf(client: Client, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found, path
    return found.group(1)


def _signed_in(suite: dict[str, Flask], username: str) -> Client:
    client = Client(PathDispatcher(suite))
    answer = client.post("/staff/login", data={
        "csrf_token": _csrf(client, "/staff/login"), "username": username, "password": STAFF_PASSWORD,
        "next": "/staff/",
    })
    assert answer.headers["Location"] == "/staff/", username
    return client


@pytest.fixture
def admin(suite: dict[str, Flask], org: dict[str, Any]) -> Client:
    return _signed_in(suite, "admin1")


def _save(client: Client, year: str, lines: str) -> Any:
    return client.post("/staff/admin/calendar", data={
        "csrf_token": _csrf(client, f"/staff/admin/calendar?year={year}"), "year": year, "lines": lines,
    })


def _identity_rows(suite: dict[str, Flask]) -> list[tuple[date, bool, str]]:
    from services.identity.models import CalendarDay

    with get_database("identity", suite["identity"]).transaction() as session:
        return [(row.day, row.is_working_day, row.name)
                for row in session.scalars(select(CalendarDay).order_by(CalendarDay.day))]


def _calendar_events(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    from services.identity.models import OutboxEvent

    with get_database("identity", suite["identity"]).transaction() as session:
        events = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == CALENDAR_TOPIC).order_by(OutboxEvent.created_at)
        )
        return [event.as_message() for event in events]


def test_the_admin_saves_a_year_audited_and_announced(suite: dict[str, Flask], admin: Client) -> None:
    from services.identity.models import AuditEntry

    home = admin.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/admin/calendar"' in home
    page = admin.get("/staff/admin/calendar?year=2027")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "chinesecalendar 尚未包含 2027 年" in text
    assert "2027 年没有录入任何日期" in text
    covered = admin.get("/staff/admin/calendar?year=2026").get_data(as_text=True)
    assert "chinesecalendar 已包含 2026 年" in covered and "国庆节调休上班" in covered

    saved = _save(admin, "2027", YEAR_2027)
    assert (saved.status_code, saved.headers["Location"]) == (302, "/staff/admin/calendar?year=2027&saved=1")
    assert _identity_rows(suite) == [
        (date(2027, 1, 1), False, "元旦"), (date(2027, 2, 6), False, "春节"),
        (date(2027, 2, 8), False, "春节"), (date(2027, 2, 20), True, "春节调休"),
    ]
    shown = admin.get("/staff/admin/calendar?year=2027&saved=1").get_data(as_text=True)
    assert 'id="calendar-saved"' in shown and "春节调休" in shown and "2027-02-20 班 春节调休" in shown

    [event] = _calendar_events(suite)
    assert (event["aggregate_type"], event["aggregate_id"], event["version"]) == ("calendar_year", "2027", 1)
    assert event["payload"]["year"] == 2027
    assert event["payload"]["days"][0] == {"day": "2027-01-01", "is_working_day": False, "name": "元旦"}
    assert len(event["payload"]["days"]) == 4

    with get_database("identity", suite["identity"]).transaction() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "calendar.update")).one()
        assert (entry.username, entry.object_type, entry.object_id, entry.result) == (
            "admin1", "calendar_year", "2027", "success")
        assert "2027-02-20 班 春节调休" in entry.detail["added"]

    # Saving again replaces the year (and counts the version up); other years are untouched.
    assert _save(admin, "2028", "2028-01-01 休 元旦").status_code == 302
    assert _save(admin, "2027", "2027-01-01 休 元旦").status_code == 302
    assert _identity_rows(suite) == [(date(2027, 1, 1), False, "元旦"), (date(2028, 1, 1), False, "元旦")]
    assert [(e["aggregate_id"], e["version"]) for e in _calendar_events(suite)] == [
        ("2027", 1), ("2028", 1), ("2027", 2)]


def test_a_bad_line_saves_nothing_and_names_the_line(suite: dict[str, Flask], admin: Client) -> None:
    assert _save(admin, "2027", YEAR_2027).status_code == 302
    before = _identity_rows(suite)
    refused = _save(admin, "2027", "2027-01-01 休 元旦\n2027-01-02 休 元旦\n2027-02-30 休 春节\n2027-03-01 歇")
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "未保存任何内容" in text
    assert "第 3 行" in text and "不是有效日期" in text
    assert "第 4 行" in text and "第二项应为" in text
    assert "第 1 行" not in text.split('id="calendar-errors"')[1].split("</div>")[0]
    assert "2027-01-02 休 元旦" in text  # the submitted text is kept for correction
    assert _identity_rows(suite) == before
    assert len(_calendar_events(suite)) == 1
    assert _save(admin, "1999", "").status_code == 400
    assert _save(admin, "二〇二七", "").status_code == 400
    assert admin.get("/staff/admin/calendar?year=abc").status_code == 400


def test_only_identity_admins_reach_the_page(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    anonymous = Client(PathDispatcher(suite))
    assert anonymous.get("/staff/admin/calendar").headers["Location"].startswith("/staff/login?next=")
    for username in ("reviewer_a", "auditor_a", "disclosure_office_b"):
        client = _signed_in(suite, username)
        assert client.get("/staff/admin/calendar?year=2027").status_code == 403
        refused = client.post("/staff/admin/calendar", data={
            "csrf_token": _csrf(client, "/staff/"), "year": "2027", "lines": "2027-01-01 休 元旦",
        })
        assert refused.status_code == 403
    assert _identity_rows(suite) == []
    assert _calendar_events(suite) == []


def test_consult_applies_the_event_and_counts_the_same_days(suite: dict[str, Flask], admin: Client) -> None:
    from consult.models import CalendarDay as ConsultDay
    from consult.tasks import apply_calendar
    from services.events import subscribers
    from services.identity.models import CalendarDay as IdentityDay

    assert subscribers(CALENDAR_TOPIC) == ("consult.apply_calendar", "interpret.apply_calendar")
    assert _save(admin, "2027", YEAR_2027).status_code == 302
    [event] = _calendar_events(suite)
    with suite["consult"].app_context():
        assert apply_calendar(event) == "applied"
        assert apply_calendar(event) == "duplicate"  # a redelivery changes nothing
    with get_database("identity", suite["identity"]).transaction() as session:
        source = load_calendar(session, IdentityDay)
    with get_database("consult", suite["consult"]).transaction() as session:
        copy = load_calendar(session, ConsultDay)
    assert copy.overrides() == source.overrides() and len(copy.overrides(2027)) == 4
    for start, n in ((date(2026, 12, 24), 10), (date(2027, 2, 5), 1), (date(2027, 2, 19), 1)):
        assert copy.add_working_days_checked(start, n) == source.add_working_days_checked(start, n)
    assert copy.add_working_days_checked(date(2026, 12, 24), 10) == (date(2027, 1, 8), [])
    assert copy.add_working_days(date(2027, 2, 19), 1) == date(2027, 2, 20)

    # A newer save reaches consult; the older event delivered late afterwards does not undo it.
    assert _save(admin, "2027", "2027-01-01 休 元旦\n2027-01-04 休 元旦调休").status_code == 302
    newer = _calendar_events(suite)[-1]
    with suite["consult"].app_context():
        assert apply_calendar(newer) == "applied"
        assert apply_calendar({**event, "id": str(uuid.uuid4())}) == "stale"
    with get_database("consult", suite["consult"]).transaction() as session:
        assert sorted(day for day, _ in load_calendar(session, ConsultDay).overrides()) == [
            date(2027, 1, 1), date(2027, 1, 4)]
