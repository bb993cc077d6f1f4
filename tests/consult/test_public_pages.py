"""The consult public pages as a visitor sees them: asking (我要咨询), tracking with the query code
(咨询查询) and the asker's actions there, and the 咨询回复 board with its filters.

Forms are posted like a browser does (the CSRF token read from the page). Staff steps are taken
through ``consult.workflow`` as staff would; published answers are indexed by running the search
consumer on the outbox events in-process, as the worker does. Every POST comes from an address of
its own: the asker's forms are rate-limited per address.
"""

from __future__ import annotations

import html
import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from consult import workflow
from consult.models import Consultation, ConsultationStep, OutboxEvent, SubmissionAttachment
from search.tasks import index_document, remove_document
from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.events import subscribers
from services.permissions import Grant, Role
from services.suite import PathDispatcher

BEIJING = timezone(timedelta(hours=8))
DEPARTMENT = "KJTA"
SCOPE = (DEPARTMENT,)
DISPATCHER = StaffIdentity(9501, "dispatcher_t", "分办员甲", (Grant(Role.DISPATCHER, DEPARTMENT, SCOPE),), "s1", "api")
EDITOR = StaffIdentity(9502, "editor_t", "承办人乙", (Grant(Role.EDITOR, DEPARTMENT, SCOPE),), "s2", "api")
REVIEWER = StaffIdentity(
    9503, "reviewer_t", "审核人丙",
    (Grant(Role.REVIEWER, DEPARTMENT, SCOPE), Grant(Role.DISCLOSURE_OFFICE, DEPARTMENT, SCOPE)), "s3", "api",
)
SEARCH_TASKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "search.index_document": index_document,
    "search.remove_document": remove_document,
}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
_addresses = itertools.count(1)


# -- the visitor -------------------------------------------------------------------------------


class Browser:
    def __init__(self, suite: dict[str, Flask]) -> None:
        self.client = Client(PathDispatcher(suite))

    def get(self, path: str, **query: Any) -> TestResponse:
        return self.client.get(path, query_string=query or None)

    def page(self, path: str, **query: Any) -> str:
        answer = self.get(path, **query)
        assert answer.status_code == 200, (path, answer.status_code)
        return answer.get_data(as_text=True)

    def csrf(self, path: str = "/consult/ask") -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.page(path))
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def post(self, path: str, data: dict[str, Any], form_page: str = "/consult/track") -> TestResponse:
        """A form post as a browser sends it, each from a new address (the forms are rate-limited)."""
        address = next(_addresses)
        return self.client.post(path, data={"csrf_token": self.csrf(form_page), **data},
                                environ_base={"REMOTE_ADDR": f"10.5.{address // 250}.{address % 250 + 1}"})

    def ask(self, **fields: Any) -> TestResponse:
        return self.post("/consult/ask", {**ask_fields(), **fields}, form_page="/consult/ask")

    def track(self, number: str, code: str, action: str = "", **data: Any) -> TestResponse:
        path = f"/consult/track/{action}" if action else "/consult/track"
        return self.post(path, {"tracking_number": number, "code": code, **data})


def ask_fields(**overrides: Any) -> dict[str, Any]:
    fields = {"title": "高新技术企业认定咨询",
              "question": f"请问高新技术企业认定需要准备哪些材料？编号{uuid.uuid4().hex[:6]}",
              "name": "王五", "phone": f"139{uuid.uuid4().int % 10**8:08d}", "email": "", "category": ""}
    fields.update(overrides)
    return fields


def text_of(answer: TestResponse) -> str:
    return html.unescape(answer.get_data(as_text=True))


def receipt(answer: TestResponse) -> tuple[str, str]:
    page = answer.get_data(as_text=True)
    number = re.search(r'class="tracking-number">([^<]+)<', page)
    code = re.search(r'class="query-code">([^<]+)<', page)
    assert number and code, page
    return number.group(1), code.group(1)


def section(page: str, element_id: str) -> str:
    found = re.search(rf'<(section|div|table|ul|ol|p|article) [^>]*id="{element_id}".*?</\1>', page, re.S)
    return html.unescape(found.group(0)) if found else ""


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def consult_app(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Flask:
    app = suite["consult"]
    monkeypatch.setattr(get_database("consult", app), "publisher", None)  # events are handled in-process here
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(app.extensions["gongkai.settings"], consult_intake_department=DEPARTMENT))
    return app


@pytest.fixture
def browser(suite: dict[str, Flask], consult_app: Flask) -> Browser:
    return Browser(suite)


class Records:
    """The consult database as staff change it, and the index as the worker fills it."""

    def __init__(self, suite: dict[str, Flask]) -> None:
        self.suite = suite
        self.database = get_database("consult", suite["consult"])

    def count(self, model: Any = Consultation) -> int:
        with self.database.transaction() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def case(self, number: str) -> Consultation:
        with self.database.transaction() as session:
            found = session.scalar(select(Consultation).where(Consultation.tracking_number == number))
            assert found is not None
            session.expunge(found)
            return found

    def act(self, number: str, *steps: Callable[[Any, Consultation], Any]) -> None:
        with self.database.transaction() as session:
            consultation = session.scalar(select(Consultation).where(Consultation.tracking_number == number))
            assert consultation is not None
            for step in steps:
                step(session, consultation)

    def answer(self, number: str, reply: str = "您好，所需材料详见办事指南。") -> None:
        """Accept, draft, review and send the reply, as the office does."""
        self.act(
            number,
            lambda s, c: workflow.accept(s, DISPATCHER, c),
            lambda s, c: workflow.assign(s, EDITOR, c, None, None),
            lambda s, c: workflow.save_draft(s, EDITOR, c, reply),
            lambda s, c: workflow.submit_for_review(s, EDITOR, c),
            lambda s, c: workflow.approve(s, REVIEWER, c),
            lambda s, c: workflow.send_reply(s, EDITOR, c),
        )

    def published_answer(self, title: str, *, department: str | None, category: str | None, published: datetime,
                         question: str = "请问如何办理？", reply: str = "请到办事大厅办理。") -> int:
        with self.database.transaction() as session:
            item = workflow.record_answered_consultation(
                session, tracking_number=f"ZX{uuid.uuid4().hex[:12]}", title=title, question=question, reply=reply,
                received_at=published - timedelta(days=3), replied_at=published - timedelta(days=1),
                department=department, category=category,
            )
            workflow.publish_answer(session, item, at=published)
            answer_id = item.id
        self.index()
        return answer_id

    def index(self) -> None:
        """Run the search consumers on every outbox event not handled yet, as the worker would."""
        with self.database.transaction() as session:
            events = session.scalars(
                select(OutboxEvent).where(OutboxEvent.sent_at.is_(None)).order_by(OutboxEvent.id)
            ).all()
            messages = [event.as_message() for event in events]
            for event in events:
                event.sent_at = utcnow()
        with self.suite["search"].app_context():
            for message in messages:
                for task in subscribers(message["topic"]):
                    if task in SEARCH_TASKS:
                        assert SEARCH_TASKS[task](message) in ("indexed", "removed")


@pytest.fixture
def records(suite: dict[str, Flask], consult_app: Flask) -> Records:
    return Records(suite)


# -- 我要咨询 ------------------------------------------------------------------------------------


def test_the_form_is_accessible_and_works_without_script(browser: Browser) -> None:
    page = browser.page("/consult/ask")
    for field in ("title", "question", "category", "name", "phone", "email", "attachments", "consent_to_publish"):
        assert re.search(rf'<label for="{field}">', page), field
        assert f'id="{field}" name="{field}"' in page, field
    consent = re.search(r'<input id="consent_to_publish"[^>]*>', page)
    assert consent and "checked" not in consent.group(0)  # off by default
    assert "同意公开我的咨询及答复（个人信息将隐去）" in page and "个人信息保护法" in page
    honeypot = re.search(r'<div class="hp-field" aria-hidden="true">.*?<input id="website"[^>]*>', page, re.S)
    assert honeypot and 'tabindex="-1"' in honeypot.group(0) and 'autocomplete="off"' in honeypot.group(0)
    assert 'enctype="multipart/form-data"' in page and 'action="/consult/ask"' in page
    assert '<script src="/static/js/consult-ask.js" defer></script>' in page and "<script>" not in page
    assert browser.get("/consult/ask").headers["Cache-Control"] == "no-store"  # it carries a CSRF token
    assert "/api/search" in browser.page("/static/js/consult-ask.js") and "/api/consult/classify" in browser.page(
        "/static/js/consult-ask.js")


def test_a_submission_shows_its_number_and_code_once_and_stores_only_a_hash(
    browser: Browser, records: Records
) -> None:
    fields = ask_fields(email="wangwu@example.cn")
    answer = browser.ask(**fields)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    number, code = receipt(answer)
    assert re.fullmatch(r"ZX\d{8}-\d{4}", number) and re.fullmatch(r"[A-Z2-9]{8}", code)
    page = text_of(answer)
    assert "请记下查询码，它不会再次显示" in page
    stored = records.case(number)
    assert f"<time datetime=\"{stored.accept_due}\">" in answer.get_data(as_text=True)  # the acceptance deadline
    assert stored.query_code_hash and code not in stored.query_code_hash and stored.query_code_hash.startswith(
        "$argon2")
    assert workflow.check_query_code(stored, code) and not workflow.check_query_code(stored, "WRONGCOD")
    assert stored.consent_to_publish is False and stored.state == "submitted"
    for private in (fields["name"], fields["phone"], fields["email"]):
        assert private not in page
    for path in ("/consult/ask", "/consult/track", "/consult/answers"):
        assert code not in browser.page(path)  # never shown again


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"phone": "", "email": ""}, "phone", "请至少填写电话或电子邮箱中的一项"),
    ({"phone": "12345"}, "phone", "电话号码格式不正确"),
    ({"phone": "", "email": "wangwu@@example"}, "email", "电子邮箱格式不正确"),
    ({"title": "   "}, "title", "请填写标题"),
    ({"title": "长" * 101}, "title", "标题不能超过 100 字"),
    ({"question": "问" * 5001}, "question", "咨询内容不能超过 5000 字"),
    ({"name": ""}, "name", "请填写姓名"),
    ({"category": "不存在的类别"}, "category", "请从列表中选择类别"),
])
def test_bad_input_is_refused_next_to_its_field_and_nothing_is_stored(
    browser: Browser, records: Records, changes: dict[str, str], field: str, message: str
) -> None:
    before = records.count(), records.count(OutboxEvent)
    fields = ask_fields(**changes)
    answer = browser.ask(**fields, consent_to_publish="1")
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert message in section(page, f"{field}-error")
    assert re.search(rf'id="{field}" name="{field}"[^>]*aria-invalid="true" aria-describedby="{field}-error', page)
    assert 'role="alert"' in page
    # What was typed is kept as typed (the over-long text too, so the asker can shorten it).
    typed_title = html.escape(fields["title"])
    assert f'id="title" name="title" type="text" maxlength="100" required value="{typed_title}"' in page
    assert f'>{html.escape(fields["question"])}</textarea>' in page
    assert f'value="{html.escape(fields["phone"])}"' in page
    assert re.search(r'<input id="consent_to_publish"[^>]*checked', page)
    assert (records.count(), records.count(OutboxEvent)) == before


def test_attachments_are_checked_by_their_bytes_and_stored_with_the_question(
    browser: Browser, records: Records, consult_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    def files(*items: tuple[bytes, str]) -> list[tuple[io.BytesIO, str]]:
        return [(io.BytesIO(content), name) for content, name in items]

    refused = browser.ask(attachments=files((b"<html><script>alert(1)</script></html>", "notice.pdf")))
    assert refused.status_code == 422
    assert "不是 PDF、JPEG 或 PNG 文件" in section(refused.get_data(as_text=True), "attachments-error")
    too_many = browser.ask(attachments=files(*[(PDF, f"f{n}.pdf") for n in range(4)]))
    assert too_many.status_code == 422 and "最多上传 3 个附件" in text_of(too_many)
    settings = consult_app.extensions["gongkai.settings"]
    monkeypatch.setitem(consult_app.extensions, "gongkai.settings", replace(settings, attachment_max_bytes=1024))
    too_big = browser.ask(attachments=files((PDF + b"0" * 2048, "big.pdf")))
    assert too_big.status_code == 422 and "超过" in section(too_big.get_data(as_text=True), "attachments-error")
    # A refused file and another bad field: both are reported, nothing is stored.
    both = browser.ask(phone="123", attachments=files((b"MZ\x90\x00", "setup.png")))
    assert both.status_code == 422
    assert "电话号码格式不正确" in text_of(both) and "setup.png" in text_of(both)
    assert records.count() == 0 and records.count(SubmissionAttachment) == 0

    accepted = browser.ask(attachments=files((PDF, "材料.pdf"), (PNG, "photo.JPG")))
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    number, _code = receipt(accepted)
    with records.database.transaction() as session:
        stored = session.execute(select(SubmissionAttachment.filename, SubmissionAttachment.content_type,
                                        SubmissionAttachment.size).join(
            Consultation, Consultation.id == SubmissionAttachment.consultation_id).where(
            Consultation.tracking_number == number).order_by(SubmissionAttachment.id)).all()
    assert [tuple(row) for row in stored] == [("材料.pdf", "application/pdf", len(PDF)),
                                              ("photo.JPG", "image/png", len(PNG))]


def test_the_honeypot_looks_like_success_and_stores_nothing(browser: Browser, records: Records) -> None:
    answer = browser.ask(website="http://spam.example")
    assert answer.status_code == 200
    number, _code = receipt(answer)
    assert "咨询已提交" in text_of(answer)
    assert records.count() == 0 and records.count(OutboxEvent) == 0
    with records.database.transaction() as session:
        assert session.scalar(select(Consultation).where(Consultation.tracking_number == number)) is None


def test_the_same_question_within_a_day_gets_the_same_tracking_number(browser: Browser, records: Records) -> None:
    fields = ask_fields()
    first_number, first_code = receipt(browser.ask(**fields))
    again = browser.ask(**{**fields, "question": fields["question"] + "。"})
    assert again.status_code == 200
    page = text_of(again)
    assert "已收到过您的相同咨询" in page and first_number in page
    assert 'class="query-code"' not in page and first_code not in page
    assert records.count() == 1


# -- 咨询查询 ------------------------------------------------------------------------------------


def _without_token(answer: TestResponse) -> str:
    page = answer.get_data(as_text=True)
    page = re.sub(r'name="csrf_token" value="[^"]+"', "", page)
    return re.sub(r'id="tracking_number" name="tracking_number" type="text" required maxlength="40" value="[^"]*"',
                  "", page)


def test_a_wrong_pair_gets_one_generic_message(browser: Browser, records: Records) -> None:
    number, code = receipt(browser.ask())
    wrong_code = browser.track(number, "ABCDEFGH")
    wrong_number = browser.track("ZX20000101-0001", code)
    empty = browser.track("", "")
    for answer in (wrong_code, wrong_number, empty):
        assert answer.status_code == 422
        assert "受理编号或查询码不正确" in section(answer.get_data(as_text=True), "track-error")
        assert answer.headers["Cache-Control"] == "no-store"
    assert _without_token(wrong_code) == _without_token(wrong_number) == _without_token(empty)
    assert browser.track(number.lower(), f" {code.lower()} ").status_code == 200  # typed as people type
    page = browser.get("/consult/track").get_data(as_text=True)
    assert 'method="post"' in page and 'name="code"' in page  # the code goes in the body, never in a URL


def test_the_tracking_page_shows_public_steps_not_internal_notes(browser: Browser, records: Records) -> None:
    fields = ask_fields(email="track-me@example.cn")
    number, code = receipt(browser.ask(**fields))
    records.act(
        number,
        lambda s, c: workflow.accept(s, DISPATCHER, c),
        lambda s, c: workflow.assign(s, EDITOR, c, None, None),
        lambda s, c: workflow.add_note(s, EDITOR, c, "内部备注：请核实申请人身份"),
        lambda s, c: workflow.save_draft(s, EDITOR, c, "草稿：尚未定稿的答复"),
        lambda s, c: workflow.request_info(s, EDITOR, c, "请提供企业统一社会信用代码"),
    )
    answer = browser.track(number, code)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    page = text_of(answer)
    status = section(answer.get_data(as_text=True), "case-status")
    assert "待补充材料" in status and "已暂停计时" in status
    assert "请提供企业统一社会信用代码" in section(answer.get_data(as_text=True), "info-request")
    steps = section(answer.get_data(as_text=True), "steps")
    for note in ("您的咨询已提交。", "您的咨询已受理。", "已交由工作人员办理。",
                 "请补充材料：请提供企业统一社会信用代码"):
        assert note in steps, note
    for hidden in ("内部备注", "草稿：尚未定稿的答复", "承办人乙", "分办员甲", "起草答复"):
        assert hidden not in page, hidden
    for private in (fields["name"], fields["phone"], fields["email"]):
        assert private not in page

    supplied = browser.track(number, code, "info", info="统一社会信用代码：91110000XXXXXXXX")
    assert supplied.status_code == 200
    page = text_of(supplied)
    assert "已收到您补充的内容" in page and "办理中" in section(supplied.get_data(as_text=True), "case-status")
    assert "已收到您补充的材料，继续办理。" in section(supplied.get_data(as_text=True), "steps")
    assert records.case(number).info_response == "统一社会信用代码：91110000XXXXXXXX"
    refused = browser.track(number, code, "info", info="再补充一次")  # no longer awaiting information
    assert refused.status_code == 409 and "当前状态不能进行此操作" in text_of(refused)


def test_rating_and_reopening_from_the_tracking_page(browser: Browser, records: Records) -> None:
    number, code = receipt(browser.ask())
    not_yet = browser.track(number, code)
    assert 'id="rate"' not in not_yet.get_data(as_text=True)
    records.answer(number, reply="您好，请准备营业执照和近三年财务报表。")
    page = browser.track(number, code).get_data(as_text=True)
    assert "您好，请准备营业执照和近三年财务报表。" in section(page, "reply")
    for label in ("满意", "基本满意", "不满意"):
        assert f"> {label}</label>" in section(page, "rate")
    assert f'name="tracking_number" value="{number}"' in section(page, "rate")

    wrong = browser.track(number, "ZZZZZZZZ", "rate", rating="satisfied")
    assert wrong.status_code == 422 and "受理编号或查询码不正确" in text_of(wrong)
    bad = browser.track(number, code, "rate", rating="excellent", comment="很好")
    assert bad.status_code == 422 and "评价应为" in section(bad.get_data(as_text=True), "rate")
    assert records.case(number).rating is None

    rated = browser.track(number, code, "rate", rating="dissatisfied", comment="没有说明办理时限")
    assert rated.status_code == 200
    page = rated.get_data(as_text=True)
    assert "感谢您的评价" in text_of(rated) and 'id="rate"' not in page and "您的评价：不满意" in text_of(rated)
    assert 'id="reopen"' in page
    stored = records.case(number)
    assert (stored.rating, stored.rating_comment) == ("dissatisfied", "没有说明办理时限")
    twice = browser.track(number, code, "rate", rating="satisfied")
    assert twice.status_code == 422 and "您已评价过本次答复" in text_of(twice)
    assert records.case(number).rating == "dissatisfied"

    reopened = browser.track(number, code, "reopen", reason="请补充办理时限")
    assert reopened.status_code == 200
    assert "已重新办理" in section(reopened.get_data(as_text=True), "case-status")
    assert "您对答复不满意，已重新办理。" in section(reopened.get_data(as_text=True), "steps")
    assert 'id="reopen"' not in reopened.get_data(as_text=True)
    stored = records.case(number)
    assert stored.state == "reopened" and stored.reopen_count == 1
    again = browser.track(number, code, "reopen")
    assert again.status_code in (409, 422) and records.case(number).reopen_count == 1


# -- 咨询回复 ------------------------------------------------------------------------------------


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00").astimezone(UTC)


def listed(page: str) -> list[str]:
    return re.findall(r'<span class="doc-title"><a href="[^"]+">([^<]+)</a>', section(page, "answer-list"))


def test_the_board_filters_by_department_category_and_month(browser: Browser, records: Records) -> None:
    records.published_answer("十月最后一刻", department="KJTA", category="科技与信息产业",
                             published=beijing("2026-10-31T23:30:00"))
    records.published_answer("十一月第一刻", department="KJTA", category="科技与信息产业",
                             published=beijing("2026-11-01T00:30:00"))
    records.published_answer("十月一日环保", department="KJTB", category="环境保护",
                             published=beijing("2026-10-01T00:00:00"))
    records.published_answer("九月末交通", department="KJTB", category="交通运输",
                             published=beijing("2026-09-30T23:59:00"))

    assert listed(browser.page("/consult/answers")) == ["十一月第一刻", "十月最后一刻", "十月一日环保", "九月末交通"]
    assert listed(browser.page("/consult/answers", department="KJTA")) == ["十一月第一刻", "十月最后一刻"]
    assert listed(browser.page("/consult/answers", category="环境保护")) == ["十月一日环保"]
    # Months are counted in Beijing time: 2026-10-31 23:30 is October, 2026-11-01 00:30 is November.
    october = browser.page("/consult/answers", month="2026-10")
    assert listed(october) == ["十月最后一刻", "十月一日环保"]
    assert "共 2 条" in october
    assert listed(browser.page("/consult/answers", month="2026-11")) == ["十一月第一刻"]
    assert listed(browser.page("/consult/answers", month="2026-09")) == ["九月末交通"]
    assert listed(browser.page("/consult/answers", month="2026-10", department="KJTB")) == ["十月一日环保"]
    assert listed(browser.page("/consult/answers", month="2026-12")) == []
    # The filters are a GET form whose choices stay selected.
    page = browser.page("/consult/answers", department="KJTB", category="环境保护", month="2026-10")
    assert '<option value="KJTB" selected>' in page and '<option value="环境保护" selected>' in page
    assert 'name="month" type="month" value="2026-10"' in page
    item = re.search(r'<ul class="doc-list answer-list" id="answer-list">.*?</ul>', page, re.S)
    assert item and "KJTB" in item.group(0) and "环境保护" in item.group(0) and "2026-10-01" in item.group(0)

    bad = browser.get("/consult/answers", month="2026-13")
    assert bad.status_code == 400
    assert "月份格式为 YYYY-MM" in section(bad.get_data(as_text=True), "month-error")


def test_the_board_pages_keep_the_filters(browser: Browser, records: Records) -> None:
    for day in range(1, 23):
        records.published_answer(f"十月答复{day:02d}", department="KJTA", category="环境保护",
                                 published=beijing(f"2026-10-{day:02d}T10:00:00"))
    records.published_answer("九月答复", department="KJTA", category="环境保护",
                             published=beijing("2026-09-15T10:00:00"))
    first = browser.page("/consult/answers", department="KJTA", month="2026-10")
    assert len(listed(first)) == 20 and "共 22 条" in first
    next_link = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert next_link
    target = html.unescape(next_link.group(1))
    assert "department=KJTA" in target and "month=2026-10" in target and "page=2" in target
    second = browser.page(target)
    assert listed(second) == ["十月答复02", "十月答复01"]


def test_an_answer_page_shows_the_published_texts_with_their_markers(browser: Browser, records: Records) -> None:
    answer_id = records.published_answer(
        "关于补贴申领的咨询", department="KJTA", category="科技与信息产业", published=beijing("2026-10-20T09:00:00"),
        question="我的电话是13912345678，请问补贴何时发放？", reply="请拨打13912345678以外的咨询电话。",
    )
    answer = browser.get(f"/consult/answers/{answer_id}")
    assert answer.status_code == 200 and "max-age=60" in answer.headers["Cache-Control"] and answer.headers["ETag"]
    page = text_of(answer)
    assert "13912345678" not in page and "［已隐去：" in page
    metadata = section(answer.get_data(as_text=True), "answer-metadata")
    assert "2026-10-17" in metadata and "2026-10-19" in metadata and "KJTA" in metadata  # 受理日期, 答复日期, 部门
    assert browser.get("/consult/answers/999999").status_code == 404
    # What the ask page's script asks the search API while the asker types a similar title.
    similar = browser.get("/api/search", q="补贴申领", type="answer", per_page=5).get_json()
    assert [hit["url"] for hit in similar["hits"]] == [f"/consult/answers/{answer_id}"]
    assert browser.get("/consult/").headers["Location"].endswith("/consult/answers")


def test_no_page_shows_the_submitter(browser: Browser, records: Records) -> None:
    """A consultation with a unique name, phone and e-mail, published with consent: none of them anywhere."""
    name, phone, email = "欧阳测试人", f"137{uuid.uuid4().int % 10**8:08d}", f"p{uuid.uuid4().hex[:8]}@example.cn"
    fields = ask_fields(title="关于研发费用加计扣除的咨询", name=name, phone=phone, email=email,
                        question="请问研发费用加计扣除如何申报？")
    submitted = browser.ask(**fields, consent_to_publish="1")
    number, code = receipt(submitted)
    records.answer(number, reply="您好，请在年度汇算清缴时申报。")
    records.act(
        number,
        lambda s, c: workflow.confirm_redaction(s, REVIEWER, c, f"{c.title}\n{c.question}", c.reply or ""),
        lambda s, c: workflow.publish(s, REVIEWER, c),
    )
    records.index()
    answer_id = records.case(number).id
    pages = [
        submitted,
        browser.track(number, code),
        browser.track(number, code, "rate", rating="satisfied", comment="谢谢"),
        browser.get("/consult/answers"),
        browser.get(f"/consult/answers/{answer_id}"),
        browser.get("/consult/statistics"),
        browser.get("/search/", q="研发费用"),
        browser.get("/api/search", q="研发费用"),
    ]
    assert "关于研发费用加计扣除的咨询" in text_of(pages[3]) and "年度汇算清缴" in text_of(pages[4])
    for answer in pages:
        assert answer.status_code == 200, answer.request.path
        body = text_of(answer)
        for private in (name, phone, email):
            assert private not in body, (answer.request.path, private)
    with records.database.transaction() as session:
        steps = session.scalars(select(ConsultationStep.public_note)).all()
    assert not any(private in (note or "") for note in steps for private in (name, phone, email))
