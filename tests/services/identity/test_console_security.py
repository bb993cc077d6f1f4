"""Web protections of the staff console and the token API, as a browser or a script meets them."""

import re
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from werkzeug.test import Client

from services.db import get_database
from services.identity.accounts import confirm_totp_enrolment, start_totp_enrolment
from services.identity.models import User
from services.portal import create_app as create_portal
from services.settings import load_settings
from services.suite import PathDispatcher

from support.env import base_env
from support.org import STAFF_PASSWORD


@pytest.fixture
def client(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite))


def csrf_token(client: Client, path: str = "/staff/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


def sign_in(client: Client, username: str, password: str = STAFF_PASSWORD, next_path: str = "/staff/") -> Any:
    return client.post(
        "/staff/login",
        data={"username": username, "password": password, "csrf_token": csrf_token(client), "next": next_path},
    )


def test_forms_without_a_csrf_token_are_refused(client: Client, org: dict[str, Any]) -> None:
    refused = client.post("/staff/login", data={"username": "admin1", "password": STAFF_PASSWORD})
    assert refused.status_code == 400
    assert sign_in(client, "admin1").status_code == 302
    assert client.post("/staff/logout").status_code == 400  # signed in, still no token: refused


def test_sign_in_redirects_only_within_the_site(client: Client, org: dict[str, Any]) -> None:
    assert sign_in(client, "admin1", next_path="/staff/admin/users").headers["Location"] == "/staff/admin/users"
    client.post("/staff/logout", data={"csrf_token": csrf_token(client, "/staff/")})
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert sign_in(client, "admin1", next_path=target).headers["Location"] == "/staff/"
        client.post("/staff/logout", data={"csrf_token": csrf_token(client, "/staff/")})


def test_security_headers_and_cookie_flags(client: Client, org: dict[str, Any]) -> None:
    page = client.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in page.headers  # not on TLS here
    signed = sign_in(client, "admin1")
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert client.get("/staff/").headers["Cache-Control"] == "no-store"


def test_behind_tls_adds_hsts_and_secure_cookies(tmp_path: Path) -> None:
    app = create_portal(load_settings(base_env(tmp_path, BEHIND_TLS="true")))
    answer = app.test_client().get("/healthz")
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_apis_take_bearer_tokens_not_cookies(client: Client, org: dict[str, Any]) -> None:
    sign_in(client, "reviewer_a")
    assert client.get("/staff/").status_code == 200
    assert client.get("/api/auth/me").status_code == 401


def test_token_api_answers(client: Client, suite: dict[str, Flask], org: dict[str, Any]) -> None:
    assert client.post("/api/auth/token", json={}).status_code == 422
    wrong = client.post("/api/auth/token", json={"username": "editor_a", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == 401

    database = get_database("identity", suite["identity"])
    settings = suite["identity"].extensions["gongkai.settings"]
    with database.transaction() as session:
        user = session.query(User).filter_by(username="reviewer_b").one()
        secret = start_totp_enrolment(user)
        confirm_totp_enrolment(session, settings, user, pyotp.TOTP(secret).now())
        newbie = session.query(User).filter_by(username="editor_b").one()
        newbie.must_change_password = True
    missing = client.post("/api/auth/token", json={"username": "reviewer_b", "password": STAFF_PASSWORD})
    assert missing.status_code == 401
    assert "otp" in missing.get_json()["errors"]["json"]
    forced = client.post("/api/auth/token", json={"username": "editor_b", "password": STAFF_PASSWORD})
    assert forced.status_code == 403

    token = client.post("/api/auth/token", json={"username": "editor_a", "password": STAFF_PASSWORD}).get_json()
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token['token']}"}).get_json()
    assert me["grants"] == [{"role": "editor", "department": "KJTA"}]
    tampered = token["token"][:-2] + ("AA" if not token["token"].endswith("AA") else "BB")
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401

    for _ in range(settings.lockout_threshold):
        client.post("/api/auth/token", json={"username": "editor_a", "password": "nope"})
    assert client.post("/api/auth/token", json={"username": "editor_a", "password": STAFF_PASSWORD}).status_code == 423


def test_sign_in_is_rate_limited(client: Client, suite: dict[str, Flask], org: dict[str, Any]) -> None:
    allowed = int(suite["identity"].extensions["gongkai.settings"].login_rate_limit.split()[0])
    statuses = [
        client.post("/api/auth/token", json={"username": f"nobody{n}", "password": "x"}).status_code
        for n in range(allowed + 2)
    ]
    assert statuses[:allowed] == [401] * allowed
    assert statuses[allowed:] == [429, 429]
    token = csrf_token(client)
    pages = [client.post("/staff/login", data={"csrf_token": token}).status_code for _ in range(allowed + 1)]
    assert pages[-1] == 429
