"""Public pages of the consult service: asking (我要咨询), tracking (咨询查询), the 咨询回复 board and the
reply statistics (咨询统计).

Two blueprints under ``/consult``:

* ``bp`` (``consult_pages``) — reads: the board and one answer (from the shared search index, never
  from the tables: ARCHITECTURE.md principle 3) and the statistics (from the consult database: they
  cover every consultation, not only the published ones). All cacheable (ETag + short max-age).
* ``asker_bp`` (``consult_asker``) — the asker's forms: submit, track with the query code, rate,
  reopen, answer a request for information. The app rate-limits its POSTs per address
  (``CONSULT_SUBMIT_RATE_LIMIT``), which also slows down guessing query codes. Its pages carry a
  CSRF token and the asker's own case, so they are never cached (``no-store``).

The query code is only ever sent in a POST body (never in a URL, so never in a log); every action on
the tracking page re-checks it. No page shows the submitter's name, phone or e-mail, not even back to
the asker. The business rules are all in :mod:`consult.workflow`; each POST commits once at the end,
so a refusal anywhere stores nothing.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from consult import statistics, workflow
from consult.models import Consultation, SubmissionAttachment
from consult.workflow import BEIJING, RATINGS, STATE_LABELS, AutomatedSubmission, Submission
from services.auth import public
from services.db import get_session, utcnow
from services.public_read import CHINA, filtered_documents, page_number, parse_month, public_document
from services.security import markup_in_sniffing_window, suspicious_filename
from services.settings import Settings
from services.web import beijing_date, cacheable, shared_page
from services.workflow import ContentProblem, TransitionNotAllowed

bp = Blueprint("consult_pages", __name__, url_prefix="/consult", template_folder="templates")
asker_bp = Blueprint("consult_asker", __name__, url_prefix="/consult", template_folder="templates")

PER_PAGE = 20
PRIVATE = "no-store"
MAX_ATTACHMENTS = 3
MAX_FILENAME = 200
MAX_FILTER_LENGTH = 100
MAX_TRACKING_INPUT = 40
FIRST_YEAR = 2000
DEPARTMENT_CODE = re.compile(r"^[A-Z0-9_-]{1,40}$")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
DEADLINE_BADGES = ("overdue", "due_soon", "on_time", "paused")
SUBMISSION_FIELDS = ("title", "question", "category", "name", "phone", "email")


# -- helpers ---------------------------------------------------------------------------------


def _settings() -> Settings:
    settings: Settings = current_app.extensions["gongkai.settings"]
    return settings


def _db() -> Session:
    return get_session("consult")


def private(html: str, status: int = 200) -> Response:
    """A page for one visitor only (a CSRF token, their own case, a query code): never stored by a cache."""
    response = make_response(html, status)
    response.headers["Cache-Control"] = PRIVATE
    return response


def _form_text(name: str, limit: int | None = None) -> str:
    value = request.form.get(name) or ""
    return value[:limit] if limit else value


bp.add_app_template_filter(beijing_date, "beijing_date")


@bp.app_template_filter("beijing_time")
def beijing_time(value: Any) -> str:
    """``YYYY-MM-DD HH:MM`` in Beijing of an aware datetime."""
    if not isinstance(value, datetime):
        return ""
    return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def department_names() -> dict[str, str]:
    """Department code → name, from the category → department table (empty when it cannot be read)."""
    from consult.routing import RoutingError, load_departments

    try:
        table = load_departments(_settings().router_departments_file)
    except RoutingError:
        return {}
    return {department.code: department.name for department in table.values()}


# -- 我要咨询: the submission form -------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    content: bytes


FILE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
"""What an attachment may be, told from its first bytes (never from its name or declared type)."""


def _safe_filename(raw: str | None) -> str:
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[-MAX_FILENAME:] or "attachment"


def read_attachments(files: list[FileStorage], max_bytes: int) -> tuple[list[Upload], list[str]]:
    """The accepted uploads and the problems found (any problem: nothing is stored)."""
    chosen = [item for item in files if item.filename]
    errors: list[str] = []
    if len(chosen) > MAX_ATTACHMENTS:
        return [], [_("最多上传 %(n)s 个附件", n=MAX_ATTACHMENTS)]
    uploads = []
    size_mb = f"{max_bytes / 1048576:g}"
    for item in chosen:
        filename = _safe_filename(item.filename)
        if suspicious_filename(item.filename):
            errors.append(_("附件“%(name)s”的文件名含有控制字符或路径，请改名后重新上传", name=filename))
            continue
        content = item.stream.read(max_bytes + 1)
        if not content:
            errors.append(_("附件“%(name)s”是空文件", name=filename))
            continue
        if len(content) > max_bytes:
            errors.append(_("附件“%(name)s”超过 %(size)s MB", name=filename, size=size_mb))
            continue
        kind = next((content_type for magic, content_type in FILE_SIGNATURES if content.startswith(magic)), None)
        if kind is None:
            errors.append(_("附件“%(name)s”不是 PDF、JPEG 或 PNG 文件", name=filename))
            continue
        if markup_in_sniffing_window(content):
            errors.append(_("附件“%(name)s”含有网页代码，不是真正的 PDF、JPEG 或 PNG 文件", name=filename))
            continue
        uploads.append(Upload(filename, kind, content))
    return (uploads if not errors else []), errors


def _submission_from_form() -> Submission:
    return Submission(
        title=_form_text("title", 1000),
        question=_form_text("question", workflow.QUESTION_MAX * 2),
        name=_form_text("name", 500),
        phone=_form_text("phone", 100) or None,
        email=_form_text("email", 500) or None,
        category=_form_text("category", 200) or None,
        consent_to_publish=request.form.get("consent_to_publish") in ("1", "on", "true"),
        website=_form_text("website", 500) or None,
    )


def _ask_form(values: dict[str, Any], errors: dict[str, list[str]], status: int = 200) -> Response:
    return private(render_template(
        "consult/ask.html", values=values, errors=errors, categories=workflow.categories(_settings()),
        max_attachments=MAX_ATTACHMENTS, max_megabytes=f"{_settings().attachment_max_bytes / 1048576:g}",
    ), status)


@asker_bp.route("/ask", methods=["GET", "POST"])
@public
def ask() -> Response:
    if request.method == "GET":
        return _ask_form({"consent_to_publish": False}, {})
    settings = _settings()
    fields_ = _submission_from_form()
    typed = {name: getattr(fields_, name) or "" for name in SUBMISSION_FIELDS}
    typed["consent_to_publish"] = fields_.consent_to_publish
    uploads, upload_errors = read_attachments(request.files.getlist("attachments"), settings.attachment_max_bytes)
    db = _db()
    try:
        if upload_errors:
            if fields_.website and fields_.website.strip():
                raise AutomatedSubmission
            # Report the other fields' problems too (nothing is submitted while a file is refused).
            workflow.validate_submission(settings, replace(fields_))  # (on a copy: it normalises in place)
            raise ContentProblem({"attachments": upload_errors})
        result = workflow.submit_consultation(db, settings, fields_)
    except AutomatedSubmission:
        db.rollback()
        # Looks like a success (a bot learns nothing), but no number is real and nothing is stored.
        return private(render_template(
            "consult/ask_done.html", tracking_number=f"ZX{workflow.local_day(utcnow()):%Y%m%d}-0000",
            query_code=workflow.new_query_code(), duplicate=False, warnings=[], attachments=0,
            deadline=workflow.consult_calendar(db).add_working_days(workflow.local_day(utcnow()),
                                                                    settings.consult_accept_working_days),
        ))
    except ContentProblem as problem:
        db.rollback()
        errors = dict(problem.errors)
        if upload_errors:
            errors["attachments"] = upload_errors
        return _ask_form(typed, errors, 422)
    consultation = result.consultation
    if not result.duplicate:
        for upload in uploads:
            db.add(SubmissionAttachment(
                consultation_id=consultation.id, filename=upload.filename, content_type=upload.content_type,
                size=len(upload.content), sha256=hashlib.sha256(upload.content).hexdigest(),
                content=upload.content, created_at=utcnow(),
            ))
    page = render_template(
        "consult/ask_done.html", tracking_number=consultation.tracking_number,
        query_code=result.query_code, duplicate=result.duplicate, deadline=workflow.current_deadline(consultation),
        warnings=result.warnings, attachments=0 if result.duplicate else len(uploads),
    )
    db.commit()
    return private(page)


# -- 咨询查询: tracking with the query code ------------------------------------------------------


def _tracking_input() -> tuple[str, str]:
    number = _form_text("tracking_number", MAX_TRACKING_INPUT).strip().upper()
    code = _form_text("code", MAX_TRACKING_INPUT).strip().upper()
    return number, code


def _asker_case(db: Session) -> tuple[Consultation | None, str, str]:
    """The consultation named by the form's tracking number and query code, or None (whichever was wrong)."""
    number, code = _tracking_input()
    consultation = db.scalar(select(Consultation).where(Consultation.tracking_number == number)) if number else None
    if not workflow.check_query_code(consultation, code):
        return None, number, code
    return consultation, number, code


def _wrong_pair(number: str) -> Response:
    return private(render_template(
        "consult/track.html", tracking_number=number, error=_("受理编号或查询码不正确"),
    ), 422)


def _tracking_page(db: Session, consultation: Consultation, code: str, *, notice: str | None = None,
                   errors: dict[str, list[str]] | None = None, values: dict[str, str] | None = None,
                   status: int = 200) -> Response:
    from consult.api import tracking_view

    view = tracking_view(_settings(), db, consultation)
    return private(render_template(
        "consult/tracking.html", case=view, code=code, notice=notice, errors=errors or {}, values=values or {},
        ratings=RATINGS, state_labels=STATE_LABELS, rejection_note=consultation.rejection_note,
    ), status)


@asker_bp.route("/track", methods=["GET", "POST"])
@public
def track() -> Response:
    if request.method == "GET":
        return private(render_template("consult/track.html", tracking_number="", error=None))
    db = _db()
    consultation, number, code = _asker_case(db)
    if consultation is None:
        return _wrong_pair(number)
    return _tracking_page(db, consultation, code)


def _asker_action(action: str) -> Response:
    """Run one of the asker's actions after re-checking the pair, then show the tracking page again."""
    db = _db()
    consultation, number, code = _asker_case(db)
    if consultation is None:
        return _wrong_pair(number)
    settings = _settings()
    values = {name: _form_text(name, workflow.QUESTION_MAX) for name in ("rating", "comment", "reason", "info")}
    try:
        if action == "rate":
            workflow.rate(db, consultation, values["rating"], values["comment"])
            notice = _("感谢您的评价。")
        elif action == "reopen":
            workflow.reopen(db, settings, consultation, values["reason"])
            notice = _("已申请重新办理，我们将重新答复您。")
        else:
            workflow.provide_info(db, consultation, values["info"])
            notice = _("已收到您补充的内容，我们将继续办理。")
    except ContentProblem as problem:
        db.rollback()
        db.refresh(consultation)
        return _tracking_page(db, consultation, code, errors={action: _messages(problem.errors)}, values=values,
                              status=422)
    except TransitionNotAllowed:
        db.rollback()
        db.refresh(consultation)
        return _tracking_page(db, consultation, code, errors={action: [_("当前状态不能进行此操作。")]},
                              values=values, status=409)
    db.commit()
    return _tracking_page(db, consultation, code, notice=notice)


def _messages(errors: dict[str, list[str]]) -> list[str]:
    return [message for messages in errors.values() for message in messages]


@asker_bp.post("/track/rate")
@public
def rate() -> Response:
    return _asker_action("rate")


@asker_bp.post("/track/reopen")
@public
def reopen() -> Response:
    return _asker_action("reopen")


@asker_bp.post("/track/info")
@public
def provide_info() -> Response:
    return _asker_action("info")


# -- 咨询回复: the board of published answers ----------------------------------------------------


@dataclass(frozen=True)
class AnswerFilters:
    department: str = ""
    category: str = ""
    month: str = ""

    def query(self) -> dict[str, str]:
        """The filters in effect, as query parameters (for the pagination links)."""
        return {name: value for name, value in (("department", self.department), ("category", self.category),
                                                ("month", self.month)) if value}


def _answer_filters() -> tuple[AnswerFilters, dict[str, list[str]]]:
    department = (request.args.get("department") or "").strip().upper()
    category = (request.args.get("category") or "").strip()[:MAX_FILTER_LENGTH]
    month = (request.args.get("month") or "").strip()
    errors: dict[str, list[str]] = {}
    if department and not DEPARTMENT_CODE.match(department):
        errors["department"] = [_("请从列表中选择部门")]
        department = ""
    if month:
        try:
            parse_month(month)
            if not MONTH.match(month):
                raise ValueError(month)
        except ValueError:
            errors["month"] = [_("月份格式为 YYYY-MM，例如 2026-10")]
            month = ""
    return AnswerFilters(department, category, month), errors


@bp.get("/")
@public
def index() -> Response:
    return redirect(url_for("consult_pages.answers"))


@bp.get("/answers")
@public
@shared_page
def answers() -> Response:
    chosen, errors = _answer_filters()
    listing = filtered_documents(
        current_app, "answer", page_number(request.args.get("page")), PER_PAGE,
        fields={"department": chosen.department, "category": chosen.category}, month=chosen.month or None,
    )
    names = department_names()
    departments = sorted(set(names) | ({chosen.department} if chosen.department else set()))
    categories = workflow.categories(_settings())
    if chosen.category and chosen.category not in categories:
        categories = [*categories, chosen.category]
    html = render_template(
        "consult/answers.html", listing=listing, filters=chosen, query=chosen.query(), errors=errors,
        departments=departments, department_names=names, categories=categories,
    )
    if errors:
        return make_response(html, 400)
    return cacheable(html)


@bp.get("/answers/<int:answer_id>")
@public
@shared_page
def answer(answer_id: int) -> Response:
    document = public_document(current_app, f"answer-{answer_id}")
    return cacheable(render_template("consult/answer.html", answer=document, department_names=department_names()))


# -- 咨询统计 ---------------------------------------------------------------------------------------


@bp.get("/statistics", endpoint="statistics")
@public
def statistics_page() -> Response:
    db = _db()
    this_year = datetime.now(CHINA).year
    first = statistics.first_year(db) or this_year
    raw = (request.args.get("year") or "").strip()
    year = int(raw) if raw.isdigit() and FIRST_YEAR <= int(raw) <= this_year + 1 else None
    figures = statistics.compute(db, workflow.consult_calendar(db), year=year)
    return cacheable(render_template(
        "consult/statistics.html", figures=figures, year=year,
        years=range(this_year, min(first, this_year) - 1, -1), department_names=department_names(),
    ))
