"""SQL injection and hostile strings in every filter and query parameter of every list and page.

The endpoints are not listed by hand: every GET rule of every app is tried, as the caller its access rule
lets in (the public, or a staff member of division KJTA holding the permission), with the query
parameters its OpenAPI document names (APIs) or its own forms and links carry (pages), plus the usual
filter names. Each hostile string goes into all of them at once, and the sharpest ones into each
parameter alone (a refused neighbour must not hide an unchecked one); string path arguments get them
too. The answer is always 2xx/3xx/4xx, never a 5xx, and afterwards every table of every service holds as
many rows as before. The sign-in, token and tracking forms get the classic strings in their fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from lxml import html as lxml_html
from werkzeug.routing import Rule

from services.auth import access_rule
from services.permissions import GRANTS, Permission, Role
from services.suite import owner_of

HOSTILE: tuple[str, ...] = (
    "' OR 1=1--",
    "1; DROP TABLE consultations;--",
    "1' UNION SELECT NULL,NULL,version()--",
    "%'",
    "_",
    "\\",
    "’ OR ‘1’=‘1",  # unicode quotes
    "＇ OR １=１--",  # full-width quote and digits (NFKC folds them to ASCII)
    "\x00",
    "x" * 5000,
    "-1",
    "1e309",
    "99999999999999999999999",
    "2026-13-45",
    "\udcff",  # sent as the byte 0xFF: not UTF-8 at all
)
SHARPEST: tuple[str, ...] = ("' OR 1=1--", "\x00")
"""Tried in each parameter alone."""
FEW: tuple[str, ...] = ("' OR 1=1--", "\x00", "x" * 5000)
"""Tried (in the usual filter names at once) on endpoints that document and show no parameter."""

FILTER_NAMES: tuple[str, ...] = (
    "q", "page", "per_page", "department", "category", "month", "year", "state", "due", "flagged", "needs_routing",
    "window", "as_of", "type", "level", "form", "validity", "date_from", "date_to", "sort", "kind", "topic",
    "week", "days", "username", "action", "start", "end", "from", "to", "limit", "open", "code", "lang", "debug",
    "policy_q", "preview", "done", "timeout",
)
"""Parameters tried on every endpoint (besides those its documentation and forms name)."""

SKIPPED_PREFIXES = ("/static/", "/press/static/", "/metrics")
"""Static files (traversal in file paths is tested with the downloads) and the metrics text."""

ROLE_ORDER = (Role.DISCLOSURE_OFFICE, Role.EDITOR, Role.REVIEWER, Role.DISPATCHER, Role.PRESS_OFFICER, Role.AUDITOR,
              Role.ADMIN)

LOGGING_TABLES = frozenset({"search.query_log", "identity.audit_entry", "identity.audit_head"})
"""Tables a GET may add to: the public search log (a normalised query, never an address) and the audit
log (a download is audited). Outbox rows may grow by audit events only."""


def _actor_for(permission: Permission | None) -> str | None:
    if permission is None:
        return None
    for role in ROLE_ORDER:
        if role in GRANTS[permission]:
            return "admin1" if role is Role.ADMIN else f"{role.value}_a"
    raise AssertionError(f"no role holds {permission}")


def _user_for(access: Any) -> str | None:
    """Who calls an endpoint: the public, or a staff member of KJTA its rule lets in."""
    assert access is not None
    if access.kind == "permission":
        return _actor_for(access.permission)
    return "editor_a" if access.kind == "signed_in" else None


def _get_rules(site: Any) -> Iterator[tuple[str, Rule]]:
    for name, app in site.suite.items():
        for rule in app.url_map.iter_rules():
            if "GET" not in (rule.methods or ()) or owner_of(rule.rule) != name:
                continue
            if rule.rule.startswith(SKIPPED_PREFIXES) or "/docs" in rule.rule or rule.rule.endswith(
                    "openapi.json"):
                continue
            yield name, rule


def _documented_parameters(site: Any) -> dict[str, list[str]]:
    """Flask rule → the query parameters its OpenAPI document names."""
    documented: dict[str, list[str]] = {}
    for service in ("identity", "interpret", "consult", "search", "press", "portal"):
        document = site.api(None, "GET", f"/api/{service}/openapi.json").get_json()
        for path, operations in document["paths"].items():
            get = operations.get("get")
            if get is None:
                continue
            rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
            documented[rule] = [p["name"] for p in get.get("parameters", []) if p.get("in") == "query"]
    return documented


def _page_parameters(html: str, path: str) -> set[str]:
    """The names a page's GET forms send and its links to itself carry."""
    if not html.strip():
        return set()
    document = lxml_html.document_fromstring(html)
    names: set[str] = set()
    for form in document.iter("form"):
        if (form.get("method") or "get").lower() != "get":
            continue
        names |= {field.get("name") for field in form.iter("input", "select", "textarea") if field.get("name")}
    for link in document.iter("a"):
        parts = urlsplit(link.get("href") or "")
        if parts.query and (not parts.path or parts.path == path):
            names |= {key for key, _value in parse_qsl(parts.query, keep_blank_values=True)}
    return names


def _plain_rule(rule: Rule) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)


class Attempts:
    def __init__(self, site: Any) -> None:
        self.site = site
        self.count = 0
        self.endpoints: set[str] = set()
        self.parameters: set[tuple[str, str]] = set()
        self.failures: list[str] = []
        self.browsers: dict[str, Any] = {}

    def send(self, user: str | None, is_api: bool, path: str, parameters: dict[str, str] | None, label: str) -> Any:
        # Lone surrogates go out as the raw bytes they stand for (invalid UTF-8), as a hostile client sends them.
        query = urlencode(parameters, errors="surrogateescape") if parameters else None
        if is_api or user is None:
            answer = self.site.api(user, "GET", path, query_string=query)
        else:
            if user not in self.browsers:
                self.browsers[user] = self.site.browser(user)
            answer = self.browsers[user].get(path, query_string=query)
        self.count += 1
        if answer.status_code >= 500:
            self.failures.append(f"{label}: {answer.status_code} {answer.get_data()[:200]!r}")
        return answer


def test_hostile_strings_in_every_parameter_of_every_get_endpoint(site: Any) -> None:
    records = site.seed()
    documented = _documented_parameters(site)
    attempts = Attempts(site)
    for name, rule in _get_rules(site):
        user = _user_for(access_rule(site.suite[name], rule.endpoint))
        if user is not None and user not in attempts.browsers:
            attempts.browsers[user] = site.browser(user)  # signed in before counting: a sign-in is stored
            site.token(user)
    before, audit_events = site.row_counts(), site.outbox_topics()
    for name, rule in _get_rules(site):
        user = _user_for(access_rule(site.suite[name], rule.endpoint))
        is_api = rule.rule.startswith("/api/")
        path = site.path_for(name, rule, records)
        attempts.endpoints.add(f"{name}:{rule.endpoint}")
        own = set(documented.get(_plain_rule(rule), []))
        if not is_api:
            plain = attempts.send(user, is_api, path, None, f"{path} plain")
            if plain.mimetype == "text/html":
                own |= _page_parameters(plain.get_data(as_text=True), path)
        names = sorted(own | set(FILTER_NAMES))
        for hostile in HOSTILE if own else FEW:
            attempts.send(user, is_api, path, dict.fromkeys(names, hostile), f"{path} all={hostile[:30]!r}")
        for parameter in sorted(own):
            attempts.parameters.add((path, parameter))
            for hostile in SHARPEST:
                attempts.send(user, is_api, path, {parameter: hostile}, f"{path} {parameter}={hostile[:30]!r}")
        # String path arguments (a tracking number, a document id, a department code) get them too.
        for argument in rule.arguments:
            if rule._converters[argument].regex == r"\d+":
                continue
            for hostile in HOSTILE:
                if "\x00" in hostile or "\udcff" in hostile:
                    continue  # not representable in a URL path the router would pass on
                attempts.parameters.add((rule.rule, argument))
                hostile_path = site.path_for(name, rule, records, **{argument: hostile})
                attempts.send(user, is_api, hostile_path, None, f"{rule.rule} {argument}={hostile[:30]!r}")
    after = site.row_counts()
    changed = {table: (before[table], after.get(table)) for table in before
               if before[table] != after.get(table) and table not in LOGGING_TABLES
               and not table.endswith(".outbox_event")}
    new_events = site.outbox_topics() - audit_events
    assert {topic for _service, topic in new_events} <= {"audit.recorded"}, new_events
    print(f"\n[attack] injection: {len(HOSTILE)} payloads x {len(attempts.parameters)} parameters of "
          f"{len(attempts.endpoints)} GET endpoints = {attempts.count} requests")
    assert not attempts.failures, f"{len(attempts.failures)} answers were 5xx:\n" + "\n".join(attempts.failures[:60])
    assert not changed, f"GET requests changed stored rows: {changed}"
    assert len(attempts.endpoints) > 60


def _form_body(fields: dict[str, str]) -> dict[str, Any]:
    """A url-encoded form body as a hostile client sends it (a lone surrogate as the raw byte it stands for)."""
    return {"data": urlencode(fields, errors="surrogateescape"), "content_type": "application/x-www-form-urlencoded"}


def _json_body(fields: dict[str, str]) -> dict[str, Any]:
    """A JSON body; a lone surrogate travels as its ``\\udcff`` escape, which a JSON parser accepts."""
    return {"data": json.dumps(fields), "content_type": "application/json"}


def test_hostile_strings_in_the_sign_in_token_and_tracking_forms(site: Any) -> None:
    """The classic strings as a username, a password, a tracking number and a query code: refused, never
    a 5xx, nobody signed in, nothing stored."""
    records = site.seed()
    number = records["tracking_number"]
    before = site.row_counts()
    failures: list[str] = []
    tries = 0
    for hostile in HOSTILE:
        browser = site.browser()
        login = browser.open("/staff/login", "POST", **_form_body({
            "csrf_token": browser.csrf(), "username": hostile, "password": hostile, "next": "/staff/"}))
        token = site.api(None, "POST", "/api/auth/token", **_json_body({"username": hostile, "password": hostile}))
        tracker = site.browser()
        tracked = tracker.open("/consult/track", "POST", **_form_body({
            "csrf_token": tracker.csrf("/consult/track"), "tracking_number": hostile, "code": hostile}))
        tracked_api = site.api(None, "GET", f"/api/consult/consultations/{number}",
                               query_string=urlencode({"code": hostile}, errors="surrogateescape"))
        rated = site.api(None, "POST", f"/api/consult/consultations/{number}/rating",
                         **_json_body({"code": hostile, "rating": hostile}))
        for label, answer, allowed in (("login", login, (400, 401)), ("token", token, (400, 401, 422)),
                                       ("track page", tracked, (400, 422)), ("track API", tracked_api, (400, 422)),
                                       ("rating API", rated, (400, 422))):
            tries += 1
            if answer.status_code not in allowed:
                failures.append(f"{label} {hostile[:30]!r}: {answer.status_code} {answer.get_data()[:160]!r}")
        assert browser.get("/staff/").status_code == 302  # still nobody signed in
    after = site.row_counts()
    stored = {table: (before[table], after[table]) for table in before if before[table] != after[table]
              and not table.startswith("identity.")}  # refused sign-ins are counted and audited, by design
    print(f"\n[attack] injection (forms): {len(HOSTILE)} payloads x 5 fields = {tries} checks")
    assert not failures, "\n".join(failures)
    assert not stored, stored
