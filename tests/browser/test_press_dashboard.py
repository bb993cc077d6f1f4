"""The press office dashboard in Chromium (MUST-SHOW 3): a press officer signs in, opens /press/, the
ECharts chart is drawn with data (not a blank canvas), and a screenshot is kept in test-artifacts/browser/."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from services.db import open_service_database, utcnow
from services.identity.accounts import assign_role, create_department, create_user
from services.permissions import Role
from services.press.dashboard import BEIJING
from services.press.models import PressMessage, Topic

from .conftest import LiveSuite, Screenshot

pytestmark = pytest.mark.timeout(120)

PASSWORD = "Press-Office-2025!"
PHONE = "13812345678"
ID_NUMBER = "11010519491231002X"


def seed(live_suite: LiveSuite) -> dict[str, int]:
    """A press officer, and three topics with messages over the last week (one of them rising today)."""
    identity = open_service_database(live_suite.settings, "identity")
    try:
        with identity.transaction() as session:
            department = create_department(session, "KJT", "科学技术厅", "bureau", None)
            user = create_user(session, live_suite.settings, username="press1", display_name="宣传甲",
                               password=PASSWORD)
            assign_role(session, user, Role.PRESS_OFFICER, department)
            user.must_change_password = False
    finally:
        identity.dispose()
    press = open_service_database(live_suite.settings, "press")
    today = utcnow().astimezone(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    made: dict[str, int] = {}
    try:
        with press.transaction() as session:
            shape = {"搅拌站·噪音": [1, 0, 2, 1, 3, 10, 20], "停车·车位": [4, 5, 3, 6, 4, 5, 4],
                     "学位·入学": [0, 1, 0, 2, 1, 1, 3]}
            for label, per_day in shape.items():
                topic = Topic(label=label, keywords=label.split("·"), centroid={}, representative_ids=[])
                session.add(topic)
                session.flush()
                made[label] = topic.id
                for days_ago, count in enumerate(reversed(per_day)):
                    for number in range(count):
                        session.add(PressMessage(
                            source="import", source_id=uuid.uuid4().hex,
                            title=f"{label.split('·')[0]}问题{number} 电话{PHONE}",
                            text=f"身份证{ID_NUMBER}，请尽快处理。", category="城乡建设", department="KJT",
                            asker_key=uuid.uuid4().hex, keywords=[], topic_id=topic.id,
                            received_at=today - timedelta(days=days_ago) + timedelta(minutes=1 + number),
                        ))
    finally:
        press.dispose()
    return made


def test_dashboard_draws_its_charts(live_suite: LiveSuite, page: Page, screenshot: Screenshot) -> None:
    topics = seed(live_suite)
    page.goto("/staff/login?next=/press/")
    page.locator("#username").fill("press1")
    page.locator("#password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="登录", exact=True).click()
    if not page.url.endswith("/press/"):
        page.goto("/press/")
    expect(page.get_by_role("heading", name="热点话题", exact=True)).to_be_visible()
    chart = page.locator("#press-main-chart")
    expect(chart).to_have_attribute("data-chart-ready", "1")
    expect(chart.locator("canvas")).to_have_count(1)
    page.wait_for_timeout(300)  # let the first frame be painted before reading pixels

    series = page.evaluate("""() => {
        const chart = echarts.getInstanceByDom(document.getElementById('press-main-chart'));
        return chart.getOption().series.map(s => ({name: s.name, data: s.data}));
    }""")
    assert series[0]["name"] == "搅拌站·噪音"
    assert {item["name"] for item in series} == set(topics)
    assert all(len(item["data"]) == 7 for item in series)
    assert sum(series[0]["data"]) == 37 and series[0]["data"][-1] == 20

    painted = page.evaluate("""() => {
        const canvas = document.querySelector('#press-main-chart canvas');
        const context = canvas.getContext('2d');
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        const colours = new Set();
        let inked = 0;
        for (let i = 0; i < pixels.length; i += 4 * 7) {
            if (pixels[i + 3] > 0) { inked += 1; colours.add(pixels[i] + ',' + pixels[i + 1] + ',' + pixels[i + 2]); }
        }
        return {inked, colours: colours.size, width: canvas.width, height: canvas.height};
    }""")
    assert painted["width"] > 300 and painted["height"] > 200
    assert painted["inked"] > 500 and painted["colours"] > 5, painted

    rows = page.locator("#rising-topics tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("搅拌站·噪音")
    expect(rows.first.locator("svg.press-sparkline polyline")).to_have_count(1)
    expect(rows.first.get_by_role("link", name="回应")).to_have_attribute(
        "href", f"/press/staff/responses/new?topic={topics['搅拌站·噪音']}")
    content = page.content()
    assert PHONE not in content and ID_NUMBER not in content
    screenshot(page, "dashboard")

    page.get_by_role("link", name="搅拌站·噪音").click()
    topic_chart = page.locator("#press-topic-chart")
    expect(topic_chart).to_have_attribute("data-chart-ready", "1")
    topic_series = page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('press-topic-chart'))
        .getOption().series[0].data""")
    assert topic_series == [1, 0, 2, 1, 3, 10, 20]
    expect(page.locator("#topic-messages tbody tr")).to_have_count(37)
    assert PHONE not in page.content() and ID_NUMBER not in page.content()
    screenshot(page, "topic")
