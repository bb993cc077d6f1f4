"""Accessibility of the public pages and the elderly-friendly mode (长者模式), in Chromium.

axe-core (from npm: ``package.json``, installed by ``make install-dev``) is loaded into each page before
its own scripts run (``add_init_script``: the pages' CSP allows no inline script, which a script tag
added by the test would be) and audits it with the WCAG 2.0/2.1 A and AA rules and axe's best
practices, in the normal mode and in 长者模式; there the AAA contrast rule (7:1) and the target size
rule run as well. A table of the findings by impact is printed, one line per page and mode.

The content is seeded as the other browser tests do it: a policy with its interpretation and a
published answer through the services' workflows, indexed as the search worker would, and a replied
consultation whose asker holds a known query code, for the tracking page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, BrowserContext, Page, expect

from consult.workflow import record_answered_consultation
from services.db import open_service_database
from services.web import ELDER_MODE_COOKIE

from .conftest import REPO_ROOT, LiveSuite, Screenshot
from .test_consult_journey import seed_published_answer
from .test_interpret_pages import publish_policy_and_interpretation

pytestmark = pytest.mark.timeout(150)

AXE_SCRIPT: Path = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
ELDER_ONLY_RULES = ["color-contrast-enhanced", "target-size"]
"""长者模式 promises AAA contrast (7:1) and big click targets: these rules must pass there too."""
BLOCKING = ("critical", "serious")
IMPACTS = ("critical", "serious", "moderate", "minor")
SWITCH_NAME = "长者模式"

TRACKING_NUMBER = "ZX20260301-0001"
QUERY_CODE = "K7M2Q9XP"
TRACKED_TITLE = "科技型中小企业评价的办理时间"


def require_axe() -> Path:
    if not AXE_SCRIPT.is_file():
        pytest.fail(f"{AXE_SCRIPT.relative_to(REPO_ROOT)} is missing: run `make install-dev` (npm ci)")
    return AXE_SCRIPT


def seed_replied_consultation(live_suite: LiveSuite) -> None:
    """A consultation answered yesterday whose asker knows ``QUERY_CODE``: tracking shows the reply and rating."""
    replied_at = datetime.now(UTC) - timedelta(days=1)
    database = open_service_database(live_suite.settings, "consult")
    try:
        with database.transaction() as session:
            consultation = record_answered_consultation(
                session, tracking_number=TRACKING_NUMBER, title=TRACKED_TITLE,
                question="我公司想申请科技型中小企业评价，请问多长时间能办好？",
                reply="评价工作全年常态化开展，材料齐全的，一般在 15 个工作日内完成公示。",
                received_at=replied_at - timedelta(days=3), replied_at=replied_at, department="ORG",
                settings=live_suite.settings,
            )
            consultation.historical = False
            consultation.query_code_hash = PasswordHasher().hash(QUERY_CODE)
    finally:
        database.dispose()


@dataclass
class Seeded:
    policy_id: int
    interpretation_id: int
    answer_id: int


def seed_content(live_suite: LiveSuite) -> Seeded:
    policy_id, interpretation_id, _index_number = publish_policy_and_interpretation(live_suite)
    answer_id = seed_published_answer(live_suite)
    seed_replied_consultation(live_suite)
    return Seeded(policy_id, interpretation_id, answer_id)


# -- axe ---------------------------------------------------------------------------------------


@dataclass
class AxeReport:
    violations: list[dict[str, Any]]
    """``[{id, impact, help, targets}]``"""
    passed_rules: int
    incomplete: list[str]
    """Rules axe could not decide by itself (a person should look): reported, not failed."""


def run_axe(page: Page, *, elder: bool) -> AxeReport:
    """axe's findings on the page as it is now."""
    page.wait_for_function("() => window.axe !== undefined")
    options: dict[str, Any] = {"runOnly": {"type": "tag", "values": AXE_TAGS}}
    found: dict[str, Any] = page.evaluate(
        """async ([options, extraRules]) => {
            const results = [await axe.run(document, options)];
            if (extraRules.length) {
                results.push(await axe.run(document, {runOnly: {type: 'rule', values: extraRules}}));
            }
            return {
                violations: results.flatMap((r) => r.violations).map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' :: ' + (n.failureSummary || '')),
                })),
                passed: results.reduce((sum, r) => sum + r.passes.length, 0),
                incomplete: results.flatMap((r) => r.incomplete).map((v) => v.id),
            };
        }""",
        [options, ELDER_ONLY_RULES if elder else []],
    )
    return AxeReport(found["violations"], found["passed"], sorted(set(found["incomplete"])))


def open_audited_context(browser: Browser, live_suite: LiveSuite, *, elder: bool) -> BrowserContext:
    context = browser.new_context(base_url=live_suite.url, locale="zh-CN", viewport={"width": 1100, "height": 800})
    context.set_default_timeout(15_000)
    context.add_init_script(path=str(require_axe()))
    if elder:
        context.add_cookies([{"name": ELDER_MODE_COOKIE, "value": "1", "url": live_suite.url}])
    return context


def open_tracking_result(page: Page) -> None:
    page.goto("/consult/track")
    page.get_by_label("受理编号").fill(TRACKING_NUMBER)
    page.get_by_label("查询码").fill(QUERY_CODE)
    with page.expect_navigation():
        page.get_by_role("button", name="查询", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TRACKED_TITLE)
    expect(page.locator("#rate")).to_be_visible()


def submit_empty_question(page: Page) -> None:
    """The form sent back with its errors next to the fields (422)."""
    page.goto("/consult/ask")
    with page.expect_navigation():
        page.get_by_role("button", name="提交咨询").click()
    expect(page.locator("#form-errors")).to_be_visible()


def test_axe_finds_no_serious_or_critical_violation_on_the_public_pages_in_either_mode(
    live_suite: LiveSuite, browser: Browser, screenshot: Screenshot
) -> None:
    seeded = seed_content(live_suite)
    pages: list[tuple[str, Callable[[Page], object]]] = [
        ("home", lambda page: page.goto("/")),
        ("search", lambda page: page.goto("/search/?q=科技成果转化")),
        ("policy-list", lambda page: page.goto("/interpret/policies")),
        ("policy", lambda page: page.goto(f"/interpret/policies/{seeded.policy_id}")),
        ("interpretation", lambda page: page.goto(f"/interpret/interpretations/{seeded.interpretation_id}")),
        ("answer-list", lambda page: page.goto("/consult/answers")),
        ("answer", lambda page: page.goto(f"/consult/answers/{seeded.answer_id}")),
        ("ask", lambda page: page.goto("/consult/ask")),
        ("ask-errors", submit_empty_question),
        ("track", lambda page: page.goto("/consult/track")),
        ("track-result", open_tracking_result),
    ]
    table: list[str] = []
    blocking: list[str] = []
    for elder in (False, True):
        mode = "elder" if elder else "normal"
        context = open_audited_context(browser, live_suite, elder=elder)
        try:
            page = context.new_page()
            for name, open_page in pages:
                open_page(page)
                expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
                if elder:
                    expect(page.locator("html")).to_have_class(re.compile(r"\belder\b"))
                else:
                    expect(page.locator("html")).not_to_have_class(re.compile(r"\belder\b"))
                report = run_axe(page, elder=elder)
                assert report.passed_rules >= 20, f"axe checked almost nothing on {name}: {report}"
                counts = {impact: sum(1 for v in report.violations if v["impact"] == impact) for impact in IMPACTS}
                table.append(f"{name:<15} {mode:<6} " + " ".join(f"{counts[i]:>8}" for i in IMPACTS)
                             + f" {report.passed_rules:>6}  " + ",".join(sorted({v["id"] for v in report.violations}))
                             + (f"  (to review: {','.join(report.incomplete)})" if report.incomplete else ""))
                for violation in report.violations:
                    if violation["impact"] in BLOCKING or violation["id"] in ELDER_ONLY_RULES:
                        blocking.append(f"{name} ({mode}): {violation['id']} [{violation['impact']}] "
                                        f"{violation['help']}\n    " + "\n    ".join(violation["targets"]))
                screenshot(page, f"{name}-{mode}")
        finally:
            context.close()
    print("\naxe-core " + ",".join(AXE_TAGS) + " (长者模式 also " + ",".join(ELDER_ONLY_RULES) + ")")
    print(f"{'page':<15} {'mode':<6} " + " ".join(f"{i:>8}" for i in IMPACTS) + f" {'passed':>6}  violations")
    print("\n".join(table))
    assert not blocking, "axe violations:\n" + "\n".join(blocking)


# -- the switch, with the keyboard only ---------------------------------------------------------------


def focused(page: Page) -> dict[str, Any]:
    """What has the keyboard focus: its id, tag, accessible text and whether a focus outline is drawn."""
    result: dict[str, Any] = page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return {id: el.id, tag: el.tagName.toLowerCase(), name: (el.innerText || el.value || '').trim(),
                    focusVisible: el.matches(':focus-visible'),
                    outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2};
        }"""
    )
    return result


def tab_to(page: Page, element_id: str, *, limit: int = 40) -> list[str]:
    """Press Tab until the element has the focus; the ids (or tags) passed on the way, each with an outline."""
    passed: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        assert now["focusVisible"] and now["outline"], f"no visible focus outline on {now}"
        if now["id"] == element_id:
            return passed
        passed.append(now["id"] or f"{now['tag']}:{now['name']}")
    raise AssertionError(f"#{element_id} not reached with Tab; passed {passed}")


def body_font_px(page: Page) -> float:
    return float(page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('main')).fontSize)"))


def elder_cookie(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == ELDER_MODE_COOKIE), None)


def expect_mode(page: Page, on: bool) -> None:
    html = page.locator("html")
    switch = page.get_by_role("button", name=SWITCH_NAME)
    if on:
        expect(html).to_have_class(re.compile(r"\belder\b"))
    else:
        expect(html).not_to_have_class(re.compile(r"\belder\b"))
    expect(switch).to_have_attribute("aria-pressed", "true" if on else "false")


def test_the_elder_mode_switch_works_with_the_keyboard_and_persists(
    live_suite: LiveSuite, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    page = new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico") else None)

    page.goto("/interpret/policies")  # seen in the normal mode first: the browser may keep it for a minute
    expect_mode(page, on=False)
    normal_size = body_font_px(page)
    page.goto("/")
    expect_mode(page, on=False)

    # Keyboard only: the first Tab reaches the skip link, a few more the switch.
    page.keyboard.press("Tab")
    first = focused(page)
    assert first["name"] == "跳到主要内容" and first["outline"], first
    expect(page.get_by_role("link", name="跳到主要内容")).to_be_in_viewport()
    assert tab_to(page, "elder-mode-switch", limit=5) == ["a:政府信息公开平台"]
    screenshot(page, "switch-focused")
    page.keyboard.press("Enter")
    expect_mode(page, on=True)
    assert elder_cookie(page) == "1"
    elder_size = body_font_px(page)
    assert elder_size >= 1.25 * normal_size, (normal_size, elder_size)
    screenshot(page, "elder-on")

    # Rendered by the server on the next page (no flash), the one seen before included, and after a reload.
    response = page.goto("/interpret/policies")
    assert response is not None and 'class="elder"' in response.text()
    expect_mode(page, on=True)
    assert body_font_px(page) >= 1.25 * normal_size
    response = page.reload()
    assert response is not None and 'class="elder"' in response.text()
    expect_mode(page, on=True)
    screenshot(page, "elder-after-reload")

    # And off again, with Space this time.
    page.locator("body").focus()
    tab_to(page, "elder-mode-switch", limit=5)
    page.keyboard.press("Space")
    expect_mode(page, on=False)
    assert elder_cookie(page) is None
    page.goto("/")
    expect_mode(page, on=False)
    assert body_font_px(page) == normal_size
    assert problems == []


def test_the_switch_works_without_javascript_and_only_returns_to_this_site(
    browser: Browser, live_suite: LiveSuite, screenshot: Screenshot
) -> None:
    context = browser.new_context(base_url=live_suite.url, locale="zh-CN", java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto("/search/?q=公积金")
        expect_mode(page, on=False)
        tab_to(page, "elder-mode-switch", limit=5)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert urlsplit(page.url).path == "/search/" and "q=" in page.url  # back where it was, query and all
        expect_mode(page, on=True)
        screenshot(page, "no-script-elder-on")
        tab_to(page, "elder-mode-switch", limit=5)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect_mode(page, on=False)

        for hostile in ("https://evil.example/", "//evil.example/", "///evil.example", "/\\evil.example",
                        "/\t/evil.example", "/\n/evil.example", "/%2F/evil.example", "javascript:alert(1)",
                        "%2F%2Fevil.example", " //evil.example"):
            answer = context.request.get("/elder-mode", params={"on": "1", "return_to": hostile}, max_redirects=0)
            assert answer.status == 302, hostile
            location = answer.headers["location"]
            target = urlsplit(location)
            assert target.netloc in ("", urlsplit(live_suite.url).netloc), (hostile, location)
            assert not target.path.startswith("//") and target.scheme in ("", "http"), (hostile, location)
    finally:
        context.close()


# -- the consultation form, with the keyboard only --------------------------------------------------------


def test_a_consultation_can_be_asked_and_tracked_with_the_keyboard_alone(
    live_suite: LiveSuite, page: Page, screenshot: Screenshot
) -> None:
    page.goto("/consult/ask")
    form = page.locator("#ask-form")

    # No CAPTCHA to solve by sight; the honeypot is out of the tab order and of the accessibility tree.
    expect(form.locator("img, canvas, [name*=captcha i]")).to_have_count(0)
    honeypot = form.locator("#website")
    expect(honeypot).to_have_attribute("tabindex", "-1")
    expect(honeypot).to_have_attribute("autocomplete", "off")
    expect(form.locator(".hp-field")).to_have_attribute("aria-hidden", "true")
    expect(page.get_by_role("textbox", name="网站（请勿填写）")).to_have_count(0)

    passed = tab_to(page, "title")
    assert "website" not in passed
    page.keyboard.type("科技型中小企业评价的申报时间")
    for field, text in (("question", "请问今年科技型中小企业评价什么时候开始申报？需要准备哪些材料？"),
                        ("category", None), ("name", "王大爷"), ("phone", "13800001111"), ("email", None),
                        ("attachments", None)):
        assert tab_to(page, field, limit=1) == []
        if text:
            page.keyboard.type(text)
    assert tab_to(page, "consent_to_publish", limit=1) == []
    page.keyboard.press("Space")
    expect(page.get_by_label("同意公开我的咨询及答复（个人信息将隐去）")).to_be_checked()
    page.keyboard.press("Tab")
    submit_button = focused(page)
    assert submit_button["tag"] == "button" and submit_button["name"] == "提交咨询", submit_button
    screenshot(page, "ask-filled-by-keyboard")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="咨询已提交")).to_be_visible()
    number = page.locator("#receipt .tracking-number").inner_text().strip()
    code = page.locator("#receipt .query-code").inner_text().strip()
    assert re.fullmatch(r"ZX\d{8}-\d{4}", number) and number != "ZX00000000-0000"
    screenshot(page, "ask-done")

    # On to 咨询查询 by keyboard: the receipt's button, then the two fields and Enter.
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if focused(page)["name"] == "咨询查询" and page.evaluate("() => !!document.activeElement.closest('main')"):
            break
    else:
        raise AssertionError("the receipt's 咨询查询 link is not reachable with Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/consult/track"
    tab_to(page, "tracking_number")
    page.keyboard.type(number)
    tab_to(page, "code", limit=1)
    page.keyboard.type(code)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("科技型中小企业评价的申报时间")
    expect(page.locator("#case-status td.state")).to_have_text("已提交")
    screenshot(page, "tracked-by-keyboard")
