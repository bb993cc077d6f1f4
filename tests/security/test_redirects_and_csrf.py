"""Open redirects and cross-site request forgery.

Redirects: after signing in (``next=``), after a language switch (``/lang/<code>?next=``) and on the 长者模式
switch (``/elder-mode?return_to=``), every way of writing "another site" ends on a path of this site.

CSRF: every state-changing page rule of the URL map (POST, PUT, PATCH, DELETE outside ``/api/``) is sent
as a signed-in member of staff who may use it, without a token and with another session's token: 400,
and no table of any service changes. The bearer-token APIs ignore the session cookie: a signed-in
browser's cookie alone (with or without a CSRF token) gets 401 from every non-public API endpoint, for
every method, and changes nothing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from services.auth import access_rule
from services.permissions import GRANTS, Permission, Role
from services.suite import owner_of

from support.org import STAFF_PASSWORD

ELSEWHERE: tuple[str, ...] = (
    "//evil.example",
    "///evil.example",
    "////evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "\\/evil.example",
    "https://evil.example",
    "HTTPS://evil.example/staff/",
    "http:evil.example",
    "https:/evil.example",
    "http:\\\\evil.example",
    "javascript:alert(document.cookie)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "%252F%252Fevil.example",
    "/%5Cevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "//evil.example/%2F..",
    "/.//evil.example",
    "@evil.example",
    "evil.example",
    "／／evil.example",
    "//evil。example",
    "https://127.0.0.1.evil.example",
)
"""Scheme-relative, backslashed, absolute, script, encoded, double-encoded, whitespace-broken and
full-width ways to another site."""


def _lands_here(location: str) -> bool:
    """Whether a browser following ``Location`` stays on this site (it drops tabs and newlines, and reads a
    backslash as a slash)."""
    seen = re.sub(r"[\t\r\n]", "", location).replace("\\", "/")
    parts = urlsplit(seen)
    if parts.scheme or parts.netloc:
        return parts.scheme in ("http", "https") and parts.netloc == "localhost"
    return seen.startswith("/") and not seen.startswith("//")


def test_no_redirect_leaves_the_site(site: Any) -> None:
    failures: list[str] = []
    checks = 0
    for target in ELSEWHERE:
        # The sign-in form carries next= through; the sign-in ends there.
        browser = site.browser()
        form = browser.get("/staff/login", query_string={"next": target}).get_data(as_text=True)
        carried = re.search(r'name="next" value="([^"]*)"', form)
        assert carried, "the sign-in form lost its next field"
        answer = browser.post_form("/staff/login", {"username": "editor_a", "password": STAFF_PASSWORD,
                                                    "next": target})
        for label, response in (
            ("sign-in", answer),
            ("language", site.browser().get("/lang/en", query_string={"next": target})),
            ("elder mode on", site.browser().get("/elder-mode", query_string={"on": "1", "return_to": target})),
            ("elder mode off", site.browser().get("/elder-mode", query_string={"on": "0", "return_to": target})),
        ):
            checks += 1
            location = response.headers.get("Location", "")
            if response.status_code not in (301, 302, 303, 307, 308) or not _lands_here(location):
                failures.append(f"{label} {target!r}: {response.status_code} → {location!r}")
        checks += 1
        if not _lands_here(carried.group(1).replace("&amp;", "&")):
            failures.append(f"sign-in form next={target!r} carried as {carried.group(1)!r}")
    # A path on this site is kept (the switch is useful): the check is not "always go home".
    kept = site.browser().get("/elder-mode", query_string={"on": "1", "return_to": "/consult/answers?page=2"})
    assert kept.headers["Location"] == "/consult/answers?page=2"
    signed = site.browser().post_form("/staff/login", {"username": "editor_a", "password": STAFF_PASSWORD,
                                                       "next": "/consult/staff/"})
    assert signed.headers["Location"] == "/consult/staff/"
    print(f"\n[attack] redirects: {len(ELSEWHERE)} targets x 5 redirects = {checks} checks")
    assert not failures, "\n".join(failures)


# -- CSRF ------------------------------------------------------------------------------------------

FORM_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ROLE_ORDER = (Role.DISCLOSURE_OFFICE, Role.EDITOR, Role.REVIEWER, Role.DISPATCHER, Role.PRESS_OFFICER, Role.AUDITOR,
              Role.ADMIN)


def _user_for(access: Any) -> str | None:
    assert access is not None
    if access.kind == "public":
        return None
    if access.kind == "signed_in":
        return "editor_a"
    permission: Permission = access.permission
    role = next(role for role in ROLE_ORDER if role in GRANTS[permission])
    return "admin1" if role is Role.ADMIN else f"{role.value}_a"


def _state_changing_rules(site: Any, *, api: bool) -> list[tuple[str, Any, str]]:
    found = []
    for name, app in site.suite.items():
        for rule in app.url_map.iter_rules():
            if owner_of(rule.rule) != name or rule.rule.startswith("/api/") != api:
                continue
            for method in sorted(FORM_METHODS & set(rule.methods or ())):
                found.append((name, rule, method))
    return found


def _plausible_form(rule: Any) -> dict[str, str]:
    """Fields a real form of this rule would send, so that only the missing token can refuse it."""
    return {"username": "csrf_victim", "password": STAFF_PASSWORD, "display_name": "样例", "text": "样例",
            "reply": "样例", "title": "样例", "question": "请问如何办理？", "name": "王五", "phone": "13900000000",
            "role": "editor", "department": "KJTA", "active": "0", "rating": "satisfied", "next": "/staff/",
            "new_password": "Another-Horse-42!", "confirm_password": "Another-Horse-42!", "code": "000000",
            "lines": "2027-01-01 休 元旦", "year": "2027"}


def test_every_state_changing_form_needs_the_token(site: Any) -> None:
    records = site.seed()
    rules = _state_changing_rules(site, api=False)
    assert len(rules) > 40
    browsers: dict[str | None, Any] = {}
    for name, rule, _method in rules:
        user = _user_for(access_rule(site.suite[name], rule.endpoint))
        if user not in browsers:
            browsers[user] = site.browser(user) if user else site.browser()
    other_session_token = site.browser("reviewer_a").csrf("/staff/")
    before = site.row_counts()
    failures: list[str] = []
    checks = 0
    for name, rule, method in rules:
        browser = browsers[_user_for(access_rule(site.suite[name], rule.endpoint))]
        path = site.path_for(name, rule, records)
        for label, extra in (("no token", {}), ("another session's token", {"csrf_token": other_session_token}),
                             ("a forged token", {"csrf_token": "IjAwMDAi.forged.token"})):
            answer = browser.open(path, method, data={**_plausible_form(rule), **extra})
            checks += 1
            if answer.status_code != 400:
                failures.append(f"{method} {path} with {label}: {answer.status_code}")
    after = site.row_counts()
    changed = {table: (before[table], after[table]) for table in before if before[table] != after[table]}
    # Every browser is still signed in: not even the sign-out went through.
    for user, browser in browsers.items():
        if user is not None:
            assert browser.get("/staff/").status_code == 200, f"{user} was signed out"
    # The same request with the session's own token goes through: only the token was missing.
    editor = browsers["editor_a"]
    signed_out = editor.open("/staff/logout", "POST", data={"csrf_token": editor.csrf("/staff/")})
    assert signed_out.status_code == 302 and editor.get("/staff/").status_code == 302
    print(f"\n[attack] csrf: {len(rules)} state-changing page rules x 3 forgeries = {checks} checks")
    assert not failures, "\n".join(failures)
    assert not changed, f"a forged form changed stored rows: {changed}"


def test_apis_ignore_the_session_cookie(site: Any) -> None:
    """A page's session cookie (and its CSRF token) never authorises an API call: 401, nothing changed."""
    records = site.seed()
    browsers: dict[str, Any] = {}
    targets = []
    for name, rule, method in _state_changing_rules(site, api=True) + [
            (name, rule, "GET") for name, app in site.suite.items() for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/") and owner_of(rule.rule) == name and "GET" in (rule.methods or ())]:
        access = access_rule(site.suite[name], rule.endpoint)
        if access is None or access.kind == "public":
            continue
        user = _user_for(access)
        assert user is not None
        if user not in browsers:
            browsers[user] = site.browser(user)
        targets.append((name, rule, method, user))
    before = site.row_counts()
    failures = []
    for name, rule, method, user in targets:
        browser = browsers[user]
        path = site.path_for(name, rule, records)
        token = browser.csrf("/staff/")
        for label, kwargs in (("cookie", {"json": {}}), ("cookie + CSRF header", {
                "json": {}, "headers": {"X-CSRFToken": token}}), ("cookie + form token", {"data": {
                    "csrf_token": token}})):
            answer = browser.open(path, method, **kwargs)
            if answer.status_code != 401 or "Bearer" not in answer.headers.get("WWW-Authenticate", ""):
                failures.append(f"{method} {path} ({label} of {user}): {answer.status_code}")
    after = site.row_counts()
    changed = {table: (before[table], after[table]) for table in before if before[table] != after[table]}
    print(f"\n[attack] csrf (APIs): {len(targets)} staff API endpoints x 3 cookie-only calls = "
          f"{3 * len(targets)} checks")
    assert not failures, "\n".join(failures)
    assert not changed, changed
