"""What the attack tests share: the suite as a visitor, a signed-in staff member or a script reaches it,
events delivered in-process as the worker would, row counts, and the HTML inertness check.

Everything runs on the in-process suite of ``tests/conftest.py`` (real PostgreSQL, the embedded search
index), through the same path dispatcher nginx mirrors. Each request comes from an address of its own
unless a test is about one address (the public forms and sign-in are rate-limited per address).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from lxml import html as lxml_html
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from services.db import EXTENSION_KEY, get_database, utcnow
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

SERVICES_WITH_OUTBOX = ("interpret", "consult", "press", "identity", "search")

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its production cost takes most of a second per hash on a busy 2-core machine, and these
    tests create and sign in many staff members; the same code hashes and verifies at the lowest cost."""
    from services.identity import accounts

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", cheap)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", cheap.hash("not-a-real-password-0"))


def csrf_of(page: TestResponse | str) -> str:
    text = page if isinstance(page, str) else page.get_data(as_text=True)
    found = CSRF_FIELD.search(text)
    assert found, "no CSRF token on the page"
    return found.group(1)


class Browser:
    """One visitor with a cookie jar (a session, a CSRF token), from one address."""

    def __init__(self, site: Site, address: str | None = None) -> None:
        self.site = site
        self.client = Client(site.dispatcher)
        self.address = address or site.address()

    def open(self, path: str, method: str = "GET", **kwargs: Any) -> TestResponse:
        return self.client.open(path, method=method, environ_base={"REMOTE_ADDR": self.address}, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open(path, **kwargs)

    def csrf(self, form_page: str = "/staff/login") -> str:
        return csrf_of(self.get(form_page))

    def post_form(self, path: str, data: dict[str, Any], form_page: str | None = None, **kwargs: Any) -> TestResponse:
        """A form post as a browser sends it, with the CSRF token of ``form_page`` (default: the login page)."""
        return self.open(path, "POST", data={"csrf_token": self.csrf(form_page or "/staff/login"), **data}, **kwargs)

    def sign_in(self, username: str) -> Browser:
        answer = self.post_form("/staff/login", {"username": username, "password": STAFF_PASSWORD, "next": "/staff/"})
        assert (answer.status_code, answer.headers.get("Location")) == (302, "/staff/"), (username, answer.status_code)
        return self


class Site:
    """The suite as the attack tests reach it."""

    def __init__(self, suite: dict[str, Flask], org: dict[str, Any]) -> None:
        self.suite = suite
        self.org = org
        self.dispatcher = PathDispatcher(suite)
        self.settings = suite["identity"].extensions["gongkai.settings"]
        self._tokens: dict[str, str] = {}
        self._base = f"10.{uuid.uuid4().int % 200 + 20}.{uuid.uuid4().int % 250}"
        self._addresses = itertools.count(1)

    @staticmethod
    def inert_problems(page: str, *, allow_svg: bool = True) -> list[str]:
        return inert_problems(page, allow_svg=allow_svg)

    @staticmethod
    def page_text(page: str) -> str:
        return page_text(page)

    def address(self) -> str:
        """A client address of its own (the public forms and sign-in are rate-limited per address)."""
        number = next(self._addresses)
        if number < 250:
            return f"{self._base}.{number + 1}"
        return f"10.250.{number // 250 % 250}.{number % 250 + 1}"

    def browser(self, username: str | None = None) -> Browser:
        browser = Browser(self)
        return browser.sign_in(username) if username else browser

    def token(self, username: str) -> str:
        if username not in self._tokens:
            answer = Client(self.dispatcher).post(
                "/api/auth/token", json={"username": username, "password": STAFF_PASSWORD},
                environ_base={"REMOTE_ADDR": self.address()})
            assert answer.status_code == 200, answer.get_data(as_text=True)
            self._tokens[username] = answer.get_json()["token"]
        return self._tokens[username]

    def api(self, username: str | None, method: str, path: str, *, address: str | None = None,
            **kwargs: Any) -> TestResponse:
        """A script's call: a bearer token (or none), never a cookie."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if username:
            headers["Authorization"] = f"Bearer {self.token(username)}"
        return Client(self.dispatcher, use_cookies=False).open(
            path, method=method, headers=headers, environ_base={"REMOTE_ADDR": address or self.address()}, **kwargs)

    def identity(self, username: str) -> Any:
        """The signed identity a sign-in would give ``username`` (for steps taken through the workflow)."""
        from services.identity.accounts import build_identity
        from services.identity.models import User

        with get_database("identity", self.suite["identity"]).transaction() as session:
            user = session.scalar(select(User).where(User.username == username))
            assert user is not None, username
            return build_identity(session, user, "api")

    def transaction(self, service: str) -> Any:
        return get_database(service, self.suite[service]).transaction()

    # -- one record of every kind, in division KJTA -----------------------------------------------------

    def seed(self) -> dict[str, Any]:
        """One record of every kind the staff endpoints take an id of, all in division KJTA, published ones
        indexed: what the injection and department tests aim at."""
        found: dict[str, Any] = {}
        found.update(self._seed_interpret())
        found.update(self._seed_consult())
        found.update(self._seed_press())
        self.deliver()
        return found

    def _seed_interpret(self) -> dict[str, Any]:
        from interpret import workflow
        from interpret.attachments import add_attachment

        editor, reviewer = self.identity("editor_a"), self.identity("reviewer_a")
        publisher = self.identity("disclosure_office_a")
        body = "<p>为做好有关工作，现通知如下。</p>"
        pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
        with self.transaction("interpret") as session:
            made: dict[str, Any] = {}
            for state in ("published", "draft", "submitted"):
                made[f"policy_{state}"] = workflow.create_policy(session, editor, workflow.PolicyFields(
                    title=f"关于攻击测试的通知（{state}）", issuer="科学技术厅", level="本级" if state != "published"
                    else "国家", body=body, department="KJTA"))
                made[f"interpretation_{state}"] = workflow.create_interpretation(
                    session, editor, workflow.InterpretationFields(
                        title=f"攻击测试解读（{state}）", form="文字解读", interpreter_kind="处室", body=body,
                        department="KJTA"))
            attachment = add_attachment(session, self.settings, editor, made["policy_draft"], "通知原文.pdf", pdf)
            public_attachment = add_attachment(session, self.settings, editor, made["policy_published"], "附件.pdf",
                                               pdf + b"%public")
            workflow.link_policy(session, editor, made["interpretation_published"], made["policy_published"])
            for state in ("published", "submitted"):
                for kind in ("policy", "interpretation"):
                    workflow.submit(session, editor, made[f"{kind}_{state}"])
            for kind in ("policy", "interpretation"):
                workflow.approve(session, reviewer, made[f"{kind}_published"])
                workflow.publish(session, publisher, made[f"{kind}_published"])
            session.flush()
            result: dict[str, Any] = {name: item.id for name, item in made.items()}
            result.update(staff_attachment=attachment.id, staff_attachment_name=attachment.filename,
                          public_attachment=public_attachment.id, public_attachment_name=public_attachment.filename)
            return result

    def _seed_consult(self) -> dict[str, Any]:
        from consult import workflow
        from consult.models import CannedReply, SubmissionAttachment

        dispatcher, editor = self.identity("dispatcher_a"), self.identity("editor_a")
        with self.transaction("consult") as session:
            settings = self.suite["consult"].extensions["gongkai.settings"]
            asked = workflow.submit_consultation(session, settings, workflow.Submission(
                title="攻击测试咨询", question="请问高新技术企业认定需要哪些材料？", name="王五",
                phone=f"139{uuid.uuid4().int % 10**8:08d}", consent_to_publish=True))
            case = asked.consultation
            workflow.accept(session, dispatcher, case)
            workflow.assign(session, editor, case, None, None)
            workflow.save_draft(session, editor, case, "您好，材料清单见办事指南。")
            note = workflow.add_note(session, editor, case, "内部备注：待核实")
            extension = workflow.request_extension(session, editor, case, 2, "需征求意见")
            now = utcnow()
            attachment = SubmissionAttachment(consultation_id=case.id, filename="材料.pdf",
                                              content_type="application/pdf", size=15, sha256="0" * 64,
                                              content=b"%PDF-1.4\n%%EOF\n", created_at=now)
            canned = CannedReply(category=None, title="攻击测试答复", body="感谢您的咨询。", created_by="样例",
                                 created_at=now)
            answer = workflow.record_answered_consultation(
                session, tracking_number=f"ZX{uuid.uuid4().hex[:10]}", title="攻击测试已公开咨询",
                question="如何办理？", reply="请登录办事大厅办理。", received_at=now, replied_at=now, department="KJTA")
            workflow.publish_answer(session, answer)
            session.add_all([attachment, canned])
            session.flush()
            return {"consultation": case.id, "tracking_number": case.tracking_number, "query_code": asked.query_code,
                    "note": note.id, "extension": extension.id, "consultation_attachment": attachment.id,
                    "canned_reply": canned.id, "answer": answer.id, "case_version": case.version}

    def _seed_press(self) -> dict[str, Any]:
        from services.press import workflow
        from services.press.models import Alert, AlertRule, Topic

        officer, reviewer = self.identity("press_officer_a"), self.identity("reviewer_a")
        now = utcnow()
        with self.transaction("press") as session:
            topic = Topic(label="攻击测试话题", keywords=["攻击", "测试"], size=0, first_at=now, last_at=now)
            rule = AlertRule(name="攻击测试规则", kind="growth", min_messages=5, within_hours=24, min_burst=3.0,
                             response_hours=48)
            session.add_all([topic, rule])
            session.flush()
            session.add(Alert(rule_id=rule.id, topic_id=topic.id, window_key="attack", reason="样例", fired_at=now,
                              response_due=now))
            draft = workflow.create_response(session, officer, workflow.ResponseFields(
                kind="response", title="攻击测试回应（草稿）"), "KJTA")
            published = workflow.create_response(session, officer, workflow.ResponseFields(
                kind="response", title="攻击测试回应", summary="摘要", body="<p>正文</p>"), "KJTA")
            for actor, action in ((officer, "submit"), (reviewer, "approve"), (officer, "publish")):
                workflow.transition(session, actor, published, action)
            session.flush()
            return {"press_topic": topic.id, "press_rule": rule.id, "press_response_draft": draft.id,
                    "press_response": published.id}

    def path_for(self, service: str, rule: Any, records: dict[str, Any], **overrides: Any) -> str:
        """The URL of ``rule`` with its arguments filled from :meth:`seed`'s records (records of KJTA)."""
        values: dict[str, Any] = {}
        for argument in rule.arguments:
            if argument in overrides:
                values[argument] = overrides[argument]
            elif rule._converters[argument].regex == r"\d+":
                values[argument] = int(records.get(INT_SAMPLES.get(argument, ""), 1))
            else:
                values[argument] = STRING_SAMPLES[argument](records) if argument in STRING_SAMPLES else "x"
        return str(self.suite[service].url_map.bind("localhost").build(rule.endpoint, values))

    # -- events, as the worker delivers them ------------------------------------------------------

    def deliver(self, *, audit: bool = False) -> int:
        """Hand every pending outbox event to its in-suite consumers, as the worker would: the search index,
        the press office's copy of each consultation (then one topic update) and, when asked, the audit log."""
        from search.tasks import index_document, remove_document
        from services.events import subscribers
        from services.identity.tasks import append_audit
        from services.press import engine, ingest

        messages: list[dict[str, Any]] = []
        for service in SERVICES_WITH_OUTBOX:
            database = get_database(service, self.suite[service])
            model = database.outbox_model
            with database.transaction() as session:
                events: list[Any] = list(session.scalars(
                    select(model).where(model.sent_at.is_(None)).order_by(model.id)))
                messages += [event.as_message() for event in events]
                for event in events:
                    event.sent_at = utcnow()
        press_settings = self.suite["press"].extensions["gongkai.settings"]
        for message in messages:
            for task in subscribers(message["topic"]):
                if task in ("search.index_document", "search.remove_document"):
                    with self.suite["search"].app_context():
                        consume = index_document if task == "search.index_document" else remove_document
                        assert consume(message) in ("indexed", "removed", "stale"), message["topic"]
                elif task == "press.ingest_consultation":
                    with get_database("press", self.suite["press"]).transaction() as session:
                        ingest.ingest_consultation(session, press_settings, message)
                elif task == "identity.append_audit" and audit:
                    with self.suite["identity"].app_context():
                        append_audit.run(message)
        with get_database("press", self.suite["press"]).transaction() as session:
            engine.update_topics(session, press_settings)
        return len(messages)

    # -- what is stored ------------------------------------------------------------------------------

    def outbox_topics(self) -> set[tuple[str, str]]:
        """(service, topic) of every outbox event by its id, so that new ones show."""
        found: set[tuple[str, str]] = set()
        for service in SERVICES_WITH_OUTBOX:
            database = get_database(service, self.suite[service])
            model = database.outbox_model
            with database.transaction() as session:
                found |= {(f"{service}:{event_id}", str(topic)) for event_id, topic in session.execute(
                    select(model.id, model.topic))}
        return found

    def row_counts(self) -> dict[str, int]:
        """Rows per table of every service's database."""
        counts: dict[str, int] = {}
        for service in SERVICES_WITH_OUTBOX:
            database = get_database(service, self.suite[service])
            with database.transaction() as session:
                for table in database.outbox_model.metadata.sorted_tables:
                    count = session.scalar(select(func.count()).select_from(table))
                    counts[f"{service}.{table.name}"] = int(count or 0)
        return counts


INT_SAMPLES = {
    "policy_id": "policy_published", "interpretation_id": "interpretation_published", "consultation_id": "consultation",
    "answer_id": "answer", "attachment_id": "public_attachment", "extension_id": "extension",
    "topic_id": "press_topic", "rule_id": "press_rule", "response_id": "press_response", "reply_id": "canned_reply",
}
"""URL argument → the :meth:`Site.seed` record it is filled with."""
STRING_SAMPLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "tracking_number": lambda records: str(records["tracking_number"]),
    "doc_id": lambda records: f"policy-{records['policy_published']}",
    "code": lambda _records: "KJTA",
    "filename": lambda records: str(records["public_attachment_name"]),
}


@pytest.fixture
def site(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Site:
    """The suite with the test organisation; events stay in the outboxes until :meth:`Site.deliver`."""
    from dataclasses import replace

    for app in suite.values():
        for database in app.extensions.get(EXTENSION_KEY, {}).values():
            monkeypatch.setattr(database, "publisher", None)
    consult = suite["consult"]
    monkeypatch.setitem(consult.extensions, "gongkai.settings",
                        replace(consult.extensions["gongkai.settings"], consult_intake_department="KJTA"))
    return Site(suite, org)


# -- is a page inert? ---------------------------------------------------------------------------------

URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "data", "xlink:href", "background", "poster",
                            "srcset", "lowsrc", "dynsrc", "codebase", "cite", "longdesc", "usemap", "ping"})
EMBEDDING_TAGS = frozenset({"iframe", "frame", "frameset", "object", "embed", "applet", "base", "portal"})
SAME_SITE_SCRIPTS = ("/static/", "/press/static/", "/api/")
"""Where the suite's own scripts are served from (the portal's, the press console's and Swagger UI's)."""
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:")


def _url_scheme(value: str) -> str:
    """The lowercase URL as a browser reads its scheme: control characters and spaces dropped."""
    return re.sub(r"[\x00-\x20]", "", value).lower()


def _element_problems(tag: str, attributes: list[tuple[str, str | None]], text: str, allow_svg: bool) -> list[str]:
    problems: list[str] = []
    values = {name.lower(): value or "" for name, value in attributes}
    if tag == "script":
        source = values.get("src")
        if source is None:
            if values.get("type", "").lower() != "application/json":
                problems.append(f"inline script: {text[:80]!r}")
            elif "<" in text:
                problems.append("markup inside a JSON script block")
        elif not source.startswith(SAME_SITE_SCRIPTS) or "//" in source:
            problems.append(f"script from {source!r}")
    if tag in EMBEDDING_TAGS or tag == "math" or (tag == "svg" and not allow_svg):
        problems.append(f"<{tag}> element")
    if tag == "meta" and values.get("http-equiv", "").lower() == "refresh" and "url" in values.get(
            "content", "").lower():
        problems.append(f"meta refresh to {values.get('content')!r}")
    if tag == "style":
        problems.append("inline <style> element")
    for name, value in values.items():
        if name.startswith("on"):
            problems.append(f"event handler attribute <{tag} {name}={value[:60]!r}>")
        scheme = _url_scheme(value)
        if (name in URL_ATTRIBUTES and scheme.startswith(DANGEROUS_SCHEMES)
                and not (tag == "img" and scheme.startswith("data:image/"))):
            problems.append(f"script URL <{tag} {name}={value[:60]!r}>")
        if name == "style" and re.search(r"expression\s*\(|javascript:|url\s*\(", value, re.I):
            problems.append(f"active CSS <{tag} style={value[:60]!r}>")
        if name == "srcdoc":
            problems.append(f"<{tag} srcdoc>")
    return problems


class _TagScanner(HTMLParser):
    """Every start tag as the tokenizer meets it, before a tree builder merges or drops any (a second
    ``<body onload>`` is dropped by lxml, but a browser moves its attributes onto the page's body)."""

    def __init__(self, allow_svg: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.allow_svg = allow_svg
        self.problems: list[str] = []
        self._script: tuple[list[tuple[str, str | None]], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._script = (attrs, [])
            return
        self.problems += _element_problems(tag, attrs, "", self.allow_svg)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            attrs, text = self._script
            self.problems += _element_problems("script", attrs, "".join(text), self.allow_svg)
            self._script = None


def inert_problems(page: str, *, allow_svg: bool = True) -> list[str]:
    """What in an HTML page could run script or leave the page: parsed, not searched as text, twice: as a
    tree (lxml) and tag by tag (the standard library's tokenizer); a finding of either counts.

    The suite's own templates carry no inline script, no event handler attribute and no script URL, so
    anything of the kind in a page came from data. The suite draws charts and QR codes as inline SVG: an
    ``<svg>`` element is allowed there (its attributes and children are checked like any other).
    """
    if not page.strip():
        return []
    problems: list[str] = []
    for element in lxml_html.document_fromstring(page).iter():
        if isinstance(element.tag, str):  # not a comment or a processing instruction
            problems += _element_problems(element.tag.lower(), list(element.attrib.items()),
                                          element.text or "", allow_svg)
    scanner = _TagScanner(allow_svg)
    scanner.feed(page)
    scanner.close()
    return problems + [problem for problem in scanner.problems if problem not in problems]


def page_text(page: str) -> str:
    """The text a reader sees (no markup, no attribute values)."""
    if not page.strip():
        return ""
    return str(lxml_html.document_fromstring(page).text_content())


@pytest.fixture
def inert_check() -> Callable[..., list[str]]:
    """:func:`inert_problems`, for a test of the check itself (no suite needed)."""
    return inert_problems
