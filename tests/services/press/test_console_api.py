"""The press office console through the suite as staff reach it: the API with a bearer token, the pages
with the session cookie. Press rows are seeded directly (with a phone and an ID number in them: no page
or API answer may show either, MUST-SHOW 4)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from services.db import get_database, utcnow
from services.press.models import Alert, AlertRule, PressMessage, Response, ResponseTopic, Topic
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

PHONE = "13812345678"
ID_NUMBER = "11010519491231002X"
PHONE_SPACED = "138 1234 5678"


def _csrf(page: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, page.request.path
    return found.group(1)


class Officer:
    """A press officer signed in both ways: pages with the session cookie, the API with a bearer token."""

    def __init__(self, suite: dict[str, Flask], username: str) -> None:
        dispatcher = PathDispatcher(suite)
        self.pages = Client(dispatcher)
        self.api = Client(dispatcher, use_cookies=False)
        self.environ = {"REMOTE_ADDR": f"10.8.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
        form = self.pages.get("/staff/login", environ_base=self.environ)
        answer = self.pages.post("/staff/login", environ_base=self.environ, data={
            "csrf_token": _csrf(form), "username": username, "password": STAFF_PASSWORD, "next": "/staff/"})
        assert answer.headers.get("Location") == "/staff/", username
        self.csrf = _csrf(self.pages.get("/staff/", environ_base=self.environ))
        token = self.api.post("/api/auth/token", environ_base=self.environ,
                              json={"username": username, "password": STAFF_PASSWORD})
        assert token.status_code == 200
        self.headers = {"Authorization": f"Bearer {token.get_json()['token']}"}

    def page(self, path: str) -> TestResponse:
        return self.pages.get(path, environ_base=self.environ)

    def post(self, path: str, data: dict[str, Any]) -> TestResponse:
        return self.pages.post(path, environ_base=self.environ, data={"csrf_token": self.csrf, **data})

    def call(self, method: str, path: str, body: Any = None) -> TestResponse:
        return self.api.open(path, method=method, environ_base=self.environ, headers=self.headers, json=body)


@pytest.fixture
def officer(suite: dict[str, Flask], org: dict[str, Any]) -> Officer:
    return Officer(suite, "press_officer_a")


@pytest.fixture
def seeded(suite: dict[str, Flask]) -> Iterator[dict[str, int]]:
    """Two topics with recent messages carrying personal data, a published response, an open alert."""
    now = utcnow()
    with get_database("press", suite["press"]).transaction() as session:
        parking = Topic(label="停车·车位", keywords=["停车", "车位"], centroid={}, representative_ids=[],
                        size=4, departments=["KJTA", "KJTB"])
        noise = Topic(label=f"噪音 {PHONE}", keywords=["噪音", "搅拌站"], centroid={}, representative_ids=[], size=2)
        session.add_all([parking, noise])
        session.flush()
        rows = [
            (parking, f"停车难，请联系我{PHONE}", f"身份证{ID_NUMBER}，小区车位不足。", "KJTA", "城乡建设", 1),
            (parking, f"车位被占 身份证{ID_NUMBER}", f"电话 {PHONE_SPACED}，请处理。", "KJTB", "城乡建设", 2),
            (parking, "停车收费太高", "收费标准不透明。", "KJTA", "物价", 3),
            (parking, "地下车位出租", f"联系{PHONE}", "KJTA", "城乡建设", 30),
            (noise, "搅拌站夜间噪音", f"我是{ID_NUMBER}，夜里施工。", "KJTB", "环境保护", 5),
            (noise, f"噪音扰民{PHONE}", "请环保部门处理。", "KJTB", "环境保护", 6),
        ]
        for owner, title, text, department, category, hours in rows:
            session.add(PressMessage(source="import", source_id=uuid.uuid4().hex, title=title, text=text,
                                     category=category, department=department, asker_key=uuid.uuid4().hex,
                                     received_at=now - timedelta(hours=hours), keywords=[], topic_id=owner.id))
        response = Response(kind="response", title="关于停车问题的回应", state="published", published_at=now)
        rule = AlertRule(name="噪音增长", kind="growth", terms=[], email_to=["press@example.gov.cn"])
        session.add_all([response, rule])
        session.flush()
        session.add(ResponseTopic(response_id=response.id, topic_id=parking.id))
        alert = Alert(rule_id=rule.id, topic_id=noise.id, window_key="w1", reason=f"提及{PHONE}",
                      fired_at=now - timedelta(hours=1), response_due=now + timedelta(hours=47))
        session.add(alert)
        session.flush()
        yield {"parking": parking.id, "noise": noise.id, "alert": alert.id, "rule": rule.id}


def _shows_no_personal_data(answer: TestResponse) -> None:
    body = answer.get_data(as_text=True)
    for secret in (PHONE, PHONE_SPACED, ID_NUMBER, ID_NUMBER.lower(), "11010519491231"):
        assert secret not in body, f"{answer.request.path} shows {secret}"


def test_topics_api_lists_rising_topics_with_buckets(officer: Officer, seeded: dict[str, int]) -> None:
    answer = officer.call("GET", "/api/press/topics?window=24h")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["window"] == "24h" and len(body["bucket_labels"]) == 24
    topics = {topic["id"]: topic for topic in body["topics"]}
    assert set(topics) == {seeded["parking"], seeded["noise"]}  # the 30-hour-old message is outside
    parking = topics[seeded["parking"]]
    assert parking["current"] == sum(parking["counts"]) == 3 and parking["size"] == 4
    assert parking["responded"] is True and parking["departments"] == ["KJTA", "KJTB"]
    assert parking["keywords"] == ["停车", "车位"] and len(parking["samples"]) == 3
    noise = topics[seeded["noise"]]
    assert noise["responded"] is False and [a["id"] for a in noise["open_alerts"]] == [seeded["alert"]]
    assert 46 < noise["open_alerts"][0]["remaining_hours"] <= 47
    filtered = officer.call("GET", "/api/press/topics?window=7d&department=KJTB&category=环境保护").get_json()
    assert [topic["id"] for topic in filtered["topics"]] == [seeded["noise"]]
    _shows_no_personal_data(answer)


def test_topic_detail_messages_alerts_and_recompute(officer: Officer, seeded: dict[str, int]) -> None:
    detail = officer.call("GET", f"/api/press/topics/{seeded['parking']}?window=30d")
    assert detail.status_code == 200
    assert detail.get_json()["trend"]["current"] == 4
    assert [r["title"] for r in detail.get_json()["responses"]] == ["关于停车问题的回应"]
    assert detail.get_json()["search_available"] is True
    messages = officer.call("GET", f"/api/press/topics/{seeded['parking']}/messages?page=1&per_page=3")
    assert messages.status_code == 200
    assert (messages.get_json()["total"], messages.get_json()["pages"], len(messages.get_json()["items"])) == (4, 2, 3)
    alerts = officer.call("GET", "/api/press/alerts")
    assert [item["id"] for item in alerts.get_json()["items"]] == [seeded["alert"]]
    assert alerts.get_json()["items"][0]["status"] == "running"
    recompute = officer.call("GET", "/api/press/recompute")
    assert recompute.status_code == 200 and recompute.get_json()["state"] in ("none", "running", "finished",
                                                                                 "failed")
    for answer in (detail, messages, alerts):
        _shows_no_personal_data(answer)
    assert officer.call("GET", "/api/press/topics/999999999").status_code == 404
    assert officer.call("GET", "/api/press/topics/999999999/messages").status_code == 404


def test_bad_filters_are_refused_with_field_errors(officer: Officer, seeded: dict[str, int]) -> None:
    answer = officer.call("GET", "/api/press/topics?window=1y")
    assert answer.status_code == 422 and "window" in answer.get_json()["errors"]["query"]
    assert officer.call("GET", f"/api/press/topics/{seeded['parking']}/messages?page=0").status_code == 422
    page = officer.page("/press/?window=1y&department=NOPE")
    assert page.status_code == 400
    assert "请选择 24小时、7天 或 30天" in page.get_data(as_text=True)


def test_every_console_page_and_answer_hides_phone_and_id_numbers(officer: Officer, seeded: dict[str, int]) -> None:
    paths = [
        "/press/", "/press/?window=24h", "/press/?window=30d", "/press/?department=KJTB",
        f"/press/topics/{seeded['parking']}", f"/press/topics/{seeded['noise']}?window=24h",
        "/press/alerts", "/press/rules", f"/press/rules/{seeded['rule']}",
        f"/press/staff/responses/new?topic={seeded['noise']}",
    ]
    for path in paths:
        answer = officer.page(path)
        assert answer.status_code == 200, path
        assert answer.headers["Cache-Control"] == "private, no-store"
        _shows_no_personal_data(answer)
    dashboard = officer.page("/press/").get_data(as_text=True)
    assert "［已隐去：电话号码］" in dashboard and "已回应" in dashboard and "未回应" in dashboard
    assert f"/press/staff/responses/new?topic={seeded['noise']}" in dashboard
    assert 'id="press-main-chart-data"' in dashboard and "/press/static/vendor/echarts/echarts.min.js" in dashboard
    assert re.search(r"剩余 4[67] 小时", dashboard)
    assert "<script>" not in dashboard  # the CSP allows no inline script
    topic_page = officer.page(f"/press/topics/{seeded['parking']}").get_data(as_text=True)
    assert "停车、车位" in topic_page and "关于停车问题的回应" in topic_page
    for path in ("/api/press/topics?window=30d", f"/api/press/topics/{seeded['noise']}",
                 f"/api/press/topics/{seeded['noise']}/messages", "/api/press/alerts"):
        _shows_no_personal_data(officer.call("GET", path))


def test_the_console_speaks_english_to_a_visitor_who_chose_it(officer: Officer, seeded: dict[str, int]) -> None:
    officer.page("/lang/en?next=/press/")
    home = officer.page("/staff/").get_data(as_text=True)
    assert "Hot topics" in home and "Manage responses to public concerns" in home
    dashboard = officer.page("/press/").get_data(as_text=True)
    assert '<html lang="en">' in dashboard and "Rising topics" in dashboard
    assert re.search(r"4[67] hours left", dashboard) and "Not responded" in dashboard
    assert "热点话题" not in dashboard and "剩余" not in dashboard and "未回应" not in dashboard
    assert "Topic growth" in officer.page("/press/alerts").get_data(as_text=True)
    form = officer.page(f"/press/staff/responses/new?topic={seeded['noise']}").get_data(as_text=True)
    assert "New response" in form and "Media focus" in form and "媒体聚焦" not in form


def test_the_console_is_for_press_officers_only(suite: dict[str, Flask], org: dict[str, Any],
                                                seeded: dict[str, int]) -> None:
    editor = Officer(suite, "editor_a")
    assert editor.page("/press/").status_code == 403
    assert editor.call("GET", "/api/press/topics").status_code == 403
    anonymous = Client(PathDispatcher(suite))
    assert anonymous.get("/press/").headers["Location"].startswith("/staff/login")
    assert anonymous.get("/api/press/alerts").status_code == 401
    assert anonymous.get("/press/static/js/press-console.js").status_code == 200
    echarts = anonymous.get("/press/static/vendor/echarts/echarts.min.js")
    assert echarts.status_code == 200 and len(echarts.get_data()) > 500_000


def test_openapi_documents_the_console(suite: dict[str, Flask]) -> None:
    spec = Client(PathDispatcher(suite)).get("/api/press/openapi.json").get_json()
    for path in ("/api/press/topics", "/api/press/topics/{topic_id}", "/api/press/topics/{topic_id}/messages",
                 "/api/press/alerts", "/api/press/rules", "/api/press/rules/{rule_id}", "/api/press/recompute"):
        assert path in spec["paths"], path
    assert set(spec["paths"]["/api/press/rules/{rule_id}"]) >= {"get", "put", "delete"}


def test_as_of_shows_a_past_period_and_bad_dates_are_refused(suite: dict[str, Flask], officer: Officer) -> None:
    """Historical messages (an import of last year's file) are empty "now"; 截至日期 shows their period,
    and the dashboard offers the day of the latest message. A bad date is a field error, not a 500."""
    from services.press.dashboard import BEIJING

    old = utcnow() - timedelta(days=400)
    with get_database("press", suite["press"]).transaction() as session:
        topic = Topic(label="旧城改造", keywords=["旧城", "改造"], centroid={}, representative_ids=[], size=3,
                      first_at=old, last_at=old + timedelta(hours=2))
        session.add(topic)
        session.flush()
        for number in range(3):
            session.add(PressMessage(source="import", source_id=f"old-{uuid.uuid4().hex[:8]}", title="旧城改造何时动工",
                                     text="", received_at=old + timedelta(hours=number), topic_id=topic.id,
                                     keywords=["旧城", "改造"]))
        topic_id = topic.id
    day = old.astimezone(BEIJING).date().isoformat()

    now_page = officer.page("/press/?window=7d").get_data(as_text=True)
    assert 'id="topics-empty"' in now_page and f"as_of={day}" in now_page
    past = officer.call("GET", f"/api/press/topics?window=7d&as_of={day}")
    assert past.status_code == 200
    [found] = [item for item in past.get_json()["topics"] if item["id"] == topic_id]
    assert found["current"] == 3 and sum(found["counts"]) == 3
    assert f'data-topic="{topic_id}"' in officer.page(f"/press/?window=7d&as_of={day}").get_data(as_text=True)
    # The topic page draws a quiet topic's trend up to its latest message.
    assert f"走势截至 {day}" in officer.page(f"/press/topics/{topic_id}").get_data(as_text=True)

    tomorrow = (utcnow() + timedelta(days=2)).astimezone(BEIJING).date().isoformat()
    for value in ("2019-13-01", tomorrow, "yesterday"):
        answer = officer.call("GET", f"/api/press/topics?as_of={value}")
        assert answer.status_code == 422 and "as_of" in str(answer.get_json()), value
        assert officer.page(f"/press/?as_of={value}").status_code == 400, value
