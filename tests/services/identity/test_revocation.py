"""Signing out, and an admin's change to an account, end its identities in every service at once."""

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from services.revocation import RedisRevocations, SqliteRevocations
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD


def csrf_token(client: Client, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


def test_a_copied_session_cookie_stops_working_after_sign_out(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    browser = Client(PathDispatcher(suite))
    browser.post("/staff/login", data={"username": "reviewer_a", "password": STAFF_PASSWORD,
                                       "csrf_token": csrf_token(browser, "/staff/login"), "next": "/staff/"})
    cookie = browser.get_cookie("session")
    assert cookie is not None
    copy = Client(PathDispatcher(suite))
    copy.set_cookie("session", cookie.value)
    assert copy.get("/staff/").status_code == 200
    browser.post("/staff/logout", data={"csrf_token": csrf_token(browser, "/staff/")})
    assert copy.get("/staff/").status_code == 302  # back to the sign-in page


def test_disabling_a_user_ends_their_api_tokens(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    client = Client(PathDispatcher(suite))
    token = client.post("/api/auth/token", json={"username": "editor_b", "password": STAFF_PASSWORD}).get_json()
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    time.sleep(1.05)  # tokens carry whole-second signing times
    admin = Client(PathDispatcher(suite))
    admin.post("/staff/login", data={"username": "admin1", "password": STAFF_PASSWORD,
                                     "csrf_token": csrf_token(admin, "/staff/login"), "next": "/staff/"})
    user_id = org["users"]["editor_b"].id
    page = f"/staff/admin/users/{user_id}"
    assert admin.post(f"{page}/active", data={"active": "0", "csrf_token": csrf_token(admin, page)}).status_code == 302
    assert client.get("/api/auth/me", headers=bearer).status_code == 401


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_revocation_stores_agree(kind: str, tmp_path: Path, redis_url: str) -> None:
    store = SqliteRevocations(tmp_path / "r.sqlite3") if kind == "sqlite" else RedisRevocations(redis_url)
    run = uuid.uuid4().hex  # the shared Redis keeps revocations for 12 hours
    user = int(uuid.uuid4().int % 1_000_000_000)
    issued = time.time() - 5
    assert not store.is_revoked(f"{run}-1", user, issued)
    store.revoke_session(f"{run}-1")
    assert store.is_revoked(f"{run}-1", user, issued)
    assert not store.is_revoked(f"{run}-2", user, issued)
    store.revoke_user(user)
    assert store.is_revoked(f"{run}-2", user, issued)
    assert not store.is_revoked(f"{run}-3", user, time.time() + 5)  # issued after the revocation


def test_an_unreachable_store_does_not_lock_staff_out() -> None:
    store = RedisRevocations("redis://127.0.0.1:1/0")
    assert store.is_revoked("s", 1, time.time()) is False
