"""Who may reach every endpoint of the suite, worked out from the access rules and checked for real.

Every endpoint of every app must declare an access rule (``@public``, ``@signed_in`` or ``@requires``).
The expected answer for each endpoint is computed from its rule, the ``GRANTS`` table and the test
organisation (bureau KJT with divisions KJTA and KJTB, plus an unrelated bureau), for an anonymous
visitor, the bureau admin and every other role in both divisions, then compared with what the suite
answers through the same path dispatcher nginx mirrors:

* pages are tried with the session cookie, APIs with the bearer token;
* an anonymous page request is sent to ``/staff/login?next=...``, an anonymous API call gets 401;
* a signed-in user without the permission, or outside the department's scope, gets 403;
* the wrong credential for the path (a bearer token on a page, a session cookie on an API) counts as
  nobody signed in.

A new endpoint fails this module until it has a rule, and, when its URL has arguments or it changes
state, an entry in :data:`SAMPLE_ARGS` or :data:`WRITES`.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from werkzeug.routing import Rule
from werkzeug.test import Client, TestResponse

from services.auth import AccessRule, access_rule
from services.permissions import GRANTS, Permission, Role
from services.suite import PathDispatcher, owner_of

from support.org import STAFF_PASSWORD

OUTSIDE = "WSJ"
"""A bureau outside the test organisation, so the bureau admin also has a department it does not cover."""

DEPARTMENTS_COVERED: dict[str, frozenset[str]] = {
    "KJT": frozenset({"KJT", "KJTA", "KJTB"}),
    "KJTA": frozenset({"KJTA"}),
    "KJTB": frozenset({"KJTB"}),
    OUTSIDE: frozenset({OUTSIDE}),
}
"""What a role held in each department covers (the department and those below it), written out by hand."""

STAFF_ONLY_PREFIXES = ("/staff/admin", "/staff/audit", "/api/identity/departments")
"""Paths that must carry a permission, whatever a future change declares (the matrix trusts the rules)."""

APP_NAMES = ("identity", "interpret", "consult", "search", "press", "portal")

PRESS_ACTIONS = ("submit", "return", "approve", "publish", "withdraw", "revise")
"""The transitions of a press response (the same review table as interpret's)."""

INTERPRET_ACTIONS = ("submit", "return", "approve", "publish", "withdraw", "revise")
"""The transitions of the interpret staff API, each ``POST /api/interpret/manage/<kind>/<id>/<action>``."""

RECORD_DEPARTMENTS: dict[str, str] = {
    "policy_draft": "KJTA", "policy_submitted": "KJTA", "staff_attachment": "KJTA",
    "interpretation_draft": "KJTA", "interpretation_submitted": "KJTA",
    "consultation_closed": "KJTA",
    "press_response_draft": "KJTA",
}
"""Sampled records of department-scoped staff endpoints, and their department. Such an endpoint answers
404 to a caller its rule lets in but who may not read (``records.read``) the record's department: a record
outside one's scope is not revealed, not even by a 403."""

SAMPLE_ARGS: dict[str, dict[str, Any]] = {
    "identity_api.department_staff": {"code": "@department"},
    "identity_admin.user_detail": {"user_id": "@user"},
    "identity_admin.add_role": {"user_id": "@user"},
    "identity_admin.remove_role": {"user_id": "@user", "assignment_id": "@assignment"},
    "identity_admin.unlock_user": {"user_id": "@user"},
    "identity_admin.reset_second_factor": {"user_id": "@user"},
    "identity_admin.reset_password": {"user_id": "@user"},
    "identity_admin.set_active": {"user_id": "@user"},
    "interpret_api.get_policy": {"policy_id": "@policy"},
    "interpret_pages.policy": {"policy_id": "@policy"},
    "interpret_pages.interpretation": {"interpretation_id": "@interpretation"},
    "interpret_attachments.download": {"attachment_id": "@attachment", "filename": "sample.pdf"},
    # The staff API, on records of division KJTA (see RECORD_DEPARTMENTS): each sample is chosen so
    # that the request is refused by the rules or changes nothing (see WRITES).
    "interpret_api.manage_get_policy": {"policy_id": "@policy_draft"},
    "interpret_api.manage_update_policy": {"policy_id": "@policy_draft"},
    "interpret_api.manage_get_interpretation": {"interpretation_id": "@interpretation_draft"},
    "interpret_api.manage_update_interpretation": {"interpretation_id": "@interpretation_draft"},
    "interpret_api.manage_link_policy": {"interpretation_id": "@interpretation_draft"},
    "interpret_api.manage_unlink_policy": {"interpretation_id": "@interpretation_draft", "policy_id": "@policy_draft"},
    "interpret_api.manage_relate_interpretations": {"interpretation_id": "@interpretation_draft"},
    # Submitting what is already submitted, every other transition from a draft: 409 (or 422, see WRITES).
    **{f"interpret_api.manage_{kind}_submit": {f"{kind}_id": f"@{kind}_submitted"}
       for kind in ("policy", "interpretation")},
    **{f"interpret_api.manage_{kind}_{action}": {f"{kind}_id": f"@{kind}_draft"}
       for kind in ("policy", "interpretation") for action in INTERPRET_ACTIONS if action != "submit"},
    **{f"interpret_api.manage_package_{action}": {"policy_id": "@policy_draft"}
       for action in ("submit", "approve", "publish")},
    "interpret_api.manage_list_attachments": {"policy_id": "@policy_submitted"},
    "interpret_api.manage_upload_attachment": {"policy_id": "@policy_submitted"},
    **{f"interpret_api.manage_{verb}_attachment": {
        "policy_id": "@policy_submitted", "attachment_id": "@staff_attachment",
    } for verb in ("download", "delete")},
    "consult_api.get_answer": {"answer_id": "@answer"},
    # The asker's endpoints: without the query code (GET) or with no body (POST), refused with 422.
    **{f"consult_asker_api.{name}": {"tracking_number": "@consultation_number"}
       for name in ("track", "rate", "reopen", "provide_information")},
    # The consult staff API on a closed case of division KJTA: every action is refused (409) or its input is.
    **{f"consult_manage.{name}": {"consultation_id": "@consultation_closed"} for name in (
        "get_consultation", "route", "accept", "reject", "assign", "transfer", "save_draft", "request_info",
        "submit_review", "return_for_changes", "approve", "send_reply", "personal_data", "confirm_redaction",
        "publish", "keep_private", "unpublish", "close", "request_extension", "add_note", "suggestions",
    )},
    "consult_manage.decide_extension": {"consultation_id": "@consultation_closed",
                                        "extension_id": "@consultation_extension"},
    # The consult staff console on the same closed case.
    **{f"consult_staff.{name}": {"consultation_id": "@consultation_closed"} for name in (
        "case_page", "action_route", "action_accept", "action_reject", "action_assign", "action_transfer",
        "action_request_info", "action_return", "action_approve", "action_reply", "action_publish",
        "action_keep_private", "action_unpublish", "action_close", "action_draft", "action_notes",
        "action_extension", "action_extension_decision", "action_confirm_redaction")},
    "consult_staff.attachment": {"consultation_id": "@consultation_closed",
                                 "attachment_id": "@consultation_attachment"},
    "consult_staff.canned_delete": {"reply_id": "@canned_reply"},
    # Search: an unknown document has no related documents; deleting what is not there lands on the list.
    "search_api.related": {"doc_id": "policy-0"},
    "search_admin.synonyms_delete": {"group_id": "0"},
    "search_admin.best_bets_delete": {"bet_id": "0"},
    "consult_pages.answer": {"answer_id": "@answer"},
    "portal_pages.static": {"filename": "css/site.css"},
    "portal_pages.switch_language": {"code": "en"},
    **{f"{name}_api_docs.api_docs_asset": {"filename": "swagger-ui.css"} for name in APP_NAMES},
    # Press office: a topic, an alert rule that has fired (so deleting it is refused), an empty draft
    # response of division KJTA, and a published one.
    "press_pages.static_file": {"filename": "js/press-console.js"},
    "press_api.get_topic": {"topic_id": "@press_topic"},
    "press_api.list_topic_messages": {"topic_id": "@press_topic"},
    "press_pages.topic": {"topic_id": "@press_topic"},
    **{f"press_api.{name}": {"rule_id": "@press_rule"} for name in ("get_rule", "update_rule", "delete_rule")},
    **{f"press_pages.{name}": {"rule_id": "@press_rule"} for name in ("rule_edit", "rule_update", "rule_delete")},
    **{f"press_responses_api.{name}": {"response_id": "@press_response_draft"} for name in (
        "get_response", "update_response", *(f"response_{action}" for action in PRESS_ACTIONS))},
    **{f"press_staff_responses.{name}": {"response_id": "@press_response_draft"} for name in (
        "detail", "update", *(f"action_{action}" for action in PRESS_ACTIONS))},
    "press_responses.response_page": {"response_id": "@press_response"},
}
"""URL arguments per endpoint. ``@department`` is replaced by each department in turn, ``@user`` and
``@assignment`` by a real staff member outside the organisation and one of their roles, ``@policy`` and
``@answer`` by a published, indexed record (``@interpretation`` too, linked to ``@policy``), ``@attachment``
by an attachment of that policy: no check here relies on a 404. The staff API's records (``@policy_draft``
...) are in division KJTA; outside the caller's read scope they answer 404 by design (see
:data:`RECORD_DEPARTMENTS`)."""


@dataclass(frozen=True)
class Expect:
    status: int
    location: str | None = None
    """The exact ``Location`` of a redirect (``{user}`` is filled with the sample user's id)."""


PUBLIC_GETS: dict[str, tuple[Expect, Expect]] = {
    "interpret_pages.index": (Expect(302, "/interpret/policies"), Expect(302, "/interpret/policies")),
    "consult_pages.index": (Expect(302, "/consult/answers"), Expect(302, "/consult/answers")),
    "portal_pages.switch_language": (Expect(302, "/"), Expect(302, "/")),
    "portal_pages.switch_elder_mode": (Expect(302, "/"), Expect(302, "/")),
    # No sign-in in progress: back to the password step, whoever asks.
    "identity_pages.login_second_factor": (Expect(302, "/staff/login"), Expect(302, "/staff/login")),
    "identity_pages.login_continue": (Expect(302, "/staff/login"), Expect(302, "/staff/")),
    # Self-service pages: public so that a half-signed-in user can reach them, but they need somebody.
    "identity_pages.totp_setup": (Expect(302, "/staff/login?next=/staff/totp/setup"), Expect(200)),
    "identity_pages.change_password": (Expect(302, "/staff/login?next=/staff/password"), Expect(200)),
    # Tracking needs the query code.
    "consult_asker_api.track": (Expect(422), Expect(422)),
}
"""Public GET endpoints that do not answer 200 (anonymous, signed in); every other public GET answers 200."""


@dataclass(frozen=True)
class Write:
    """A state-changing request that is safe to send (invalid input or a harmless change)."""

    data: dict[str, str]
    granted: Expect
    """The answer when the rule lets the actor in (for a public endpoint: a signed-in actor)."""
    anonymous: Expect | None = None
    """For a public endpoint, what an anonymous visitor gets (a protected one is computed)."""
    json: bool = False


WRITES: dict[tuple[str, str], Write] = {
    ("press_api.create_rule", "POST"): Write({}, Expect(422), json=True),
    ("press_api.update_rule", "PUT"): Write({}, Expect(422), json=True),
    ("press_api.delete_rule", "DELETE"): Write({}, Expect(422), json=True),  # the rule has fired
    ("press_pages.rules_create", "POST"): Write({}, Expect(422)),
    ("press_pages.rule_update", "POST"): Write({}, Expect(422)),
    ("press_pages.rule_delete", "POST"): Write({}, Expect(422)),  # the rule has fired
    ("press_responses_api.create_response", "POST"): Write({}, Expect(422), json=True),
    ("press_responses_api.update_response", "PATCH"): Write({"title": " "}, Expect(422), json=True),
    ("press_responses_api.response_submit", "POST"): Write({}, Expect(422), json=True),  # the draft is empty
    **{(f"press_responses_api.response_{action}", "POST"): Write({}, Expect(409), json=True)
       for action in PRESS_ACTIONS if action != "submit"},
    ("press_staff_responses.create", "POST"): Write({}, Expect(422)),
    ("press_staff_responses.update", "POST"): Write({}, Expect(422)),
    ("press_staff_responses.action_submit", "POST"): Write({}, Expect(422)),
    **{(f"press_staff_responses.action_{action}", "POST"): Write({}, Expect(409))
       for action in PRESS_ACTIONS if action != "submit"},
    ("auth_api.create_token", "POST"): Write({}, Expect(422), anonymous=Expect(422), json=True),
    # Public and rate-limited; no text is refused before any model is needed.
    ("consult_classify.classify", "POST"): Write({}, Expect(422), anonymous=Expect(422), json=True),
    ("identity_pages.login", "POST"): Write({}, Expect(400), anonymous=Expect(400)),
    ("identity_pages.login_second_factor", "POST"): Write(
        {"code": "000000"}, Expect(302, "/staff/login"), anonymous=Expect(302, "/staff/login")
    ),
    # Signed in, the GET phase has started an enrolment: a code that is no code is refused.
    ("identity_pages.totp_setup", "POST"): Write(
        {"code": "not-a-code"}, Expect(400), anonymous=Expect(302, "/staff/login?next=/staff/totp/setup")
    ),
    ("identity_pages.change_password", "POST"): Write(
        {"new_password": "a", "confirm_password": "b"}, Expect(400),
        anonymous=Expect(302, "/staff/login?next=/staff/password"),
    ),
    ("identity_pages.logout", "POST"): Write({}, Expect(302, "/staff/login")),
    ("identity_admin.add_user", "POST"): Write({"username": "x"}, Expect(400)),
    ("identity_admin.add_role", "POST"): Write({"role": "no-such-role"}, Expect(400)),
    ("identity_admin.remove_role", "POST"): Write({}, Expect(302, "/staff/admin/users/{user}")),
    ("identity_admin.unlock_user", "POST"): Write({}, Expect(302, "/staff/admin/users/{user}")),
    ("identity_admin.reset_second_factor", "POST"): Write({}, Expect(302, "/staff/admin/users/{user}")),
    ("identity_admin.reset_password", "POST"): Write({"password": "short"}, Expect(400)),
    ("identity_admin.set_active", "POST"): Write({"active": "1"}, Expect(302, "/staff/admin/users/{user}")),
    ("identity_admin.add_department", "POST"): Write({"kind": "no-such-kind"}, Expect(400)),
    ("identity_admin.role_policies", "POST"): Write({}, Expect(302, "/staff/admin/policies")),
    # interpret staff API: what an actor in the record's division with the rule's permission gets.
    ("interpret_api.manage_create_policy", "POST"): Write({}, Expect(422)),  # no title, level...
    ("interpret_api.manage_create_interpretation", "POST"): Write({}, Expect(422)),
    ("interpret_api.manage_update_policy", "PATCH"): Write({"title": " "}, Expect(422)),  # a name is required
    ("interpret_api.manage_update_interpretation", "PATCH"): Write({"title": " "}, Expect(422)),
    ("interpret_api.manage_link_policy", "POST"): Write({"policy_id": "0"}, Expect(422)),  # no such policy
    ("interpret_api.manage_unlink_policy", "DELETE"): Write({}, Expect(200)),  # not linked: nothing to do
    ("interpret_api.manage_relate_interpretations", "POST"): Write({"related_id": "0"}, Expect(422)),
    **{(f"interpret_api.manage_{kind}_{action}", "POST"): Write({}, Expect(409))
       for kind in ("policy", "interpretation") for action in INTERPRET_ACTIONS
       if (kind, action) != ("interpretation", "publish")},
    # Checked before the state: an interpretation needs a policy link to be published.
    ("interpret_api.manage_interpretation_publish", "POST"): Write({}, Expect(422)),
    # An own-level policy without interpretations is no package.
    **{(f"interpret_api.manage_package_{action}", "POST"): Write({}, Expect(422))
       for action in ("submit", "approve", "publish")},
    ("interpret_api.manage_upload_attachment", "POST"): Write({}, Expect(422)),  # no file
    ("interpret_api.manage_delete_attachment", "DELETE"): Write({}, Expect(422)),  # the policy is no draft
    # No department and no rows: an editor gets as far as the check of the request, which writes nothing.
    ("interpret_import_api.create_import", "POST"): Write({}, Expect(422), json=True),
    # The asker (public, rate-limited): an empty request is refused before anything is looked up.
    ("consult_asker_api.submit", "POST"): Write({}, Expect(422), anonymous=Expect(422), json=True),
    **{(f"consult_asker_api.{name}", "POST"): Write({}, Expect(422), anonymous=Expect(422), json=True)
       for name in ("rate", "reopen", "provide_information")},
    **{(f"consult_asker.{name}", "POST"): Write({}, Expect(422), anonymous=Expect(422))
       for name in ("ask", "track", "rate", "reopen", "provide_info")},
    # consult staff API on a closed case: transitions the table refuses from "closed" answer 409 ...
    **{(f"consult_manage.{name}", "POST"): Write({}, Expect(409), json=True) for name in (
        "accept", "submit_review", "approve", "send_reply", "publish", "keep_private", "close")},
    # ... and the actions with input get input the schema accepts and the rules refuse: a case outside the
    # caller's departments must answer 404 before its input is looked at.
    ("consult_manage.reject", "POST"): Write({"reason": "not_our_duty"}, Expect(422), json=True),  # no referral
    ("consult_manage.transfer", "POST"): Write({"department": "KJTA", "reason": "样例"}, Expect(422), json=True),
    **{(f"consult_manage.{name}", "POST"): Write({"text": "样例"}, Expect(409), json=True)
       for name in ("request_info", "return_for_changes", "unpublish")},
    ("consult_manage.confirm_redaction", "POST"): Write({"published_question": "问", "published_reply": "答"},
                                                        Expect(422), json=True),  # only after a reply
    ("consult_manage.request_extension", "POST"): Write({"working_days": "1", "reason": "样例"}, Expect(422),
                                                        json=True),  # a closed case runs no clock
    ("consult_manage.decide_extension", "POST"): Write({"approve": "false"}, Expect(422), json=True),  # decided
    ("consult_manage.add_note", "POST"): Write({"text": "授权矩阵检查"}, Expect(200), json=True),  # harmless
    ("consult_manage.bulk_assign", "POST"): Write({}, Expect(422), json=True),
    ("consult_manage.route", "POST"): Write({"department": "no such!"}, Expect(422), json=True),
    ("consult_manage.assign", "POST"): Write({"handler_id": "1", "handler_name": " "}, Expect(422), json=True),
    ("consult_manage.save_draft", "PUT"): Write({"reply": "样例"}, Expect(409), json=True),
    # The consult staff console: the same refusals, shown on the case page.
    **{(f"consult_staff.action_{name}", "POST"): Write({}, Expect(409)) for name in (
        "accept", "approve", "reply", "publish", "keep_private", "close", "draft")},
    **{(f"consult_staff.action_{name}", "POST"): Write({}, Expect(422)) for name in (
        "route", "reject", "assign", "transfer", "request_info", "return", "unpublish", "notes", "extension",
        "extension_decision", "confirm_redaction")},
    ("consult_staff.bulk_assign", "POST"): Write({}, Expect(422)),
    ("consult_staff.canned", "POST"): Write({}, Expect(422)),
    ("consult_staff.deadlines", "POST"): Write({}, Expect(422)),
    # Deleting a canned reply twice is no error: every permitted actor lands on the list again.
    ("consult_staff.canned_delete", "POST"): Write({}, Expect(303, "/consult/staff/canned?done=delete")),
    # Search curation (disclosure office): empty forms are refused; deleting a missing rule is no error.
    ("search_admin.synonyms", "POST"): Write({}, Expect(422)),
    ("search_admin.best_bets", "POST"): Write({}, Expect(422)),
    ("search_admin.synonyms_delete", "POST"): Write({}, Expect(303, "/search/admin/synonyms?done=delete")),
    ("search_admin.best_bets_delete", "POST"): Write({}, Expect(303, "/search/admin/best-bets?done=delete")),
    # The first allowed POST queues a run (?done=queued); later ones find it still queued (?done=already).
    ("search_admin.reconcile", "POST"): Write({}, Expect(303)),
    # A line that is no calendar line: refused, nothing saved.
    ("identity_calendar.save_calendar", "POST"): Write({"year": "2027", "lines": "not a line"}, Expect(400)),
}
"""Every non-GET method of every endpoint, with a request safe to send in the (rolled-back) test."""


# -- the suite's endpoints ---------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    app_name: str
    app: Flask
    rule: Rule
    access: AccessRule | None

    @property
    def name(self) -> str:
        return str(self.rule.endpoint)

    @property
    def methods(self) -> set[str]:
        return set(self.rule.methods or ()) - {"HEAD", "OPTIONS"}

    @property
    def is_api(self) -> bool:
        return self.rule.rule.startswith("/api/")

    @property
    def reachable(self) -> bool:
        """Whether the path dispatcher sends this path to this app (else it is shadowed, e.g. /healthz)."""
        return owner_of(self.rule.rule) == self.app_name

    def __str__(self) -> str:
        return f"{self.app_name}:{self.name} {self.rule.rule}"


def _is_flask_static(app: Flask, endpoint: str) -> bool:
    return endpoint == "static" and app.view_functions.get(endpoint) == app.send_static_file


def all_endpoints(apps: dict[str, Flask]) -> list[Endpoint]:
    assert set(apps) == set(APP_NAMES), f"the suite's apps changed: {sorted(apps)}; update APP_NAMES"
    return [
        Endpoint(name, app, rule, access_rule(app, rule.endpoint))
        for name, app in apps.items()
        for rule in app.url_map.iter_rules()
        if not _is_flask_static(app, rule.endpoint)
    ]


def test_every_endpoint_declares_an_access_rule(suite: dict[str, Flask]) -> None:
    endpoints = all_endpoints(suite)
    assert len(endpoints) > 50
    missing = [str(endpoint) for endpoint in endpoints if endpoint.access is None]
    assert not missing, "endpoints without @public, @signed_in or @requires:\n" + "\n".join(missing)


def test_every_rule_is_well_formed(suite: dict[str, Flask]) -> None:
    """Unknown permissions or department arguments the URL lacks go unchecked; admin paths need a permission."""
    problems = []
    for endpoint in all_endpoints(suite):
        rule = endpoint.access
        if endpoint.rule.rule.startswith(STAFF_ONLY_PREFIXES) and (rule is None or rule.kind != "permission"):
            problems.append(f"{endpoint}: a staff-only path must require a permission, not {rule}")
        if rule is None or rule.kind == "public" or rule.kind == "signed_in":
            continue
        if rule.kind != "permission" or rule.permission not in GRANTS:
            problems.append(f"{endpoint}: unknown rule {rule}")
        elif rule.department_arg is not None and rule.department_arg not in endpoint.rule.arguments:
            problems.append(f"{endpoint}: department argument {rule.department_arg!r} is not in the URL")
    assert not problems, "\n".join(problems)


def test_every_endpoint_with_arguments_has_a_sample(suite: dict[str, Flask]) -> None:
    problems = []
    for endpoint in all_endpoints(suite):
        arguments = set(endpoint.rule.arguments)
        sample = SAMPLE_ARGS.get(endpoint.name)
        if not arguments:
            continue
        if sample is None or set(sample) != arguments:
            problems.append(f"{endpoint}: needs SAMPLE_ARGS for {sorted(arguments)}")
        elif endpoint.access and endpoint.access.department_arg and sample[endpoint.access.department_arg] != (
            "@department"
        ):
            problems.append(f"{endpoint}: the department argument must be sampled with '@department'")
    assert not problems, "add sample arguments to SAMPLE_ARGS:\n" + "\n".join(problems)


def test_every_state_changing_endpoint_has_a_safe_sample(suite: dict[str, Flask]) -> None:
    missing = [
        f"{endpoint} {method}"
        for endpoint in all_endpoints(suite)
        for method in sorted(endpoint.methods - {"GET"})
        if (endpoint.name, method) not in WRITES
    ]
    assert not missing, "add a safe request to WRITES for:\n" + "\n".join(missing)
    public_writes = {
        (endpoint.name, method)
        for endpoint in all_endpoints(suite)
        for method in endpoint.methods - {"GET"}
        if endpoint.access is not None and endpoint.access.kind == "public"
    }
    undocumented = [key for key in public_writes if WRITES[key].anonymous is None]
    assert not undocumented, f"public writes need their anonymous answer in WRITES: {undocumented}"


# -- actors ------------------------------------------------------------------------


def _csrf(page: TestResponse) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, f"no CSRF token on {page.request.path}"
    return match.group(1)


@dataclass
class Actor:
    name: str
    role: Role | None
    department: str | None
    address: str
    pages: Client
    """Keeps the session cookie: how a browser reaches pages."""
    api: Client
    """Never stores a cookie: how an API client calls with its bearer token."""
    token: str | None = None
    csrf: str = ""

    def open(self, client: Client, method: str, path: str, *, bearer: bool, **kwargs: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.token}"} if bearer and self.token else {}
        return client.open(path, method=method, headers=headers, environ_base={"REMOTE_ADDR": self.address},
                           **kwargs)

    def sign_in(self, username: str) -> None:
        form = self.open(self.pages, "GET", "/staff/login", bearer=False)
        answer = self.open(self.pages, "POST", "/staff/login", bearer=False, data={
            "csrf_token": _csrf(form), "username": username, "password": STAFF_PASSWORD, "next": "/staff/",
        })
        assert (answer.status_code, answer.headers.get("Location")) == (302, "/staff/"), username
        self.csrf = _csrf(self.open(self.pages, "GET", "/staff/", bearer=False))
        token = self.open(self.api, "POST", "/api/auth/token", bearer=False,
                          json={"username": username, "password": STAFF_PASSWORD})
        assert token.status_code == 200, token.get_json()
        self.token = token.get_json()["token"]


@pytest.fixture
def actors(suite: dict[str, Flask], org: dict[str, Any]) -> list[Actor]:
    """Anonymous, the bureau admin, and every other role in each division, each signed in both ways."""
    dispatcher = PathDispatcher(suite)
    # Own addresses, so the per-address sign-in rate limit neither trips here nor counts other tests.
    base = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    result = []
    people: list[tuple[str, Role | None, str | None]] = [("anonymous", None, None), ("admin1", Role.ADMIN, "KJT")]
    for letter, code in sorted(org["divisions"].items()):
        people += [(f"{role.value}_{letter.lower()}", role, code) for role in Role if role is not Role.ADMIN]
    for number, (name, role, department) in enumerate(people, start=1):
        actor = Actor(name, role, department, f"{base}.{number}", Client(dispatcher), Client(dispatcher,
                      use_cookies=False))
        if role is None:
            actor.csrf = _csrf(actor.open(actor.pages, "GET", "/staff/login", bearer=False))
        else:
            actor.sign_in(name)
        result.append(actor)
    return result


@pytest.fixture
def records(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An outside department and staff member, a published policy and a published answer (indexed)."""
    from consult.workflow import publish_answer, record_answered_consultation
    from search.tasks import index_document
    from services.db import get_database
    from services.identity.accounts import assign_role, create_department, create_user

    from support.content import published_policy

    settings = suite["identity"].extensions["gongkai.settings"]
    with get_database("identity", suite["identity"]).transaction() as session:
        outside = create_department(session, OUTSIDE, "卫生健康委员会", "bureau", None)
        user = create_user(session, settings, username="matrix_target", display_name="样例用户",
                           password=STAFF_PASSWORD)
        assignment = assign_role(session, user, Role.REVIEWER, outside)
        found = {"user": user.id, "assignment": assignment.id}

    messages = []
    for service in ("interpret", "consult"):
        monkeypatch.setattr(get_database(service, suite[service]), "publisher", None)
    with get_database("interpret", suite["interpret"]).transaction() as session:
        policy = published_policy(session, "关于授权矩阵测试的通知", issuer="科学技术厅", level="本级")
        found["policy"] = policy.id
        messages.append(_outbox_message(session, "interpret", policy.id))
        staff_records, published_messages = _interpret_records(session, suite["interpret"], policy)
        found.update(staff_records)
        messages += [message for message in published_messages if message["id"] != messages[0]["id"]]
    with get_database("consult", suite["consult"]).transaction() as session:
        now = datetime.now(UTC)
        answer = record_answered_consultation(
            session, tracking_number=f"ZX{uuid.uuid4().hex[:10]}", title="授权矩阵测试咨询", question="如何办理？",
            reply="请登录办事大厅办理。", received_at=now, replied_at=now,
        )
        publish_answer(session, answer)
        found["answer"] = answer.id
        messages.append(_outbox_message(session, "consult", answer.id))
        found.update(_consult_records(session))
    found.update(_press_records(suite))
    messages.append(found.pop("press_response_message"))
    with suite["search"].app_context():
        for message in messages:
            assert index_document(message) == "indexed"
    return found


def _press_records(suite: dict[str, Flask]) -> dict[str, Any]:
    """A press topic, an alert rule that has fired for it, an empty draft response of division KJTA and a
    published response (with its index event)."""
    from services.auth import StaffIdentity
    from services.db import get_database
    from services.permissions import Grant
    from services.press import workflow as press_workflow
    from services.press.models import Alert, AlertRule, OutboxEvent, Topic

    now = datetime.now(UTC)
    officer = StaffIdentity(0, "matrix_press", "样例新闻", (Grant(Role.PRESS_OFFICER, "KJTA", ("KJTA",)),), "x", "api")
    reviewer = StaffIdentity(1, "matrix_review", "样例审核", (Grant(Role.REVIEWER, "KJTA", ("KJTA",)),), "x", "api")
    with get_database("press", suite["press"]).transaction() as session:
        topic = Topic(label="授权矩阵样例话题", keywords=["样例"], size=0, first_at=now, last_at=now)
        rule = AlertRule(name="样例规则", kind="growth", min_messages=5, within_hours=24, min_burst=3.0,
                         response_hours=48)
        session.add_all([topic, rule])
        session.flush()
        session.add(Alert(rule_id=rule.id, topic_id=topic.id, window_key="sample", reason="样例",
                          fired_at=now, response_due=now))
        draft = press_workflow.create_response(session, officer, press_workflow.ResponseFields(
            kind="response", title="授权矩阵样例回应"), "KJTA")
        published = press_workflow.create_response(session, officer, press_workflow.ResponseFields(
            kind="response", title="授权矩阵已发布回应", summary="样例摘要", body="<p>样例正文</p>"), "KJTA")
        for actor, action in ((officer, "submit"), (reviewer, "approve"), (officer, "publish")):
            press_workflow.transition(session, actor, published, action)
        session.flush()
        event = session.query(OutboxEvent).filter_by(topic="press.response.published",
                                                     aggregate_id=str(published.id)).one()
        return {"press_topic": topic.id, "press_rule": rule.id, "press_response_draft": draft.id,
                "press_response": published.id, "press_response_message": event.as_message()}


def _interpret_records(session: Any, app: Flask, published: Any) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """A published interpretation of the published policy (with its index events), drafts and submitted
    items in division KJTA for the interpret staff API, and attachments."""
    from interpret.attachments import store_blob
    from interpret.models import Attachment, OutboxEvent
    from interpret.workflow import (
        InterpretationFields,
        PolicyFields,
        _transition,
        create_interpretation,
        create_policy,
        link_policy,
        publish,
        submit,
    )
    from services.auth import StaffIdentity
    from services.permissions import Grant

    author = StaffIdentity(0, "matrix_author", "样例起草人", (Grant(Role.EDITOR, "KJTA", ("KJTA",)),), "x", "api")
    body = "<p>为做好有关工作，现通知如下。</p>"
    made: dict[str, Any] = {}
    bureau_editor = replace(author, grants=(Grant(Role.EDITOR, "KJT", ("KJT", "KJTA", "KJTB")),))
    made["interpretation"] = create_interpretation(session, bureau_editor, InterpretationFields(
        title="关于授权矩阵测试的通知的解读", form="文字解读", interpreter_kind="处室", body=body, department="KJT"))
    link_policy(session, bureau_editor, made["interpretation"], published)
    for action in ("submit", "approve"):
        _transition(session, None, made["interpretation"], action)
    publish(session, None, made["interpretation"])
    index_events = (session.query(OutboxEvent).filter(OutboxEvent.topic.like("interpret.%.published"))
                    .order_by(OutboxEvent.created_at).all())
    messages = [event.as_message() for event in index_events]
    for state in ("draft", "submitted"):
        made[f"policy_{state}"] = create_policy(session, author, PolicyFields(
            title=f"授权矩阵样例文件（{state}）", issuer="科学技术厅", level="本级", body=body, department="KJTA"))
        made[f"interpretation_{state}"] = create_interpretation(session, author, InterpretationFields(
            title=f"授权矩阵样例解读（{state}）", form="文字解读", interpreter_kind="处室", body=body,
            department="KJTA"))
    submit(session, author, made["policy_submitted"])
    submit(session, author, made["interpretation_submitted"])
    pdf = b"%PDF-1.4\n%%EOF\n"
    digest = store_blob(app.extensions["gongkai.settings"], pdf)
    for name, owner in (("attachment", published), ("staff_attachment", made["policy_submitted"])):
        made[name] = Attachment(owner_type="policy", owner_id=owner.id, filename="sample.pdf",
                                content_type="application/pdf", size=len(pdf), sha256=digest)
        session.add(made[name])
    session.flush()
    return {name: item.id for name, item in made.items()}, messages


def _consult_records(session: Any) -> dict[str, Any]:
    """A closed consultation of division KJTA with a decided extension request, an attachment, a canned reply."""
    from consult.models import CannedReply, ExtensionRequest, SubmissionAttachment
    from consult.workflow import close, record_answered_consultation

    now = datetime.now(UTC)
    case = record_answered_consultation(
        session, tracking_number=f"ZX20261126-{uuid.uuid4().int % 9000 + 1000}", title="授权矩阵样例咨询",
        question="请问如何办理？", reply="请登录办事大厅办理。", received_at=now, replied_at=now, department="KJTA",
    )
    case.historical = False
    close(session, None, case)
    extension = ExtensionRequest(consultation_id=case.id, working_days=2, reason="样例", requested_by="样例",
                                 status="refused", requested_at=now)
    attachment = SubmissionAttachment(consultation_id=case.id, filename="sample.pdf", content_type="application/pdf",
                                      size=15, sha256="0" * 64, content=b"%PDF-1.4\n%%EOF\n", created_at=now)
    canned = CannedReply(category=None, title="样例答复", body="感谢您的咨询。", created_by="样例", created_at=now)
    session.add_all([extension, attachment, canned])
    session.flush()
    return {"consultation_closed": case.id, "consultation_number": case.tracking_number,
            "consultation_extension": extension.id, "consultation_attachment": attachment.id,
            "canned_reply": canned.id}


def _outbox_message(session: Any, service: str, aggregate_id: int) -> dict[str, Any]:
    import importlib

    model = importlib.import_module(f"{service}.models").OutboxEvent
    event = session.query(model).filter_by(aggregate_id=str(aggregate_id)).one()
    message: dict[str, Any] = event.as_message()
    return message


# -- expectations ------------------------------------------------------------------


def permitted(actor: Actor, rule: AccessRule, department: str | None) -> bool:
    """The independent reading of the rules: GRANTS, and a role covering its department and those below."""
    if rule.kind == "public":
        return True
    if actor.role is None:
        return False
    if rule.kind == "signed_in":
        return True
    assert rule.permission is not None
    if actor.role not in GRANTS[rule.permission]:
        return False
    assert actor.department is not None
    return department is None or department in DEPARTMENTS_COVERED[actor.department]


def record_department(endpoint: Endpoint) -> str | None:
    """The department of the department-scoped record an endpoint is sampled with, if any."""
    for sample in SAMPLE_ARGS.get(endpoint.name, {}).values():
        if isinstance(sample, str) and sample[1:] in RECORD_DEPARTMENTS:
            return RECORD_DEPARTMENTS[sample[1:]]
    return None


def hidden_from(actor: Actor, endpoint: Endpoint) -> bool:
    """Whether the endpoint's sampled record lies outside what the actor may read (answered 404)."""
    department = record_department(endpoint)
    if department is None:
        return False
    reads = actor.role in GRANTS[Permission.READ_RECORDS] and actor.department is not None
    return not (reads and department in DEPARTMENTS_COVERED[str(actor.department)])


def refused_anonymous(endpoint: Endpoint, path: str) -> Expect:
    if endpoint.is_api:
        return Expect(401)
    return Expect(302, f"/staff/login?next={quote(path)}")


def expected_get(endpoint: Endpoint, actor: Actor, department: str | None, path: str, signed_in: bool) -> Expect:
    rule = endpoint.access
    assert rule is not None
    if rule.kind == "public":
        anonymous, staff = PUBLIC_GETS.get(endpoint.name, (Expect(200), Expect(200)))
        return staff if signed_in else anonymous
    if not signed_in:
        return refused_anonymous(endpoint, path)
    if not permitted(actor, rule, department):
        return Expect(403)
    return Expect(404) if hidden_from(actor, endpoint) else Expect(200)


def test_public_expectations_never_refuse_anonymous_visitors() -> None:
    for name, (anonymous, _staff) in PUBLIC_GETS.items():
        assert anonymous.status not in (401, 403), name  # at most a request that needs more (422)
    for key, write in WRITES.items():
        if write.anonymous is not None:
            assert write.anonymous.status not in (401, 403), key


# -- the matrix --------------------------------------------------------------------


@dataclass
class Matrix:
    records: dict[str, Any]
    checks: Counter[str]
    forms: Counter[str]
    failures: list[str]

    def path(self, endpoint: Endpoint, department: str | None) -> str:
        values = {
            argument: (department if sample == "@department" else self.records[sample[1:]])
            if isinstance(sample, str) and sample.startswith("@") else sample
            for argument, sample in SAMPLE_ARGS.get(endpoint.name, {}).items()
        }
        return endpoint.app.url_map.bind("localhost").build(endpoint.name, values)

    def check(self, label: str, form: str, answer: TestResponse, expect: Expect) -> None:
        self.checks[str(expect.status)] += 1
        self.forms[form] += 1
        location = expect.location.format(**self.records) if expect.location else None
        got = (answer.status_code, answer.headers.get("Location") if location else None)
        if got != (expect.status, location):
            self.failures.append(f"{label} [{form}]: expected {expect.status} {location or ''}, got {got}")
        elif expect.status == 401 and "Bearer" not in answer.headers.get("WWW-Authenticate", ""):
            self.failures.append(f"{label} [{form}]: a 401 without WWW-Authenticate: Bearer")


def _departments_for(endpoint: Endpoint) -> list[str | None]:
    if endpoint.access is not None and endpoint.access.department_arg:
        return [*sorted(DEPARTMENTS_COVERED)]
    return [None]


def _check_gets(matrix: Matrix, endpoints: list[Endpoint], actors: list[Actor]) -> None:
    for endpoint in endpoints:
        if "GET" not in endpoint.methods:
            continue
        assert endpoint.access is not None
        for department in _departments_for(endpoint):
            path = matrix.path(endpoint, department)
            if not endpoint.reachable:
                # Shadowed in the suite by the portal's own route (/healthz, /readyz, /metrics): each
                # service still answers it on its own port, so it is checked on the app itself.
                answer = Client(endpoint.app).get(path)
                matrix.check(f"GET {path} ({endpoint.app_name}) as anonymous", "direct-app", answer,
                             expected_get(endpoint, actors[0], department, path, signed_in=False))
                continue
            for actor in actors:
                _check_get(matrix, endpoint, actor, department, path)


def _check_get(matrix: Matrix, endpoint: Endpoint, actor: Actor, department: str | None, path: str) -> None:
    signed_in = actor.role is not None
    label = f"GET {path} as {actor.name}"
    assert endpoint.access is not None
    if endpoint.is_api:
        answer = actor.open(actor.api, "GET", path, bearer=True)
        form = "api+bearer" if signed_in else "anonymous"
        matrix.check(label, form, answer, expected_get(endpoint, actor, department, path, signed_in))
        if signed_in and endpoint.access.kind != "public":
            # The session cookie alone never authorises an API call.
            answer = actor.open(actor.pages, "GET", path, bearer=False)
            matrix.check(label, "api+cookie-only", answer, expected_get(endpoint, actor, department, path, False))
    else:
        answer = actor.open(actor.pages, "GET", path, bearer=False)
        form = "page+session" if signed_in else "anonymous"
        matrix.check(label, form, answer, expected_get(endpoint, actor, department, path, signed_in))
        if signed_in and endpoint.access.kind != "public":
            # A bearer token never signs anybody in to a page.
            answer = actor.open(actor.api, "GET", path, bearer=True)
            matrix.check(label, "page+bearer-only", answer, expected_get(endpoint, actor, department, path, False))


def _check_writes(matrix: Matrix, endpoints: list[Endpoint], actors: list[Actor], *, logout: bool) -> None:
    for endpoint in endpoints:
        assert endpoint.access is not None
        for method in sorted(endpoint.methods - {"GET"}):
            if (endpoint.name == "identity_pages.logout") != logout:
                continue
            write = WRITES[(endpoint.name, method)]
            for department in _departments_for(endpoint):
                path = matrix.path(endpoint, department)
                for actor in actors:
                    _check_write(matrix, endpoint, method, write, actor, department, path)


def _check_write(
    matrix: Matrix, endpoint: Endpoint, method: str, write: Write, actor: Actor, department: str | None, path: str
) -> None:
    assert endpoint.access is not None
    signed_in = actor.role is not None
    if endpoint.access.kind == "public":
        assert write.anonymous is not None
        expect = write.granted if signed_in else write.anonymous
    elif not signed_in:
        expect = refused_anonymous(endpoint, path)
    elif not permitted(actor, endpoint.access, department):
        expect = Expect(403)
    else:
        expect = Expect(404) if hidden_from(actor, endpoint) else write.granted
    if endpoint.is_api:
        answer = actor.open(actor.api, method, path, bearer=True, json=write.data)
        form = "api+bearer" if signed_in else "anonymous"
    else:
        answer = actor.open(actor.pages, method, path, bearer=False, data={**write.data, "csrf_token": actor.csrf})
        form = "page+session" if signed_in else "anonymous"
    matrix.check(f"{method} {path} as {actor.name}", f"{form} {method}", answer, expect)


def test_authorization_matrix(suite: dict[str, Flask], actors: list[Actor], records: dict[str, Any]) -> None:
    endpoints = all_endpoints(suite)
    assert all(endpoint.access is not None for endpoint in endpoints), "see test_every_endpoint_declares_..."
    matrix = Matrix(records, Counter(), Counter(), [])
    _check_gets(matrix, endpoints, actors)
    _check_writes(matrix, endpoints, actors, logout=False)
    _check_writes(matrix, endpoints, actors, logout=True)  # last: it ends each console session

    total = sum(matrix.checks.values())
    print(
        f"\nauthorization matrix: {total} checks, {len(endpoints)} endpoints in {len(suite)} apps, "
        f"{len(actors)} actors (anonymous + {len(actors) - 1} staff), {len(DEPARTMENTS_COVERED)} departments"
    )
    print("  by expected status: " + ", ".join(f"{status}: {n}" for status, n in sorted(matrix.checks.items())))
    print("  by form: " + ", ".join(f"{form}: {n}" for form, n in sorted(matrix.forms.items())))
    print(f"  mismatches: {len(matrix.failures)}")
    assert not matrix.failures, f"{len(matrix.failures)} of {total} checks failed:\n" + "\n".join(matrix.failures)
    # The matrix really exercised both sides of every kind of rule.
    for status in ("200", "302", "401", "403"):
        assert matrix.checks[status] > 0, status


def test_a_console_token_is_not_an_api_token(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    """The identity signed for a console session is refused as a bearer token, as is a tampered token."""
    from services.auth import issue_token, read_token

    client = Client(PathDispatcher(suite), use_cookies=False)
    environ = {"REMOTE_ADDR": f"10.253.{uuid.uuid4().int % 250}.1"}
    issued = client.post("/api/auth/token", json={"username": "admin1", "password": STAFF_PASSWORD},
                         environ_base=environ)
    assert issued.status_code == 200
    token = issued.get_json()["token"]
    settings = suite["identity"].extensions["gongkai.settings"]
    identity = read_token(settings, token, 3600)
    assert identity is not None and identity.kind == "api"
    console = issue_token(settings, replace(identity, kind="session"))
    for bearer, status in ((token, 200), (console, 401), (token[:-2], 401)):
        answer = client.get("/api/auth/me", headers={"Authorization": f"Bearer {bearer}"}, environ_base=environ)
        assert answer.status_code == status, bearer


# -- a sign-in half done -----------------------------------------------------------


def _enrol_totp(client: Client) -> str:
    """Enrol a second factor through the pages; returns the secret."""
    import pyotp

    page = client.get("/staff/totp/setup")
    assert page.status_code == 200
    match = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page.get_data(as_text=True))
    assert match
    secret = match.group(1)
    totp = pyotp.TOTP(secret)
    code = totp.at(int(datetime.now(UTC).timestamp()) - totp.interval)
    done = client.post("/staff/totp/setup", data={"csrf_token": _csrf(page), "code": code})
    assert done.status_code == 200 and "recovery-codes" in done.get_data(as_text=True)
    return secret


@pytest.fixture
def half_signed_in(suite: dict[str, Flask], org: dict[str, Any]) -> tuple[Client, str, int]:
    """A client past the password step of a user with a second factor enrolled, but not past the second factor."""
    client = Client(PathDispatcher(suite))
    environ = {"REMOTE_ADDR": f"10.251.{uuid.uuid4().int % 250}.1"}

    def sign_in_password() -> TestResponse:
        form = client.get("/staff/login", environ_base=environ)
        return client.post("/staff/login", environ_base=environ, data={
            "csrf_token": _csrf(form), "username": "reviewer_a", "password": STAFF_PASSWORD, "next": "/staff/",
        })

    assert sign_in_password().headers["Location"] == "/staff/"
    secret = _enrol_totp(client)
    client.post("/staff/logout", environ_base=environ, data={"csrf_token": _csrf(client.get("/staff/"))})
    assert client.get("/staff/", environ_base=environ).status_code == 302
    answer = sign_in_password()
    assert answer.headers["Location"] == "/staff/login/otp"
    return client, secret, org["users"]["reviewer_a"].id


def test_a_half_signed_in_user_cannot_replace_the_second_factor(
    suite: dict[str, Flask], half_signed_in: tuple[Client, str, int]
) -> None:
    """Knowing the password must not be enough: re-enrolling TOTP mid-sign-in would skip the second factor."""
    import pyotp

    from services.db import get_database
    from services.identity.models import User

    client, secret, user_id = half_signed_in
    page = client.get("/staff/totp/setup")
    assert (page.status_code, page.headers.get("Location")) == (302, "/staff/login/otp")
    csrf = _csrf(client.get("/staff/login/otp"))
    code = pyotp.TOTP(pyotp.random_base32()).now()  # whatever secret an attacker would have set up
    attempt = client.post("/staff/totp/setup", data={"csrf_token": csrf, "code": code})
    assert (attempt.status_code, attempt.headers.get("Location")) == (302, "/staff/login/otp")
    assert client.get("/staff/login/continue").headers["Location"] == "/staff/login/otp"
    assert client.get("/staff/").status_code == 302  # still nobody signed in
    with get_database("identity", suite["identity"]).transaction() as session:
        user = session.get(User, user_id)
        assert user is not None and user.totp_enabled and user.totp_secret == secret


def test_a_half_signed_in_user_cannot_change_the_password(
    suite: dict[str, Flask], half_signed_in: tuple[Client, str, int]
) -> None:
    """Changing the password is for somebody signed in (or forced to on first sign-in) after every factor."""
    from services.db import get_database
    from services.identity.models import User

    client, _secret, user_id = half_signed_in
    page = client.get("/staff/password")
    assert (page.status_code, page.headers.get("Location")) == (302, "/staff/login/otp")
    csrf = _csrf(client.get("/staff/login/otp"))
    new_password = "Taken-Over-Account-77!"
    attempt = client.post("/staff/password", data={
        "csrf_token": csrf, "new_password": new_password, "confirm_password": new_password,
    })
    assert (attempt.status_code, attempt.headers.get("Location")) == (302, "/staff/login/otp")
    from services.identity.accounts import _hasher

    with get_database("identity", suite["identity"]).transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert _hasher.verify(user.password_hash, STAFF_PASSWORD)
