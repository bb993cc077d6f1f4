"""Stored and reflected cross-site scripting: a corpus of payloads through every public text field and
parameter, and through what staff write, must render inert on every page that shows it.

Each payload carries a marker (``xz07``) so that the test knows the field really reached the page (a
check on a page that does not show the field proves nothing). A page is parsed (lxml), not searched as
text: no script element but the suite's own, no event-handler attribute, no ``javascript:``/``data:`` URL,
no embedding element, no active CSS, and a template expression is never evaluated. The JSON APIs return
the same text as data, as ``application/json``. Every HTML page carries the suite's Content-Security-Policy.

The journey of each payload: a citizen asks (title, question, name) → the tracking page → staff accept,
assign, draft, note, review, reply, redact and publish it (the staff members' display names are payloads
too) → the answer page, the 咨询回复 board, search results, the home page, the statistics and the press
office's topics; staff also write policies and interpretations (title, summary, rich-text body, issuer,
interpreter, key points, attachment names; a document number that is a payload is refused) and press
responses; the search query and its filters and the consult filters are reflected.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass, field
from html import escape as html_escape
from typing import Any

from werkzeug.test import TestResponse

from services.security import CONTENT_SECURITY_POLICY

TEMPLATE_RESULT = "21959"
"""3137*7: what a template engine evaluating the payloads' expressions would print."""

PAYLOADS: tuple[str, ...] = (
    "<script>alert('{m}')</script>",
    "<img src=x onerror=alert('{m}')>",
    "<svg onload=alert('{m}')>",
    "<svg><script>alert('{m}')</script>",
    "<math><mi xlink:href=\"javascript:alert('{m}')\">{m}</mi>",
    "<a href=\"javascript:alert('{m}')\">{m}</a>",
    "<a href=\"jav&#x09;ascript:alert('{m}')\">{m}</a>",
    "<a href=\" data:text/html,<script>alert('{m}')</script>\">{m}</a>",
    "<iframe src=\"javascript:alert('{m}')\">",
    "<scr<script>ipt>alert('{m}')</script>",
    "<<script>alert('{m}');//<</script>",
    "&lt;script&gt;alert('{m}')&lt;/script&gt;",
    "&#60;img src=x onerror=alert('{m}')&#62;",
    "＜script＞alert('{m}')＜/script＞",
    "{{{{3137*7}}}} {{{{ 3137*7 }}}} {m}",
    "${{3137*7}} #{{3137*7}} <%= 3137*7 %> {m}",
    "<div style=\"width:expression(alert('{m}'))\">{m}</div>",
    "</title><script>alert('{m}')</script>",
    "\"><script>alert('{m}')</script>",
    "' onmouseover='alert(\"{m}\")' x='",
    "\" autofocus onfocus=\"alert('{m}')",
    "<body onload=alert('{m}')>",
    "<details open ontoggle=alert('{m}')>",
    "javascript:alert('{m}')",
    "<base href=\"//evil.example/\">{m}",
    "<meta http-equiv=refresh content=\"0;url=javascript:alert('{m}')\">",
    "</textarea><script>alert('{m}')</script>",
    "<!--<img src=\"--><img src=x onerror=alert('{m}')//\">",
    "%3Cscript%3Ealert('{m}')%3C/script%3E",
    "<object data=\"javascript:alert('{m}')\">",
)
NAME_MAX = 50
"""The longest name the form accepts; longer payloads are tried in the other fields only."""


@dataclass(frozen=True)
class Payload:
    number: int
    text: str

    @property
    def marker(self) -> str:
        return f"xz{self.number:02d}"


def corpus() -> list[Payload]:
    return [Payload(number, template.format(m=f"xz{number:02d}")) for number, template in enumerate(PAYLOADS, 1)]


@dataclass
class Findings:
    """What every page and API answer checked so far showed."""

    site: Any
    problems: list[str] = field(default_factory=list)
    checks: int = 0
    pages: int = 0
    json_answers: int = 0
    refused: int = 0
    """Rich-text bodies refused for their markup (then written as text)."""
    fields: set[str] = field(default_factory=set)

    def page(self, label: str, answer: TestResponse, shows: dict[str, list[Payload]] | None = None,
             status: int | tuple[int, ...] = 200, allow_svg: bool = True) -> str:
        """Check one HTML page; ``shows`` names each field the page must show, with its payloads."""
        statuses = status if isinstance(status, tuple) else (status,)
        if answer.status_code not in statuses:
            self.problems.append(f"{label}: status {answer.status_code}, expected {statuses}")
            return ""
        if not answer.content_type.startswith("text/html"):
            self.problems.append(f"{label}: {answer.content_type}, not an HTML page")
            return ""
        if answer.headers.get("Content-Security-Policy") != CONTENT_SECURITY_POLICY:
            self.problems.append(f"{label}: Content-Security-Policy {answer.headers.get('Content-Security-Policy')!r}")
        if answer.headers.get("X-Content-Type-Options") != "nosniff":
            self.problems.append(f"{label}: no X-Content-Type-Options: nosniff")
        html = answer.get_data(as_text=True)
        self.pages += 1
        self.problems += [f"{label}: {problem}" for problem in self.site.inert_problems(html, allow_svg=allow_svg)]
        text = self.site.page_text(html)
        if TEMPLATE_RESULT in text:
            self.problems.append(f"{label}: a template expression was evaluated ({TEMPLATE_RESULT} on the page)")
        for field_name, payloads in (shows or {}).items():
            self.fields.add(field_name)
            for payload in payloads:
                self.checks += 1
                if payload.marker not in html:
                    self.problems.append(f"{label}: {field_name} with payload {payload.number} is not on the page")
        return html

    def data(self, label: str, answer: TestResponse, status: int | tuple[int, ...] = 200,
             shows: dict[str, list[Payload]] | None = None) -> Any:
        """Check one JSON answer: JSON, and the payloads in it as text."""
        statuses = status if isinstance(status, tuple) else (status,)
        if answer.status_code not in statuses:
            self.problems.append(f"{label}: status {answer.status_code}, expected {statuses}")
            return None
        if answer.mimetype != "application/json":
            self.problems.append(f"{label}: {answer.content_type}, not application/json")
            return None
        self.json_answers += 1
        body = answer.get_json()
        as_text = json.dumps(body, ensure_ascii=False)
        for field_name, payloads in (shows or {}).items():
            self.fields.add(field_name)
            for payload in payloads:
                self.checks += 1
                if payload.marker not in as_text:
                    self.problems.append(f"{label}: {field_name} with payload {payload.number} is not in the JSON")
        return body


# -- the staff who write ------------------------------------------------------------------------------


def _payload_staff(site: Any, payloads: list[Payload]) -> dict[int, str]:
    """A staff member of KJTA per payload, named by it, editing and answering the press office's work."""
    from services.db import get_database
    from services.identity.accounts import assign_role, create_user
    from services.identity.models import Department
    from services.permissions import Role

    from support.org import STAFF_PASSWORD

    usernames = {}
    with get_database("identity", site.suite["identity"]).transaction() as session:
        division = session.query(Department).filter_by(code="KJTA").one()
        for payload in payloads:
            username = f"xss_{payload.number:02d}_{uuid.uuid4().hex[:4]}"
            user = create_user(session, site.settings, username=username, display_name=payload.text[:100],
                               password=STAFF_PASSWORD)
            user.must_change_password = False
            for role in (Role.EDITOR, Role.PRESS_OFFICER):
                assign_role(session, user, role, division)
            usernames[payload.number] = username
    return usernames


def _ok(answer: TestResponse, what: str, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{what}: {answer.status_code} {answer.get_data(as_text=True)[:400]}"
    body: dict[str, Any] = answer.get_json()
    return body


# -- the journey ------------------------------------------------------------------------------------


def _consultations(site: Any, findings: Findings, payloads: list[Payload], editors: dict[int, str]
                   ) -> dict[int, dict[str, Any]]:
    """Each payload asked as title, question and name; staff write it into the reply and a note (through the
    API), and take the case to publication (through the workflow, as the API would)."""
    from sqlalchemy import select

    from consult import workflow
    from consult.models import Consultation

    cases: dict[int, dict[str, Any]] = {}
    for payload in payloads:
        body = {"title": f"安全测试{payload.text}"[:100], "question": f"请问如何办理？{payload.text}",
                "name": payload.text if len(payload.text) <= NAME_MAX else f"张三{payload.marker}",
                "phone": f"139{uuid.uuid4().int % 10**8:08d}", "consent_to_publish": True}
        receipt = _ok(site.api(None, "POST", "/api/consult/consultations", json=body), "submit", 201)
        cases[payload.number] = {"receipt": receipt}
    dispatcher, reviewer = site.identity("dispatcher_a"), site.identity("reviewer_a")
    publisher = site.identity("disclosure_office_a")

    def step(case: dict[str, Any], *actions: Any) -> None:
        with site.transaction("consult") as session:
            consultation = session.get(Consultation, case["id"])
            for action in actions:
                action(session, consultation)

    with site.transaction("consult") as session:
        ids = dict(session.execute(select(Consultation.tracking_number, Consultation.id)).all())
    for payload in payloads:
        case = cases[payload.number]
        case["id"] = case_id = ids[case["receipt"]["tracking_number"]]
        editor = site.identity(editors[payload.number])
        step(case, lambda s, c: workflow.accept(s, dispatcher, c),
             lambda s, c, e=editor: workflow.assign(s, e, c, None, None))
        base = f"/api/consult/manage/consultations/{case_id}"
        _ok(site.api(editor.username, "PUT", f"{base}/draft", json={"reply": f"您好，答复如下：{payload.text}"}),
            "draft")
        _ok(site.api(editor.username, "POST", f"{base}/notes", json={"text": f"内部备注{payload.text}"}), "note")

        def confirm(s: Any, c: Any) -> None:
            review = workflow.personal_data_review(c)
            workflow.confirm_redaction(s, reviewer, c, review.proposed_question, review.proposed_reply)

        step(case, lambda s, c, e=editor: workflow.submit_for_review(s, e, c),
             lambda s, c: workflow.approve(s, reviewer, c), lambda s, c, e=editor: workflow.send_reply(s, e, c),
             confirm, lambda s, c: workflow.publish(s, publisher, c))
        findings.data(f"staff API case {payload.number}", site.api(editor.username, "GET", base), shows={
            "consultation title (staff API)": [payload], "staff reply (staff API)": [payload]})
        case["answer_url"] = f"/consult/answers/{case_id}"
    return cases


def _create_rich(site: Any, findings: Findings, user: str, path: str, payload: Payload, fields: dict[str, Any]
                 ) -> dict[str, Any]:
    """Create with the payload as the rich-text body; when the markup is refused (422 on ``body``, nothing
    stored), create it as an editor typing the payload as text would (escaped inside a paragraph)."""
    rich = f"<p>正文{payload.text}</p>{payload.text}"
    answer = site.api(user, "POST", path, json={**fields, "body": rich})
    if answer.status_code == 422:
        refused = findings.data(f"{path} refused body {payload.number}", answer, status=422)
        assert set(refused["errors"]["json"]) == {"body"}, refused
        findings.refused += 1
        answer = site.api(user, "POST", path, json={**fields, "body": f"<p>正文{html_escape(payload.text)}</p>"})
    return _ok(answer, path, 201)


def _policies(site: Any, findings: Findings, payloads: list[Payload], editors: dict[int, str]
              ) -> dict[int, dict[str, int]]:
    """Each payload written by staff into a policy (with an attachment named by it) and its interpretation
    (through the API), both then published (through the workflow)."""
    from interpret import workflow
    from interpret.models import Interpretation, Policy

    reviewer, publisher = site.identity("reviewer_a"), site.identity("disclosure_office_a")
    made: dict[int, dict[str, int]] = {}
    for payload in payloads:
        editor = editors[payload.number]
        refused = site.api(editor, "POST", "/api/interpret/manage/policies", json={
            "title": f"政策{payload.marker}", "issuer": "科学技术厅", "level": "国家", "department": "KJTA",
            "document_number": payload.text})
        findings.data(f"document number {payload.number}", refused, status=422)
        policy = _create_rich(site, findings, editor, "/api/interpret/manage/policies", payload, {
            "title": f"关于安全测试的通知{payload.text}", "issuer": f"科学技术厅{payload.text}"[:200], "level": "国家",
            "department": "KJTA", "topic": payload.text, "source": payload.text})
        pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + payload.marker.encode()
        upload = site.api(editor, "POST", f"/api/interpret/manage/policies/{policy['id']}/attachments",
                          data={"file": (io.BytesIO(pdf), f"{payload.text}.pdf")}, content_type="multipart/form-data")
        findings.data(f"attachment {payload.number}", upload, status=(201, 422))
        interpretation = _create_rich(site, findings, editor, "/api/interpret/manage/interpretations", payload, {
            "title": f"安全测试解读{payload.text}", "form": "文字解读", "interpreter_kind": "专家",
            "interpreter_name": payload.text[:100], "summary": f"摘要{payload.text}",
            "key_points": [f"要点{payload.text}"], "department": "KJTA"})
        author = site.identity(editor)
        with site.transaction("interpret") as session:
            document, explained = session.get(Policy, policy["id"]), session.get(Interpretation, interpretation["id"])
            workflow.link_policy(session, author, explained, document)
            for item in (document, explained):
                workflow.submit(session, author, item)
                workflow.approve(session, reviewer, item)
                workflow.publish(session, publisher, item)
        made[payload.number] = {"policy": policy["id"], "interpretation": interpretation["id"]}
    return made


def _press_responses(site: Any, findings: Findings, payloads: list[Payload], editors: dict[int, str]
                     ) -> dict[int, int]:
    """Each payload written by a press officer into a response (through the API), published."""
    from services.press import workflow
    from services.press.models import Response

    reviewer = site.identity("reviewer_a")
    made = {}
    for payload in payloads:
        officer = editors[payload.number]
        response = _create_rich(site, findings, officer, "/api/press/manage/responses", payload, {
            "kind": "response", "title": f"回应关切{payload.text}"[:100], "summary": f"摘要{payload.text}",
            "department": "KJTA"})
        author = site.identity(officer)
        with site.transaction("press") as session:
            item = session.get(Response, response["id"])
            for actor, action in ((author, "submit"), (reviewer, "approve"), (author, "publish")):
                workflow.transition(session, actor, item, action)
        made[payload.number] = response["id"]
    return made


SEARCH_FILTERS = ("type", "department", "level", "form", "category", "validity", "date_from", "date_to", "sort",
                  "page")
BOARD_FILTERS = ("department", "category", "month", "page")


def _check_the_asker_and_the_office(site: Any, findings: Findings, payload: Payload, case: dict[str, Any],
                                    dispatcher: Any) -> None:
    """The tracking page and API, the case page, the published answer."""
    one = [payload]
    receipt = case["receipt"]
    number, code = receipt["tracking_number"], receipt["query_code"]
    tracked = site.browser().post_form("/consult/track", {"tracking_number": number, "code": code},
                                       form_page="/consult/track")
    findings.page(f"tracking page {payload.number}", tracked,
                  {"consultation title": one, "question": one, "reply": one})
    findings.data(f"tracking API {payload.number}", site.api(None, "GET", f"/api/consult/consultations/{number}",
                                                             query_string={"code": code}),
                  shows={"consultation title (API)": one, "reply (API)": one})
    findings.page(f"case page {payload.number}", dispatcher.get(f"/consult/staff/{case['id']}"), {
        "consultation title (staff)": one, "asker name (staff)": one if len(payload.text) <= NAME_MAX else [],
        "internal note": one, "handler name": one})
    findings.page(f"answer page {payload.number}", site.browser().get(case["answer_url"]),
                  {"published question": one, "published reply": one})


def _check_reflections(site: Any, findings: Findings, payload: Payload, visitor: Any) -> None:
    """The payload as the search query (reflected and matching the stored titles), in every search and
    board filter, and echoed by the public forms that refuse it."""
    one = [payload]
    findings.page(f"search q={payload.number}", visitor.get("/search/", query_string={"q": payload.text}),
                  {"search query (reflected)": one})
    for path in ("/api/search", "/api/search/suggest"):
        findings.data(f"{path} q={payload.number}", site.api(None, "GET", path, query_string={"q": payload.text}))
    findings.page(f"search results {payload.number}", visitor.get("/search/", query_string={"q": payload.marker}),
                  {"search result title": one})
    filters = {"q": "通知", **dict.fromkeys(SEARCH_FILTERS, payload.text)}
    findings.page(f"search filters {payload.number}", visitor.get("/search/", query_string=filters),
                  status=(200, 400, 422))
    findings.data(f"search API filters {payload.number}", site.api(None, "GET", "/api/search", query_string=filters),
                  status=(400, 422))
    for name in BOARD_FILTERS:
        findings.page(f"board {name}={payload.number}", visitor.get("/consult/answers",
                                                                     query_string={name: payload.text}),
                      status=(200, 400))
    findings.page(f"statistics year={payload.number}", visitor.get("/consult/statistics",
                                                                   query_string={"year": payload.text}))
    echoed = site.browser().post_form("/consult/ask", {"title": payload.text, "question": payload.text,
                                                       "name": payload.text, "phone": "12345"},
                                      form_page="/consult/ask")
    findings.page(f"ask form echo {payload.number}", echoed, {"ask form (reflected)": one}, status=422)
    wrong = site.browser().post_form("/consult/track", {"tracking_number": payload.text, "code": payload.text},
                                     form_page="/consult/track")
    findings.page(f"track form echo {payload.number}", wrong, status=422)


def _check_staff_writing(site: Any, findings: Findings, payload: Payload, made: dict[str, int], response_id: int,
                         author: str, visitor: Any, press: Any) -> None:
    """Policies, interpretations and press responses written by staff; the author greeted by name."""
    one = [payload]
    policy, interpretation = made["policy"], made["interpretation"]
    findings.page(f"policy page {payload.number}", visitor.get(f"/interpret/policies/{policy}"),
                  {"policy title": one, "policy body (rich text)": one, "policy issuer": one})
    findings.page(f"interpretation page {payload.number}", visitor.get(f"/interpret/interpretations/{interpretation}"),
                  {"interpretation title": one, "interpretation summary": one,
                   "interpretation body (rich text)": one, "interpreter name": one, "key points": one})
    findings.data(f"policy API {payload.number}", site.api(None, "GET", f"/api/interpret/policies/{policy}"),
                  shows={"policy title (API)": one})
    findings.page(f"press response page {payload.number}", visitor.get(f"/press/responses/{response_id}"),
                  {"press response title": one, "press response summary or body": one})
    findings.page(f"press staff response {payload.number}", press.get(f"/press/staff/responses/{response_id}"),
                  {"press response (staff)": one, "author name (press staff)": one})
    findings.data(f"press API {payload.number}", site.api(author, "GET", f"/api/press/manage/responses/{response_id}"),
                  shows={"press response (API)": one})
    findings.page(f"staff home {payload.number}", site.browser(author).get("/staff/"), {"staff display name": one})


def _check_lists(site: Any, findings: Findings, payloads: list[Payload], visitor: Any) -> None:
    """Every payload on the board and the lists of policies, interpretations and responses (two pages)."""
    for path, field_name in (("/consult/answers", "board titles"), ("/interpret/policies", "policy list titles"),
                             ("/interpret/interpretations", "interpretation list titles"),
                             ("/press/responses", "press response list titles")):
        shown = "".join(findings.page(f"list {path} page {page}", visitor.get(path, query_string={"page": page}),
                                      status=(200, 404)) for page in (1, 2))
        findings.fields.add(field_name)
        for payload in payloads:
            findings.checks += 1
            if payload.marker not in shown:
                findings.problems.append(f"{path}: payload {payload.number} not listed")


def _check_consoles(site: Any, findings: Findings, payloads: list[Payload]) -> None:
    """What staff type into the consoles' settings: canned replies, search synonyms, press alert rules; each
    accepted entry is listed on its page, each refused one is answered as a form error."""
    reviewer, office, press = (site.browser(user) for user in ("reviewer_a", "disclosure_office_a",
                                                                 "press_officer_a"))
    accepted: dict[str, list[Payload]] = {"canned reply": [], "search synonyms": [], "alert rule": []}
    for payload in payloads:
        canned = reviewer.post_form("/consult/staff/canned", {"title": payload.text[:50], "body": payload.text,
                                                              "category": ""}, form_page="/consult/staff/canned")
        if canned.status_code == 303:
            accepted["canned reply"].append(payload)
        else:
            findings.page(f"canned reply refused {payload.number}", canned, status=422)
        synonyms = office.post_form("/search/admin/synonyms", {"terms": f"{payload.text[:200]}，公积金"},
                                    form_page="/search/admin/synonyms")
        if synonyms.status_code == 303:
            accepted["search synonyms"].append(payload)
        else:
            findings.page(f"synonyms refused {payload.number}", synonyms, status=422)
        rule = site.api("press_officer_a", "POST", "/api/press/rules", json={
            "name": payload.text[:100], "kind": "emergency", "terms": [payload.text[:50]]})
        if rule.status_code == 201:
            accepted["alert rule"].append(payload)
        else:
            findings.data(f"alert rule refused {payload.number}", rule, status=422)
    findings.page("canned replies", reviewer.get("/consult/staff/canned"), {"canned reply": accepted["canned reply"]})
    findings.page("synonyms", office.get("/search/admin/synonyms"), {"search synonyms": accepted["search synonyms"]})
    findings.page("alert rules", press.get("/press/rules"), {"alert rule": accepted["alert rule"]})


def test_every_payload_renders_inert_wherever_it_is_shown(site: Any) -> None:
    findings = Findings(site)
    payloads = corpus()
    editors = _payload_staff(site, payloads)
    cases = _consultations(site, findings, payloads, editors)
    content = _policies(site, findings, payloads, editors)
    responses = _press_responses(site, findings, payloads, editors)
    assert site.deliver() > 0

    visitor, dispatcher, press = site.browser(), site.browser("dispatcher_a"), site.browser("press_officer_a")
    admin, auditor = site.browser("admin1"), site.browser("auditor_a")
    for payload in payloads:
        _check_the_asker_and_the_office(site, findings, payload, cases[payload.number], dispatcher)
        _check_reflections(site, findings, payload, visitor)
        _check_staff_writing(site, findings, payload, content[payload.number], responses[payload.number],
                             editors[payload.number], visitor, press)
        findings.page(f"audit filters {payload.number}", auditor.get("/staff/audit", query_string={
            "username": payload.text, "action": payload.text, "date_from": payload.text}), {
            "audit filters (reflected)": [payload] if len(payload.text) <= 64 else []}, status=(200, 400))
    _check_lists(site, findings, payloads, visitor)
    _check_consoles(site, findings, payloads)
    findings.page("home", visitor.get("/"))
    findings.page("statistics", visitor.get("/consult/statistics"))
    findings.page("consult inbox", dispatcher.get("/consult/staff/", query_string={"state": "published"}))
    findings.page("users (admin)", admin.get("/staff/admin/users"), {"staff display name (admin)": payloads})
    findings.page("press dashboard", press.get("/press/"))
    topics = findings.data("press topics API", site.api("press_officer_a", "GET", "/api/press/topics",
                                                         query_string={"limit": 50}))
    topic_ids = [topic.get("id") or topic.get("topic_id") for topic in (topics or {}).get("topics", [])]
    assert topic_ids, "the consultations made no press topic"
    shown_in_topics = ""
    for topic_id in topic_ids[:10]:
        shown_in_topics += findings.page(f"press topic {topic_id}", press.get(f"/press/topics/{topic_id}"))
        findings.data(f"press topic messages {topic_id}", site.api(
            "press_officer_a", "GET", f"/api/press/topics/{topic_id}/messages", query_string={"per_page": 100}))

    in_topics = [payload for payload in payloads if payload.marker in shown_in_topics]
    assert in_topics, "no consultation reached a press topic page"
    findings.fields.add("consultation in a press topic")
    findings.checks += len(in_topics)

    print(f"\n[attack] xss: {len(payloads)} payloads x {len(findings.fields)} fields = {findings.checks} checks "
          f"({findings.pages} pages parsed, {findings.json_answers} JSON answers, {findings.refused} rich-text bodies "
          f"refused for their markup)")
    assert not findings.problems, f"{len(findings.problems)} problems:\n" + "\n".join(findings.problems[:80])


def test_every_html_page_carries_the_content_security_policy(site: Any) -> None:
    """The header on every GET page the suite has, for the public and signed in (no inline script allowed)."""
    from services.suite import owner_of

    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "object-src 'none'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    visitor, staff = site.browser(), site.browser("disclosure_office_a")
    checked, missing = 0, []
    for name, app in site.suite.items():
        for rule in app.url_map.iter_rules():
            if "GET" not in (rule.methods or ()) or rule.arguments or owner_of(rule.rule) != name:
                continue
            for who, browser in (("public", visitor), ("staff", staff)):
                answer = browser.get(rule.rule)
                if not answer.content_type.startswith("text/html"):
                    continue
                checked += 1
                policy = answer.headers.get("Content-Security-Policy", "")
                if "script-src 'self'" not in policy or "unsafe-inline" in policy.split("script-src")[1].split(";")[0]:
                    missing.append(f"{rule.rule} ({who}): {policy!r}")
                if answer.headers.get("X-Content-Type-Options") != "nosniff" or (
                        answer.headers.get("X-Frame-Options") != "DENY"):
                    missing.append(f"{rule.rule} ({who}): security headers {dict(answer.headers)}")
    print(f"\n[attack] csp: {checked} HTML pages checked for the policy and the security headers")
    assert checked > 30
    assert not missing, "\n".join(missing)



def test_the_inertness_check_finds_what_a_browser_would_run(inert_check: Any) -> None:
    """The check is not vacuous: each payload pasted raw into a page is caught, and escaped it is not."""
    shell = '<!doctype html><html><head><title>{0}</title></head><body><p>{0}</p><a href="/x">{0}</a></body></html>'
    caught = []
    for payload in corpus():
        if not re.search(r"<\w|javascript:", payload.text) or payload.text.startswith("&"):
            continue  # text that only a decoding step would turn into markup
        assert inert_check(shell.format(html_escape(payload.text))) == [], payload.text
        if inert_check(shell.format(payload.text)):
            caught.append(payload.number)
    raw_markup = [payload.number for payload in corpus() if re.search(r"<(?!%)\w", payload.text)
                  and not payload.text.startswith(("&", "%", "＜"))]
    # 10 (<scr<script>ipt>) defeats naive filters but is no script tag raw either; 17 is a style attribute
    # (the CSP blocks it; checked below).
    missed = sorted(set(raw_markup) - set(caught) - {10, 17})
    assert not missed, f"payloads the check did not catch when raw: {missed}"
    assert inert_check('<p style="width:expression(alert(1))">x</p>')
    assert inert_check('<a href="  JaVa&#x09;Script:alert(1)">x</a>')
    assert inert_check('<img src="data:image/png;base64,AAAA">') == []
