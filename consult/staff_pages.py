"""The staff console of the consult service (``/consult/staff/...``): inbox, case page, reply editor.

* ``/consult/staff/``: the inbox (咨询办理) of the departments the user may read, filtered, sorted by
  the deadline that matters now, with bulk assignment (all or nothing);
* ``/consult/staff/<id>``: one case: the question, attachments, the submitter's contact (staff only),
  deadlines, the full history, internal notes, extension requests, the reply editor with canned
  replies and similar published answers, the personal-data check before publication, and the
  forms of the actions the user may take now. Each form posts to ``/consult/staff/<id>/<action>``;
* ``/consult/staff/canned`` (reviewers) and ``/consult/staff/deadlines`` (the disclosure office).

Every rule lives in :mod:`consult.workflow` (and :mod:`consult.settings_rules`): a view parses the
form, calls those functions and commits once. A refused input rolls everything back and shows the
page again with the field errors (422); an action the state does not allow answers 409; a case
outside the departments the user may read answers 404. Nothing here is cacheable: the pages carry
submitters' contact details.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, event, func, inspect, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from consult import settings_rules, workflow
from consult.models import Consultation, ExtensionRequest, InternalNote, SubmissionAttachment
from consult.workflow import (
    ACTION_LABELS,
    ACTION_PERMISSION,
    ANSWERED,
    BEIJING,
    CONSULTATION_WORKFLOW,
    REJECTION_REASONS,
    STATE_LABELS,
    ConsultationState,
)
from services.auth import StaffIdentity, requires, signed_in_staff
from services.calendar import WorkingCalendar
from services.db import get_session, utcnow
from services.permissions import NotPermitted, Permission, departments_with
from services.searchengine.port import SearchEngineError, SearchQuery, SearchUnavailable
from services.settings import Settings
from services.text.pii import ADDRESS, BANK_CARD, EMAIL, ID_CARD, NAME, PHONE, find_personal_data
from services.web import content_alias, get_settings
from services.workflow import ContentProblem, TransitionNotAllowed

bp = Blueprint("consult_staff", __name__, url_prefix="/consult/staff", template_folder="templates")

S = ConsultationState
PER_PAGE = 50
MAX_PAGE = 10_000
MAX_BULK = 200
SIMILAR_ANSWERS = 5
FILTER_MAX_LENGTH = 100
DUE_FILTERS = ("all", "overdue", "due_soon", "paused")
OPEN_STATES = tuple(state.value for state in S if state not in (S.REJECTED, *ANSWERED))
EDITABLE_STATES = (S.ASSIGNED.value, S.DRAFTING.value)
REVIEWABLE_STATES = (S.REPLIED.value, S.PRIVATE.value)
NO_EXTENSION_STATES = (S.SUBMITTED.value, S.REJECTED.value, *(state.value for state in ANSWERED))
STAFF_ACTIONS = ("route", "accept", "reject", "assign", "transfer", "request_info", "return", "approve", "reply",
                 "publish", "keep_private", "unpublish", "close")
"""The transitions a staff member takes from the case page's action forms (drafting has its own editor)."""


def kind_labels() -> dict[str, str]:
    """The Chinese name of each kind of personal data."""
    return {PHONE: _("电话号码"), ID_CARD: _("身份证号"), EMAIL: _("电子邮箱"), BANK_CARD: _("银行卡号"),
            ADDRESS: _("地址"), NAME: _("姓名")}


def _done_message(done: str) -> str | None:
    """The confirmation shown after an action (``?done=<name>``), or None for an unknown name."""
    messages = {
        "assign": _("已分办。"),
        "draft": _("答复草稿已保存。"),
        "submit_review": _("答复已保存并提交审核。"),
        "note": _("内部备注已添加。"),
        "extension": _("延期申请已提交，待部门审核人审批。"),
        "extension_approved": _("已批准延期，答复期限已更新。"),
        "extension_refused": _("已不批准延期。"),
        "confirm_redaction": _("公开文本已确认。"),
    }
    if done in messages:
        return str(messages[done])
    if done in STAFF_ACTIONS:
        return str(_("已完成：%(action)s。", action=ACTION_LABELS[done]))
    return None


_SAFE_CONTENT_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


@bp.after_request
def _never_cached(response: Response) -> Response:
    """Staff pages show submitters' contact details: no cache may keep them."""
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"local_time": local_time, "state_label": lambda state: STATE_LABELS.get(state, state),
            "action_label": lambda action: ACTION_LABELS.get(action, action),
            "kind_labels": kind_labels(), "Permission": Permission}


def local_time(moment: datetime | None) -> str:
    """A moment as Beijing time, to the minute."""
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if moment else ""


# -- helpers ---------------------------------------------------------------------------------


def _db() -> Session:
    return get_session("consult")


def _settings() -> Settings:
    return get_settings(current_app)


_staff = signed_in_staff


def _readable(staff: StaffIdentity) -> set[str]:
    return departments_with(staff.grants, Permission.READ_RECORDS)


def _load(consultation_id: int) -> Consultation:
    """The consultation, or 404 when it does not exist or lies outside what the user may read."""
    consultation = _db().get(Consultation, consultation_id)
    if consultation is None or consultation.department not in _readable(_staff()):
        abort(404)
    return consultation


def _text(form: Mapping[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def _positive_int(raw: str, field: str, message: str, maximum: int = 10**9) -> int:
    value = raw.strip()
    if not value.isdigit() or len(value) > 10 or not 1 <= int(value) <= maximum:
        raise ContentProblem({field: [message]})
    return int(value)


def _handler(form: Mapping[str, str]) -> tuple[int | None, str | None]:
    """(handler id, name) from an assignment form; (None, None) for "assign to me"."""
    if form.get("mode") == "me":
        return None, None
    errors: dict[str, list[str]] = {}
    raw_id = _text(form, "handler_id")
    name = " ".join((form.get("handler_name") or "").split())
    if not raw_id.isdigit() or len(raw_id) > 10 or int(raw_id) < 1:
        errors["handler_id"] = [_("请填写承办人的用户编号（正整数）")]
    if not name:
        errors["handler_name"] = [_("请填写承办人姓名")]
    elif len(name) > 100:
        errors["handler_name"] = [_("承办人姓名不能超过 100 字")]
    if errors:
        raise ContentProblem(errors)
    return int(raw_id), name


def _conflict_message(error: TransitionNotAllowed) -> str:
    state = STATE_LABELS.get(error.current, error.current)
    action = ACTION_LABELS.get(error.action, error.action)
    return str(_("当前状态“%(state)s”不能执行“%(action)s”，请刷新后查看本件的最新状态。", state=state, action=action))


INBOX_ORDER = (Consultation.due_on.asc().nulls_last(), Consultation.received_at, Consultation.id)
"""Soonest deadline first (``due_on`` is :func:`consult.workflow.current_deadline`, stored and indexed)."""


def due_conditions(due: str, today: date, calendar: Callable[[], WorkingCalendar]) -> list[Any]:
    """SQL for ``workflow.deadline_status(c) == due`` (paused, overdue, due_soon, on_time): the inbox's filter
    (API and console). ``calendar`` is asked only for the due-soon bound."""
    deadline = Consultation.due_on
    awaiting = S.AWAITING_INFO.value
    if due == "paused":
        return [Consultation.state == awaiting, deadline.is_not(None)]
    conditions: list[Any] = [Consultation.state != awaiting]
    if due == "overdue":
        return [*conditions, deadline < today]
    second_working_day = calendar().add_working_days(today, 2)
    if due == "due_soon":  # due today or by the next working day
        return [*conditions, deadline >= today, deadline < second_working_day]
    return [*conditions, deadline >= second_working_day]


def inbox_rows(db: Session, conditions: list[Any], offset: int, limit: int) -> tuple[int, list[Consultation]]:
    """(how many consultations match, one page of them in :data:`INBOX_ORDER`).

    The count and the page's ids come from the inbox indexes alone (``ix_consultation_inbox``); only the
    page's rows are read, once their ids are known: sorting wide rows to keep 20 of thousands was most of
    the inbox's time at 100,000 consultations (issue 8)."""
    total = db.scalar(select(func.count()).select_from(Consultation).where(*conditions)) or 0
    if offset >= total:
        return total, []
    page = select(Consultation.id).where(*conditions).order_by(*INBOX_ORDER).offset(offset).limit(limit)
    rows = db.scalars(select(Consultation).where(Consultation.id.in_(page)).order_by(*INBOX_ORDER)).all()
    return total, list(rows)


def _today() -> date:
    return workflow.local_day(utcnow())


# -- the inbox -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxFilters:
    state: str = ""
    """``""``: every open case; ``all``: every case; else one state."""
    department: str = ""
    category: str = ""
    due: str = "all"
    flagged: str = ""
    needs_routing: str = ""
    page: int = 1

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters in effect as query parameters (defaults left out)."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values.update(changes)
        defaults = InboxFilters()
        return {name: str(value) for name, value in values.items()
                if value != getattr(defaults, name, None) and value not in ("", None)}


def _inbox_filters(args: Mapping[str, str], departments: list[str],
                   category_choices: list[str]) -> tuple[InboxFilters, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}

    def arg(name: str) -> str:
        return (args.get(name) or "").strip()[:FILTER_MAX_LENGTH]

    state = arg("state")
    if state and state != "all" and state not in STATE_LABELS:
        errors["state"] = [_("请从列表中选择状态")]
        state = ""
    department = arg("department")
    if department and department not in departments:
        errors["department"] = [_("只能筛选您有权查看的部门")]
        department = ""
    category = arg("category")
    if category and category not in category_choices:
        errors["category"] = [_("请从列表中选择类别")]
        category = ""
    due = arg("due") or "all"
    if due not in DUE_FILTERS:
        errors["due"] = [_("请从列表中选择期限")]
        due = "all"
    page_raw = arg("page") or "1"
    page = int(page_raw) if page_raw.isdigit() and len(page_raw) <= 6 else 0
    if not 1 <= page <= MAX_PAGE:
        errors["page"] = [_("页码无效")]
        page = 1
    flagged = "1" if arg("flagged") in ("1", "on") else ""
    needs_routing = "1" if arg("needs_routing") in ("1", "on") else ""
    return InboxFilters(state, department, category, due, flagged, needs_routing, page), errors


@dataclass
class InboxRow:
    consultation: Consultation
    deadline: date | None
    status: str | None


@dataclass
class InboxPage:
    rows: list[InboxRow]
    total: int
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PER_PAGE))


CATEGORY_CHOICES_SECONDS = 60.0
_category_cache: dict[tuple[Any, ...], tuple[float, frozenset[str]]] = {}
_category_cache_lock = threading.Lock()


def _present_categories(db: Session, departments: list[str]) -> frozenset[str]:
    """The categories of the departments' consultations, cached per process for a minute (a DISTINCT over
    every consultation on each inbox view was 0.4 s at 100,000); a category given to a case in this process
    clears the cache at once, and a filter on a category not (yet) listed is checked in the database."""
    database = db.info.get("gongkai_database")
    where = (str(database.url), database.schema) if database is not None else (id(db.get_bind()),)
    key = (*where, tuple(departments))
    now = time.monotonic()
    with _category_cache_lock:
        cached = _category_cache.get(key)
    if cached is not None and now - cached[0] < CATEGORY_CHOICES_SECONDS:
        return cached[1]
    present = frozenset(category for category in db.scalars(select(Consultation.category).distinct().where(
        Consultation.department.in_(departments), Consultation.category.is_not(None))) if category)
    with _category_cache_lock:
        if len(_category_cache) >= 64:
            _category_cache.clear()
        _category_cache[key] = (now, present)
    return present


@event.listens_for(Consultation, "after_insert")
@event.listens_for(Consultation, "after_update")
def _category_seen(_mapper: Any, _connection: Any, consultation: Consultation) -> None:
    category = consultation.category
    if category and inspect(consultation).attrs.category.history.added:
        with _category_cache_lock:
            if any(category not in present for _at, present in _category_cache.values()):
                _category_cache.clear()


def _category_choices(db: Session, departments: list[str], wanted: str | None = None) -> list[str]:
    """The categories offered by the inbox's filter; ``wanted`` (the filter asked for) is looked up in the
    database when the cached list does not have it."""
    choices = set(workflow.categories(_settings())) | _present_categories(db, departments)
    wanted = (wanted or "").strip()[:FILTER_MAX_LENGTH]
    if wanted and wanted not in choices and db.scalar(select(Consultation.id).where(
            Consultation.category == wanted, Consultation.department.in_(departments)).limit(1)) is not None:
        choices.add(wanted)
    return sorted(choices)


def _inbox_query(db: Session, departments: list[str], filters: InboxFilters) -> InboxPage:
    conditions: list[ColumnElement[bool]] = [
        Consultation.department.in_([filters.department] if filters.department else departments)]
    if filters.state == "":
        conditions.append(Consultation.state.in_(OPEN_STATES))
    elif filters.state != "all":
        conditions.append(Consultation.state == filters.state)
    if filters.category:
        conditions.append(Consultation.category == filters.category)
    if filters.flagged:
        conditions.append(Consultation.sensitive_terms.is_not(None))
    if filters.needs_routing:
        conditions.append(Consultation.needs_routing.is_(True))
    today = _today()
    if filters.due != "all":
        conditions += due_conditions(filters.due, today, lambda: workflow.consult_calendar(db))
    total, found = inbox_rows(db, conditions, (filters.page - 1) * PER_PAGE, PER_PAGE)
    calendar = workflow.consult_calendar(db)
    rows = [InboxRow(c, workflow.current_deadline(c), workflow.deadline_status(c, calendar, today)) for c in found]
    return InboxPage(rows, total, filters.page)


def _render_inbox(*, status: int = 200, bulk_errors: dict[str, list[str]] | None = None,
                  bulk_failure: str | None = None, selected: frozenset[int] = frozenset(),
                  form: Mapping[str, str] | None = None) -> tuple[str, int]:
    staff = _staff()
    db = _db()
    departments = sorted(_readable(staff))
    category_choices = _category_choices(db, departments, request.args.get("category"))
    filters, errors = _inbox_filters(request.args, departments, category_choices)
    listing = _inbox_query(db, departments, filters) if not errors else InboxPage([], 0, 1)
    done = request.args.get("done") == "assign"
    count = request.args.get("count", "")
    return render_template(
        "consult/staff/inbox.html",
        staff=staff, filters=filters, errors=errors, listing=listing, departments=departments,
        categories=category_choices, states=STATE_LABELS, due_filters=DUE_FILTERS,
        can_dispatch=bool(departments_with(staff.grants, Permission.DISPATCH)),
        can_draft=bool(departments_with(staff.grants, Permission.DRAFT)),
        bulk_errors=bulk_errors or {}, bulk_failure=bulk_failure, selected=selected, form=form or {},
        done_count=count if done and count.isdigit() else None,
        action_query=filters.query(),
    ), (400 if errors and status == 200 else status)


@bp.get("/")
@requires(Permission.READ_RECORDS)
def inbox() -> tuple[str, int]:
    return _render_inbox()


@bp.post("/bulk-assign")
@requires(Permission.READ_RECORDS)
def bulk_assign() -> Any:
    """Assign every selected case, or none: the first refusal rolls back all and names the case."""
    staff = _staff()
    db = _db()
    form = request.form
    errors: dict[str, list[str]] = {}
    ids: list[int] = []
    for raw in form.getlist("ids"):
        if not raw.isdigit() or len(raw) > 10:
            errors["ids"] = [_("所选咨询无效")]
            break
        ids.append(int(raw))
    ids = list(dict.fromkeys(ids))
    if not ids and not errors:
        errors["ids"] = [_("请至少勾选一件咨询")]
    elif len(ids) > MAX_BULK:
        errors["ids"] = [_("一次最多分办 %(n)s 件", n=MAX_BULK)]
    handler_id: int | None = None
    handler_name: str | None = None
    try:
        handler_id, handler_name = _handler(form)
    except ContentProblem as problem:
        errors.update(problem.errors)
    selected = frozenset(ids)
    if errors:
        return _render_inbox(status=422, bulk_errors=errors, selected=selected, form=form)
    readable = _readable(staff)
    found = {c.id: c for c in db.scalars(select(Consultation).where(Consultation.id.in_(ids)))}
    failure: tuple[int, str] | None = None
    for consultation_id in ids:
        consultation = found.get(consultation_id)
        if consultation is None or consultation.department not in readable:
            failure = (404, _("编号 %(id)s：不存在或无权查看", id=consultation_id))
            break
        number = consultation.tracking_number
        try:
            workflow.assign(db, staff, consultation, handler_id, handler_name)
        except ContentProblem as problem:
            messages = "；".join(message for items in problem.errors.values() for message in items)
            failure = (422, f"{number}：{messages}")
        except TransitionNotAllowed as refused:
            failure = (409, _("%(number)s：当前状态“%(state)s”不能分办", number=number,
                               state=STATE_LABELS.get(refused.current, refused.current)))
        except NotPermitted:
            failure = (403, _("%(number)s：您没有在部门 %(department)s 分办的权限", number=number,
                               department=consultation.department))
        if failure is not None:
            break
    if failure is not None:
        db.rollback()
        return _render_inbox(status=failure[0], bulk_failure=failure[1], selected=selected, form=form)
    db.commit()
    choices = _category_choices(db, sorted(readable), request.args.get("category"))
    filters, _errors = _inbox_filters(request.args, sorted(readable), choices)
    query = urlencode({**filters.query(), "done": "assign", "count": str(len(ids))})
    return redirect(f"{url_for('consult_staff.inbox')}?{query}", 303)


# -- the case page -----------------------------------------------------------------------------


def _available_actions(staff: StaffIdentity, consultation: Consultation) -> list[str]:
    """The action forms to show: allowed from the state, and permitted to this user in the department."""
    department = consultation.department
    actions = []
    for action in CONSULTATION_WORKFLOW.allowed_actions(ConsultationState(consultation.state)):
        if action not in STAFF_ACTIONS:
            continue
        if action == "assign":  # an editor may take the case himself, unless it is his already
            permitted = staff.can(Permission.DISPATCH, department) or (
                staff.can(Permission.DRAFT, department) and consultation.handler_id != staff.user_id)
        else:
            permitted = staff.can(ACTION_PERMISSION[action], department)
        if permitted:
            actions.append(action)
    return actions


def _without_personal_data(text: str) -> str:
    """The text with every personal-data candidate cut out (what a search for similar answers may send)."""
    findings = find_personal_data(text)
    for finding in sorted(findings, key=lambda item: item.start, reverse=True):
        text = text[:finding.start] + " " + text[finding.end:]
    return text.strip()


def _similar_answers(consultation: Consultation) -> tuple[list[dict[str, Any]], bool]:
    """Published answers like this question (from the search index) and whether the search answered."""
    text = _without_personal_data(consultation.title)
    if not any(character.isalnum() for character in text):
        return [], True
    try:
        engine, alias = content_alias(current_app)
        result = engine.search(alias, SearchQuery(text=text, doc_types=("answer",), per_page=SIMILAR_ANSWERS + 1))
    except (SearchUnavailable, SearchEngineError):
        return [], False
    answers = []
    for hit in result.hits:
        kind, _, number = hit.id.partition("-")
        if kind != "answer" or not number.isdigit() or int(number) == consultation.id:
            continue
        answers.append({"title": hit.title, "summary": hit.summary, "department": hit.document.get("department"),
                        "url": url_for("consult_pages.answer", answer_id=int(number))})
    return answers[:SIMILAR_ANSWERS], True


def _department_codes(staff: StaffIdentity) -> list[str]:
    from consult.routing import RoutingError, load_departments

    try:
        table = load_departments(_settings().router_departments_file)
    except RoutingError:
        table = {}
    return sorted({department.code for department in table.values()} | _readable(staff))


def _render_case(consultation: Consultation, *, status: int = 200, form_name: str | None = None,
                 errors: dict[str, list[str]] | None = None, values: Mapping[str, str] | None = None,
                 conflict: str | None = None) -> tuple[str, int]:
    staff = _staff()
    db = _db()
    settings = _settings()
    department = consultation.department
    calendar = workflow.consult_calendar(db)
    attachments = db.execute(
        select(SubmissionAttachment.id, SubmissionAttachment.filename, SubmissionAttachment.content_type,
               SubmissionAttachment.size)
        .where(SubmissionAttachment.consultation_id == consultation.id).order_by(SubmissionAttachment.id)
    ).all()
    notes = db.scalars(select(InternalNote).where(InternalNote.consultation_id == consultation.id)
                       .order_by(InternalNote.created_at, InternalNote.id)).all()
    extensions = db.scalars(select(ExtensionRequest).where(ExtensionRequest.consultation_id == consultation.id)
                            .order_by(ExtensionRequest.requested_at, ExtensionRequest.id)).all()
    pending = next((item for item in extensions if item.status == "pending"), None)
    can = {name: staff.can(permission, department) for name, permission in (
        ("dispatch", Permission.DISPATCH), ("draft", Permission.DRAFT), ("review", Permission.REVIEW),
        ("publish", Permission.PUBLISH))}
    editing = consultation.state in EDITABLE_STATES and can["draft"]
    canned = settings_rules.canned_replies(db, consultation.category) if editing else []
    similar, search_answered = _similar_answers(consultation) if editing else ([], True)
    review = None
    if consultation.state in REVIEWABLE_STATES and (can["review"] or can["publish"]):
        review = workflow.personal_data_review(consultation)
    blockers = []
    if not consultation.consent_to_publish:
        blockers.append(_("提交人未同意公开"))
    if not (consultation.published_question and consultation.published_reply):
        blockers.append(_("公开文本尚未经审核人确认隐去个人信息"))
    done = request.args.get("done", "")
    return render_template(
        "consult/staff/case.html",
        staff=staff, c=consultation, state_label_now=STATE_LABELS.get(consultation.state, consultation.state),
        deadline=workflow.current_deadline(consultation),
        status=workflow.deadline_status(consultation, calendar),
        year_warning=workflow.year_warning(consultation),
        attachments=attachments, notes=notes, extensions=extensions, pending=pending,
        actions=_available_actions(staff, consultation), can=can, editing=editing, canned=canned,
        similar=similar, search_answered=search_answered, review=review, publish_blockers=blockers,
        can_request_extension=can["draft"] and consultation.state not in NO_EXTENSION_STATES and pending is None,
        rejection_reasons=REJECTION_REASONS, categories=workflow.categories(settings),
        department_codes=_department_codes(staff), max_extension_days=workflow.MAX_EXTENSION_DAYS,
        form_name=form_name, errors=errors or {}, values=values or MultiDict(), conflict=conflict,
        done=_done_message(done),
    ), status


@bp.get("/<int:consultation_id>")
@requires(Permission.READ_RECORDS)
def case_page(consultation_id: int) -> tuple[str, int]:
    return _render_case(_load(consultation_id))


@bp.get("/<int:consultation_id>/attachments/<int:attachment_id>")
@requires(Permission.READ_RECORDS)
def attachment(consultation_id: int, attachment_id: int) -> Response:
    """A file the asker sent: always a download, for staff who may read the case."""
    consultation = _load(consultation_id)
    item = _db().get(SubmissionAttachment, attachment_id)
    if item is None or item.consultation_id != consultation.id:
        abort(404)
    content_type = (item.content_type or "").lower()
    mimetype = content_type if _SAFE_CONTENT_TYPE.match(content_type) and "html" not in content_type else (
        "application/octet-stream")
    return send_file(io.BytesIO(item.content), mimetype=mimetype, as_attachment=True,
                     download_name=item.filename or f"attachment-{item.id}", etag=False, max_age=0)


# -- the actions ---------------------------------------------------------------------------------

Form = Mapping[str, str]
ActionHandler = Callable[[Session, StaffIdentity, Consultation, Form], str]
"""Calls the workflow for one form; returns the name of what was done (for the confirmation)."""


def _route(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    from consult.routing import RoutingError, department_for

    category = _text(form, "category") or None
    department = _text(form, "department")
    if not department and category:
        try:
            found = department_for(category, _settings().router_departments_file)
        except RoutingError:
            found = None
        department = found.code if found else ""
    if not department:
        raise ContentProblem({"department": [_("请填写承办部门代码，或选择已对应部门的类别")]})
    workflow.route(db, staff, c, department, category, _settings())
    return "route"


def _accept(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.accept(db, staff, c)
    return "accept"


def _reject(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.reject(db, staff, c, _text(form, "reason"), _text(form, "note"), _text(form, "referral"))
    return "reject"


def _assign(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    handler_id, handler_name = _handler(form)
    workflow.assign(db, staff, c, handler_id, handler_name)
    return "assign"


def _transfer(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.transfer(db, staff, c, _text(form, "department"), _text(form, "reason"))
    return "transfer"


def _request_info(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.request_info(db, staff, c, _text(form, "question"))
    return "request_info"


def _return(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.return_for_changes(db, staff, c, _text(form, "note"))
    return "return"


def _approve(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.approve(db, staff, c)
    return "approve"


def _reply(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.send_reply(db, staff, c)
    return "reply"


def _publish(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.publish(db, staff, c)
    return "publish"


def _keep_private(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.keep_private(db, staff, c)
    return "keep_private"


def _unpublish(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.unpublish(db, staff, c, _text(form, "reason"))
    return "unpublish"


def _close(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.close(db, staff, c)
    return "close"


def _draft(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    """Save the draft; with ``intent=submit`` also submit it for review (both or neither)."""
    text = (form.get("reply") or "").replace("\r\n", "\n")
    workflow.save_draft(db, staff, c, text)
    if form.get("intent") == "submit":
        workflow.submit_for_review(db, staff, c)
        return "submit_review"
    return "draft"


def _note(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    workflow.add_note(db, staff, c, form.get("body") or "")
    return "note"


def _extension(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    days = _positive_int(form.get("working_days") or "", "working_days",
                         _("延期 1 至 %(n)s 个工作日", n=workflow.MAX_EXTENSION_DAYS), workflow.MAX_EXTENSION_DAYS)
    workflow.request_extension(db, staff, c, days, form.get("reason") or "")
    return "extension"


def _extension_decision(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    request_id = _positive_int(form.get("request_id") or "", "request_id", _("没有这个延期申请"))
    decision = form.get("decision")
    if decision not in ("approve", "refuse"):
        raise ContentProblem({"decision": [_("请选择批准或不批准")]})
    extension = db.get(ExtensionRequest, request_id)
    if extension is None or extension.consultation_id != c.id:
        raise ContentProblem({"request_id": [_("没有这个延期申请")]})
    workflow.decide_extension(db, staff, c, extension, decision == "approve", _text(form, "note"))
    return "extension_approved" if decision == "approve" else "extension_refused"


def _confirm_redaction(db: Session, staff: StaffIdentity, c: Consultation, form: Form) -> str:
    question = (form.get("published_question") or "").replace("\r\n", "\n")
    reply = (form.get("published_reply") or "").replace("\r\n", "\n")
    workflow.confirm_redaction(db, staff, c, question, reply)
    return "confirm_redaction"


ACTIONS: dict[str, tuple[Permission, ActionHandler]] = {
    "route": (Permission.DISPATCH, _route),
    "accept": (Permission.DISPATCH, _accept),
    "reject": (Permission.DISPATCH, _reject),
    # A dispatcher assigns; an editor of the department may take the case himself.
    "assign": (Permission.READ_RECORDS, _assign),
    "transfer": (Permission.DISPATCH, _transfer),
    "request_info": (Permission.DRAFT, _request_info),
    "return": (Permission.REVIEW, _return),
    "approve": (Permission.REVIEW, _approve),
    "reply": (Permission.DRAFT, _reply),
    "publish": (Permission.PUBLISH, _publish),
    "keep_private": (Permission.PUBLISH, _keep_private),
    "unpublish": (Permission.PUBLISH, _unpublish),
    "close": (Permission.DISPATCH, _close),
    "draft": (Permission.DRAFT, _draft),
    "notes": (Permission.READ_RECORDS, _note),
    "extension": (Permission.DRAFT, _extension),
    "extension_decision": (Permission.REVIEW, _extension_decision),
    "confirm_redaction": (Permission.REVIEW, _confirm_redaction),
}
"""``POST /consult/staff/<id>/<name>``: the rule of the view (the workflow checks the department) and its handler."""


def _perform(consultation_id: int, name: str, handler: ActionHandler) -> Any:
    staff = _staff()
    db = _db()
    consultation = _load(consultation_id)
    try:
        done = handler(db, staff, consultation, request.form)
    except ContentProblem as problem:
        db.rollback()
        return _render_case(_load(consultation_id), status=422, form_name=name, errors=problem.errors,
                            values=request.form)
    except TransitionNotAllowed as refused:
        db.rollback()
        return _render_case(_load(consultation_id), status=409, conflict=_conflict_message(refused))
    except NotPermitted:
        db.rollback()
        raise
    db.commit()
    return redirect(url_for("consult_staff.case_page", consultation_id=consultation_id, done=done), 303)


def _action_view(name: str, handler: ActionHandler) -> Callable[[int], Any]:
    def view(consultation_id: int) -> Any:
        return _perform(consultation_id, name, handler)

    view.__name__ = f"action_{name}"
    view.__doc__ = f"POST /consult/staff/<id>/{name}"
    return view


for _name, (_permission, _handler_function) in ACTIONS.items():
    bp.add_url_rule(f"/<int:consultation_id>/{_name}", endpoint=f"action_{_name}",
                    view_func=requires(_permission)(_action_view(_name, _handler_function)), methods=["POST"])


# -- canned replies and working days ----------------------------------------------------------------


def _render_canned(*, status: int = 200, errors: dict[str, list[str]] | None = None,
                   values: Mapping[str, str] | None = None) -> tuple[str, int]:
    db = _db()
    return render_template(
        "consult/staff/canned.html", staff=_staff(), replies=settings_rules.canned_replies(db, every=True),
        categories=workflow.categories(_settings()), errors=errors or {}, values=values or {},
        done=request.args.get("done") if request.args.get("done") in ("add", "delete") else None,
    ), status


@bp.route("/canned", methods=["GET", "POST"])
@requires(Permission.REVIEW)
def canned() -> Any:
    if request.method == "GET":
        return _render_canned()
    db = _db()
    form = request.form
    try:
        settings_rules.add_canned_reply(db, _settings(), _staff(), form.get("category"), form.get("title") or "",
                                        form.get("body") or "")
    except ContentProblem as problem:
        db.rollback()
        return _render_canned(status=422, errors=problem.errors, values=form)
    db.commit()
    return redirect(url_for("consult_staff.canned", done="add"), 303)


@bp.post("/canned/<int:reply_id>/delete")
@requires(Permission.REVIEW)
def canned_delete(reply_id: int) -> Any:
    """Delete a canned reply; one already deleted (a second click) leads to the same list."""
    db = _db()
    settings_rules.delete_canned_reply(db, _staff(), reply_id)
    db.commit()
    return redirect(url_for("consult_staff.canned", done="delete"), 303)


def _render_deadlines(*, status: int = 200, errors: dict[str, list[str]] | None = None,
                      values: Mapping[str, str] | None = None, changed: str | None = None) -> tuple[str, int]:
    settings = _settings()
    return render_template(
        "consult/staff/deadlines.html", staff=_staff(), rows=settings_rules.category_days(_db(), settings),
        settings=settings, errors=errors or {}, values=values or {}, changed=changed,
        accept_range=settings_rules.ACCEPT_DAYS_RANGE, reply_range=settings_rules.REPLY_DAYS_RANGE,
    ), status


@bp.route("/deadlines", methods=["GET", "POST"])
@requires(Permission.PUBLISH)
def deadlines() -> Any:
    if request.method == "GET":
        count = request.args.get("changed", "")
        return _render_deadlines(changed=count if count.isdigit() else None)
    db = _db()
    form = request.form
    values: dict[str, tuple[str | None, str | None]] = {}
    for key in form:
        kind, _, category = key.partition(":")
        if kind in ("accept", "reply") and category:
            values.setdefault(category, (form.get(f"accept:{category}"), form.get(f"reply:{category}")))
    try:
        changed = settings_rules.set_category_days(db, _settings(), _staff(), values)
    except ContentProblem as problem:
        db.rollback()
        return _render_deadlines(status=422, errors=problem.errors, values=form)
    db.commit()
    return redirect(url_for("consult_staff.deadlines", changed=len(changed)), 303)
