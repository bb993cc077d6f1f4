"""The consult staff console as staff use it: signed in with the session cookie, forms with CSRF tokens.

Consultations are submitted through ``consult.workflow`` with the intake department set to division
KJTA (no router model is installed in tests), then taken through the pages by the org fixture's
users: dispatcher_a, editor_a, reviewer_a, disclosure_office_a in KJTA, their ``_b`` twins in KJTB.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from html import unescape
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from consult import workflow
from consult.models import (
    CannedReply,
    CategoryDeadline,
    Consultation,
    InternalNote,
    OutboxEvent,
    SubmissionAttachment,
)
from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.permissions import Grant, Role
from services.suite import PathDispatcher

from support.org import STAFF_PASSWORD

CATEGORY = "科技与信息产业"


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def app(suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The consult app with its intake queue in division KJTA; events stay in the (rolled-back) outbox."""
    consult_app = suite["consult"]
    settings = consult_app.extensions["gongkai.settings"]
    monkeypatch.setitem(consult_app.extensions, "gongkai.settings",
                        replace(settings, consult_intake_department="KJTA"))
    monkeypatch.setattr(get_database("consult", consult_app), "publisher", None)
    return consult_app


def _csrf(page: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, page.request.path
    return found.group(1)


class Staff:
    """A signed-in browser: the session cookie, and the CSRF token of its session."""

    def __init__(self, suite: dict[str, Flask], username: str) -> None:
        self.client = Client(PathDispatcher(suite))
        address = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
        self.environ = {"REMOTE_ADDR": address}
        form = self.client.get("/staff/login", environ_base=self.environ)
        answer = self.client.post("/staff/login", environ_base=self.environ, data={
            "csrf_token": _csrf(form), "username": username, "password": STAFF_PASSWORD, "next": "/staff/",
        })
        assert answer.headers.get("Location") == "/staff/", username
        self.csrf = _csrf(self.client.get("/staff/", environ_base=self.environ))

    def get(self, path: str) -> TestResponse:
        return self.client.get(path, environ_base=self.environ)

    def post(self, path: str, data: dict[str, Any] | None = None) -> TestResponse:
        return self.client.post(path, environ_base=self.environ, data={"csrf_token": self.csrf, **(data or {})})

    def html(self, path: str) -> str:
        answer = self.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        return answer.get_data(as_text=True)


SignIn = Callable[[str], Staff]


@pytest.fixture
def sign_in(suite: dict[str, Flask], org: dict[str, Any]) -> SignIn:
    return lambda username: Staff(suite, username)


def actor(org: dict[str, Any], name: str) -> StaffIdentity:
    """The identity of an org fixture user, for setting cases up through the workflow directly."""
    role, _, letter = name.rpartition("_")
    department = org["divisions"][letter.upper()]
    user = org["users"][name]
    return StaffIdentity(user.id, name, name, (Grant(Role(role), department, (department,)),), "test", "api")


def submit(app: Flask, title: str, question: str = "请问相关政策如何办理，需要准备哪些材料？", *,
           name: str = "张三", phone: str | None = None, email: str | None = None,
           consent: bool = False) -> int:
    settings = app.extensions["gongkai.settings"]
    phone = phone or f"139{uuid.uuid4().int % 10**8:08d}"
    with get_database("consult", app).transaction() as session:
        result = workflow.submit_consultation(session, settings, workflow.Submission(
            title=title, question=question, name=name, phone=phone, email=email, consent_to_publish=consent))
        assert not result.duplicate
        return result.consultation.id


def change(app: Flask, consultation_id: int, *steps: Any, **columns: Any) -> None:
    """Apply workflow steps ``(function, actor, *args)`` and then set columns, in one transaction."""
    with get_database("consult", app).transaction() as session:
        consultation = session.get(Consultation, consultation_id)
        assert consultation is not None
        for function, who, *args in steps:
            function(session, who, consultation, *args)
        for column, value in columns.items():
            setattr(consultation, column, value)


def load(app: Flask, consultation_id: int) -> Consultation:
    with get_database("consult", app).transaction() as session:
        consultation = session.get(Consultation, consultation_id)
        assert consultation is not None
        session.expunge(consultation)
        return consultation


def rows(html: str) -> list[tuple[str, str]]:
    """(tracking number, deadline status) of each inbox row, in order."""
    return re.findall(r'data-tracking="([^"]+)" data-status="([^"]*)"', html)


def row_html(html: str, tracking_number: str) -> str:
    start = html.index(f'data-tracking="{tracking_number}"')
    return html[start:html.index("</tr>", start)]


def forms(html: str) -> set[str]:
    return set(re.findall(r'id="form-([a-z_]+)"', html))


def today() -> date:
    return workflow.local_day(utcnow())


def case_path(consultation_id: int, action: str | None = None) -> str:
    return f"/consult/staff/{consultation_id}" + (f"/{action}" if action else "")


def tracking(app: Flask, consultation_id: int) -> str:
    return load(app, consultation_id).tracking_number


# -- the inbox -----------------------------------------------------------------------------------


def test_inbox_shows_readable_departments_sorted_by_deadline_with_badges(app: Flask, org: dict[str, Any],
                                                                         sign_in: SignIn) -> None:
    dispatcher, editor = actor(org, "dispatcher_a"), actor(org, "editor_a")
    day = today()
    overdue = submit(app, "逾期未受理的咨询", name="王小明", phone="13800001111", email="wxm@example.com")
    change(app, overdue, accept_due=day - timedelta(days=3))
    soon = submit(app, "今天到期的咨询")
    change(app, soon, accept_due=day)
    later = submit(app, "已受理的咨询")
    change(app, later, (workflow.accept, dispatcher), reply_due=day + timedelta(days=40))
    paused = submit(app, "等待补充材料的咨询")
    change(app, paused, (workflow.accept, dispatcher), (workflow.assign, dispatcher, editor.user_id, "editor_a"),
           (workflow.request_info, editor, "请提供营业执照复印件"), reply_due=day + timedelta(days=10))
    elsewhere = submit(app, "转到高新技术处的咨询")
    change(app, elsewhere, (workflow.route, dispatcher, "KJTB", None, app.extensions["gongkai.settings"]))
    rejected = submit(app, "不予受理的咨询")
    change(app, rejected, (workflow.reject, dispatcher, "no_content", None, None))

    staff = sign_in("editor_a")
    answer = staff.get("/consult/staff/")
    assert answer.status_code == 200
    assert "no-store" in answer.headers["Cache-Control"]
    html = answer.get_data(as_text=True)
    numbers = {cid: tracking(app, cid) for cid in (overdue, soon, later, paused, elsewhere, rejected)}
    # Open cases of KJTA only, the earliest deadline first, each with its badge.
    assert rows(html) == [(numbers[overdue], "overdue"), (numbers[soon], "due_soon"), (numbers[paused], "paused"),
                          (numbers[later], "on_time")]
    assert "逾期" in row_html(html, numbers[overdue])
    assert "即将到期" in row_html(html, numbers[soon])
    assert "已暂停计时" in row_html(html, numbers[paused])
    assert "cs-badge-" not in row_html(html, numbers[later]).replace("cs-badge-routing", "")
    assert "待分办" in row_html(html, numbers[overdue])  # still in the intake queue
    # No contact detail in the list, and no department the user may not read in the filter.
    for detail in ("王小明", "13800001111", "wxm@example.com"):
        assert detail not in html
    assert '<option value="KJTB"' not in html and '<option value="KJTA"' in html

    everything = staff.html("/consult/staff/?state=all")
    assert numbers[rejected] in everything and numbers[elsewhere] not in everything

    other = sign_in("editor_b").html("/consult/staff/")
    assert [number for number, _status in rows(other)] == [numbers[elsewhere]]
    assert numbers[overdue] not in other


def test_inbox_filters(app: Flask, org: dict[str, Any], sign_in: SignIn) -> None:
    dispatcher = actor(org, "dispatcher_a")
    settings = app.extensions["gongkai.settings"]
    day = today()
    overdue = submit(app, "已经逾期的咨询")
    change(app, overdue, accept_due=day - timedelta(days=2))
    flagged = submit(app, "举报赌博网站", question="有人在本地经营赌博网站，请依法查处。")
    change(app, flagged, accept_due=day + timedelta(days=20))
    routed = submit(app, "已分类并受理的咨询")
    change(app, routed, (workflow.route, dispatcher, "KJTA", CATEGORY, settings), (workflow.accept, dispatcher),
           reply_due=day + timedelta(days=20))
    numbers = {cid: tracking(app, cid) for cid in (overdue, flagged, routed)}
    staff = sign_in("dispatcher_a")

    def listed(query: str) -> set[str]:
        return {number for number, _status in rows(staff.html(f"/consult/staff/?{query}"))}

    assert listed("") == set(numbers.values())
    assert listed("due=overdue") == {numbers[overdue]}
    assert listed("due=due_soon") == set()
    assert listed("flagged=1") == {numbers[flagged]}
    assert listed("needs_routing=1") == {numbers[overdue], numbers[flagged]}
    assert listed(f"category={CATEGORY}") == {numbers[routed]}
    assert listed("state=accepted") == {numbers[routed]}
    assert listed("state=submitted&department=KJTA") == {numbers[overdue], numbers[flagged]}
    page = staff.html("/consult/staff/?flagged=1")
    assert "敏感词" in row_html(page, numbers[flagged])

    # A department outside the user's, or a value not offered, is refused with the field named.
    for query, field in (("department=KJTB", "department"), ("state=nonsense", "state"), ("due=later", "due"),
                         ("page=0", "page")):
        refused = staff.get(f"/consult/staff/?{query}")
        assert refused.status_code == 400, query
        text = refused.get_data(as_text=True)
        assert f'data-field="{field}"' in text
        assert not rows(text)


def test_bulk_assignment_is_all_or_nothing(app: Flask, org: dict[str, Any], sign_in: SignIn) -> None:
    dispatcher = actor(org, "dispatcher_a")
    settings = app.extensions["gongkai.settings"]
    first, second = submit(app, "第一件待分办咨询"), submit(app, "第二件待分办咨询")
    change(app, first, (workflow.accept, dispatcher))
    change(app, second, (workflow.accept, dispatcher))
    unaccepted = submit(app, "尚未受理的咨询")
    elsewhere = submit(app, "高新技术处的咨询")
    change(app, elsewhere, (workflow.route, dispatcher, "KJTB", None, settings), (workflow.accept,
           actor(org, "dispatcher_b")))
    editor_id = org["users"]["editor_a"].id
    staff = sign_in("dispatcher_a")
    assert 'id="bulk-form"' in staff.html("/consult/staff/")

    def bulk(ids: list[int], **fields: Any) -> TestResponse:
        return staff.post("/consult/staff/bulk-assign", {"ids": [str(i) for i in ids], "mode": "handler",
                                                         "handler_id": str(editor_id), "handler_name": "editor_a",
                                                         **fields})

    refused = bulk([first, second, unaccepted])
    assert refused.status_code == 409
    text = refused.get_data(as_text=True)
    assert f"{tracking(app, unaccepted)}：当前状态“已提交”不能分办" in text
    assert "未分办任何咨询" in text
    for cid in (first, second):
        assert (load(app, cid).state, load(app, cid).handler_id) == ("accepted", None)

    hidden = bulk([first, elsewhere])
    assert hidden.status_code == 404
    assert f"编号 {elsewhere}：不存在或无权查看" in hidden.get_data(as_text=True)
    assert load(app, first).handler_id is None and load(app, elsewhere).handler_id is None

    for ids, fields, field in (([], {}, "ids"), ([first], {"handler_name": " "}, "handler_name"),
                               ([first], {"handler_id": "abc"}, "handler_id")):
        invalid = bulk(ids, **fields)
        assert invalid.status_code == 422
        assert f'data-field="{field}"' in invalid.get_data(as_text=True)
    assert load(app, first).handler_id is None

    done = bulk([first, second])
    assert done.status_code == 303
    assert done.headers["Location"].startswith("/consult/staff/?") and "count=2" in done.headers["Location"]
    for cid in (first, second):
        assigned = load(app, cid)
        assert (assigned.state, assigned.handler_id, assigned.handler_name) == ("assigned", editor_id, "editor_a")
    assert "已分办 2 件咨询" in staff.html(done.headers["Location"])

    # An editor takes cases himself ("assign to me"); a dispatcher holds no DRAFT and may not.
    third = submit(app, "第三件待分办咨询")
    change(app, third, (workflow.accept, dispatcher))
    assert staff.post("/consult/staff/bulk-assign", {"ids": [str(third)], "mode": "me"}).status_code == 403
    editor = sign_in("editor_a")
    assert editor.post("/consult/staff/bulk-assign", {"ids": [str(third)], "mode": "me"}).status_code == 303
    assert load(app, third).handler_id == editor_id


# -- the case page -------------------------------------------------------------------------------


def test_case_page_shows_contact_and_only_the_allowed_actions(app: Flask, org: dict[str, Any],
                                                              sign_in: SignIn) -> None:
    cid = submit(app, "关于科研项目经费的咨询", name="李四", phone="13700002222", email="lisi@example.com")
    dispatcher = sign_in("dispatcher_a")
    html = dispatcher.html(case_path(cid))
    assert "个人信息，仅限办理使用" in html
    for detail in ("李四", "13700002222", "lisi@example.com"):
        assert detail in html
    assert "no-store" in dispatcher.get(case_path(cid)).headers["Cache-Control"]
    assert forms(html) == {"route", "accept", "reject", "notes"}
    assert "不予受理" in html and "重复咨询" in html  # the reasons of the rejection form

    editor = sign_in("editor_a")
    editor_view = editor.html(case_path(cid))
    assert forms(editor_view) == {"notes"}
    assert 'id="no-actions"' in editor_view
    assert editor.post(case_path(cid, "accept")).status_code == 403  # the rule: dispatchers only
    assert load(app, cid).state == "submitted"

    # Accepted: the dispatcher may assign, transfer; the editor may take it himself.
    assert dispatcher.post(case_path(cid, "accept")).status_code == 303
    accepted = dispatcher.html(case_path(cid) + "?done=accept")
    assert "已完成：受理。" in accepted
    assert forms(accepted) == {"assign", "transfer", "notes"}
    assert 'value="me"' not in accepted
    assert forms(editor.html(case_path(cid))) == {"assign", "notes", "extension"}
    # Accepting twice is a conflict: 409, the case page says why, nothing changes.
    again = dispatcher.post(case_path(cid, "accept"))
    assert again.status_code == 409
    assert "当前状态“已受理”不能执行“受理”" in again.get_data(as_text=True)

    # Outside the readable departments a case does not exist, for reading and for writing.
    outsider = sign_in("editor_b")
    assert outsider.get(case_path(cid)).status_code == 404
    assert outsider.post(case_path(cid, "notes"), {"body": "看看"}).status_code == 404
    assert sign_in("dispatcher_b").post(case_path(cid, "transfer"), {"department": "KJTB", "reason": "x"}
                                        ).status_code == 404
    assert load(app, cid).department == "KJTA"


def test_notes_attachments_and_extension(app: Flask, org: dict[str, Any], sign_in: SignIn) -> None:
    dispatcher, editor_identity = actor(org, "dispatcher_a"), actor(org, "editor_a")
    cid = submit(app, "关于项目验收的咨询")
    change(app, cid, (workflow.accept, dispatcher),
           (workflow.assign, dispatcher, editor_identity.user_id, "editor_a"))
    with get_database("consult", app).transaction() as session:
        item = SubmissionAttachment(consultation_id=cid, filename="验收材料.pdf", content_type="application/pdf",
                                    size=9, sha256="0" * 64, content=b"%PDF-1.4\n", created_at=utcnow())
        session.add(item)
        session.flush()
        attachment_id = item.id
    editor = sign_in("editor_a")
    html = editor.html(case_path(cid))
    download = f"/consult/staff/{cid}/attachments/{attachment_id}"
    assert download in html
    file = editor.get(download)
    assert file.status_code == 200 and file.data == b"%PDF-1.4\n"
    assert file.headers["Content-Disposition"].startswith("attachment")
    assert sign_in("editor_b").get(download).status_code == 404
    assert editor.get(f"/consult/staff/{cid}/attachments/{attachment_id + 1000}").status_code == 404

    # Internal notes: kept apart from the reply, refused when empty.
    empty = editor.post(case_path(cid, "notes"), {"body": "  "})
    assert empty.status_code == 422 and "请填写备注" in empty.get_data(as_text=True)
    assert editor.post(case_path(cid, "notes"), {"body": "已电话联系企业核实情况"}).status_code == 303
    page = editor.html(case_path(cid))
    notes = page[page.index('id="internal-notes"'):page.index('id="history"')]
    assert "内部备注（不对外）" in notes and "已电话联系企业核实情况" in notes

    # An extension: asked with a reason by the handler, decided by a reviewer, the deadline moves.
    before = load(app, cid).reply_due
    assert before is not None
    bad = editor.post(case_path(cid, "extension"), {"working_days": "99", "reason": "材料较多"})
    assert bad.status_code == 422
    assert editor.post(case_path(cid, "extension"), {"working_days": "3", "reason": "需要会商其他部门"}
                       ).status_code == 303
    reviewer = sign_in("reviewer_a")
    review_page = reviewer.html(case_path(cid))
    assert "extension_decision" in forms(review_page) and "需要会商其他部门" in review_page
    request_id = re.search(r'name="request_id" value="(\d+)"', review_page)
    assert request_id
    decided = reviewer.post(case_path(cid, "extension_decision"), {"request_id": request_id.group(1),
                                                                  "decision": "approve"})
    assert decided.status_code == 303
    after = load(app, cid)
    assert after.extension_working_days == 3 and after.reply_due is not None and after.reply_due > before
    with get_database("consult", app).transaction() as session:
        assert session.scalars(select(InternalNote.body).where(InternalNote.consultation_id == cid)).all() == [
            "已电话联系企业核实情况"]


def _published_answer(suite: dict[str, Flask], app: Flask, title: str) -> int:
    """A published answer, indexed by the search service's consumer of its event (as the worker would)."""
    from search.tasks import index_document

    with get_database("consult", app).transaction() as session:
        now = utcnow()
        answer = workflow.record_answered_consultation(
            session, tracking_number=f"ZX{uuid.uuid4().hex[:10]}", title=title, question="认定条件是什么？",
            reply="请参照认定管理办法准备材料。", received_at=now, replied_at=now, department="KJTA")
        workflow.publish_answer(session, answer)
        event = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "consult.answer.published",
                                                          OutboxEvent.aggregate_id == str(answer.id))).one()
        message, answer_id = event.as_message(), answer.id
    with suite["search"].app_context():
        assert index_document(message) == "indexed"
    return answer_id


def test_full_path_from_acceptance_to_publication(suite: dict[str, Flask], app: Flask, org: dict[str, Any],
                                                  sign_in: SignIn) -> None:
    title = "关于高新技术企业认定的咨询"
    similar_id = _published_answer(suite, app, title)
    cid = submit(app, title, question="我公司想申请高新技术企业认定，请联系我13912345678，谢谢。",
                 name="赵六", phone="13600003333", email="zhaoliu@example.com", consent=True)
    reviewer = sign_in("reviewer_a")
    assert reviewer.post("/consult/staff/canned", {"category": "", "title": "通用开头",
                                                   "body": "您好！您的来信已收悉。"}).status_code == 303

    dispatcher = sign_in("dispatcher_a")
    editor_id = org["users"]["editor_a"].id
    assert dispatcher.post(case_path(cid, "accept")).status_code == 303
    assigned = dispatcher.post(case_path(cid, "assign"), {"mode": "handler", "handler_id": str(editor_id),
                                                          "handler_name": "editor_a"})
    assert assigned.status_code == 303
    assert assigned.headers["Location"] == f"/consult/staff/{cid}?done=assign"

    editor = sign_in("editor_a")
    page = editor.html(case_path(cid))
    assert "draft" in forms(page) and 'id="reply-text"' in page
    aids = page[page.index('class="reply-aids"'):page.index("</aside>")]
    assert "您好！您的来信已收悉。" in aids  # the canned reply, as copyable text
    assert f'href="/consult/answers/{similar_id}"' in aids  # a similar published answer
    assert "内部备注（不对外）" in page

    reply = "您好！符合条件的企业可在认定系统中在线申报。"
    assert editor.post(case_path(cid, "draft"), {"reply": reply, "intent": "save"}).status_code == 303
    assert (load(app, cid).state, load(app, cid).reply_draft) == ("drafting", reply)
    assert editor.post(case_path(cid, "draft"), {"reply": reply, "intent": "submit"}).status_code == 303
    assert load(app, cid).state == "in_review"
    assert editor.post(case_path(cid, "approve")).status_code == 403  # a reviewer approves, not the drafter

    review_page = reviewer.html(case_path(cid))
    assert {"approve", "return"} <= forms(review_page)
    assert reviewer.post(case_path(cid, "approve")).status_code == 303
    assert (load(app, cid).state, load(app, cid).reviewer_name) == ("approved", "reviewer_a")

    assert "reply" in forms(editor.html(case_path(cid)))
    assert editor.post(case_path(cid, "reply")).status_code == 303
    assert load(app, cid).state == "replied"

    # The personal-data check: the phone number in the question is found and proposed as a marker.
    check = reviewer.html(case_path(cid))
    section = check[check.index('id="personal-data-check"'):check.index('id="actions"')]
    assert "电话号码" in section and "13912345678" in section
    proposed = re.search(r'<textarea id="published-question" name="published_question"[^>]*>([^<]*)</textarea>',
                         section)
    assert proposed
    proposed_question = unescape(proposed.group(1))
    assert "［已隐去：电话号码］" in proposed_question and "13912345678" not in proposed_question

    # A text that still carries a phone number is refused and nothing is saved.
    refused = reviewer.post(case_path(cid, "confirm_redaction"), {
        "published_question": f"{title}\n请联系我13912345678", "published_reply": reply})
    assert refused.status_code == 422
    assert "仍含有个人信息" in refused.get_data(as_text=True)
    assert load(app, cid).published_question is None

    # Before the confirmation the disclosure office cannot publish, and the page says why.
    office = sign_in("disclosure_office_a")
    blocked = office.html(case_path(cid))
    assert "公开文本尚未经审核人确认隐去个人信息" in blocked

    confirmed = reviewer.post(case_path(cid, "confirm_redaction"), {
        "published_question": proposed_question, "published_reply": reply})
    assert confirmed.status_code == 303
    assert "［已隐去：电话号码］" in (load(app, cid).published_question or "")

    ready = office.html(case_path(cid))
    assert {"publish", "keep_private"} <= forms(ready)
    assert 'id="publish-blockers"' not in ready
    assert office.post(case_path(cid, "publish")).status_code == 303
    published = load(app, cid)
    assert published.state == "published" and published.published_at is not None
    with get_database("consult", app).transaction() as session:
        event = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "consult.answer.published",
                                                          OutboxEvent.aggregate_id == str(cid))).one()
        document = str(event.payload["document"])
    assert "［已隐去：电话号码］" in document
    for detail in ("13912345678", "赵六", "13600003333", "zhaoliu@example.com"):
        assert detail not in document
    history = office.html(case_path(cid))
    for label in ("受理", "分办", "提交审核", "审核通过", "答复", "确认隐去个人信息", "公开答复"):
        assert f"<td>{label}</td>" in history


def test_the_drafter_cannot_approve_his_own_reply(suite: dict[str, Flask], app: Flask, org: dict[str, Any],
                                                  sign_in: SignIn) -> None:
    """Somebody who is both editor and reviewer drafts a reply: another reviewer must approve it."""
    from services.identity.accounts import assign_role, create_user
    from services.identity.models import Department

    settings = suite["identity"].extensions["gongkai.settings"]
    with get_database("identity", suite["identity"]).transaction() as session:
        division = session.scalars(select(Department).where(Department.code == "KJTA")).one()
        user = create_user(session, settings, username="both_a", display_name="both_a", password=STAFF_PASSWORD)
        user.must_change_password = False
        for role in (Role.EDITOR, Role.REVIEWER):
            assign_role(session, user, role, division)
    dispatcher = actor(org, "dispatcher_a")
    cid = submit(app, "关于专利资助的咨询")
    change(app, cid, (workflow.accept, dispatcher))
    both = sign_in("both_a")
    assert both.post(case_path(cid, "assign"), {"mode": "me"}).status_code == 303
    assert both.post(case_path(cid, "draft"), {"reply": "可以申请资助。", "intent": "submit"}).status_code == 303
    page = both.html(case_path(cid))
    assert "答复由您起草，须由其他审核人审核。" in page
    refused = both.post(case_path(cid, "approve"))
    assert refused.status_code == 422
    assert "审核人不能审核自己起草" in refused.get_data(as_text=True)
    assert load(app, cid).state == "in_review"
    assert sign_in("reviewer_a").post(case_path(cid, "approve")).status_code == 303
    assert load(app, cid).state == "approved"


def test_publication_needs_consent(app: Flask, org: dict[str, Any], sign_in: SignIn) -> None:
    dispatcher, editor, reviewer = actor(org, "dispatcher_a"), actor(org, "editor_a"), actor(org, "reviewer_a")
    cid = submit(app, "不同意公开的咨询", consent=False)
    change(app, cid, (workflow.accept, dispatcher), (workflow.assign, dispatcher, editor.user_id, "editor_a"),
           (workflow.save_draft, editor, "答复内容。"), (workflow.submit_for_review, editor),
           (workflow.approve, reviewer), (workflow.send_reply, editor),
           (workflow.confirm_redaction, reviewer, "不同意公开的咨询\n请问相关政策如何办理？", "答复内容。"))
    office = sign_in("disclosure_office_a")
    html = office.html(case_path(cid))
    blockers = html[html.index('id="publish-blockers"'):]
    assert "提交人未同意公开" in blockers[:blockers.index("</ul>")]
    assert re.search(r'<button type="submit" disabled>公开此答复</button>', html)
    refused = office.post(case_path(cid, "publish"))
    assert refused.status_code == 422
    assert "提交人未同意公开" in refused.get_data(as_text=True)
    assert load(app, cid).state == "replied"
    assert office.post(case_path(cid, "keep_private")).status_code == 303
    assert load(app, cid).state == "private"


# -- canned replies and working days --------------------------------------------------------------


def _canned(app: Flask) -> list[tuple[str | None, str]]:
    with get_database("consult", app).transaction() as session:
        return [(row.category, row.title) for row in session.scalars(select(CannedReply).order_by(CannedReply.id))]


def test_canned_replies_are_validated(app: Flask, org: dict[str, Any], sign_in: SignIn) -> None:
    reviewer = sign_in("reviewer_a")
    assert reviewer.get("/consult/staff/canned").status_code == 200
    for data, field in (({"title": "", "body": "正文"}, "title"), ({"title": "标题", "body": "  "}, "body"),
                        ({"title": "标题", "body": "正文", "category": "不存在的类别"}, "category"),
                        ({"title": "长" * 201, "body": "正文"}, "title")):
        refused = reviewer.post("/consult/staff/canned", data)
        assert refused.status_code == 422, data
        assert f'data-field="{field}"' in refused.get_data(as_text=True)
    assert _canned(app) == []

    added = reviewer.post("/consult/staff/canned",
                          {"category": CATEGORY, "title": "项目申报", "body": "请登录系统申报。"})
    assert added.status_code == 303
    assert _canned(app) == [(CATEGORY, "项目申报")]
    listing = reviewer.html("/consult/staff/canned")
    assert "项目申报" in listing and "请登录系统申报。" in listing
    with get_database("consult", app).transaction() as session:
        reply_id = session.scalars(select(CannedReply.id)).one()
        audit = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded")).all()
        assert any(event.payload["action"] == "canned_reply.add" for event in audit)
    deleted = reviewer.post(f"/consult/staff/canned/{reply_id}/delete")
    assert (deleted.status_code, deleted.headers["Location"]) == (303, "/consult/staff/canned?done=delete")
    assert _canned(app) == []
    assert "常用答复已删除。" in reviewer.html(deleted.headers["Location"])
    # A second click on the same button finds it gone: the same list, nothing else deleted or audited twice.
    assert reviewer.post(f"/consult/staff/canned/{reply_id}/delete").status_code == 303
    with get_database("consult", app).transaction() as session:
        audit = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded")).all()
        assert [event.payload["action"] for event in audit].count("canned_reply.delete") == 1

    # Editors use canned replies but do not manage them.
    editor = sign_in("editor_a")
    assert editor.get("/consult/staff/canned").status_code == 403
    assert editor.post("/consult/staff/canned", {"title": "x", "body": "y"}).status_code == 403


def test_deadline_settings_are_validated(app: Flask, org: dict[str, Any], sign_in: SignIn) -> None:
    office = sign_in("disclosure_office_a")
    page = office.html("/consult/staff/deadlines")
    assert f'name="accept:{CATEGORY}"' in page

    def rows_saved() -> list[tuple[str, int, int]]:
        with get_database("consult", app).transaction() as session:
            return [(row.category, row.accept_working_days, row.reply_working_days)
                    for row in session.scalars(select(CategoryDeadline))]

    for accept, reply in (("0", "5"), ("11", "5"), ("1", "61"), ("一", "5"), ("1", "")):
        refused = office.post("/consult/staff/deadlines", {f"accept:{CATEGORY}": accept, f"reply:{CATEGORY}": reply,
                                                           "accept:城乡建设": "2", "reply:城乡建设": "10"})
        assert refused.status_code == 422, (accept, reply)
        assert "未保存任何修改" in refused.get_data(as_text=True)
    unknown = office.post("/consult/staff/deadlines", {"accept:没有的类别": "1", "reply:没有的类别": "5"})
    assert unknown.status_code == 422
    assert rows_saved() == []

    saved = office.post("/consult/staff/deadlines", {f"accept:{CATEGORY}": "2", f"reply:{CATEGORY}": "10",
                                                     "accept:城乡建设": "1", "reply:城乡建设": "5"})
    assert saved.status_code == 303
    assert rows_saved() == [(CATEGORY, 2, 10)]  # the other category kept the defaults: no row
    shown = office.html(saved.headers["Location"])
    assert "修改了 1 个类别" in shown
    settings = app.extensions["gongkai.settings"]
    with get_database("consult", app).transaction() as session:
        assert workflow.working_days_for(session, settings, CATEGORY) == (2, 10)

    assert sign_in("reviewer_a").get("/consult/staff/deadlines").status_code == 403


def test_staff_home_links_to_the_console(org: dict[str, Any], sign_in: SignIn) -> None:
    assert 'href="/consult/staff/"' in sign_in("editor_a").html("/staff/")
