"""The three journeys of issue 10 in Chromium, each walked twice: with the mouse, and with the keyboard alone.

1. The public: search → an interpretation → its policy → ask a question (with consent) → track it with the
   query code → (the office answers, redacts and publishes, in-process) → the answer on the public board →
   rate it on the tracking page.
2. Staff: sign in with a second factor → route and accept a new question → take it → draft with a canned
   reply → submit for review → another user (also with a second factor) approves → the reply is sent → the
   personal-data check (confirm the redaction) → publish; the public answer page hides the asker's phone.
3. The press office: sign in → the dashboard → the rising topic → a response to the concern (回应关切) linked
   to it → submit → another user approves → publish; the public /press/responses page shows it and the
   topic carries the 已回应 badge.

In the keyboard variant nothing is clicked: links and buttons are reached with Tab and taken with Enter,
boxes ticked with Space, choices made with the arrow keys, text typed. Every element reached that way
must show a visible focus indicator. Going to a page by its address (as one would type it) is allowed.

No worker runs beside the live suite: the search events the services' outboxes hold are applied in-process
by the search tasks (:class:`SearchWorker`), as the worker would apply them, whenever a step needs the index.
Every step leaves a screenshot in ``test-artifacts/browser/`` (``test_<journey>_<mode>_-NN-<step>.png``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Locator, Page, Response, expect
from sqlalchemy import select

from consult import settings_rules
from consult import workflow as consult_workflow
from consult.models import Consultation
from consult.models import OutboxEvent as ConsultOutbox
from interpret.models import OutboxEvent as InterpretOutbox
from search.tasks import index_document, remove_document
from services.auth import StaffIdentity
from services.db import get_database, open_service_database, utcnow
from services.events import subscribers
from services.identity.accounts import assign_role, create_department, create_user
from services.identity.models import RolePolicy
from services.outbox import OutboxEventMixin
from services.permissions import Grant, Role
from services.press import engine as press_engine
from services.press.ingest import import_messages
from services.press.models import OutboxEvent as PressOutbox
from services.press.models import Topic
from services.press.topics import Message

from .conftest import INITIAL_PASSWORD, LiveSuite, Screenshot
from .test_interpret_pages import INTERPRETATION_TITLE, POLICY_TITLE, publish_policy_and_interpretation

pytestmark = pytest.mark.timeout(180)

MODES = ("mouse", "keyboard")
ROOT = "ORG"
"""The intake department (``CONSULT_INTAKE_DEPARTMENT``): new questions wait there for a dispatcher."""
CATEGORY = "科技与信息产业"
HANDLING = "KJ"
"""The department the router's table gives ``CATEGORY`` (``consult/data``: 科学技术和工业信息化局)."""
SUITE = {"CONSULT_INTAKE_DEPARTMENT": ROOT, "IDLE_TIMEOUT_MINUTES": "30"}
PHONE = "13912345678"
REDACTED_PHONE = "［已隐去：电话号码］"


# -- acting with the mouse or the keyboard ---------------------------------------------------------------------


class Person:
    """Someone at one browser page who acts either with the mouse or with the keyboard alone.

    ``shot(step)`` keeps a screenshot of the page as it is now. In keyboard mode an element is reached by
    pressing Tab from wherever the focus is (after a page load: the top of the page) until it has the focus;
    it must show a focus indicator when it does.
    """

    TAB_LIMIT = 250

    def __init__(self, page: Page, mode: str, screenshot: Screenshot, who: str) -> None:
        self.page, self.mode, self.who = page, mode, who
        self._screenshot = screenshot
        self.tabs = 0
        self.shots = 0

    @property
    def keyboard(self) -> bool:
        return self.mode == "keyboard"

    def shot(self, step: str) -> None:
        self._screenshot(self.page, f"{self.who}-{step}")
        self.shots += 1

    def goto(self, path: str) -> Response:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, (path, response and response.status)
        return response

    def reach(self, target: Locator) -> None:
        """Tab until ``target`` has the keyboard focus, and check that the focus can be seen."""
        handle = target.element_handle()
        assert handle is not None
        for _ in range(self.TAB_LIMIT):
            self.page.keyboard.press("Tab")
            self.tabs += 1
            if self.page.evaluate("(el) => el === document.activeElement", handle):
                break
        else:
            raise AssertionError(f"{target} is not reachable with Tab")
        shown = self.page.evaluate(
            """(el) => {
                const style = getComputedStyle(el);
                const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
                return {visible: el.matches(':focus-visible'), drawn: outline || style.boxShadow !== 'none',
                        what: el.outerHTML.slice(0, 120)};
            }""",
            handle,
        )
        assert shown["visible"] and shown["drawn"], f"no visible focus indicator on {shown['what']}"

    def _navigate(self, act: Callable[[], None]) -> Response:
        with self.page.expect_navigation() as navigation:
            act()
        response = navigation.value
        assert response is not None
        return response

    def follow(self, link: Locator) -> Response:
        """Take a link to its page."""
        expect(link).to_be_visible()
        if self.keyboard:
            self.reach(link)
            return self._navigate(lambda: self.page.keyboard.press("Enter"))
        return self._navigate(link.click)

    def press(self, button: Locator) -> Response:
        """Press a form's submit button; the page the browser ends on (after the redirect)."""
        expect(button).to_be_enabled()
        if self.keyboard:
            self.reach(button)
            return self._navigate(lambda: self.page.keyboard.press("Enter"))
        return self._navigate(button.click)

    def press_in_place(self, button: Locator) -> None:
        """Press a button that works on the page itself (a script), without leaving it."""
        expect(button).to_be_visible()
        if self.keyboard:
            self.reach(button)
            self.page.keyboard.press("Enter")
        else:
            button.click()

    def type_into(self, field: Locator, text: str) -> None:
        if self.keyboard:
            self.reach(field)
            self.page.keyboard.type(text)
        else:
            field.click()
            field.fill(text)

    def tick(self, box: Locator) -> None:
        if self.keyboard:
            self.reach(box)
            self.page.keyboard.press("Space")
        else:
            box.click()
        expect(box).to_be_checked()

    def choose(self, radio: Locator) -> None:
        """Choose one radio button of its group (keyboard: Tab into the group, arrows to the choice, Space)."""
        if not self.keyboard:
            radio.click()
        else:
            name = radio.get_attribute("name")
            handle = radio.element_handle()
            for _ in range(self.TAB_LIMIT):
                self.page.keyboard.press("Tab")
                if self.page.evaluate("(name) => document.activeElement.name === name", name):
                    break
            else:
                raise AssertionError(f"the radio group {name} is not reachable with Tab")
            for _ in range(10):
                if self.page.evaluate("(el) => el === document.activeElement", handle):
                    self.page.keyboard.press("Space")
                    break
                self.page.keyboard.press("ArrowDown")
            else:
                raise AssertionError(f"{radio} is not reachable with the arrow keys")
        expect(radio).to_be_checked()

    def select(self, field: Locator, value: str) -> None:
        """Choose an option of a drop-down list (keyboard: Home, then ArrowDown until it is chosen)."""
        if not self.keyboard:
            field.select_option(value)
        else:
            self.reach(field)
            self.page.keyboard.press("Home")
            for _ in range(60):
                if field.input_value() == value:
                    break
                self.page.keyboard.press("ArrowDown")
            else:
                raise AssertionError(f"option {value} not reachable with the arrow keys in {field}")
        expect(field).to_have_value(value)


def report(journey: str, mode: str, *people: Person) -> None:
    """One line for the log: screenshots taken and, with the keyboard, Tab presses per person."""
    shots = sum(person.shots for person in people)
    tabs = ", ".join(f"{person.who} {person.tabs}" for person in people)
    keys = f"; Tab presses: {tabs}" if mode == "keyboard" else ""
    print(f"\n[journey {journey}/{mode}] {shots} screenshots{keys}")


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def ok(response: Response) -> None:
    assert response.status == 200, (response.url, response.status)


# -- the search worker, in-process -----------------------------------------------------------------------------


SEARCH_OUTBOXES: dict[str, type[OutboxEventMixin]] = {
    "interpret": InterpretOutbox, "consult": ConsultOutbox, "press": PressOutbox}
SEARCH_TASKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "search.index_document": index_document, "search.remove_document": remove_document}


class SearchWorker:
    """Applies the search events in the services' outboxes with ``search.tasks``, as the worker does.

    Every event is offered each time (the tasks apply each once: a repeat answers ``duplicate``)."""

    def __init__(self, live_suite: LiveSuite) -> None:
        self.apps = live_suite.app.apps

    def run(self) -> list[str]:
        messages: list[dict[str, Any]] = []
        for service, model in SEARCH_OUTBOXES.items():
            with get_database(service, self.apps[service]).transaction() as session:
                messages += [event.as_message() for event in session.scalars(select(model).order_by(model.created_at))]
        results = []
        with self.apps["search"].app_context():
            for message in sorted(messages, key=lambda m: str(m["created_at"])):
                for name in subscribers(message["topic"]):
                    if name in SEARCH_TASKS:
                        results.append(SEARCH_TASKS[name](message))
        return results


# -- staff accounts --------------------------------------------------------------------------------------------


def staff_accounts(live_suite: LiveSuite, accounts: list[tuple[str, str, list[tuple[Role, str]], bool]],
                   *, second_factor_for: tuple[Role, ...] = ()) -> dict[str, str | None]:
    """Departments ORG (intake, top), KJ and KJT below it; users (username, name, [(role, department)],
    with a second factor?) on ``INITIAL_PASSWORD`` already changed. The TOTP secret of each, or None."""
    secrets: dict[str, str | None] = {}
    database = open_service_database(live_suite.settings, "identity")
    try:
        with database.transaction() as session:
            top = create_department(session, ROOT, "办公室", "bureau", None)
            departments = {ROOT: top, HANDLING: create_department(session, HANDLING, "科学技术和工业信息化局",
                                                                  "bureau", top),
                           "KJT": create_department(session, "KJT", "新闻宣传处", "division", top)}
            for role in second_factor_for:
                session.add(RolePolicy(role=role.value, mfa_required=True))
            for username, display_name, roles, totp in accounts:
                user = create_user(session, live_suite.settings, username=username, display_name=display_name,
                                   password=INITIAL_PASSWORD)
                for role, department in roles:
                    assign_role(session, user, role, departments[department])
                user.must_change_password = False
                secrets[username] = pyotp.random_base32() if totp else None
                if totp:
                    user.totp_secret, user.totp_enabled = secrets[username], True
    finally:
        database.dispose()
    return secrets


def sign_in(person: Person, username: str, secret: str | None) -> None:
    """The login page (and the code page when the account has a second factor), ending on 工作台."""
    page = person.page
    person.goto("/staff/login")
    expect(page.get_by_role("heading", name="工作人员登录")).to_be_visible()
    person.type_into(page.locator("#username"), username)
    person.type_into(page.locator("#password"), INITIAL_PASSWORD)
    person.shot("login")
    ok(person.press(page.get_by_role("button", name="登录", exact=True)))
    if secret is not None:
        assert path_of(page) == "/staff/login/otp"
        expect(page.get_by_role("heading", name="双因素验证")).to_be_visible()
        person.type_into(page.locator("#code"), pyotp.TOTP(secret).now())
        person.shot("second-factor")
        ok(person.press(page.get_by_role("button", name="验证")))
    assert path_of(page) == "/staff/"
    expect(page.get_by_role("heading", name="工作台")).to_be_visible()


# -- 1. the public ---------------------------------------------------------------------------------------------

ASK_TITLE = "科技成果转化收益分配的办理流程"
ASK_QUESTION = f"我单位想了解科技成果转化收益怎样分配，需要向哪个部门备案？我的联系电话是{PHONE}，请工作人员联系。"
ANSWER_TEXT = "您好！科技成果转化收益按《关于加强科技成果转化工作的通知》分配，由单位向科技主管部门备案。"
OFFICE = {
    "dispatcher": StaffIdentity(801, "dispatcher1", "分办员", (Grant(Role.DISPATCHER, ROOT, (ROOT, HANDLING)),),
                                "journey-dispatcher", "session"),
    "editor": StaffIdentity(802, "editor1", "承办人", (Grant(Role.EDITOR, HANDLING, (HANDLING,)),),
                            "journey-editor", "session"),
    "reviewer": StaffIdentity(803, "reviewer1", "审核人", (Grant(Role.REVIEWER, HANDLING, (HANDLING,)),
                                                         Grant(Role.DISCLOSURE_OFFICE, HANDLING, (HANDLING,))),
                              "journey-reviewer", "session"),
}


def office_answers_and_publishes(live_suite: LiveSuite, tracking_number: str) -> str:
    """The office's side of journey 1 through ``consult.workflow``: route, accept, draft, review, reply,
    confirm the redaction the personal-data check proposes, publish. The published question."""
    dispatcher, editor, reviewer = OFFICE["dispatcher"], OFFICE["editor"], OFFICE["reviewer"]
    database = open_service_database(live_suite.settings, "consult")
    try:
        with database.transaction() as session:
            case = session.scalar(select(Consultation).where(Consultation.tracking_number == tracking_number))
            assert case is not None and case.consent_to_publish
            consult_workflow.route(session, dispatcher, case, HANDLING, CATEGORY, live_suite.settings)
            consult_workflow.accept(session, dispatcher, case)
            consult_workflow.assign(session, editor, case, None, None)
            consult_workflow.save_draft(session, editor, case, ANSWER_TEXT)
            consult_workflow.submit_for_review(session, editor, case)
            consult_workflow.approve(session, reviewer, case)
            consult_workflow.send_reply(session, editor, case)
            review = consult_workflow.personal_data_review(case)
            assert [finding["text"] for finding in review.question_findings] == [PHONE]
            consult_workflow.confirm_redaction(session, reviewer, case, review.proposed_question,
                                               review.proposed_reply)
            consult_workflow.publish(session, reviewer, case)
            published = review.proposed_question
    finally:
        database.dispose()
    return published


def track(person: Person, number: str, code: str) -> None:
    """From any public page: 咨询查询 in the main navigation, the two fields, 查询."""
    page = person.page
    ok(person.follow(page.get_by_role("navigation", name="主导航").get_by_role("link", name="咨询查询")))
    person.type_into(page.get_by_label("受理编号"), number)
    person.type_into(page.get_by_label("查询码"), code)
    ok(person.press(page.get_by_role("button", name="查询", exact=True)))
    expect(page.get_by_role("heading", level=1)).to_have_text(ASK_TITLE)


@pytest.mark.suite_env(**SUITE)
@pytest.mark.parametrize("mode", MODES)
def test_the_public_search_read_ask_track_read_the_answer_and_rate_it(
    mode: str, live_suite: LiveSuite, page: Page, screenshot: Screenshot
) -> None:
    policy_id, interpretation_id, _index_number = publish_policy_and_interpretation(live_suite)
    visitor = Person(page, mode, screenshot, "visitor")

    # Search, then read the interpretation and the policy it explains.
    visitor.goto("/search/")
    expect(page.get_by_role("heading", name="站内搜索")).to_be_visible()
    visitor.type_into(page.get_by_label("关键词", exact=True), "科技成果转化")
    visitor.shot("search")
    ok(visitor.press(page.get_by_role("button", name="搜索", exact=True)))
    results = page.locator("#search-results")
    expect(page.locator("#result-count")).to_contain_text("共找到 2 条结果")
    visitor.shot("search-results")
    ok(visitor.follow(results.get_by_role("link", name=INTERPRETATION_TITLE)))
    assert path_of(page) == f"/interpret/interpretations/{interpretation_id}"
    expect(page.get_by_role("heading", level=1)).to_have_text(INTERPRETATION_TITLE)
    visitor.shot("interpretation")
    ok(visitor.follow(page.locator("#source-policies").get_by_role("link", name=POLICY_TITLE)))
    assert path_of(page) == f"/interpret/policies/{policy_id}"
    expect(page.get_by_role("heading", level=1)).to_have_text(POLICY_TITLE)
    visitor.shot("policy")

    # Ask, agreeing to publication; note the tracking number and the query code.
    ok(visitor.follow(page.get_by_role("navigation", name="主导航").get_by_role("link", name="我要咨询")))
    expect(page.get_by_role("heading", name="我要咨询", exact=True)).to_be_visible()
    visitor.type_into(page.get_by_label("标题"), ASK_TITLE)
    visitor.type_into(page.get_by_label("咨询内容"), ASK_QUESTION)
    visitor.type_into(page.get_by_label("姓名"), "赵建国")
    visitor.type_into(page.get_by_label("电话", exact=True), PHONE)
    visitor.tick(page.get_by_label("同意公开我的咨询及答复（个人信息将隐去）"))
    visitor.shot("ask")
    ok(visitor.press(page.get_by_role("button", name="提交咨询")))
    expect(page.get_by_role("heading", name="咨询已提交")).to_be_visible()
    number = page.locator("#receipt .tracking-number").inner_text().strip()
    code = page.locator("#receipt .query-code").inner_text().strip()
    assert re.fullmatch(r"ZX\d{8}-\d{4}", number) and re.fullmatch(r"[0-9A-Z]{6,}", code)
    visitor.shot("receipt")

    track(visitor, number, code)
    expect(page.locator("#case-status td.state")).to_have_text("已提交")
    expect(page.locator("#rate")).to_have_count(0)
    visitor.shot("tracked-submitted")

    # The office answers, redacts and publishes; the search worker indexes the answer.
    published_question = office_answers_and_publishes(live_suite, number)
    assert REDACTED_PHONE in published_question and PHONE not in published_question
    assert "indexed" in SearchWorker(live_suite).run()

    # The answer on the public board: the asker's phone number hidden behind the marker.
    ok(visitor.follow(page.get_by_role("navigation", name="主导航").get_by_role("link", name="咨询回复")))
    expect(page.locator("#result-count")).to_have_text("共 1 条")
    visitor.shot("answers-board")
    ok(visitor.follow(page.locator("#answer-list").get_by_role("link", name=ASK_TITLE)))
    expect(page.get_by_role("heading", level=1)).to_have_text(ASK_TITLE)
    expect(page.locator("#answer-question")).to_contain_text(REDACTED_PHONE)
    expect(page.locator("#answer-reply")).to_contain_text(ANSWER_TEXT)
    assert PHONE not in page.content() and "赵建国" not in page.content()
    visitor.shot("answer")

    # Rate it on the tracking page.
    track(visitor, number, code)
    expect(page.locator("#case-status td.state")).to_have_text("已公开")
    expect(page.locator("#reply")).to_contain_text(ANSWER_TEXT)
    rate = page.locator("#rate")
    visitor.choose(rate.get_by_role("radio", name="满意", exact=True))
    visitor.type_into(rate.get_by_label("意见（选填）"), "答复清楚，谢谢！")
    visitor.shot("rating")
    ok(visitor.press(rate.get_by_role("button", name="提交评价")))
    expect(page.locator("#action-notice")).to_be_visible()
    expect(page.locator("#your-rating")).to_have_text("您的评价：满意")
    expect(page.locator("#rate")).to_have_count(0)
    visitor.shot("rated")
    database = open_service_database(live_suite.settings, "consult")
    try:
        with database.transaction() as session:
            case = session.scalar(select(Consultation).where(Consultation.tracking_number == number))
            assert case is not None and (case.rating, case.rating_comment) == ("satisfied", "答复清楚，谢谢！")
    finally:
        database.dispose()
    report("public", mode, visitor)


# -- 2. staff --------------------------------------------------------------------------------------------------

STAFF_TITLE = "高新技术企业认定的申报时间"
STAFF_QUESTION = f"请问今年高新技术企业认定什么时候开始申报？我的手机{PHONE}，方便时请回电。"
CANNED_TITLE = "申报时间类答复"
CANNED_BODY = "您好！感谢您的咨询。"
DRAFT_ADDITION = "今年高新技术企业认定的申报时间以科技主管部门发布的通知为准，请留意网站公告。"


def submit_question(page: Page) -> str:
    """A visitor's question through the public API (with consent to publish); its tracking number."""
    answer = page.context.request.post("/api/consult/consultations", data={
        "title": STAFF_TITLE, "question": STAFF_QUESTION, "name": "钱卫东", "phone": PHONE,
        "consent_to_publish": True,
    })
    assert answer.status == 201, answer.text()
    number: str = answer.json()["tracking_number"]
    return number


def add_canned_reply(live_suite: LiveSuite) -> None:
    database = open_service_database(live_suite.settings, "consult")
    try:
        with database.transaction() as session:
            settings_rules.add_canned_reply(session, live_suite.settings, OFFICE["reviewer"], CATEGORY, CANNED_TITLE,
                                            CANNED_BODY)
    finally:
        database.dispose()


@pytest.mark.suite_env(**SUITE)
@pytest.mark.parametrize("mode", MODES)
def test_staff_route_accept_draft_review_redact_and_publish_with_second_factors(
    mode: str, live_suite: LiveSuite, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    secrets = staff_accounts(live_suite, [
        ("handler1", "承办人甲", [(Role.DISPATCHER, ROOT), (Role.EDITOR, HANDLING)], True),
        ("reviewer1", "审核人乙", [(Role.REVIEWER, HANDLING), (Role.DISCLOSURE_OFFICE, HANDLING)], True),
    ], second_factor_for=(Role.DISPATCHER, Role.REVIEWER))
    add_canned_reply(live_suite)
    handler = Person(new_page(), mode, screenshot, "handler")
    number = submit_question(handler.page)

    # The handler signs in with a code, finds the new question in the intake queue, routes and accepts it.
    sign_in(handler, "handler1", secrets["handler1"])
    page = handler.page
    handler.shot("signed-in")
    ok(handler.follow(page.locator("main").get_by_role("link", name="咨询办理")))
    row = page.locator(f'#inbox tr[data-tracking="{number}"]')
    expect(row).to_contain_text("待分办")
    handler.shot("inbox")
    ok(handler.follow(row.get_by_role("link", name=number)))
    case_path = path_of(page)
    expect(page.get_by_role("heading", level=1)).to_have_text(STAFF_TITLE)
    expect(page.locator("#case-state")).to_have_text("已提交")
    handler.shot("case-new")
    route = page.locator("#form-route")
    handler.select(route.get_by_label("类别", exact=True), CATEGORY)
    handler.shot("route")
    ok(handler.press(route.get_by_role("button", name="分送")))
    expect(page.locator("#done")).to_have_text("已完成：分送部门。")
    expect(page.locator("#case-summary")).to_contain_text(HANDLING)
    expect(page.locator("#case-category")).to_contain_text(CATEGORY)
    ok(handler.press(page.locator("#form-accept").get_by_role("button", name="受理", exact=True)))
    expect(page.locator("#case-state")).to_have_text("已受理")
    handler.shot("accepted")

    # Takes it, drafts with the canned reply, submits the draft for review.
    ok(handler.press(page.locator("#form-assign").get_by_role("button", name="由我承办")))
    expect(page.locator("#case-handler")).to_have_text("承办人甲")
    canned = page.locator("#canned-replies li", has_text=CANNED_TITLE)
    handler.press_in_place(canned.get_by_role("button", name="插入到答复"))
    reply = page.get_by_label("答复内容")
    expect(reply).to_have_value(CANNED_BODY)
    expect(reply).to_be_focused()  # the caret waits after the inserted text
    page.keyboard.type(DRAFT_ADDITION)
    expect(reply).to_have_value(f"{CANNED_BODY}{DRAFT_ADDITION}")
    handler.shot("draft-with-canned-reply")
    ok(handler.press(page.get_by_role("button", name="保存并提交审核")))
    expect(page.locator("#done")).to_have_text("答复已保存并提交审核。")
    expect(page.locator("#case-state")).to_have_text("审核中")
    expect(page.locator("#form-approve")).to_have_count(0)  # not the drafter's to approve
    handler.shot("submitted-for-review")

    # Another user, with her own second factor, reviews and approves.
    reviewer = Person(new_page(), mode, screenshot, "reviewer")
    sign_in(reviewer, "reviewer1", secrets["reviewer1"])
    review_page = reviewer.page
    reviewer.shot("signed-in")
    ok(reviewer.follow(review_page.locator("main").get_by_role("link", name="咨询办理")))
    review_row = review_page.locator(f'#inbox tr[data-tracking="{number}"]')
    expect(review_row).to_contain_text("审核中")
    reviewer.shot("inbox")
    ok(reviewer.follow(review_row.get_by_role("link", name=number)))
    expect(review_page.locator("#reply-draft")).to_have_text(f"{CANNED_BODY}{DRAFT_ADDITION}")
    reviewer.shot("case-in-review")
    ok(reviewer.press(review_page.locator("#form-approve").get_by_role("button", name="审核通过")))
    expect(review_page.locator("#case-state")).to_have_text("审核通过")
    reviewer.shot("approved")

    # The handler sends the approved reply to the asker.
    handler.goto(case_path)
    ok(handler.press(page.locator("#form-reply").get_by_role("button", name="发送答复")))
    expect(page.locator("#case-state")).to_have_text("已答复")
    handler.shot("reply-sent")

    # The reviewer's personal-data check: the phone number found, the redaction confirmed; then publication.
    reviewer.goto(case_path)
    check = review_page.locator("#personal-data-check")
    expect(check.locator("#question-findings")).to_contain_text(f"电话号码：{PHONE}")
    question_text = check.get_by_label("公开的问题（第一行为标题）")
    expect(question_text).to_have_value(re.compile(re.escape(REDACTED_PHONE)))
    assert PHONE not in question_text.input_value()
    expect(review_page.locator("#publish-blockers")).to_contain_text("公开文本尚未经审核人确认隐去个人信息")
    reviewer.shot("personal-data-check")
    ok(reviewer.press(check.get_by_role("button", name="确认并保存")))
    expect(review_page.locator("#done")).to_have_text("公开文本已确认。")
    expect(review_page.locator("#redaction-confirmed")).to_contain_text("审核人乙")
    reviewer.shot("redaction-confirmed")
    ok(reviewer.press(review_page.locator("#form-publish").get_by_role("button", name="公开此答复")))
    expect(review_page.locator("#case-state")).to_have_text("已公开")
    reviewer.shot("published")

    # The public answer page shows the redacted text.
    assert "indexed" in SearchWorker(live_suite).run()
    visitor = Person(new_page(), mode, screenshot, "visitor")
    visitor.goto("/consult/answers")
    ok(visitor.follow(visitor.page.locator("#answer-list").get_by_role("link", name=STAFF_TITLE)))
    answer = visitor.page
    expect(answer.locator("#answer-question")).to_contain_text(REDACTED_PHONE)
    expect(answer.locator("#answer-reply .body-text")).to_have_text(f"{CANNED_BODY}{DRAFT_ADDITION}")
    assert PHONE not in answer.content() and "钱卫东" not in answer.content()
    visitor.shot("public-answer")
    report("staff", mode, handler, reviewer, visitor)


# -- 3. the press office ---------------------------------------------------------------------------------------

NOISE = ["城东搅拌站夜间施工噪音扰民", "搅拌站噪音太大晚上睡不着", "城东搅拌站半夜还在作业，噪音严重",
         "投诉城东搅拌站噪音和粉尘", "搅拌站夜间噪音问题何时解决"]
PARKING = ["幸福小区停车位不足", "小区停车难，车位太少", "幸福小区周边停车位紧张", "小区车位不够停车难问题"]
NOISE_PER_DAY = [1, 0, 1, 1, 2, 6, 14]
"""The last seven days, oldest first, today last: rising."""
PARKING_PER_DAY = [2] * 14
"""The last fortnight: steady."""
RESPONSE_TITLE = "关于城东搅拌站夜间噪音问题的回应"
RESPONSE_SUMMARY = "区生态环境局已约谈搅拌站运营单位，夜间 22 时至次日 6 时停止作业。"
RESPONSE_BODY = "<p>近期，不少市民反映城东搅拌站夜间施工噪音扰民。</p><p>经核查，已责令其整改并加装隔音设施。</p>"


def seed_messages(live_suite: LiveSuite) -> int:
    """A week of public messages, imported and grouped into topics by the press office's own engine (one of
    them rising today); the rising topic's id."""
    now = utcnow()
    messages = []
    for days_ago, noise in enumerate(reversed(NOISE_PER_DAY)):
        for number in range(noise):
            title = NOISE[number % len(NOISE)]
            messages.append(Message(uuid.uuid4().hex, title, f"{title}，请有关部门尽快处理。", uuid.uuid4().hex,
                                    now - timedelta(days=days_ago, minutes=5 + number)))
    for days_ago, parking in enumerate(reversed(PARKING_PER_DAY)):
        for number in range(parking):
            title = PARKING[number % len(PARKING)]
            messages.append(Message(uuid.uuid4().hex, title, f"{title}，希望增加车位。", uuid.uuid4().hex,
                                    now - timedelta(days=days_ago, minutes=7 + number)))
    database = open_service_database(live_suite.settings, "press")
    try:
        report = import_messages(database.transaction, live_suite.settings, messages)
        assert report.imported == sum(NOISE_PER_DAY) + sum(PARKING_PER_DAY)
        with database.transaction() as session:
            press_engine.update_topics(session, live_suite.settings, now=datetime.now(UTC))
        with database.transaction() as session:
            rising = session.scalar(select(Topic).where(Topic.size == sum(NOISE_PER_DAY)))
            assert rising is not None and "搅拌站" in rising.keywords, session.scalars(select(Topic)).all()
            return rising.id
    finally:
        database.dispose()


@pytest.mark.suite_env(**SUITE)
@pytest.mark.parametrize("mode", MODES)
def test_the_press_office_responds_to_a_rising_topic(
    mode: str, live_suite: LiveSuite, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    staff_accounts(live_suite, [
        ("press1", "宣传甲", [(Role.PRESS_OFFICER, "KJT")], False),
        ("reviewer2", "审核人丙", [(Role.REVIEWER, "KJT")], False),
    ])
    topic_id = seed_messages(live_suite)
    officer = Person(new_page(), mode, screenshot, "officer")
    page = officer.page

    # Sign in, open the dashboard, see the rising topic on top, not responded to yet.
    sign_in(officer, "press1", None)
    officer.shot("signed-in")
    ok(officer.follow(page.locator("main").get_by_role("link", name="热点话题")))
    assert path_of(page) == "/press/"
    rows = page.locator("#rising-topics tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-topic", str(topic_id))
    expect(rows.first.locator("td").nth(2)).to_have_text(str(sum(NOISE_PER_DAY)))  # this window
    expect(rows.first.locator("td").nth(3)).to_have_text("0")  # the one before
    expect(rows.first.locator(".press-response")).to_contain_text("未回应")
    expect(page.locator("#press-main-chart")).to_have_attribute("data-chart-ready", "1")
    officer.shot("dashboard")
    topic_link = rows.first.locator("td.press-topic-label").get_by_role("link")
    label = topic_link.inner_text().strip()
    assert "搅拌站" in label
    ok(officer.follow(topic_link))
    assert path_of(page) == f"/press/topics/{topic_id}"
    expect(page.get_by_role("heading", level=1)).to_have_text(label)
    expect(page.locator("#topic-messages tbody tr")).to_have_count(sum(NOISE_PER_DAY))
    officer.shot("topic")

    # Write the response, linked to the topic, and submit it.
    ok(officer.follow(page.locator("dl.press-facts").get_by_role("link", name="回应", exact=True)))
    expect(page.get_by_role("heading", name="新建回应")).to_be_visible()
    expect(page.get_by_role("radio", name="回应关切")).to_be_checked()
    expect(page.locator("#topic-picker").get_by_role("checkbox", name=re.compile(re.escape(label)))).to_be_checked()
    officer.type_into(page.get_by_label("标题"), RESPONSE_TITLE)
    officer.type_into(page.get_by_label("摘要"), RESPONSE_SUMMARY)
    officer.type_into(page.get_by_label("正文（可用简单 HTML）"), RESPONSE_BODY)
    officer.shot("response-form")
    ok(officer.press(page.get_by_role("button", name="保存草稿")))
    expect(page.locator("#done")).to_have_text("已完成：新建。")
    expect(page.locator("#response-state")).to_have_attribute("data-state", "draft")
    response_path = path_of(page)
    officer.shot("draft")
    ok(officer.press(page.locator("#actions").get_by_role("button", name="提交", exact=True)))
    expect(page.locator("#response-state")).to_have_attribute("data-state", "submitted")
    officer.shot("submitted")

    # Another user approves it.
    reviewer = Person(new_page(), mode, screenshot, "reviewer")
    sign_in(reviewer, "reviewer2", None)
    review_page = reviewer.page
    reviewer.shot("signed-in")
    ok(reviewer.follow(review_page.locator("main").get_by_role("link", name="回应关切管理")))
    ok(reviewer.follow(review_page.locator("#response-table").get_by_role("link", name=RESPONSE_TITLE)))
    assert path_of(review_page) == response_path
    expect(review_page.locator("#response-content")).to_contain_text(RESPONSE_SUMMARY)
    approve = review_page.locator('form[data-action="approve"]')
    reviewer.type_into(approve.get_by_label("意见"), "同意发布。")
    reviewer.shot("review")
    ok(reviewer.press(approve.get_by_role("button", name="审核通过")))
    expect(review_page.locator("#response-state")).to_have_attribute("data-state", "approved")
    reviewer.shot("approved")

    # The press officer publishes it.
    officer.goto(response_path)
    ok(officer.press(page.locator("#actions").get_by_role("button", name="发布", exact=True)))
    expect(page.locator("#response-state")).to_have_attribute("data-state", "published")
    officer.shot("published")
    assert "indexed" in SearchWorker(live_suite).run()

    # The public responses page shows it.
    visitor = Person(new_page(), mode, screenshot, "visitor")
    visitor.goto("/press/responses")
    public_list = visitor.page.locator("#response-list")
    expect(public_list).to_contain_text(RESPONSE_TITLE)
    visitor.shot("public-responses")
    ok(visitor.follow(public_list.get_by_role("link", name=RESPONSE_TITLE)))
    expect(visitor.page.get_by_role("heading", level=1)).to_have_text(RESPONSE_TITLE)
    expect(visitor.page.locator("#response-summary")).to_have_text(RESPONSE_SUMMARY)
    expect(visitor.page.locator("#response-body")).to_contain_text("已责令其整改并加装隔音设施")
    visitor.shot("public-response")

    # The topic now carries the 已回应 badge: on the dashboard (by way of the responses list) and on its page.
    ok(officer.follow(page.get_by_role("navigation", name="当前位置").get_by_role("link", name="回应关切管理")))
    expect(page.locator('#response-table tr[data-state="published"]')).to_contain_text(RESPONSE_TITLE)
    ok(officer.follow(page.get_by_role("navigation", name="新闻宣传").get_by_role("link", name="热点话题")))
    row = page.locator(f'#rising-topics tr[data-topic="{topic_id}"]')
    expect(row.locator(".press-response")).to_contain_text("已回应")
    officer.shot("dashboard-responded")
    ok(officer.follow(row.locator("td.press-topic-label").get_by_role("link")))
    expect(page.locator("dl.press-facts")).to_contain_text("已回应")
    expect(page.locator("#linked-documents")).to_contain_text(RESPONSE_TITLE)
    officer.shot("topic-responded")
    report("press", mode, officer, reviewer, visitor)
