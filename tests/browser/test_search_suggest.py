"""Suggestions as you type on the search page, in Chromium, with the keyboard only.

Uses the browser tests' live suite and Chromium (``tests/browser/conftest.py``): the page's script
(``search-suggest.js``, no inline script under the CSP) turns the search box into a combobox fed by
``/api/search/suggest``; Down/Up move, Enter takes a suggestion, Escape closes the list.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from search.models import QueryLog
from services.db import open_service_database
from services.web import content_alias

from .conftest import LiveSuite, Screenshot

pytestmark = pytest.mark.timeout(120)

DOCUMENTS = [
    {"id": "policy-1", "doc_type": "policy", "title": "住房公积金提取管理办法", "summary": "提取办法",
     "body": "职工提取住房公积金的条件和材料。", "url": "/interpret/policies/1",
     "published_at": "2026-03-01T09:00:00+08:00", "department": "市住建局"},
    {"id": "answer-2", "doc_type": "answer", "title": "住房公积金贷款额度如何计算？", "summary": "贷款额度",
     "body": "贷款额度按缴存余额计算，可以提取。", "url": "/consult/answers/2",
     "published_at": "2026-04-01T09:00:00+08:00", "department": "市住建局",
     "question": "住房公积金贷款额度如何计算？", "reply": "贷款额度按缴存余额计算。",
     "received_at": "2026-03-25T09:00:00+08:00", "replied_at": "2026-04-01T09:00:00+08:00"},
]


def _prepare(live_suite: LiveSuite) -> None:
    engine, alias = content_alias(live_suite.app.apps["search"])
    for document in DOCUMENTS:
        engine.index_document(alias, document["id"], document, 1)
    engine.refresh(alias)
    database = open_service_database(live_suite.settings, "search")
    try:
        with database.transaction() as session:
            for _ in range(3):
                session.add(QueryLog(query="住房公积金 提取", filters={}, result_count=2, duration_ms=3,
                                     created_at=datetime.now(UTC)))
    finally:
        database.dispose()


def test_suggestions_as_you_type_with_the_keyboard(
    live_suite: LiveSuite, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    _prepare(live_suite)
    page = new_page()
    problems: list[str] = []
    # No script error, no CSP violation, no failed request (but the browser's own favicon probe).
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text else None)
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    page.goto("/search/")
    box = page.get_by_label("关键词")
    expect(box).to_have_attribute("role", "combobox")
    expect(box).to_have_attribute("aria-expanded", "false")

    box.focus()
    page.keyboard.type("住房")
    listbox = page.get_by_role("listbox", name="搜索建议")
    expect(listbox).to_be_visible()
    options = listbox.get_by_role("option")
    expect(options.first).to_contain_text("热门搜索")
    expect(options.first).to_contain_text("住房公积金 提取")
    expect(listbox).to_contain_text("住房公积金提取管理办法")
    expect(listbox).to_contain_text("咨询回复")  # a title carries its type label
    expect(box).to_have_attribute("aria-expanded", "true")
    screenshot(page, "suggestions")

    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    second = options.nth(1)
    expect(second).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", second.get_attribute("id") or "missing")
    page.keyboard.press("Escape")
    expect(listbox).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")

    # Down reopens the list; Enter on a popular search searches it.
    page.keyboard.press("ArrowDown")
    expect(listbox).to_be_visible()
    page.keyboard.press("ArrowDown")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert parse_qs(urlsplit(page.url).query)["q"] == ["住房公积金 提取"]
    expect(page.locator("#search-results li")).to_have_count(2)
    screenshot(page, "results")

    # Enter on a title opens the document.
    box = page.get_by_label("关键词")
    box.fill("")
    box.focus()
    page.keyboard.type("住房公积金贷")
    expect(listbox).to_contain_text("住房公积金贷款额度如何计算？")
    page.keyboard.press("ArrowDown")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/consult/answers/2"
    expect(page.locator("h1")).to_contain_text("住房公积金贷款额度如何计算")
    assert problems == [], problems


def test_the_form_works_without_javascript(live_suite: LiveSuite, browser: Browser) -> None:
    _prepare(live_suite)
    context = browser.new_context(base_url=live_suite.url, locale="zh-CN", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/search/")
        page.get_by_label("关键词").fill("住房公积金")
        page.get_by_label("咨询回复").check()
        with page.expect_navigation():
            page.get_by_role("button", name="搜索", exact=True).click()
        query = parse_qs(urlsplit(page.url).query)
        assert query["q"] == ["住房公积金"] and query["type"] == ["answer"]
        expect(page.locator("#search-results li")).to_have_count(1)
        expect(page.locator("#search-results li .type")).to_have_text("咨询回复")
    finally:
        context.close()

