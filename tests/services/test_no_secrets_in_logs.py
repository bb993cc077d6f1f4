"""No secret a staff member types or is given ever reaches the logs or the audit log.

A whole sign-in story runs through the real pages and API while every log record is captured, at
DEBUG, by the handler the suite's own ``configure_logging`` installs (its JSON formatter and request
filter), and the raw records (message arguments and ``extra`` fields included) are kept as well:
a wrong password, the right one, TOTP enrolment on ``/staff/totp/setup`` with its recovery codes,
a second factor by TOTP code and by recovery code, a token request with ``otp``, API calls with the
bearer token, and logout. Then neither the captured output nor the audit rows may contain the
passwords, the token, the TOTP secret, the codes used, any recovery code or a session cookie.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from services.observability import configure_logging
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

WRONG_PASSWORD = "Wrong-Horse-17?"
USERNAME = "reviewer_a"
"""A reviewer in KJTA: may list the staff of KJTA through the API."""


@dataclass
class Captured:
    stream: io.StringIO
    caplog: pytest.LogCaptureFixture

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def text(self) -> str:
        """What the suite's handler wrote, and every raw record with all its attributes."""
        raw = "\n".join(repr(record.__dict__) + " " + record.getMessage() for record in self.caplog.records)
        return self.stream.getvalue() + "\n" + raw


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    """Every log record at DEBUG through the suite's real handler (restored afterwards)."""
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    caplog.set_level(logging.DEBUG)  # remembers the root level to restore
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        configure_logging("identity", "DEBUG", json_lines=True)  # its handler writes to this stream
    assert root.level == logging.DEBUG
    try:
        yield Captured(stream, caplog)
    finally:
        for handler in list(root.handlers):
            if handler not in handlers_before:
                root.removeHandler(handler)
        for handler in handlers_before:
            if handler not in root.handlers:
                root.addHandler(handler)


@dataclass
class Browser:
    """One staff member's browser and API client, remembering every session cookie it was given."""

    client: Client
    address: str
    cookies: set[str] = field(default_factory=set)

    def send(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        answer = self.client.open(path, method=method, environ_base={"REMOTE_ADDR": self.address}, **kwargs)
        for header in answer.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if name == "session" and value:
                self.cookies.add(value)
        return answer

    def csrf(self, path: str) -> str:
        page = self.send("GET", path)
        assert page.status_code == 200, path
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        assert match, path
        return match.group(1)

    def password_step(self, password: str) -> TestResponse:
        return self.send("POST", "/staff/login", data={
            "csrf_token": self.csrf("/staff/login"), "username": USERNAME, "password": password, "next": "/staff/",
        })

    def logout(self) -> None:
        answer = self.send("POST", "/staff/logout", data={"csrf_token": self.csrf("/staff/")})
        assert (answer.status_code, answer.headers["Location"]) == (302, "/staff/login")
        assert self.send("GET", "/staff/").status_code == 302


class Authenticator:
    """An authenticator app: each code from a time step after the last one used (the suite refuses replays)."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step: int | None = None
        self.used: list[str] = []

    def next_code(self) -> str:
        now = int(time.time()) // self.totp.interval
        step = now - 1 if self.last_step is None else max(self.last_step + 1, now - 1)
        assert step <= now + 1, "the test ran out of TOTP time steps"
        self.last_step = step
        code = self.totp.at(step * self.totp.interval)
        self.used.append(code)
        return code


def _access_lines(captured: Captured) -> set[str]:
    return {line["message"] for line in captured.lines() if line.get("logger") == "gongkai.access"}


def _sign_in_story(browser: Browser) -> dict[str, Any]:
    """Run every step; returns what must stay secret."""
    assert browser.password_step(WRONG_PASSWORD).status_code == 401
    answer = browser.password_step(STAFF_PASSWORD)
    assert (answer.status_code, answer.headers["Location"]) == (302, "/staff/")

    # Enrol a second factor through the pages, as the staff member would.
    setup = browser.send("GET", "/staff/totp/setup")
    assert setup.status_code == 200
    secret_match = re.search(r'<code id="totp-secret">([A-Z2-7]{16,})</code>', setup.get_data(as_text=True))
    assert secret_match
    app = Authenticator(secret_match.group(1))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', setup.get_data(as_text=True))
    assert csrf
    shown = browser.send("POST", "/staff/totp/setup", data={"csrf_token": csrf.group(1), "code": app.next_code()})
    assert shown.status_code == 200
    recovery_codes = re.findall(r"<code>([0-9a-f]{6}-[0-9a-f]{6})</code>", shown.get_data(as_text=True))
    assert len(recovery_codes) == 10
    browser.logout()

    # Second factor by TOTP code.
    assert browser.password_step(STAFF_PASSWORD).headers["Location"] == "/staff/login/otp"
    answer = browser.send("POST", "/staff/login/otp",
                          data={"csrf_token": browser.csrf("/staff/login/otp"), "code": app.next_code()})
    assert (answer.status_code, answer.headers["Location"]) == (302, "/staff/")
    browser.logout()

    # Second factor by recovery code.
    assert browser.password_step(STAFF_PASSWORD).headers["Location"] == "/staff/login/otp"
    answer = browser.send("POST", "/staff/login/otp",
                          data={"csrf_token": browser.csrf("/staff/login/otp"), "code": recovery_codes[0]})
    assert (answer.status_code, answer.headers["Location"]) == (302, "/staff/")
    assert browser.send("GET", "/staff/").status_code == 200

    # The API: a wrong password, then a token with a TOTP code, then calls with it.
    refused = browser.send("POST", "/api/auth/token", json={"username": USERNAME, "password": WRONG_PASSWORD})
    assert refused.status_code == 401
    issued = browser.send("POST", "/api/auth/token",
                          json={"username": USERNAME, "password": STAFF_PASSWORD, "otp": app.next_code()})
    assert issued.status_code == 200, issued.get_json()
    token = issued.get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    me = browser.send("GET", "/api/auth/me", headers=bearer)
    assert (me.status_code, me.get_json()["username"]) == (200, USERNAME)
    assert browser.send("GET", "/api/identity/departments/KJTA/staff", headers=bearer).status_code == 200

    browser.logout()
    return {
        "right password": STAFF_PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "bearer token": token,
        "TOTP secret": app.totp.secret,
        **{f"TOTP code {n}": code for n, code in enumerate(app.used, start=1)},
        **{f"recovery code {n}": code for n, code in enumerate(recovery_codes, start=1)},
        **{f"session cookie {n}": value for n, value in enumerate(sorted(browser.cookies), start=1)},
    }


def _leaks(haystack: str, secrets: dict[str, str]) -> list[str]:
    found = []
    for label, secret in secrets.items():
        variants = {secret, secret.replace("-", ""), secret.lower(), json.dumps(secret)[1:-1]}
        for variant in variants:
            # Short codes only count standing alone, not inside a hex request id or hash.
            pattern = rf"(?<![0-9A-Za-z]){re.escape(variant)}(?![0-9A-Za-z])" if len(variant) <= 13 else (
                re.escape(variant)
            )
            if re.search(pattern, haystack):
                found.append(label)
                break
    return found


def test_no_secrets_in_logs_or_audit(suite: dict[str, Flask], org: dict[str, Any], captured: Captured) -> None:
    browser = Browser(Client(PathDispatcher(suite)), f"10.252.{uuid.uuid4().int % 250}.1")
    secrets = _sign_in_story(browser)
    assert len(browser.cookies) >= 4
    assert len([label for label in secrets if label.startswith("TOTP code")]) == 3

    # Fail-able: the capture really saw this run, through the suite's JSON handler.
    lines = captured.lines()
    assert lines, "nothing was captured"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = _access_lines(captured)
    for expected in (
        "POST /staff/login 401", "POST /staff/login 302", "GET /staff/totp/setup 200", "POST /staff/totp/setup 200",
        "POST /staff/login/otp 302", "POST /api/auth/token 401", "POST /api/auth/token 200", "GET /api/auth/me 200",
        "GET /api/identity/departments/KJTA/staff 200", "POST /staff/logout 302",
    ):
        assert expected in access, f"no access line {expected!r} in {sorted(access)}"
    assert any(line.get("request_id") and line.get("duration_ms") is not None for line in lines)
    assert captured.caplog.records

    leaked = _leaks(captured.text(), secrets)
    assert not leaked, f"found in the logs: {leaked}"

    rows = _audit_rows(suite)
    actions = {(row["action"], row["result"]) for row in rows}
    for action in (("login.password", "failure"), ("login.password", "success"), ("totp.enrol", "success"),
                   ("login.second_factor", "success"), ("login", "success"), ("token.issue", "success"),
                   ("logout", "success")):
        assert action in actions, f"no audit entry {action} in {sorted(actions)}"
    leaked = _leaks("\n".join(json.dumps(row, ensure_ascii=False, default=str) for row in rows), secrets)
    assert not leaked, f"found in the audit log: {leaked}"


def _audit_rows(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from services.db import get_database
    from services.identity.models import AuditEntry

    with get_database("identity", suite["identity"]).transaction() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        columns = [column.key for column in AuditEntry.__table__.columns]
        return [{column: getattr(entry, column) for column in columns} for entry in entries]
