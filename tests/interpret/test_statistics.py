"""Statistics per department and period (counts, shares, forms), their Excel download, and the weekly
reminders (one event per department per ISO week, however often the task runs).

Seed (Beijing times, 2026; INTERPRETATION_LATE_WORKING_DAYS = 0; period 10-01..10-31):

* KJTA: own-level p1 (10-09) interpreted 10-09 in 文字解读 (on time) and again 11-02 (outside the
  period); own-level p2 (10-09) interpreted 10-12 in 图解 (2 working days late: 10-10 is a make-up
  working day); own-level p3 (10-12, titled like a spreadsheet formula) never interpreted;
  国家 p4 (10-12) interpreted 10-13 in 视频; 省 p5 (09-28, outside the period) interpreted 10-14
  in 专家解读.
* KJTB: own-level p6 (10-20) interpreted the same day in 问答式解读; own-level p7 (10-15) never.
* KJT: nothing.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client

from services.auth import StaffIdentity
from services.db import get_database
from services.permissions import Grant, Role
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

CHINA = ZoneInfo("Asia/Shanghai")
SCOPE = ("KJT", "KJTA", "KJTB")
AUTHOR = StaffIdentity(9201, "statistics_author", "起草人", (Grant(Role.EDITOR, "KJT", SCOPE),), "s-a", "api")
PUBLISHER = StaffIdentity(
    9202, "statistics_publisher", "审核发布人",
    (Grant(Role.REVIEWER, "KJT", SCOPE), Grant(Role.DISCLOSURE_OFFICE, "KJT", SCOPE)), "s-p", "api",
)
FORMULA_TITLE = "=HYPERLINK(\"http://example.invalid\",\"点此\") 关于公式的通知"


def bj(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=CHINA)


def _stamp(item: Any, moment: datetime) -> None:
    item.first_published_at = moment
    item.published_at = moment


def make_policy(session: Any, department: str, title: str, published: datetime, level: str = "本级") -> Any:
    from interpret.workflow import PolicyFields, approve, create_policy, publish, submit

    policy = create_policy(session, AUTHOR, PolicyFields(
        title=title, issuer="科学技术厅", level=level, body="<p>现通知如下。</p>", department=department,
    ))
    submit(session, AUTHOR, policy)
    approve(session, PUBLISHER, policy)
    publish(session, PUBLISHER, policy)
    _stamp(policy, published)
    return policy


def make_interpretation(session: Any, department: str, policy: Any, published: datetime, form: str,
                        **extra: Any) -> Any:
    from interpret.workflow import InterpretationFields, approve, create_interpretation, link_policy, publish, submit

    interpretation = create_interpretation(session, AUTHOR, InterpretationFields(
        title=f"{policy.title}（{form}）", form=form, interpreter_kind="专家", department=department,
        body="<p>解读正文。</p>", **extra,
    ))
    link_policy(session, AUTHOR, interpretation, policy)
    submit(session, AUTHOR, interpretation)
    approve(session, PUBLISHER, interpretation)
    publish(session, PUBLISHER, interpretation)
    _stamp(interpretation, published)
    return interpretation


@pytest.fixture
def seeded(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    database = get_database("interpret", suite["interpret"])
    monkeypatch.setattr(database, "publisher", None)
    ids: dict[str, int] = {}
    with database.transaction() as session:
        p1 = make_policy(session, "KJTA", "关于统计一的通知", bj(10, 9))
        make_interpretation(session, "KJTA", p1, bj(10, 9, 15), "文字解读")
        make_interpretation(session, "KJTA", p1, bj(11, 2), "媒体解读")
        p2 = make_policy(session, "KJTA", "关于统计二的通知", bj(10, 9))
        make_interpretation(session, "KJTA", p2, bj(10, 12), "图解", text_alternative="图解的文字说明。")
        p3 = make_policy(session, "KJTA", FORMULA_TITLE, bj(10, 12))
        p4 = make_policy(session, "KJTA", "国务院关于统计四的通知", bj(10, 12), level="国家")
        make_interpretation(session, "KJTA", p4, bj(10, 13), "视频", transcript="视频的文字实录。")
        p5 = make_policy(session, "KJTA", "省政府关于统计五的通知", bj(9, 28), level="省")
        make_interpretation(session, "KJTA", p5, bj(10, 14), "专家解读")
        p6 = make_policy(session, "KJTB", "关于统计六的通知", bj(10, 20))
        make_interpretation(session, "KJTB", p6, bj(10, 20, 16), "问答式解读")
        p7 = make_policy(session, "KJTB", "关于统计七的通知", bj(10, 15))
        session.flush()
        ids.update(p1=p1.id, p2=p2.id, p3=p3.id, p4=p4.id, p5=p5.id, p6=p6.id, p7=p7.id)
    return ids


# -- counts and shares ---------------------------------------------------------------------------


def test_counts_shares_and_forms(suite: dict[str, Flask], seeded: dict[str, int]) -> None:
    from interpret.coverage import statistics, total_statistics

    with get_database("interpret", suite["interpret"]).transaction() as session:
        rows = statistics(session, ["KJTB", "KJTA", "KJT"], date(2026, 10, 1), date(2026, 10, 31),
                          late_working_days=0)
    by = {row.department: row for row in rows}
    assert [row.department for row in rows] == ["KJT", "KJTA", "KJTB"]
    a, b, bureau = by["KJTA"], by["KJTB"], by["KJT"]
    assert (a.policies, a.own_level, a.interpretations, a.covered, a.on_time) == (4, 3, 4, 2, 1)
    assert a.coverage_share == pytest.approx(2 / 3) and a.on_time_share == pytest.approx(1 / 3)
    assert {form: n for form, n in a.forms.items() if n} == {"文字解读": 1, "图解": 1, "视频": 1, "专家解读": 1}
    assert (b.policies, b.own_level, b.interpretations, b.covered, b.on_time) == (2, 2, 1, 1, 1)
    assert b.coverage_share == pytest.approx(0.5) and b.on_time_share == pytest.approx(0.5)
    assert {form: n for form, n in b.forms.items() if n} == {"问答式解读": 1}
    assert (bureau.policies, bureau.own_level, bureau.interpretations) == (0, 0, 0)
    assert bureau.coverage_share is None and bureau.on_time_share is None
    total = total_statistics(rows)
    assert (total.policies, total.own_level, total.interpretations, total.covered, total.on_time) == (6, 5, 5, 3, 2)
    assert total.coverage_share == pytest.approx(0.6) and total.on_time_share == pytest.approx(0.4)

    # With one working day allowed, p2 (10-09 → 10-12 across the 10-10 make-up day: 2 working days) is still late.
    with get_database("interpret", suite["interpret"]).transaction() as session:
        one = statistics(session, ["KJTA"], date(2026, 10, 1), date(2026, 10, 31), late_working_days=1)
        two = statistics(session, ["KJTA"], date(2026, 10, 1), date(2026, 10, 31), late_working_days=2)
    assert (one[0].on_time, two[0].on_time) == (1, 2)


# -- pages, download and API ---------------------------------------------------------------------


def _csrf(client: Client, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found, path
    return found.group(1)


def signed_in(suite: dict[str, Flask], username: str) -> tuple[Client, str]:
    address = {"REMOTE_ADDR": f"10.78.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
    client = Client(PathDispatcher(suite))
    answer = client.post("/staff/login", environ_base=address, data={
        "csrf_token": _csrf(client, "/staff/login"), "username": username, "password": STAFF_PASSWORD,
        "next": "/staff/",
    })
    assert answer.headers["Location"] == "/staff/", username
    token = Client(PathDispatcher(suite)).post("/api/auth/token", environ_base=address,
                                               json={"username": username, "password": STAFF_PASSWORD})
    assert token.status_code == 200, token.get_json()
    return client, token.get_json()["token"]


def test_the_statistics_page_shows_only_the_callers_departments(
    suite: dict[str, Flask], org: dict[str, Any], seeded: dict[str, int]
) -> None:
    client, _token = signed_in(suite, "disclosure_office_a")
    page = client.get("/interpret/statistics?start=2026-10-01&end=2026-10-31")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    table = re.search(r'<table class="data" id="statistics".*?</table>', html, re.S)
    assert table is not None
    rows = re.findall(r'<tr data-department="([^"]+)">(.*?)</tr>', table.group(0), re.S)
    assert [department for department, _cells in rows] == ["KJTA", "合计"]
    cells = re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", rows[0][1])
    assert cells == ["KJTA", "4", "3", "4", "2", "66.7%", "1", "33.3%"]
    assert "解读覆盖率" in html and "按时率" in html and "解读形式" in html
    assert 'href="/interpret/statistics.xlsx?department=&amp;start=2026-10-01&amp;end=2026-10-31"' in html
    assert client.get("/interpret/statistics?department=KJTB").status_code == 403


def test_the_excel_download_opens_with_chinese_headers(
    suite: dict[str, Flask], org: dict[str, Any], seeded: dict[str, int]
) -> None:
    from openpyxl import load_workbook

    client, _token = signed_in(suite, "editor_a")
    answer = client.get("/interpret/statistics.xlsx?start=2026-10-01&end=2026-10-31")
    assert answer.status_code == 200
    assert answer.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert answer.headers["Content-Disposition"] == (
        "attachment; filename=interpret-statistics-20261001-20261031.xlsx")
    book = load_workbook(io.BytesIO(answer.get_data()))
    assert book.sheetnames == ["部门统计", "解读形式", "缺少解读", "解读逾期", "说明"]

    stats = [[cell.value for cell in row] for row in book["部门统计"].iter_rows()]
    assert stats[0] == ["部门", "发布政策文件", "其中本级政策文件", "发布政策解读", "已解读的本级政策", "解读覆盖率",
                        "按时解读的本级政策", "按时率"]
    assert stats[1][:5] == ["KJTA", 4, 3, 4, 2] and stats[1][6] == 1
    assert stats[1][5] == pytest.approx(2 / 3) and stats[1][7] == pytest.approx(1 / 3)
    assert book["部门统计"].cell(row=2, column=6).number_format == "0.0%"
    assert stats[2][0] == "合计" and len(stats) == 3  # only the caller's department, and the total

    forms = [[cell.value for cell in row] for row in book["解读形式"].iter_rows()]
    assert forms[0] == ["部门", "文字解读", "图解", "视频", "音频", "专家解读", "媒体解读", "问答式解读", "新闻发布会"]
    assert forms[1] == ["KJTA", 1, 1, 1, 0, 1, 0, 0, 0]

    missing = book["缺少解读"]
    assert [cell.value for cell in missing[1]] == ["部门", "索引号", "政策文件", "文号", "发布日期", "解读截止日期"]
    assert missing.max_row == 2
    title = missing.cell(row=2, column=3)
    assert title.value == FORMULA_TITLE and title.data_type == "s"  # text, never a formula
    assert missing.cell(row=2, column=5).value.date() == date(2026, 10, 12)

    late = [[cell.value for cell in row] for row in book["解读逾期"].iter_rows()]
    assert late[0] == ["部门", "索引号", "政策文件", "文号", "发布日期", "首个解读", "解读发布日期", "间隔工作日",
                       "逾期工作日"]
    assert len(late) == 2 and late[1][2] == "关于统计二的通知" and late[1][7:] == [2, 2]

    # Another department's download is refused.
    assert client.get("/interpret/statistics.xlsx?department=KJTB").status_code == 403


def test_the_statistics_api(suite: dict[str, Flask], org: dict[str, Any], seeded: dict[str, int]) -> None:
    _client, token = signed_in(suite, "reviewer_b")
    answer = Client(PathDispatcher(suite)).get(
        "/api/interpret/manage/statistics?start=2026-10-01&end=2026-10-31",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert [row["department"] for row in body["rows"]] == ["KJTB"]
    row = body["rows"][0]
    assert (row["policies"], row["own_level"], row["interpretations"], row["covered"], row["on_time"]) == (
        2, 2, 1, 1, 1)
    assert row["coverage_share"] == pytest.approx(0.5) and row["forms"]["问答式解读"] == 1
    assert body["total"]["department"] == "合计"


# -- weekly reminders ----------------------------------------------------------------------------


def _reminders(suite: dict[str, Flask]) -> list[Any]:
    from interpret.coverage import REMINDER_TOPIC
    from interpret.models import OutboxEvent

    with get_database("interpret", suite["interpret"]).transaction() as session:
        events = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == REMINDER_TOPIC).order_by(OutboxEvent.aggregate_version,
                                                                                    OutboxEvent.aggregate_id)
        )
        return [event.as_message() for event in events]


def _audited(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    from interpret.models import OutboxEvent

    with get_database("interpret", suite["interpret"]).transaction() as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded"))
        return [event.payload for event in events if event.payload["action"] == "coverage.reminder"]


def test_reminders_once_per_department_per_week(
    suite: dict[str, Flask], seeded: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from interpret.coverage import send_coverage_reminders
    from interpret.tasks import coverage_reminders

    app = suite["interpret"]
    monkeypatch.setitem(app.extensions, "gongkai.settings", replace(
        app.extensions["gongkai.settings"], interpretation_late_working_days=0,
        interpretation_reminder_lookback_days=60,
    ))
    with app.app_context():
        # Monday 2026-10-19, 09:00 as beat would run it, then again the same day (a redelivery).
        assert coverage_reminders.run("2026-10-19") == 2
        assert coverage_reminders.run("2026-10-19") == 0
    with get_database("interpret", app).transaction() as session:
        # Later in the same ISO week: nothing more.
        assert send_coverage_reminders(session, today=date(2026, 10, 22), late_working_days=0, lookback_days=60) == []

    events = _reminders(suite)
    assert [(event["aggregate_id"], event["version"], event["payload"]["week"]) for event in events] == [
        ("KJTA", 202643, "2026-W43"), ("KJTB", 202643, "2026-W43")]
    a, b = (event["payload"] for event in events)
    assert [item["policy_id"] for item in a["missing"]] == [seeded["p3"]]
    # The late interpretation of p2 came out in the previous week (10-12..10-18): reported now, once.
    assert [(item["policy_id"], item["working_days_late"]) for item in a["late"]] == [(seeded["p2"], 2)]
    assert a["late_period"] == {"start": "2026-10-12", "end": "2026-10-18"}
    assert [item["policy_id"] for item in b["missing"]] == [seeded["p7"]] and b["late"] == []
    assert a["dashboard_url"] == "/interpret/dashboard?department=KJTA"
    audited = _audited(suite)
    assert sorted((entry["department"], entry["detail"]["week"]) for entry in audited) == [
        ("KJTA", "2026-W43"), ("KJTB", "2026-W43")]
    assert {entry["detail"]["event_id"] for entry in audited} == {event["id"] for event in events}

    # The next week: a new reminder each (still missing), without last week's late item; twice is still once.
    with get_database("interpret", app).transaction() as session:
        sent = send_coverage_reminders(session, today=date(2026, 10, 26), late_working_days=0, lookback_days=60)
        assert [(reminder.department, reminder.week, reminder.missing, reminder.late) for reminder in sent] == [
            ("KJTA", "2026-W44", 1, 0), ("KJTB", "2026-W44", 1, 0)]
        assert send_coverage_reminders(session, today=date(2026, 10, 26), late_working_days=0, lookback_days=60) == []
    events = _reminders(suite)
    assert len(events) == 4
    assert sorted((event["aggregate_id"], event["version"]) for event in events) == [
        ("KJTA", 202643), ("KJTA", 202644), ("KJTB", 202643), ("KJTB", 202644)]


def test_the_reminder_task_is_on_the_beat_schedule(pg_settings: Any) -> None:
    from celery.schedules import crontab

    from services.celery_app import beat_schedule, celery_config

    entry = beat_schedule(pg_settings)["interpret-coverage-reminders"]
    assert entry["task"] == "interpret.coverage_reminders"
    assert entry["schedule"] == crontab(minute=0, hour=9, day_of_week="mon")
    assert celery_config(pg_settings)["timezone"] == "Asia/Shanghai"
