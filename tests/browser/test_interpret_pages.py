"""The interpret public pages in Chromium: the metadata table and both link directions, in Chinese.

A policy and its interpretation are made through ``interpret.workflow`` on the live suite's own
database, and the search consumer is run on their outbox events in-process (as the worker does),
so the pages read them from the shared index like any visitor's would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from interpret.models import OutboxEvent
from interpret.workflow import (
    InterpretationFields,
    PolicyFields,
    approve,
    create_interpretation,
    import_published_policy,
    link_policy,
    publish,
    submit,
)
from search.tasks import index_document, remove_document
from services.auth import StaffIdentity
from services.db import open_service_database, utcnow
from services.events import subscribers
from services.permissions import Grant, Role

from .conftest import LiveSuite, Screenshot

pytestmark = pytest.mark.timeout(90)

DEPARTMENT = "KJT"
EDITOR = StaffIdentity(
    1, "editor1", "编辑甲", (Grant(Role.EDITOR, DEPARTMENT, (DEPARTMENT,)),), "browser-editor", "session"
)
RELEASER = StaffIdentity(
    2, "reviewer1", "审核人乙",
    (Grant(Role.REVIEWER, DEPARTMENT, (DEPARTMENT,)), Grant(Role.DISCLOSURE_OFFICE, DEPARTMENT, (DEPARTMENT,))),
    "browser-reviewer", "session",
)
POLICY_TITLE = "安徽省科学技术厅关于加强科技成果转化工作的通知"
INTERPRETATION_TITLE = "《关于加强科技成果转化工作的通知》政策解读"
METADATA_LABELS = ["索引号", "组配分类", "发布机构", "主题分类", "名称", "文号", "信息来源", "成文日期", "发布日期",
                   "有效性"]


def publish_policy_and_interpretation(live_suite: LiveSuite) -> tuple[int, int, str]:
    """Publish both through the workflow, then index them as the search worker would."""
    database = open_service_database(live_suite.settings, "interpret")
    try:
        with database.transaction() as session:
            policy = import_published_policy(session, PolicyFields(
                title=POLICY_TITLE, issuer="安徽省科学技术厅", level="本级", department=DEPARTMENT,
                document_number="皖科政〔2026〕3号", category_group="通知", topic="科技成果",
                source="安徽省科学技术厅办公室", written_on=date(2026, 1, 5),
                body="<p>各市科技局：</p><p>为加强科技成果转化工作，现就有关事项通知如下。</p>",
            ), datetime(2026, 1, 6, 1, 30, tzinfo=UTC))
            interpretation = create_interpretation(session, EDITOR, InterpretationFields(
                title=INTERPRETATION_TITLE, form="文字解读", interpreter_kind="第一解读人", interpreter_name="张某某",
                department=DEPARTMENT, key_points=["明确成果转化收益分配", "简化审批流程"],
                body="<p>一、出台背景</p><p>为贯彻落实国家有关部署，制定本通知。</p>",
            ))
            link_policy(session, EDITOR, interpretation, policy)
            submit(session, EDITOR, interpretation)
            approve(session, RELEASER, interpretation)
            publish(session, RELEASER, interpretation)
            ids = (policy.id, interpretation.id, policy.index_number or "")
            events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)).all()
            messages: list[dict[str, Any]] = [event.as_message() for event in events]
            for event in events:
                event.sent_at = utcnow()
    finally:
        database.dispose()
    tasks = {"search.index_document": index_document, "search.remove_document": remove_document}
    with live_suite.app.apps["search"].app_context():
        for message in messages:
            for task in subscribers(message["topic"]):
                if task in tasks:
                    assert tasks[task](message) in ("indexed", "removed")
    return ids


def path_of(page: Page) -> str:
    return unquote(urlsplit(page.url).path)


def test_policy_page_shows_the_metadata_table_and_links_both_ways(
    live_suite: LiveSuite, page: Page, screenshot: Screenshot
) -> None:
    policy_id, interpretation_id, index_number = publish_policy_and_interpretation(live_suite)

    page.goto("/interpret/policies")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name="政策文件", exact=True)).to_be_visible()
    expect(page.locator("#result-count")).to_have_text("共 1 件")
    screenshot(page, "policy-list")
    page.get_by_role("link", name=POLICY_TITLE).click()
    page.wait_for_url(f"**/interpret/policies/{policy_id}")

    # The disclosure catalogue table, in Chinese, as a government site shows it.
    table = page.locator("#policy-metadata")
    expect(table.locator("caption")).to_have_text("政府信息公开目录信息")
    expect(table.locator("th")).to_have_text(METADATA_LABELS)
    expected = {
        "index_number": index_number, "category_group": "通知", "issuer": "安徽省科学技术厅", "category": "科技成果",
        "title": POLICY_TITLE, "document_number": "皖科政〔2026〕3号", "source": "安徽省科学技术厅办公室",
        "written_on": "2026-01-05", "published_at": "2026-01-06", "validity": "有效",
    }
    for field, value in expected.items():
        expect(table.locator(f'td[data-field="{field}"]')).to_have_text(value)
    for label, value in (("文号", "皖科政〔2026〕3号"), ("发布机构", "安徽省科学技术厅")):
        row = table.locator("tr", has=page.get_by_role("rowheader", name=label, exact=True))
        expect(row).to_contain_text(value)
    assert index_number.startswith(f"{DEPARTMENT}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(POLICY_TITLE)
    expect(page.locator("#policy-body")).to_contain_text("为加强科技成果转化工作，现就有关事项通知如下。")
    expect(page.locator("#validity-banner")).to_have_count(0)

    # 相关解读 → the interpretation.
    related = page.locator("#related-interpretations")
    expect(related.get_by_role("heading", name="相关解读")).to_be_visible()
    to_interpretation = related.get_by_role("link", name=INTERPRETATION_TITLE)
    expect(to_interpretation).to_have_attribute("href", f"/interpret/interpretations/{interpretation_id}")
    screenshot(page, "policy-page-metadata-and-interpretation")
    to_interpretation.click()
    page.wait_for_url(f"**/interpret/interpretations/{interpretation_id}")

    # The interpretation page: its content, and a link back to the policy it explains.
    expect(page.get_by_role("heading", level=1)).to_have_text(INTERPRETATION_TITLE)
    expect(page.locator('#interpretation-metadata td[data-field="form"]')).to_have_text("文字解读")
    expect(page.locator('#interpretation-metadata td[data-field="interpreter"]')).to_have_text("第一解读人：张某某")
    expect(page.locator("#key-points li")).to_have_text(["明确成果转化收益分配", "简化审批流程"])
    expect(page.locator("#interpretation-body")).to_contain_text("为贯彻落实国家有关部署，制定本通知。")
    sources = page.locator("#source-policies")
    expect(sources.get_by_role("heading", name="解读的政策文件")).to_be_visible()
    back = sources.get_by_role("link", name=POLICY_TITLE)
    expect(back).to_have_attribute("href", f"/interpret/policies/{policy_id}")
    expect(sources).to_contain_text("皖科政〔2026〕3号")
    screenshot(page, "interpretation-page-links-back")
    back.click()
    page.wait_for_url(f"**/interpret/policies/{policy_id}")
    expect(page.locator('#policy-metadata td[data-field="title"]')).to_have_text(POLICY_TITLE)


def test_filters_and_tabs_work_from_the_keyboard(live_suite: LiveSuite, page: Page, screenshot: Screenshot) -> None:
    policy_id, interpretation_id, _ = publish_policy_and_interpretation(live_suite)

    page.goto("/interpret/policies")
    page.get_by_label("层级").select_option("国家")
    page.get_by_label("发布机构").fill("安徽省科学技术厅")
    with page.expect_navigation():
        page.get_by_label("发布机构").press("Enter")
    assert "level=" in page.url and "issuer=" in page.url
    expect(page.locator("#result-count")).to_have_text("共 0 件")
    expect(page.get_by_text("没有符合条件的政策文件")).to_be_visible()
    expect(page.get_by_label("层级")).to_have_value("国家")

    page.get_by_label("层级").select_option("本级")
    page.get_by_role("button", name="筛选").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#result-count")).to_have_text("共 1 件")
    expect(page.get_by_role("link", name=POLICY_TITLE)).to_have_attribute("href", f"/interpret/policies/{policy_id}")
    screenshot(page, "policy-list-filtered")

    page.goto("/interpret/interpretations")
    tabs = page.get_by_role("navigation", name="解读分类")
    expect(tabs.locator('[aria-current="page"]')).to_have_text("全部")
    tabs.get_by_role("link", name="本级政策解读").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(tabs.locator('[aria-current="page"]')).to_have_text("本级政策解读")
    expect(page.get_by_role("link", name=INTERPRETATION_TITLE)).to_have_attribute(
        "href", f"/interpret/interpretations/{interpretation_id}"
    )
    screenshot(page, "interpretations-own-level-tab")
    tabs.get_by_role("link", name="上级政策解读").click()
    page.wait_for_load_state()
    expect(tabs.locator('[aria-current="page"]')).to_have_text("上级政策解读")
    expect(page.get_by_text("没有符合条件的政策解读")).to_be_visible()
