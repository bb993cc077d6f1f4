"""Must-show 2 of issue 4: the coverage dashboard's missing/late lists are exact on a seeded set
that includes holidays and make-up working days.

The 2026 arrangement as ``chinesecalendar`` encodes it (checked first below): National Day 10月1日至
7日 off, Thursday 10月8日 a working day, make-up working days Sunday 9月20日 and Saturday 10月10日,
Mid-autumn 9月25日至27日 off. Every policy and interpretation is made through ``interpret.workflow``
and then given its real publication moment (the workflow stamps "now").

Seeded own-level (本级) policies of KJTA, with the Beijing time of publication, the interpretation's,
and the working days in (policy day, interpretation day]:

======================  ================  ==========================  ====  =====================
name                    policy            interpretation              days  late by (N=0 / N=1)
======================  ================  ==========================  ====  =====================
same_day                10-09 07:00 Fri   10-09 10:00 (UTC: next day)  0    — / —
across_holiday          09-30 10:00 Wed   10-08 09:00 Thu (+10-20)     1    1 / —
on_makeup_day           10-09 16:00 Fri   10-10 10:00 Sat (调休上班)   1    1 / —
after_makeup_day        10-09 17:00 Fri   10-12 09:00 Mon              2    2 / 1
long_wait               09-29 10:00 Tue   10-09 10:00 Fri              3    3 / 2
during_holiday          10-03 10:00 Sat   10-07 10:00 Wed (holiday)    0    — / —
never                   09-30 11:00 Wed   none                         missing
draft_only              10-12 10:00 Mon   a linked draft               missing
withdrawn_only          10-13 10:00 Tue   published, then withdrawn    missing
======================  ================  ==========================  ====  =====================

Not counted: a 国家 policy of KJTA never interpreted, an own-level KJTA policy outside the period
(11-02), and KJTB's own missing and late policies when the caller is KJTA (and vice versa).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from flask import Flask
from werkzeug.test import Client

from services.auth import StaffIdentity
from services.db import get_database
from services.permissions import Grant, Role
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

CHINA = ZoneInfo("Asia/Shanghai")
PERIOD = {"start": "2026-09-01", "end": "2026-10-31"}
SCOPE = ("KJT", "KJTA", "KJTB")
AUTHOR = StaffIdentity(9101, "coverage_author", "起草人", (Grant(Role.EDITOR, "KJT", SCOPE),), "s-author", "api")
PUBLISHER = StaffIdentity(
    9102, "coverage_publisher", "审核发布人",
    (Grant(Role.REVIEWER, "KJT", SCOPE), Grant(Role.DISCLOSURE_OFFICE, "KJT", SCOPE)), "s-publisher", "api",
)


def bj(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA)


# -- making content through the workflow -------------------------------------------------------


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
    session.flush()
    return policy


def make_interpretation(
    session: Any, department: str, title: str, policies: list[Any], published: datetime | None,
    form: str = "文字解读", **extra: Any,
) -> Any:
    from interpret.workflow import InterpretationFields, approve, create_interpretation, link_policy, publish, submit

    interpretation = create_interpretation(session, AUTHOR, InterpretationFields(
        title=title, form=form, interpreter_kind="处室", department=department, body="<p>解读正文。</p>", **extra,
    ))
    for policy in policies:
        link_policy(session, AUTHOR, interpretation, policy)
    if published is not None:
        submit(session, AUTHOR, interpretation)
        approve(session, PUBLISHER, interpretation)
        publish(session, PUBLISHER, interpretation)
        _stamp(interpretation, published)
    session.flush()
    return interpretation


@dataclass
class Seeded:
    ids: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.ids[name]


@pytest.fixture
def seeded(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Seeded:
    from interpret.workflow import withdraw

    database = get_database("interpret", suite["interpret"])
    monkeypatch.setattr(database, "publisher", None)  # the events stay in the (rolled-back) outbox
    ids: dict[str, int] = {}
    with database.transaction() as session:
        def pair(name: str, policy_at: datetime, interpretation_at: datetime | None, department: str = "KJTA") -> Any:
            policy = make_policy(session, department, f"关于{name}的通知", policy_at)
            ids[name] = policy.id
            if interpretation_at is not None:
                interpretation = make_interpretation(session, department, f"《关于{name}的通知》解读", [policy],
                                                     interpretation_at)
                ids[f"{name}:interpretation"] = interpretation.id
            return policy

        pair("same_day", bj(10, 9, 7), bj(10, 9, 10))
        across = pair("across_holiday", bj(9, 30), bj(10, 8, 9))
        make_interpretation(session, "KJTA", "专家谈跨节假日政策", [across], bj(10, 20), form="专家解读")
        pair("on_makeup_day", bj(10, 9, 16), bj(10, 10))
        pair("after_makeup_day", bj(10, 9, 17), bj(10, 12, 9))
        pair("long_wait", bj(9, 29), bj(10, 9))
        pair("during_holiday", bj(10, 3), bj(10, 7))
        pair("never", bj(9, 30, 11), None)
        draft_only = pair("draft_only", bj(10, 12), None)
        make_interpretation(session, "KJTA", "尚未发布的解读", [draft_only], None)
        withdrawn_only = pair("withdrawn_only", bj(10, 13), None)
        gone = make_interpretation(session, "KJTA", "已撤回的解读", [withdrawn_only], bj(10, 13, 11))
        withdraw(session, PUBLISHER, gone)
        ids["national"] = make_policy(session, "KJTA", "国务院关于某项工作的通知", bj(9, 30), level="国家").id
        pair("outside_period", bj(11, 2), None)
        pair("b_never", bj(10, 9), None, department="KJTB")
        pair("b_late", bj(9, 30), bj(10, 9), department="KJTB")
    return Seeded(ids)


EXPECTED_MISSING_A = ["never", "draft_only", "withdrawn_only"]
EXPECTED_LATE_A = {
    0: [("long_wait", 3, 3), ("across_holiday", 1, 1), ("on_makeup_day", 1, 1), ("after_makeup_day", 2, 2)],
    1: [("long_wait", 3, 2), ("after_makeup_day", 2, 1)],
}
"""(name, working days after the policy, working days late), in order of the policy's publication."""


# -- the calendar the seed relies on -------------------------------------------------------------


def test_the_seed_dates_are_what_chinesecalendar_says() -> None:
    workday = chinese_calendar.is_workday
    assert not any(workday(date(2026, 10, day)) for day in range(1, 8))  # 国庆节
    assert workday(date(2026, 10, 8))
    assert workday(date(2026, 10, 10)) and date(2026, 10, 10).weekday() == 5  # 调休上班 (Saturday)
    assert workday(date(2026, 9, 20)) and date(2026, 9, 20).weekday() == 6  # 调休上班 (Sunday)
    assert not workday(date(2026, 10, 11))
    assert not workday(date(2026, 9, 27))  # 中秋节, not a make-up day


# -- the lists, computed directly ----------------------------------------------------------------


def _names(seeded: Seeded, ids: list[int]) -> list[str]:
    by_id = {value: name for name, value in seeded.ids.items() if not name.endswith(":interpretation")}
    return [by_id[item] for item in ids]


@pytest.mark.parametrize("late_working_days", [0, 1])
def test_missing_and_late_are_exact(suite: dict[str, Flask], seeded: Seeded, late_working_days: int) -> None:
    from interpret.coverage import Period, coverage

    with get_database("interpret", suite["interpret"]).transaction() as session:
        report = coverage(session, ["KJTA"], Period(date(2026, 9, 1), date(2026, 10, 31)),
                          late_working_days=late_working_days)
    assert _names(seeded, [item.policy_id for item in report.missing]) == EXPECTED_MISSING_A
    assert [(name, item.working_days_after, item.working_days_late) for name, item in
            zip(_names(seeded, [item.policy_id for item in report.late]), report.late, strict=True)
            ] == EXPECTED_LATE_A[late_working_days]
    assert report.own_level == 9
    assert report.covered == 6
    assert report.on_time == 6 - len(EXPECTED_LATE_A[late_working_days])
    assert report.uncovered_years == []
    # The earliest interpretation is the one measured (across_holiday also has one of 10-20).
    late = {item.policy_id: item for item in report.late}
    if late_working_days == 0:
        first = late[seeded["across_holiday"]]
        assert (first.interpretation_id, first.interpreted_on) == (seeded["across_holiday:interpretation"],
                                                                   date(2026, 10, 8))
    # Due dates: the last day an interpretation is on time.
    never = report.missing[0]
    assert never.published_on == date(2026, 9, 30)
    assert never.due_on == (date(2026, 10, 7) if late_working_days == 0 else date(2026, 10, 8))


def test_departments_and_period_limit_the_lists(suite: dict[str, Flask], seeded: Seeded) -> None:
    from interpret.coverage import Period, coverage

    with get_database("interpret", suite["interpret"]).transaction() as session:
        b = coverage(session, ["KJTB"], Period(date(2026, 9, 1), date(2026, 10, 31)), late_working_days=0)
        both = coverage(session, ["KJTA", "KJTB"], Period(date(2026, 9, 1), date(2026, 11, 30)), late_working_days=0)
    assert _names(seeded, [item.policy_id for item in b.missing]) == ["b_never"]
    assert [(item.policy_id, item.working_days_after) for item in b.late] == [(seeded["b_late"], 2)]
    assert set(_names(seeded, [item.policy_id for item in both.missing])) == {
        *EXPECTED_MISSING_A, "outside_period", "b_never"}
    assert seeded["national"] not in {item.policy_id for item in both.missing}


# -- the same lists through the dashboard, the API and the setting ------------------------------


def _csrf(client: Client, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found, path
    return found.group(1)


def signed_in(suite: dict[str, Flask], username: str) -> tuple[Client, str]:
    """A console client and an API token of a user of the test organisation."""
    address = {"REMOTE_ADDR": f"10.77.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
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


def _table(html: str, table_id: str) -> list[tuple[int, str]]:
    """(policy id, working days late or "") of each row of a dashboard table."""
    found = re.search(rf'<table class="data" id="{table_id}".*?</table>', html, re.S)
    if found is None:
        return []
    rows = re.findall(r'<tr data-policy-id="(\d+)">(.*?)</tr>', found.group(0), re.S)
    result = []
    for policy_id, cells in rows:
        late = re.search(r'class="working-days-late">(\d+)<', cells)
        result.append((int(policy_id), late.group(1) if late else ""))
    return result


def _with_setting(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch, late_working_days: int) -> None:
    app = suite["interpret"]
    settings = app.extensions["gongkai.settings"]
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(settings, interpretation_late_working_days=late_working_days))


@pytest.mark.parametrize("late_working_days", [0, 1])
def test_the_dashboard_shows_exactly_the_callers_lists(
    suite: dict[str, Flask], org: dict[str, Any], seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
    late_working_days: int,
) -> None:
    _with_setting(suite, monkeypatch, late_working_days)
    client, _token = signed_in(suite, "editor_a")
    page = client.get("/interpret/dashboard?start=2026-09-01&end=2026-10-31")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "政策解读覆盖情况" in html and "缺少解读" in html and "解读逾期" in html
    assert _table(html, "missing") == [(seeded[name], "") for name in EXPECTED_MISSING_A]
    assert _table(html, "late") == [(seeded[name], str(late)) for name, _after, late in
                                    EXPECTED_LATE_A[late_working_days]]
    # Links to both ends, and nothing of KJTB's or of the 国家 policy.
    assert f'href="/interpret/policies/{seeded["never"]}"' in html
    first_late = EXPECTED_LATE_A[late_working_days][0][0]
    assert f'href="/interpret/interpretations/{seeded[first_late + ":interpretation"]}"' in html
    for other in ("b_never", "b_late", "national", "outside_period"):
        assert f'data-policy-id="{seeded[other]}"' not in html
    assert '<option value="KJTB"' not in html  # the department filter offers only the caller's scope

    # Asking for another department is refused; asking for one's own gives the same lists.
    assert client.get("/interpret/dashboard?department=KJTB&start=2026-09-01&end=2026-10-31").status_code == 403
    own = client.get("/interpret/dashboard?department=KJTA&start=2026-09-01&end=2026-10-31").get_data(as_text=True)
    assert _table(own, "missing") == _table(html, "missing")
    bad = client.get("/interpret/dashboard?start=2026-10-31&end=2026-09-01")
    assert bad.status_code == 400 and "结束日期不能早于开始日期" in bad.get_data(as_text=True)


@pytest.mark.parametrize("late_working_days", [0, 1])
def test_the_api_gives_the_same_data(
    suite: dict[str, Flask], org: dict[str, Any], seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
    late_working_days: int,
) -> None:
    _with_setting(suite, monkeypatch, late_working_days)
    api = Client(PathDispatcher(suite))
    _client, token_a = signed_in(suite, "editor_a")
    _client, token_b = signed_in(suite, "reviewer_b")

    def get(token: str, query: str) -> Any:
        return api.get(f"/api/interpret/manage/coverage?{query}", headers={"Authorization": f"Bearer {token}"})

    answer = get(token_a, "start=2026-09-01&end=2026-10-31")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["departments"] == ["KJTA"]
    assert body["late_working_days"] == late_working_days
    assert [item["policy_id"] for item in body["missing"]] == [seeded[name] for name in EXPECTED_MISSING_A]
    assert [(item["policy_id"], item["working_days_after"], item["working_days_late"]) for item in body["late"]] == [
        (seeded[name], after, late) for name, after, late in EXPECTED_LATE_A[late_working_days]]
    assert (body["own_level"], body["covered"], body["missing_count"]) == (9, 6, 3)
    assert body["missing"][0]["published_on"] == "2026-09-30"

    b = get(token_b, "start=2026-09-01&end=2026-10-31").get_json()
    assert b["departments"] == ["KJTB"]
    assert [item["policy_id"] for item in b["missing"]] == [seeded["b_never"]]
    assert [(item["policy_id"], item["working_days_late"]) for item in b["late"]] == [
        (seeded["b_late"], 2 - late_working_days)]

    assert get(token_a, "department=KJTB").status_code == 403
    refused = get(token_a, "start=2026-10-31&end=2026-09-01")
    assert refused.status_code == 422
    assert get(token_a, "start=not-a-date").status_code == 422
