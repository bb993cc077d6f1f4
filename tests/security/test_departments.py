"""One department cannot read or change another's records, through any API or page.

The authorization matrix (``tests/services/test_authorization_matrix.py``) checks who may reach each
endpoint by role; this adds the object level. Every staff endpoint whose URL takes the id of a
department's record (a consultation and its attachments and extension requests, a policy, an
interpretation and their attachments, a press response) is called by the member of division KJTB who
holds the endpoint's permission, with the id of a record of division KJTA, for every method, with a body
that would otherwise be accepted: the answer is 403 or 404 (never the record), and no row of the
service's tables changes. The endpoints come from the URL map, so a new one with an id fails here until
it is classified. The same KJTA user gets the record (so the ids were real). Ids in a body (bulk
assignment, policy links, related interpretations) and the lists, filters and exports are checked too.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import select

from services.auth import access_rule
from services.permissions import GRANTS, Permission, Role
from services.suite import owner_of

RECORD_ARGUMENTS = frozenset({"consultation_id", "policy_id", "interpretation_id", "attachment_id", "extension_id",
                              "response_id"})
"""URL arguments naming a department's record (or a part of one); an endpoint whose access rule names a
department argument (``/api/identity/departments/<code>/staff``) is called with KJTA's code."""

SHARED_BY_DESIGN: dict[str, str] = {
    "consult_staff.canned_delete": "canned replies serve every department (chosen by category)",
    **{f"press_api.{name}": "hot topics and alert rules are the press office's, for the whole organisation"
       for name in ("get_topic", "list_topic_messages", "get_rule", "update_rule", "delete_rule")},
    **{f"press_pages.{name}": "hot topics and alert rules are the press office's, for the whole organisation"
       for name in ("topic", "rule_edit", "rule_update", "rule_delete")},
    **{f"identity_admin.{name}": "user administration is the system administrator's (系统管理员), for everyone"
       for name in ("user_detail", "add_role", "remove_role", "unlock_user", "reset_second_factor",
                    "reset_password", "set_active")},
    "search_admin.synonyms_delete": "search curation is the disclosure office's, for the whole site",
    "search_admin.best_bets_delete": "search curation is the disclosure office's, for the whole site",
}
"""Staff endpoints taking an id of something no department owns, and why."""

ROLE_ORDER = (Role.EDITOR, Role.REVIEWER, Role.DISPATCHER, Role.DISCLOSURE_OFFICE, Role.PRESS_OFFICER, Role.AUDITOR)

JSON_BODIES: dict[str, dict[str, Any]] = {
    "consult_manage.route": {"department": "KJTB"},
    "consult_manage.reject": {"reason": "duplicate", "note": "越权"},
    "consult_manage.assign": {},
    "consult_manage.transfer": {"department": "KJTB", "reason": "越权转办"},
    "consult_manage.save_draft": {"reply": "越权答复"},
    "consult_manage.request_info": {"text": "越权"},
    "consult_manage.return_for_changes": {"text": "越权"},
    "consult_manage.confirm_redaction": {"published_question": "越权", "published_reply": "越权"},
    "consult_manage.unpublish": {"text": "越权"},
    "consult_manage.request_extension": {"working_days": 3, "reason": "越权"},
    "consult_manage.decide_extension": {"approve": True, "note": "越权"},
    "consult_manage.add_note": {"text": "越权备注"},
    "interpret_api.manage_update_policy": {"title": "越权修改"},
    "interpret_api.manage_update_interpretation": {"title": "越权修改"},
    "interpret_api.manage_link_policy": {"policy_id": "@policy_published"},
    "interpret_api.manage_relate_interpretations": {"related_id": "@interpretation_published"},
    "press_responses_api.update_response": {"title": "越权修改"},
}
"""A body each API write would accept (schema-valid), so that only the department can refuse it; the rest
take an empty object. ``@name`` is the id of that seeded record (a published policy anyone may link to)."""


def _body(endpoint: str, records: dict[str, Any]) -> dict[str, Any]:
    return {name: records[value[1:]] if isinstance(value, str) and value.startswith("@") else value
            for name, value in JSON_BODIES.get(endpoint, {}).items()}

FORM_FIELDS = {"text": "越权", "reply": "越权答复", "reason": "duplicate", "note": "越权", "department": "KJTB",
               "working_days": "3", "approve": "1", "title": "越权修改", "kind": "response", "summary": "越权",
               "body": "<p>越权</p>", "published_question": "越权", "published_reply": "越权"}
"""Fields a console form would send (pages ignore what they do not use)."""

IGNORED_TABLES = ("outbox_event", "processed_event", "audit_entry", "audit_head", "login_attempt", "query_log")
"""Tables a refusal may add to: events and audit entries of the refusal, sign-in counts, the search log."""


def _permission_of(site: Any, service: str, rule: Any) -> Permission:
    access = access_rule(site.suite[service], rule.endpoint)
    assert access is not None and access.permission is not None, rule.rule
    return access.permission


def _user_for(permission: Permission, division: str) -> str:
    role = next(role for role in ROLE_ORDER if role in GRANTS[permission])
    return f"{role.value}_{division}"


def _snapshot(site: Any, service: str) -> dict[str, str]:
    """A digest of every row of the service's tables (but those a refusal may add to)."""
    from services.db import get_database

    database = get_database(service, site.suite[service])
    digests = {}
    with database.transaction() as session:
        for table in database.outbox_model.metadata.sorted_tables:
            if table.name in IGNORED_TABLES:
                continue
            rows = session.execute(select(table).order_by(*table.primary_key.columns)).all()
            digests[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def _overrides(records: dict[str, Any], rule: Any) -> dict[str, Any]:
    """The KJTA record each argument names (a draft policy for the staff API, its attachment...)."""
    values: dict[str, Any] = {}
    if "policy_id" in rule.arguments:
        values["policy_id"] = records["policy_draft"]
    if "interpretation_id" in rule.arguments:
        values["interpretation_id"] = records["interpretation_draft"]
    if "attachment_id" in rule.arguments:
        values["attachment_id"] = (records["consultation_attachment"] if "consultation_id" in rule.arguments
                                   else records["staff_attachment"])
    if "response_id" in rule.arguments:
        values["response_id"] = records["press_response_draft"]
    if rule.endpoint == "interpret_api.manage_unlink_policy":
        values["policy_id"] = records["policy_published"]
    access_department = {"code": "KJTA"}
    values.update({name: value for name, value in access_department.items() if name in rule.arguments})
    return values


def _record_rules(site: Any) -> list[tuple[str, Any]]:
    found, unclassified = [], []
    for name, app in site.suite.items():
        for rule in app.url_map.iter_rules():
            access = access_rule(app, rule.endpoint)
            if owner_of(rule.rule) != name or access is None or access.kind == "public" or not rule.arguments:
                continue
            if RECORD_ARGUMENTS & set(rule.arguments) or access.department_arg:
                found.append((name, rule))
            elif rule.endpoint not in SHARED_BY_DESIGN:
                unclassified.append(f"{rule.endpoint} {rule.rule}")
    assert not unclassified, ("staff endpoints taking an id that neither names a department's record nor is shared "
                              "by design (add to RECORD_ARGUMENTS or SHARED_BY_DESIGN):\n" + "\n".join(unclassified))
    return found


def test_no_department_reaches_another_departments_records(site: Any) -> None:
    records = site.seed()
    rules = _record_rules(site)
    browsers: dict[str, Any] = {}

    def browser(user: str) -> Any:
        if user not in browsers:
            browsers[user] = site.browser(user)
        return browsers[user]

    for name, rule in rules:  # everyone signed in first: a sign-in is stored (last sign-in time)
        permission = _permission_of(site, name, rule)
        for user in (_user_for(permission, "b"), _user_for(permission, "a")):
            site.token(user)
            browser(user)
    failures: list[str] = []
    checks = 0
    endpoints = set()
    for name, rule in rules:
        permission = _permission_of(site, name, rule)
        outsider, insider = _user_for(permission, "b"), _user_for(permission, "a")
        path = site.path_for(name, rule, records, **_overrides(records, rule))
        is_api = rule.rule.startswith("/api/")
        endpoints.add(rule.endpoint)
        for method in sorted(set(rule.methods or ()) - {"HEAD", "OPTIONS"}):
            before = _snapshot(site, name)
            if is_api:
                kwargs: dict[str, Any] = {"json": _body(rule.endpoint, records)} if method != "GET" else {}
                if rule.endpoint == "interpret_api.manage_upload_attachment":
                    kwargs = {"data": {"file": (io.BytesIO(b"%PDF-1.4\n%%EOF\n"), "越权.pdf")},
                              "content_type": "multipart/form-data"}
                answer = site.api(outsider, method, path, **kwargs)
            elif method == "GET":
                answer = browser(outsider).get(path)
            else:
                pages = browser(outsider)
                answer = pages.open(path, method, data={**FORM_FIELDS, "csrf_token": pages.csrf("/staff/")})
            checks += 1
            if answer.status_code not in (403, 404):
                failures.append(f"{method} {path} as {outsider}: {answer.status_code} "
                                f"{answer.get_data()[:160]!r}")
            if _snapshot(site, name) != before:
                failures.append(f"{method} {path} as {outsider} changed {name}'s records")
            if method == "GET":
                # The same request by the record's own department succeeds: the id was real.
                own = site.api(insider, "GET", path) if is_api else browser(insider).get(path)
                if own.status_code != 200:
                    failures.append(f"GET {path} as {insider} (own department): {own.status_code}")
    print(f"\n[attack] departments: {len(endpoints)} record endpoints of KJTA x their methods, called by KJTB = "
          f"{checks} checks")
    assert not failures, "\n".join(failures)
    assert {"consult", "interpret", "press"} <= {owner_of(rule.rule) for _name, rule in rules}


def test_ids_in_bodies_lists_and_exports_stay_in_their_department(site: Any) -> None:
    from consult.models import Consultation
    from interpret import workflow as interpret_workflow

    records = site.seed()
    with site.transaction("interpret") as session:
        own = interpret_workflow.create_interpretation(session, site.identity("editor_b"),
                                                       interpret_workflow.InterpretationFields(
                                                           title="高新技术处解读", form="文字解读",
                                                           interpreter_kind="处室", body="<p>正文</p>",
                                                           department="KJTB"))
        session.flush()
        own_id = own.id
    consult_before, interpret_before = _snapshot(site, "consult"), _snapshot(site, "interpret")
    # Ids in a body: bulk assignment, a policy link and a related interpretation naming KJTA's drafts.
    bulk = site.api("dispatcher_b", "POST", "/api/consult/manage/consultations/bulk-assign",
                    json={"consultation_ids": [records["consultation"]], "handler_id": 1, "handler_name": "越权"})
    assert bulk.status_code in (403, 404, 422), bulk.get_data(as_text=True)
    assert not (bulk.get_json() or {}).get("assigned")
    console = site.browser("dispatcher_b")
    page_bulk = console.open("/consult/staff/bulk-assign", "POST", data={
        "csrf_token": console.csrf("/staff/"), "consultation_ids": str(records["consultation"]),
        "handler_id": "1", "handler_name": "越权"})
    assert page_bulk.status_code in (303, 403, 404, 422), page_bulk.status_code
    linked = site.api("editor_b", "POST", f"/api/interpret/manage/interpretations/{own_id}/policies",
                      json={"policy_id": records["policy_draft"]})
    related = site.api("editor_b", "POST", f"/api/interpret/manage/interpretations/{own_id}/related",
                       json={"related_id": records["interpretation_draft"]})
    assert linked.status_code in (403, 404, 422) and related.status_code in (403, 404, 422)
    assert "授权" not in linked.get_data(as_text=True)
    assert _snapshot(site, "consult") == consult_before and _snapshot(site, "interpret") == interpret_before
    with site.transaction("consult") as session:
        case = session.get(Consultation, records["consultation"])
        assert case is not None and case.department == "KJTA" and case.handler_name == "editor_a"

    # Lists and filters asking for KJTA by name show nothing of it.
    secret_titles = ("攻击测试咨询", "关于攻击测试的通知（draft）", "攻击测试解读（draft）", "攻击测试回应（草稿）")
    lists = (
        ("editor_b", "/api/consult/manage/consultations", {"department": "KJTA"}),
        ("editor_b", "/api/interpret/manage/policies", {"department": "KJTA"}),
        ("editor_b", "/api/interpret/manage/interpretations", {"department": "KJTA"}),
        ("press_officer_b", "/api/press/manage/responses", {"department": "KJTA"}),
        ("editor_b", "/api/interpret/manage/coverage", {"department": "KJTA"}),
        ("editor_b", "/api/interpret/manage/statistics", {"department": "KJTA"}),
    )
    for user, path, query in lists:
        answer = site.api(user, "GET", path, query_string=query)
        assert answer.status_code in (200, 403, 404, 422), (path, answer.status_code)
        shown = answer.get_data(as_text=True)
        assert not any(title in shown for title in secret_titles), f"{path} as {user} shows KJTA's records"
    for user, path in (("editor_b", "/consult/staff/?department=KJTA"), ("editor_b", "/consult/staff/"),
                       ("press_officer_b", "/press/staff/responses/?department=KJTA"),
                       ("editor_b", "/interpret/dashboard?department=KJTA")):
        answer = site.browser(user).get(path)
        assert answer.status_code in (200, 400, 403, 404), (path, answer.status_code)
        assert not any(title in answer.get_data(as_text=True) for title in secret_titles), f"{path} as {user}"
    # The Excel export of a period, asked for KJTA by KJTB: no KJTA row.
    export = site.api("editor_b", "GET", "/api/consult/manage/export", query_string={"department": "KJTA"})
    assert export.status_code in (200, 403, 404, 422)
    if export.status_code == 200:
        book = load_workbook(io.BytesIO(export.get_data()), read_only=True)
        cells = {str(cell) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)
                 for cell in row if cell is not None}
        assert records["tracking_number"] not in cells and "攻击测试咨询" not in cells
    mine = site.api("editor_a", "GET", "/api/consult/manage/export")
    assert mine.status_code == 200
    book = load_workbook(io.BytesIO(mine.get_data()), read_only=True)
    assert any(records["tracking_number"] == cell for sheet in book.worksheets
               for row in sheet.iter_rows(values_only=True) for cell in row), "the export is not a real check"
