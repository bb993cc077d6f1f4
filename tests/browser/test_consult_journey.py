"""A consultation's journey in Chromium: asking (with similar published answers), tracking, and 受理 by staff.

A published answer is seeded through ``consult.workflow`` on the live suite's own database (as the
historical import does) and the search consumer is run on its outbox event in-process (as the worker
does), so the ask page's "相似问题的答复" box finds it through the search API like any visitor's would.
No router model is installed: the page suggests no category and the question waits for a dispatcher
in the intake department (``CONSULT_INTAKE_DEPARTMENT``), who accepts it on the staff pages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Locator, Page, Response, expect
from sqlalchemy import select

from consult.models import OutboxEvent
from consult.workflow import publish_answer, record_answered_consultation
from search.tasks import index_document
from services.db import open_service_database, utcnow
from services.events import subscribers
from services.identity.accounts import assign_role, create_department, create_user
from services.permissions import Role

from .conftest import INITIAL_PASSWORD, LiveSuite, Screenshot

pytestmark = pytest.mark.timeout(90)

INTAKE = "ORG"
ANSWER_TITLE = "高新技术企业认定需要满足哪些条件"
ASKER_TITLE = "高新技术企业认定的申报条件"
ASKER_QUESTION = "我公司成立两年，研发投入占比约百分之六，想了解高新技术企业认定的申报条件和办理时间。"
ASKER_NAME = "李晓明"
ASKER_PHONE = "13912345678"
DISPATCHER = "dispatcher1"
DISPATCHER_NAME = "分办员丁"


def seed_published_answer(live_suite: LiveSuite) -> int:
    """An answered, published consultation about 高新技术企业认定, indexed as the search worker would."""
    database = open_service_database(live_suite.settings, "consult")
    try:
        with database.transaction() as session:
            consultation = record_answered_consultation(
                session, tracking_number="ZX20260105-0001", title=ANSWER_TITLE,
                question="请问申报高新技术企业认定，对研发费用和知识产权有什么要求？",
                reply="高新技术企业认定须同时满足研发费用占比、知识产权、科技人员占比等条件，详见《高新技术企业认定管理办法》。",
                received_at=datetime(2026, 1, 5, 2, 0, tzinfo=UTC), replied_at=datetime(2026, 1, 7, 6, 0, tzinfo=UTC),
                department=INTAKE, settings=live_suite.settings,
            )
            publish_answer(session, consultation, datetime(2026, 1, 8, 1, 0, tzinfo=UTC))
            answer_id = consultation.id
            events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)).all()
            messages: list[dict[str, Any]] = [event.as_message() for event in events]
            for event in events:
                event.sent_at = utcnow()
    finally:
        database.dispose()
    indexed = 0
    with live_suite.app.apps["search"].app_context():
        for message in messages:
            if "search.index_document" in subscribers(message["topic"]):
                assert index_document(message) == "indexed"
                indexed += 1
    assert indexed == 1
    return answer_id


def create_dispatcher(live_suite: LiveSuite) -> None:
    """A 咨询分办员 of the intake department, password already changed (no second factor required)."""
    database = open_service_database(live_suite.settings, "identity")
    try:
        with database.transaction() as session:
            department = create_department(session, INTAKE, "办公室", "bureau", None)
            user = create_user(session, live_suite.settings, username=DISPATCHER, display_name=DISPATCHER_NAME,
                               password=INITIAL_PASSWORD)
            assign_role(session, user, Role.DISPATCHER, department)
            user.must_change_password = False
    finally:
        database.dispose()


def submit(page: Page, button: Locator) -> Response:
    """Click a form's submit button; the response the browser finally shows (after any redirects)."""
    with page.expect_navigation() as navigation:
        button.click()
    response = navigation.value
    assert response is not None
    return response


def track(page: Page, number: str, code: str) -> Response:
    page.goto("/consult/track")
    page.get_by_label("受理编号").fill(number)
    page.get_by_label("查询码").fill(code)
    return submit(page, page.get_by_role("button", name="查询", exact=True))


def expect_no_contact(page: Page) -> None:
    text = page.content()
    for detail in (ASKER_NAME, ASKER_PHONE):
        assert detail not in text


@pytest.mark.suite_env(CONSULT_INTAKE_DEPARTMENT=INTAKE, IDLE_TIMEOUT_MINUTES="30")
def test_visitor_asks_tracks_and_sees_the_case_accepted(
    live_suite: LiveSuite, page: Page, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    answer_id = seed_published_answer(live_suite)
    create_dispatcher(live_suite)

    # 1. The visitor asks; similar published answers appear while they type, no category is suggested.
    page.goto("/consult/ask")
    expect(page.get_by_role("heading", name="我要咨询", exact=True)).to_be_visible()
    similar = page.locator("#public-answers")
    expect(similar).to_be_hidden()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/consult/classify") as classified:
        page.get_by_label("标题").fill(ASKER_TITLE)
        page.get_by_label("咨询内容").fill(ASKER_QUESTION)
    assert classified.value.status == 503  # no router model installed: no suggestion, nothing breaks
    expect(similar).to_be_visible()
    expect(similar.get_by_role("heading", name="相似问题的答复")).to_be_visible()
    link = similar.get_by_role("link", name=ANSWER_TITLE)
    expect(link).to_have_attribute("href", f"/consult/answers/{answer_id}")
    expect(page.locator("#category-suggestion")).to_have_text("")
    expect(page.get_by_label("咨询类别")).to_have_value("")
    page.get_by_label("姓名").fill(ASKER_NAME)
    screenshot(page, "ask-with-similar-answers")

    # 2. Without phone or e-mail: the form comes back with the error next to the contact fields.
    response = submit(page, page.get_by_role("button", name="提交咨询"))
    assert response.status == 422
    expect(page.locator("#form-errors")).to_contain_text("提交未成功")
    expect(page.locator("#phone-error")).to_have_text("请至少填写电话或电子邮箱中的一项")
    expect(page.get_by_label("电话")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("标题")).to_have_value(ASKER_TITLE)  # what was typed is kept
    expect(page.get_by_label("姓名")).to_have_value(ASKER_NAME)
    screenshot(page, "ask-contact-missing")

    page.get_by_label("电话").fill(ASKER_PHONE)
    response = submit(page, page.get_by_role("button", name="提交咨询"))
    assert response.status == 200
    receipt = page.locator("#receipt")
    expect(page.get_by_role("heading", name="咨询已提交")).to_be_visible()
    expect(receipt.locator(".tracking-number")).to_have_text(re.compile(r"^ZX\d{8}-\d{4}$"))
    expect(receipt.locator(".query-code")).to_have_text(re.compile(r"^[0-9A-Z]{6,}$"))
    number = receipt.locator(".tracking-number").inner_text().strip()
    code = receipt.locator(".query-code").inner_text().strip()
    expect(page.get_by_text("请记下查询码，它不会再次显示。")).to_be_visible()
    expect_no_contact(page)
    screenshot(page, "ask-done")

    # 3. Tracking: a wrong code gives the generic error, the right one the status and the first step.
    wrong = code[:-1] + ("A" if code[-1] != "A" else "B")
    response = track(page, number, wrong)
    assert response.status == 422
    expect(page.locator("#track-error")).to_have_text("受理编号或查询码不正确")
    expect(page.locator("#case")).to_have_count(0)
    screenshot(page, "track-wrong-code")

    response = track(page, number, code)
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(ASKER_TITLE)
    expect(page.locator("#case-status td.state")).to_have_text("已提交")
    steps = page.locator("#steps li")
    expect(steps).to_have_count(1)
    expect(steps.first.locator(".step-label")).to_have_text("提交")
    expect(steps.first.locator(".step-note")).to_have_text("您的咨询已提交。")
    expect_no_contact(page)
    screenshot(page, "track-submitted")

    # 4. The dispatcher signs in, finds the case in the inbox and accepts it.
    staff_page = new_page()
    staff_page.goto("/staff/login")
    staff_page.locator("#username").fill(DISPATCHER)
    staff_page.locator("#password").fill(INITIAL_PASSWORD)
    submit(staff_page, staff_page.get_by_role("button", name="登录", exact=True))
    assert urlsplit(staff_page.url).path == "/staff/"
    staff_page.goto("/consult/staff/")
    expect(staff_page.get_by_role("heading", name="咨询办理", exact=True)).to_be_visible()
    row = staff_page.locator(f'#inbox tr[data-tracking="{number}"]')
    expect(row).to_contain_text(ASKER_TITLE)
    expect(row).to_contain_text("已提交")
    expect(row).to_contain_text("待分办")
    expect(staff_page.locator("#inbox tbody tr")).to_have_count(1)  # the published answer is not open work
    screenshot(staff_page, "staff-inbox")
    submit(staff_page, row.get_by_role("link", name=number))
    expect(staff_page.get_by_role("heading", level=1)).to_have_text(ASKER_TITLE)
    expect(staff_page.locator("#case-state")).to_have_text("已提交")
    accept_form = staff_page.locator("#form-accept")
    response = submit(staff_page, accept_form.get_by_role("button", name="受理", exact=True))
    assert response.status == 200
    expect(staff_page.locator("#done")).to_have_text("已完成：受理。")
    expect(staff_page.locator("#case-state")).to_have_text("已受理")
    screenshot(staff_page, "staff-accepted")

    # 5. The visitor looks again: accepted, with the step that says so.
    response = track(page, number, code)
    assert response.status == 200
    expect(page.locator("#case-status td.state")).to_have_text("已受理")
    expect(steps.locator(".step-label")).to_have_text(["提交", "受理"])
    expect(steps.last.locator(".step-note")).to_have_text("您的咨询已受理。")
    expect(page.locator("#case")).not_to_contain_text(DISPATCHER_NAME)
    expect_no_contact(page)
    screenshot(page, "track-accepted")
