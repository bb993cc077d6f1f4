"""Browser tests: the whole suite on a loopback port, driven by Debian's Chromium through Playwright.

Nothing is downloaded: Playwright launches the system Chromium (``/usr/bin/chromium``; CI installs
it in ``.ci/run``). Each test gets its own suite on a fresh SQLite data directory, migrated, with a
short idle timeout and lockout threshold, and a fresh browser context. Screenshots of the important
steps go to ``test-artifacts/browser/`` at the repository root (git-ignored) for people to look at.

Settings for one test: ``@pytest.mark.suite_env(IDLE_TIMEOUT_MINUTES="5")``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from services.db import EXTENSION_KEY, open_service_database
from services.identity.accounts import assign_role, create_department, create_user
from services.identity.models import RolePolicy
from services.migrations import migrate_all
from services.permissions import Role
from services.settings import Settings, load_settings
from services.suite import PathDispatcher, create_suite

from support.env import base_env
from support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("GONGKAI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BROWSER_REQUIRED = os.environ.get("GONGKAI_BROWSER_REQUIRED", "") not in ("", "0")
"""Set by ``.ci/run``: a missing Chromium fails the run there instead of skipping these tests."""

IDLE_TIMEOUT_MINUTES = "0.05"
"""3 seconds: long enough for a few clicks, short enough to wait out in a test."""
LOCKOUT_THRESHOLD = 3

SUITE_ENV = {
    "IDLE_TIMEOUT_MINUTES": IDLE_TIMEOUT_MINUTES,
    "LOCKOUT_THRESHOLD": str(LOCKOUT_THRESHOLD),
    "LOCKOUT_WINDOW_MINUTES": "15",
    "LOCKOUT_MINUTES": "15",
    # Every sign-in page POST (login, code, password, logout) counts against one loopback address;
    # a test makes more than the production 10 a minute. The limiter is not what these tests check.
    "LOGIN_RATE_LIMIT": "1000 per minute",
}

INITIAL_PASSWORD = "Initial-Pass-2024!"
NEW_PASSWORD = "Changed-Pass-2025#"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "suite_env(**settings): extra settings for the browser tests' live suite")


# -- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, once for the session (never a downloaded one)."""
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not executable:
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
        if BROWSER_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    chromium = playwright_driver.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# -- the suite on a loopback port ------------------------------------------------------


@dataclass
class LiveSuite:
    url: str
    settings: Settings
    app: PathDispatcher

    def __call__(self, path: str) -> str:
        return self.url + path

    @property
    def idle_timeout_seconds(self) -> float:
        return self.settings.idle_timeout_minutes * 60


def _serve(app: PathDispatcher) -> tuple[BaseWSGIServer, str]:
    for _attempt in range(5):  # free_port() may be taken again before we bind
        port = free_port()
        try:
            return make_server("127.0.0.1", port, app, threaded=True), f"http://127.0.0.1:{port}"
        except OSError:
            continue
    raise RuntimeError("no free loopback port for the browser tests' suite")


@pytest.fixture
def live_suite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveSuite]:
    """The suite on a spare loopback port in a background thread, on a fresh migrated data dir."""
    overrides = dict(SUITE_ENV)
    for marker in reversed(list(request.node.iter_markers("suite_env"))):
        overrides.update({key: str(value) for key, value in marker.kwargs.items()})
    settings = load_settings(base_env(tmp_path / "data", **overrides))
    migrate_all(settings)
    app = create_suite(settings)
    server, url = _serve(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="live-suite",
                              daemon=True)
    thread.start()
    try:
        yield LiveSuite(url, settings, app)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        for flask_app in app.apps.values():
            for database in flask_app.extensions.get(EXTENSION_KEY, {}).values():
                database.dispose()


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: Role


@dataclass
class Staff:
    department: str
    editor: Account
    reviewer: Account
    """Holds a role whose policy requires a second factor; still on the initial password, no TOTP yet."""
    admin: Account


@pytest.fixture
def staff(live_suite: LiveSuite) -> Staff:
    """One department; a plain editor and an admin (passwords already changed), and a first-login reviewer."""
    database = open_service_database(live_suite.settings, "identity")
    try:
        with database.transaction() as session:
            department = create_department(session, "KJT", "科学技术厅", "bureau", None)
            session.add(RolePolicy(role=Role.REVIEWER.value, mfa_required=True))
            accounts = {}
            for username, display_name, role in (
                ("editor1", "编辑甲", Role.EDITOR),
                ("reviewer1", "审核人乙", Role.REVIEWER),
                ("admin1", "管理员丙", Role.ADMIN),
            ):
                user = create_user(session, live_suite.settings, username=username, display_name=display_name,
                                   password=INITIAL_PASSWORD)
                assign_role(session, user, role, department)
                user.must_change_password = role is Role.REVIEWER
                accounts[role] = Account(user.id, username, INITIAL_PASSWORD, role)
    finally:
        database.dispose()
    return Staff("KJT", accounts[Role.EDITOR], accounts[Role.REVIEWER], accounts[Role.ADMIN])


# -- pages and screenshots -------------------------------------------------------------


@pytest.fixture
def new_page(browser: Browser, live_suite: LiveSuite) -> Iterator[Callable[[], Page]]:
    """Opens a page in a fresh browser context (its own cookies: one person per context)."""
    contexts: list[BrowserContext] = []

    def open_page() -> Page:
        context = browser.new_context(base_url=live_suite.url, locale="zh-CN", viewport={"width": 1100, "height": 800})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


Screenshot = Callable[[Page, str], Path]


@pytest.fixture
def screenshot(
    request: pytest.FixtureRequest, artifacts_dir: Path, new_page: Callable[[], Page]
) -> Iterator[Screenshot]:
    """``screenshot(page, "step")`` saves test-artifacts/browser/<test>-<nn>-<step>.png (a full page).

    When the test fails, the last page photographed is saved once more as it was at the failure.
    (Depends on ``new_page`` so that it is torn down while the pages are still open.)
    """
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    for old in artifacts_dir.glob(f"{prefix}-*.png"):
        old.unlink()
    taken: list[tuple[Page, Path]] = []

    def take(page: Page, step: str) -> Path:
        path = artifacts_dir / f"{prefix}-{len(taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append((page, path))
        return path

    yield take
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and taken:
        last_page = taken[-1][0]
        if not last_page.is_closed():
            take(last_page, "FAILED")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
