"""Staff sign-in through the real login pages in Chromium: lockout, idle timeout, TOTP and recovery codes."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from playwright.sync_api import Locator, Page, Response, expect

from services.db import open_service_database
from services.identity.models import User

from .conftest import LOCKOUT_THRESHOLD, NEW_PASSWORD, LiveSuite, Screenshot, Staff

pytestmark = pytest.mark.timeout(90)

WRONG_PASSWORD = "Wrong-Password-9?"


# -- helpers -------------------------------------------------------------------------


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def submit(page: Page, button: Locator) -> Response:
    """Click a form's submit button; the response the browser finally shows (after any redirects)."""
    with page.expect_navigation() as navigation:
        button.click()
    response = navigation.value
    assert response is not None
    return response


def sign_in(page: Page, username: str, password: str) -> Response:
    """Fill the login page (opening it unless it is showing) and submit."""
    if path_of(page) != "/staff/login":
        page.goto("/staff/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    return submit(page, page.get_by_role("button", name="登录", exact=True))


def sign_out(page: Page) -> None:
    page.goto("/staff/")
    submit(page, page.get_by_role("button", name="退出登录"))
    assert path_of(page) == "/staff/login"


def enter_code(page: Page, code: str) -> Response:
    page.locator("#code").fill(code)
    return submit(page, page.get_by_role("button", name="验证"))


def wrong_totp(secret: str) -> str:
    """A six-digit code valid in no time step the server accepts now."""
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time() + drift) for drift in (-60, -30, 0, 30, 60)}
    return next(code for code in (f"{n:06d}" for n in range(123456, 1_000_000)) if code not in valid)


def expect_signed_in_home(page: Page, role_label: str) -> None:
    assert path_of(page) == "/staff/"
    expect(page.get_by_role("heading", name="工作台")).to_be_visible()
    expect(page.locator("#my-roles")).to_contain_text(f"{role_label} · KJT")


def totp_state(live_suite: LiveSuite, user_id: int) -> tuple[str | None, bool]:
    database = open_service_database(live_suite.settings, "identity")
    try:
        with database.transaction() as session:
            user = session.get(User, user_id)
            assert user is not None
            return user.totp_secret, user.totp_enabled
    finally:
        database.dispose()


# -- lockout ---------------------------------------------------------------------------


@pytest.mark.suite_env(IDLE_TIMEOUT_MINUTES="10")  # the admin clicks through several pages
def test_wrong_passwords_lock_the_account_until_an_admin_unlocks_it(
    live_suite: LiveSuite, staff: Staff, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    editor, admin = staff.editor, staff.admin
    page = new_page()
    page.goto("/staff/login")
    expect(page.get_by_role("heading", name="工作人员登录")).to_be_visible()
    screenshot(page, "login-page")

    for attempt in range(1, LOCKOUT_THRESHOLD + 1):
        response = sign_in(page, editor.username, WRONG_PASSWORD)
        if attempt < LOCKOUT_THRESHOLD:
            assert response.status == 401
            expect(page.get_by_role("alert")).to_have_text("用户名或密码错误。")
            expect(page.locator("#locked-message")).to_have_count(0)
        else:
            assert response.status == 423
    expect(page.locator("#locked-message")).to_contain_text("账户已锁定")
    screenshot(page, "locked-after-wrong-passwords")

    response = sign_in(page, editor.username, editor.password)
    assert response.status == 423, "the right password must not open a locked account"
    expect(page.locator("#locked-message")).to_be_visible()
    screenshot(page, "right-password-refused-while-locked")
    page.goto("/staff/")
    assert path_of(page) == "/staff/login", "a refused sign-in must not leave a session behind"

    admin_page = new_page()
    sign_in(admin_page, admin.username, admin.password)
    expect_signed_in_home(admin_page, "系统管理员")
    admin_page.goto("/staff/admin/users")
    users = admin_page.locator("#users tbody tr")
    editor_row = users.filter(has=admin_page.get_by_role("link", name=editor.username, exact=True))
    admin_row = users.filter(has=admin_page.get_by_role("link", name=admin.username, exact=True))
    expect(editor_row.locator(".locked")).to_contain_text("已锁定至")
    expect(admin_row.locator("td").nth(3)).to_have_text("正常")
    screenshot(admin_page, "admin-sees-the-lock")

    editor_row.get_by_role("link", name=editor.username, exact=True).click()
    admin_page.wait_for_url(f"**/staff/admin/users/{editor.id}")
    status = admin_page.locator("table.metadata tr", has_text="状态").locator("td")
    expect(status).to_contain_text("已锁定至")
    response = submit(admin_page, admin_page.get_by_role("button", name="解除锁定"))
    assert response.status == 200
    assert path_of(admin_page) == f"/staff/admin/users/{editor.id}"
    expect(status).to_have_text("正常")
    screenshot(admin_page, "admin-unlocked")
    admin_page.goto("/staff/admin/users")
    expect(editor_row.locator("td").nth(3)).to_have_text("正常")

    response = sign_in(page, editor.username, editor.password)
    assert response.status == 200
    expect_signed_in_home(page, "部门编辑")
    screenshot(page, "editor-signed-in-after-unlock")


# -- idle timeout ----------------------------------------------------------------------


def test_an_idle_session_times_out_and_signing_in_again_returns_to_the_requested_page(
    live_suite: LiveSuite, staff: Staff, new_page: Callable[[], Page], screenshot: Screenshot
) -> None:
    idle = live_suite.idle_timeout_seconds
    assert idle <= 5, "this test waits out the idle timeout"
    editor, admin = staff.editor, staff.admin
    editor_page, admin_page = new_page(), new_page()
    sign_in(admin_page, admin.username, admin.password)
    expect_signed_in_home(admin_page, "系统管理员")
    sign_in(editor_page, editor.username, editor.password)
    expect_signed_in_home(editor_page, "部门编辑")
    screenshot(editor_page, "signed-in")

    # Activity keeps a session alive: the editor, busy for longer than the timeout, stays signed in.
    # (Steps are well under the timeout: the server keeps the last-seen time in whole seconds.)
    signed_in_at = time.monotonic()
    while time.monotonic() - signed_in_at <= idle + 0.5:
        time.sleep(idle * 0.4)
        editor_page.goto("/staff/")
        assert path_of(editor_page) == "/staff/", "an active session must not time out"

    # The admin did nothing meanwhile: a deep link now asks to sign in again, then leads there.
    target = f"/staff/admin/users/{editor.id}"
    admin_page.goto(target)
    assert path_of(admin_page) == "/staff/login"
    assert query_of(admin_page) == {"next": [target], "timeout": ["1"]}
    expect(admin_page.get_by_role("status")).to_contain_text("会话已超时")
    expect(admin_page.locator("input[name=next]")).to_have_value(target)
    screenshot(admin_page, "admin-timed-out-on-deep-link")
    sign_in(admin_page, admin.username, admin.password)
    assert path_of(admin_page) == target
    expect(admin_page.get_by_role("heading", name=f"编辑甲（{editor.username}）")).to_be_visible()
    screenshot(admin_page, "admin-back-on-requested-page")

    # The editor goes idle too.
    time.sleep(idle + 0.5)
    editor_page.goto("/staff/")
    assert path_of(editor_page) == "/staff/login"
    assert query_of(editor_page) == {"next": ["/staff/"], "timeout": ["1"]}
    expect(editor_page.get_by_role("status")).to_contain_text("会话已超时")
    screenshot(editor_page, "editor-timed-out")
    sign_in(editor_page, editor.username, editor.password)
    expect_signed_in_home(editor_page, "部门编辑")
    screenshot(editor_page, "editor-signed-in-again")


# -- second factor ---------------------------------------------------------------------


@pytest.mark.suite_env(IDLE_TIMEOUT_MINUTES="10")  # several sign-ins in a row, each a few pages long
def test_a_role_requiring_a_second_factor_enrols_on_first_login_then_needs_a_code(
    live_suite: LiveSuite, staff: Staff, page: Page, screenshot: Screenshot
) -> None:
    reviewer = staff.reviewer

    # First login: enrol the second factor, note the recovery codes, change the initial password.
    # (The app asks for enrolment before the password change; both come before any session.)
    sign_in(page, reviewer.username, reviewer.password)
    assert path_of(page) == "/staff/totp/setup"
    secret = page.locator("#totp-secret").inner_text().strip()
    assert len(secret) >= 16
    expect(page.locator(".qr svg")).to_be_visible()
    screenshot(page, "enrol-totp")
    page.goto("/staff/")
    assert path_of(page) == "/staff/login", "no session before the second factor is enrolled"
    page.goto("/staff/totp/setup")
    secret = page.locator("#totp-secret").inner_text().strip()  # a fresh secret each time the page is shown
    totp = pyotp.TOTP(secret)

    page.locator("#code").fill(wrong_totp(secret))
    response = submit(page, page.get_by_role("button", name="启用"))
    assert response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("验证码不正确")
    enrolment_code = totp.now()
    page.locator("#code").fill(enrolment_code)
    response = submit(page, page.get_by_role("button", name="启用"))
    assert response.status == 200
    expect(page.get_by_role("heading", name="双因素验证已启用")).to_be_visible()
    recovery_codes = [code.strip() for code in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(recovery_codes) == 10
    assert len(set(recovery_codes)) == 10
    screenshot(page, "recovery-codes")

    page.get_by_role("link", name="我已保存，继续").click()
    page.wait_for_url("**/staff/password")
    expect(page.get_by_role("status")).to_contain_text("须先修改密码")
    page.goto("/staff/")
    assert path_of(page) == "/staff/login", "no session before the initial password is changed"
    page.goto("/staff/password")
    page.locator("#new_password").fill(NEW_PASSWORD)
    page.locator("#confirm_password").fill(NEW_PASSWORD)
    screenshot(page, "change-initial-password")
    response = submit(page, page.get_by_role("button", name="保存"))
    assert response.status == 200
    expect_signed_in_home(page, "部门审核人")
    screenshot(page, "signed-in-after-enrolment")
    sign_out(page)

    # The initial password no longer works; the new one leads to the code page.
    response = sign_in(page, reviewer.username, reviewer.password)
    assert response.status == 401
    sign_in(page, reviewer.username, NEW_PASSWORD)
    assert path_of(page) == "/staff/login/otp"
    screenshot(page, "asked-for-code")
    page.goto("/staff/")
    assert path_of(page) == "/staff/login", "the password alone gives no session"
    page.goto("/staff/login/otp")

    response = enter_code(page, wrong_totp(secret))
    assert response.status == 401
    expect(page.get_by_role("alert")).to_have_text("验证码不正确。")
    screenshot(page, "wrong-code-refused")
    # The enrolment spent the current time step; the next step's code is accepted (one step of clock drift).
    login_code = totp.at(time.time() + totp.interval)
    response = enter_code(page, login_code)
    assert response.status == 200
    expect_signed_in_home(page, "部门审核人")
    screenshot(page, "signed-in-with-code")
    sign_out(page)

    # A code already used is refused; a recovery code works instead.
    sign_in(page, reviewer.username, NEW_PASSWORD)
    response = enter_code(page, login_code)
    assert response.status == 401, "a TOTP code must not be accepted twice"
    response = enter_code(page, recovery_codes[0])
    assert response.status == 200
    expect_signed_in_home(page, "部门审核人")
    screenshot(page, "signed-in-with-recovery-code")
    sign_out(page)

    # ...but only once.
    sign_in(page, reviewer.username, NEW_PASSWORD)
    response = enter_code(page, recovery_codes[0])
    assert response.status == 401, "a recovery code must work only once"
    expect(page.get_by_role("alert")).to_have_text("验证码不正确。")
    screenshot(page, "recovery-code-refused-second-time")
    response = enter_code(page, recovery_codes[1].upper())  # typed in capitals: still the same code
    assert response.status == 200
    expect_signed_in_home(page, "部门审核人")


@pytest.mark.suite_env(IDLE_TIMEOUT_MINUTES="10")
def test_the_password_alone_cannot_replace_or_skip_an_enrolled_second_factor(
    live_suite: LiveSuite, staff: Staff, page: Page, screenshot: Screenshot
) -> None:
    """Half-way through signing in (password right, code not yet given), the enrolment and password pages
    must not let anyone set a new second factor or password and so get in without the enrolled one."""
    reviewer = staff.reviewer
    secret = pyotp.random_base32()
    database = open_service_database(live_suite.settings, "identity")
    try:
        with database.transaction() as session:
            user = session.get(User, reviewer.id)
            assert user is not None
            user.totp_secret, user.totp_enabled, user.must_change_password = secret, True, False
    finally:
        database.dispose()

    sign_in(page, reviewer.username, reviewer.password)
    assert path_of(page) == "/staff/login/otp"
    page.goto("/staff/totp/setup")
    assert path_of(page) == "/staff/login/otp", "enrolment must wait until the enrolled second factor is given"
    expect(page.locator("#totp-secret")).to_have_count(0)
    screenshot(page, "enrolment-refused-before-code")
    page.goto("/staff/password")
    assert path_of(page) == "/staff/login/otp", "no password change before the second factor is given"
    page.goto("/staff/login/continue")
    assert path_of(page) == "/staff/login/otp"
    page.goto("/staff/")
    assert path_of(page) == "/staff/login"
    assert totp_state(live_suite, reviewer.id) == (secret, True)

    page.goto("/staff/login/otp")
    response = enter_code(page, pyotp.TOTP(secret).now())
    assert response.status == 200
    expect_signed_in_home(page, "部门审核人")
