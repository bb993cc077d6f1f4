"""Consultations: states, the allowed transitions, deadlines, and the rules that change them.

The API, the pages, the CLI and the beat tasks all call these functions. Each checks the
actor's permission in the consultation's department, applies one transition from
:data:`CONSULTATION_WORKFLOW`, records a step of the history (public or staff-only), and
writes the outbox events (a ``consult.consultation.<action>`` event for the search index
and the press office, and an audit entry) in the caller's transaction. The caller commits.

The submitter's name and contact details stay in this service: no event, search document,
public answer or log line carries them (see :func:`public_summary` and
:func:`answer_search_document`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from difflib import SequenceMatcher
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from consult.models import (
    CalendarDay,
    CategoryDeadline,
    Consultation,
    ConsultationStep,
    ExtensionRequest,
    InternalNote,
    OutboxEvent,
    TrackingSerial,
)
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.calendar import WorkingCalendar, load_calendar
from services.db import utcnow
from services.outbox import emit
from services.permissions import Permission, require
from services.settings import Settings
from services.text.pii import BANK_CARD, EMAIL, ID_CARD, PHONE, find_personal_data, redact
from services.text.pii import MARKERS as PII_MARKERS
from services.text.pii import NAME as PII_NAME
from services.workflow import ContentProblem, StateMachine, problem

BEIJING = timezone(timedelta(hours=8))


class ConsultationState(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ASSIGNED = "assigned"
    DRAFTING = "drafting"
    AWAITING_INFO = "awaiting_info"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REPLIED = "replied"
    PUBLISHED = "published"
    PRIVATE = "private"
    CLOSED = "closed"
    REOPENED = "reopened"


S = ConsultationState
ANSWERED = frozenset({S.REPLIED, S.PUBLISHED, S.PRIVATE, S.CLOSED})

STATE_LABELS: dict[str, str] = {
    S.SUBMITTED: "已提交", S.ACCEPTED: "已受理", S.REJECTED: "不予受理", S.ASSIGNED: "已分办",
    S.DRAFTING: "办理中", S.AWAITING_INFO: "待补充材料", S.IN_REVIEW: "审核中", S.APPROVED: "审核通过",
    S.REPLIED: "已答复", S.PUBLISHED: "已公开", S.PRIVATE: "已答复（不公开）", S.CLOSED: "已办结",
    S.REOPENED: "已重新办理",
}
ACTION_LABELS: dict[str, str] = {
    "submit": "提交", "route": "分送部门", "accept": "受理", "reject": "不予受理", "assign": "分办",
    "transfer": "转办", "draft": "起草答复", "request_info": "请求补充材料", "provide_info": "补充材料",
    "submit_review": "提交审核", "return": "退回修改", "approve": "审核通过", "reply": "答复",
    "publish": "公开答复", "keep_private": "不公开", "unpublish": "撤回公开", "close": "办结",
    "reopen": "重新办理", "rate": "评价", "extension_requested": "申请延期", "extension_approved": "批准延期",
    "extension_refused": "不批准延期", "note": "内部备注", "redaction_confirmed": "确认隐去个人信息",
}

CONSULTATION_WORKFLOW: StateMachine[ConsultationState] = StateMachine(
    "consultation",
    {
        "route": (frozenset({S.SUBMITTED}), S.SUBMITTED),
        "accept": (frozenset({S.SUBMITTED}), S.ACCEPTED),
        "reject": (frozenset({S.SUBMITTED}), S.REJECTED),
        "assign": (frozenset({S.ACCEPTED, S.ASSIGNED, S.DRAFTING, S.REOPENED}), S.ASSIGNED),
        "transfer": (frozenset({S.ACCEPTED, S.ASSIGNED, S.DRAFTING, S.REOPENED}), S.ACCEPTED),
        "draft": (frozenset({S.ASSIGNED, S.DRAFTING}), S.DRAFTING),
        "request_info": (frozenset({S.ASSIGNED, S.DRAFTING}), S.AWAITING_INFO),
        "provide_info": (frozenset({S.AWAITING_INFO}), S.DRAFTING),
        "submit_review": (frozenset({S.DRAFTING}), S.IN_REVIEW),
        "return": (frozenset({S.IN_REVIEW, S.APPROVED}), S.DRAFTING),
        "approve": (frozenset({S.IN_REVIEW}), S.APPROVED),
        "reply": (frozenset({S.APPROVED}), S.REPLIED),
        "publish": (frozenset({S.REPLIED, S.PRIVATE}), S.PUBLISHED),
        "keep_private": (frozenset({S.REPLIED}), S.PRIVATE),
        "unpublish": (frozenset({S.PUBLISHED}), S.PRIVATE),
        "close": (frozenset({S.REPLIED, S.PUBLISHED, S.PRIVATE}), S.CLOSED),
        "reopen": (frozenset({S.REPLIED, S.PUBLISHED, S.PRIVATE, S.CLOSED}), S.REOPENED),
    },
    state_labels=STATE_LABELS,
    action_labels=ACTION_LABELS,
)
"""The one table of allowed transitions. ``route`` moves an unrouted submission to a department's
queue; ``transfer`` moves accepted work to another department, keeping its history and deadline."""

ACTION_PERMISSION: dict[str, Permission] = {
    "route": Permission.DISPATCH,
    "accept": Permission.DISPATCH,
    "reject": Permission.DISPATCH,
    "assign": Permission.DISPATCH,
    "transfer": Permission.DISPATCH,
    "close": Permission.DISPATCH,
    "draft": Permission.DRAFT,
    "request_info": Permission.DRAFT,
    "submit_review": Permission.DRAFT,
    "reply": Permission.DRAFT,
    "return": Permission.REVIEW,
    "approve": Permission.REVIEW,
    "publish": Permission.PUBLISH,
    "keep_private": Permission.PUBLISH,
    "unpublish": Permission.PUBLISH,
}
"""What a staff member needs, in the consultation's department, for each staff action."""

PUBLIC_STEP_NOTES: dict[str, str] = {
    "submit": "您的咨询已提交。",
    "route": "已分送承办部门。",
    "accept": "您的咨询已受理。",
    "assign": "已交由工作人员办理。",
    "transfer": "已转交其他部门办理。",
    "request_info": "请补充材料：",
    "provide_info": "已收到您补充的材料，继续办理。",
    "submit_review": "答复正在审核。",
    "reply": "已答复，请查看答复内容。",
    "publish": "问题与答复已在咨询回复栏目公开（个人信息已隐去）。",
    "keep_private": "答复不对外公开。",
    "close": "已办结。",
    "reopen": "您对答复不满意，已重新办理。",
    "extension_approved": "办理期限已延长。",
}
"""What the asker's tracking page says about each step; steps not listed are staff-only."""

REJECTION_REASONS: dict[str, str] = {
    "duplicate": "重复咨询",
    "no_content": "无实质内容",
    "not_our_duty": "不属于本机关职责",
    "unlawful": "含有违法内容",
}
RATINGS: dict[str, str] = {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}

TITLE_MAX = 100
QUESTION_MAX = 5000
NAME_MAX = 50
REPLY_MAX = 20000
NOTE_MAX = 2000
MAX_EXTENSION_DAYS = 20
DUPLICATE_WINDOW = timedelta(hours=24)
DUPLICATE_SIMILARITY = 0.9
DUPLICATE_CANDIDATES = 50
"""A contact's latest consultations of the window that a new submission is compared with."""
QUERY_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
QUERY_CODE_LENGTH = 8
MOBILE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}(-\d{1,6})?$")
EMAIL_ADDRESS = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
UNREDACTED_KINDS = (PHONE, ID_CARD, EMAIL, BANK_CARD)
"""Kinds a published text may never contain: the reviewer's text is refused while one is found."""

# The query code's hash: argon2id, one pass over 4 MiB, one lane (about 2 ms of one core, run off the GIL).
# A query code is 8 random symbols of a 32-symbol alphabet (2^40 codes), not a password a person chose: it needs
# no dictionary-resistant cost, only a hash a leak cannot reverse. Memory-hard at 4 MiB a GPU manages some 10^5
# guesses/s, months per code (and a stolen database holds the case itself anyway); online guessing meets the
# tracking rate limit. argon2-cffi's defaults (3 passes over 64 MiB, 4 lanes: 50-600 ms here) held every
# submission that long and were the main limit on submissions per second. Hashes made with the old parameters
# still verify: an argon2 hash carries its own parameters.
_hasher = PasswordHasher(time_cost=1, memory_cost=4096, parallelism=1, type=Type.ID)
DATA_DIR = Path(__file__).parent / "data"


# -- dates and deadlines ---------------------------------------------------------------------


def local_day(moment: datetime) -> date:
    """The Beijing calendar day of a moment (deadlines are counted in local days)."""
    return moment.astimezone(BEIJING).date()


def consult_calendar(session: Session) -> WorkingCalendar:
    return load_calendar(session, CalendarDay)


def working_days_for(session: Session, settings: Settings, category: str | None) -> tuple[int, int]:
    """(working days to accept, working days to reply) for a category."""
    if category:
        row = session.get(CategoryDeadline, category)
        if row is not None:
            return row.accept_working_days, row.reply_working_days
    return settings.consult_accept_working_days, settings.consult_reply_working_days


def _deadline(calendar: WorkingCalendar, start: date, working_days: int) -> tuple[date, bool]:
    """The day ``working_days`` working days after ``start`` (at least one), and whether a year without a
    holiday arrangement was counted Monday-Friday on the way (the calendar logs that once per year)."""
    due = calendar.add_working_days(start, working_days)
    return due, bool(calendar.uncovered_years(start + timedelta(days=1), due))


def _recompute_reply_due(consultation: Consultation, calendar: WorkingCalendar) -> None:
    if consultation.clock_started_on is None:
        return
    span = consultation.reply_working_days + consultation.extension_working_days + consultation.paused_working_days
    consultation.reply_due, estimated = _deadline(calendar, consultation.clock_started_on, span)
    consultation.deadline_estimated = estimated or bool(
        consultation.accept_due and calendar.uncovered_years(consultation.accept_due, consultation.accept_due)
    )


def current_deadline(consultation: Consultation) -> date | None:
    """The deadline that matters now: acceptance before it is accepted, the reply after."""
    if consultation.state == S.SUBMITTED:
        return consultation.accept_due
    if consultation.state in (S.REJECTED, *ANSWERED) or consultation.historical:
        return None
    return consultation.reply_due


def deadline_status(consultation: Consultation, calendar: WorkingCalendar, today: date | None = None) -> str | None:
    """``paused``, ``overdue``, ``due_soon`` (due today or the next working day) or ``on_time``; None when done."""
    due = current_deadline(consultation)
    if due is None:
        return None
    if consultation.state == S.AWAITING_INFO:
        return "paused"
    today = today or local_day(utcnow())
    if today > due:
        return "overdue"
    if calendar.working_days_between(today, due) <= 1:
        return "due_soon"
    return "on_time"


def year_warning(consultation: Consultation) -> str | None:
    if not consultation.deadline_estimated:
        return None
    return ("截止日期跨入尚未录入节假日安排的年份，暂按周一至周五计算，录入该年安排后自动更正 / the deadline falls in "
            "a year without a holiday arrangement: counted Monday-Friday until an administrator enters it")


# -- the public side: submission -------------------------------------------------------------


@dataclass
class Submission:
    title: str
    question: str
    name: str
    phone: str | None = None
    email: str | None = None
    category: str | None = None
    consent_to_publish: bool = False
    website: str | None = None
    """The honeypot: a field people never see. Anything in it marks the submission as automated."""


@dataclass
class SubmissionResult:
    consultation: Consultation
    query_code: str | None
    """Shown once; None when the submission repeated an open one (its tracking number is returned)."""
    duplicate: bool = False
    warnings: list[str] = field(default_factory=list)


class AutomatedSubmission(Exception):
    """The honeypot was filled in: answered like a success, nothing stored."""


def normalise_phone(phone: str) -> str:
    return re.sub(r"[\s()（）]", "", unicodedata.normalize("NFKC", phone)).replace("+86", "")


def contact_key(settings: Settings, phone: str | None, email: str | None) -> str:
    """A keyed hash of the normalised contact details (duplicate detection without storing them twice)."""
    material = f"{normalise_phone(phone or '')}|{(email or '').strip().lower()}"
    return hmac.new(settings.secret_key.encode(), material.encode(), hashlib.sha256).hexdigest()


def _compact(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", unicodedata.normalize("NFKC", text)).lower()


def similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, _compact(a), _compact(b), autojunk=False).ratio()


def categories(settings: Settings) -> list[str]:
    """The first-level categories the office routes by (the category → department table)."""
    from consult.routing import load_departments

    return sorted(load_departments(settings.router_departments_file))


@lru_cache(maxsize=4)
def _sensitive_words(path: Path, mtime: float) -> tuple[tuple[str, str], ...]:
    """(word, its folded form) for each screened word of the file, read again when the file changes."""
    lines = path.read_text(encoding="utf-8").splitlines()
    words = (line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return tuple((word, _compact(word)) for word in words)


def sensitive_words(settings: Settings) -> tuple[str, ...]:
    return tuple(word for word, _ in _screen_list(settings))


def _screen_list(settings: Settings) -> tuple[tuple[str, str], ...]:
    path = settings.consult_sensitive_words_file or DATA_DIR / "sensitive_words.txt"
    return _sensitive_words(path, path.stat().st_mtime)


def screen(settings: Settings, *texts: str) -> list[str]:
    """The screened words found in the texts (the submission is flagged for review, never dropped)."""
    folded = _compact(" ".join(texts))
    return [word for word, form in _screen_list(settings) if form in folded]


def validate_submission(settings: Settings, fields: Submission) -> Submission:
    errors: dict[str, list[str]] = {}
    fields.title = " ".join(fields.title.split())
    fields.question = fields.question.strip()
    fields.name = fields.name.strip()
    fields.phone = normalise_phone(fields.phone) if fields.phone and fields.phone.strip() else None
    fields.email = fields.email.strip() if fields.email and fields.email.strip() else None
    if not fields.title:
        errors.setdefault("title", []).append("请填写标题")
    elif len(fields.title) > TITLE_MAX:
        errors.setdefault("title", []).append(f"标题不能超过 {TITLE_MAX} 字")
    if not fields.question:
        errors.setdefault("question", []).append("请填写咨询内容")
    elif len(fields.question) > QUESTION_MAX:
        errors.setdefault("question", []).append(f"咨询内容不能超过 {QUESTION_MAX} 字")
    elif len(_compact(fields.question)) < 5:
        errors.setdefault("question", []).append("咨询内容过短，请具体描述您的问题")
    if not fields.name:
        errors.setdefault("name", []).append("请填写姓名")
    elif len(fields.name) > NAME_MAX:
        errors.setdefault("name", []).append(f"姓名不能超过 {NAME_MAX} 字")
    if not fields.phone and not fields.email:
        errors.setdefault("phone", []).append("请至少填写电话或电子邮箱中的一项")
    if fields.phone and not (MOBILE.match(fields.phone) or LANDLINE.match(fields.phone)):
        errors.setdefault("phone", []).append("电话号码格式不正确（手机号 11 位，或带区号的固定电话）")
    if fields.email and (len(fields.email) > 254 or not EMAIL_ADDRESS.match(fields.email)):
        errors.setdefault("email", []).append("电子邮箱格式不正确")
    if fields.category is not None and fields.category.strip():
        fields.category = fields.category.strip()
        if fields.category not in categories(settings):
            errors.setdefault("category", []).append("请从列表中选择类别")
    else:
        fields.category = None
    if errors:
        raise ContentProblem(errors)
    return fields


def _next_tracking_number(session: Session, day: date) -> str:
    """The next ``ZX<yyyymmdd>-<serial>`` of a day, from one atomic upsert (concurrent submissions never clash).

    On PostgreSQL the upsert runs on a connection of its own in autocommit: the day's serial row is locked
    for that one statement inside the server, not until the submission's transaction commits. Taken in the
    caller's transaction, every submission of the day queued behind the previous one's whole request (its
    inserts, its events, its commit), which capped submissions at one lock holder at a time. Like a
    sequence, a number drawn by a submission that then fails is not reused: a gap, never a clash. A session
    bound to an outer connection (the tests' rolled-back transaction) and SQLite (one writer at a time
    anyway) draw in the caller's transaction. The caller's transaction must not hold the day's serial row.
    """
    key = day.strftime("%Y%m%d")
    bind = session.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    insert = postgresql_insert if postgresql else sqlite_insert
    upsert = insert(TrackingSerial).values(day=key, last_serial=1).on_conflict_do_update(
        index_elements=[TrackingSerial.day], set_={"last_serial": TrackingSerial.last_serial + 1},
    ).returning(TrackingSerial.last_serial)
    serial: int
    if postgresql and isinstance(bind, Engine):
        with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            serial = connection.execute(upsert).scalar_one()
    else:
        serial = session.execute(upsert).scalar_one()
    return f"ZX{key}-{serial:04d}"


def new_query_code() -> str:
    return "".join(secrets.choice(QUERY_CODE_ALPHABET) for _ in range(QUERY_CODE_LENGTH))


def check_query_code(consultation: Consultation | None, code: str | None) -> bool:
    """Whether ``code`` is the consultation's query code (constant effort whether or not it exists)."""
    cleaned = (code or "").strip().upper()
    stored = consultation.query_code_hash if consultation is not None else None
    try:
        return _hasher.verify(stored or _DUMMY_HASH, cleaned) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("not-a-query-code")


def _find_duplicate(session: Session, key: str, fields: Submission, now: datetime) -> Consultation | None:
    """The same contact's recent consultation with (nearly) the same title and question, if any.

    Bounded: the contact's :data:`DUPLICATE_CANDIDATES` latest consultations of the window (through the
    ``contact_key, received_at`` index, three columns each), compared cheapest bound first — the length
    bound and the character-count bound of :class:`~difflib.SequenceMatcher` rule out most candidates
    before the quadratic ratio is computed. The whole consultation is loaded only for the match.
    """
    recent = session.execute(
        select(Consultation.id, Consultation.title, Consultation.question)
        .where(Consultation.contact_key == key, Consultation.received_at >= now - DUPLICATE_WINDOW)
        .order_by(Consultation.received_at.desc(), Consultation.id.desc())
        .limit(DUPLICATE_CANDIDATES)
    ).all()
    text = _compact(f"{fields.title}\n{fields.question}")
    for candidate_id, title, question in reversed(recent):  # the earliest of them first
        matcher = SequenceMatcher(None, text, _compact(f"{title}\n{question}"), autojunk=False)
        if (matcher.real_quick_ratio() >= DUPLICATE_SIMILARITY and matcher.quick_ratio() >= DUPLICATE_SIMILARITY
                and matcher.ratio() >= DUPLICATE_SIMILARITY):
            return session.get(Consultation, candidate_id)
    return None


def submit_consultation(
    session: Session, settings: Settings, fields: Submission, now: datetime | None = None,
) -> SubmissionResult:
    """A question from the public: validated, screened, routed, given its deadlines and a query code."""
    if fields.website and fields.website.strip():
        raise AutomatedSubmission
    validate_submission(settings, fields)
    now = now or utcnow()
    key = contact_key(settings, fields.phone, fields.email)
    existing = _find_duplicate(session, key, fields, now)
    if existing is not None:
        return SubmissionResult(existing, None, duplicate=True)
    calendar = consult_calendar(session)
    category, source, confidence, department, needs_routing = _route(settings, fields)
    accept_days, reply_days = working_days_for(session, settings, category)
    received_on = local_day(now)
    accept_due, estimated = _deadline(calendar, received_on, accept_days)
    query_code = new_query_code()
    query_code_hash = _hasher.hash(query_code)
    flagged = screen(settings, fields.title, fields.question)
    consultation = Consultation(
        tracking_number=_next_tracking_number(session, received_on),  # the first write: as late as possible
        query_code_hash=query_code_hash,
        title=fields.title, question=fields.question,
        category=category, category_source=source, category_confidence=confidence,
        name=fields.name, phone=fields.phone, email=fields.email, contact_key=key,
        consent_to_publish=fields.consent_to_publish,
        sensitive_terms="，".join(flagged) or None,
        state=S.SUBMITTED, department=department, needs_routing=needs_routing,
        accept_due=accept_due, reply_working_days=reply_days, deadline_estimated=estimated,
        paused_working_days=0, extension_working_days=0, reopen_count=0,
        received_at=now, created_at=now, version=1, historical=False,
    )
    session.add(consultation)
    session.flush()
    detail = f"敏感词：{consultation.sensitive_terms}" if flagged else None
    _step(session, consultation, None, "submit", None, S.SUBMITTED, detail=detail, at=now)
    if category:
        routing = "提交人选择" if source == "asker" else f"智能分类（置信度 {confidence:.2f}）"
        queue = "待人工分办" if needs_routing else f"分送 {department}"
        _step(session, consultation, None, "route", S.SUBMITTED, S.SUBMITTED,
              detail=f"类别：{category}（{routing}），{queue}", public=not needs_routing, at=now)
    _changed(session, None, consultation, "submit")
    emit(session, OutboxEvent, "consult.consultation.received", aggregate_type="consultation",
         aggregate_id=consultation.id, version=consultation.version,
         payload={"consultation": press_intake(settings, consultation)})
    warnings = [w for w in (year_warning(consultation),) if w]
    if flagged:
        warnings.append("您的咨询将经人工审核后受理")
    return SubmissionResult(consultation, query_code, warnings=warnings)


def _route(settings: Settings, fields: Submission) -> tuple[str | None, str | None, float | None, str, bool]:
    """(category, its source, confidence, department, still needs a dispatcher)."""
    from consult.routing import department_for, load_current_router

    intake = settings.consult_intake_department
    if fields.category:
        department = department_for(fields.category, settings.router_departments_file)
        return fields.category, "asker", None, department.code if department else intake, department is None
    router = load_current_router(settings.data_dir)
    if router is None:
        return None, None, None, intake, True
    category, confidence = router.classify(f"{fields.title}\n{fields.question}")
    department = department_for(category, settings.router_departments_file)
    confident = confidence >= settings.router_confidence_threshold and department is not None
    return category, "router", round(confidence, 4), department.code if confident and department else intake, (
        not confident
    )


# -- the public side: the asker's own actions ---------------------------------------------------


def rate(session: Session, consultation: Consultation, rating: str, comment: str | None) -> Consultation:
    if consultation.state not in ANSWERED:
        raise problem("rating", "答复之后才能评价")
    if rating not in RATINGS:
        raise problem("rating", f"评价应为 {'、'.join(RATINGS.values())} 之一")
    comment = (comment or "").strip() or None
    if comment and len(comment) > NOTE_MAX:
        raise problem("comment", f"意见不能超过 {NOTE_MAX} 字")
    replied_at = consultation.replied_at
    if consultation.rated_at is not None and replied_at is not None and consultation.rated_at >= replied_at:
        raise problem("rating", "您已评价过本次答复")
    consultation.rating = rating
    consultation.rating_comment = comment
    consultation.rated_at = utcnow()
    consultation.version += 1
    _step(session, consultation, None, "rate", consultation.state, consultation.state,
          detail=f"{RATINGS[rating]}{'：' + comment if comment else ''}", public=False)
    _changed(session, None, consultation, "rate")
    return consultation


def reopen_deadline(settings: Settings, consultation: Consultation) -> datetime | None:
    """Until when a dissatisfied asker may reopen (None: no longer possible)."""
    if consultation.reopen_count >= 1 or consultation.replied_at is None:
        return None
    return consultation.replied_at + timedelta(days=settings.consult_reopen_days)


def reopen(session: Session, settings: Settings, consultation: Consultation, reason: str | None) -> Consultation:
    """The asker is not satisfied: the case is handled again, once, within the configured period."""
    if consultation.rating != "dissatisfied":
        raise problem("rating", "只有评价为“不满意”的答复才能申请重新办理")
    until = reopen_deadline(settings, consultation)
    if until is None:
        raise problem("reopen", "每件咨询只能申请重新办理一次")
    if utcnow() > until:
        raise problem("reopen", f"已超过答复后 {settings.consult_reopen_days} 天的重新办理期限")
    reason = (reason or consultation.rating_comment or "").strip()
    if len(reason) > NOTE_MAX:
        raise problem("reason", f"理由不能超过 {NOTE_MAX} 字")
    calendar = consult_calendar(session)
    _transition(session, None, consultation, "reopen", detail=reason or None)
    consultation.reopen_count += 1
    consultation.clock_started_on = local_day(utcnow())
    consultation.paused_working_days = 0
    consultation.extension_working_days = 0
    consultation.handler_id = consultation.handler_name = None
    consultation.reminded_for = consultation.escalated_for = None
    _recompute_reply_due(consultation, calendar)
    return consultation


def provide_info(session: Session, consultation: Consultation, text: str) -> Consultation:
    """The asker answers a request for information: the clock runs again from today."""
    text = text.strip()
    if not text:
        raise problem("info", "请填写补充内容")
    if len(text) > QUESTION_MAX:
        raise problem("info", f"补充内容不能超过 {QUESTION_MAX} 字")
    calendar = consult_calendar(session)
    paused_since = consultation.paused_since
    _transition(session, None, consultation, "provide_info", detail=text)
    if paused_since is not None:
        consultation.paused_working_days += max(0, calendar.working_days_between(paused_since, local_day(utcnow())))
    consultation.paused_since = None
    consultation.info_response = text
    _recompute_reply_due(consultation, calendar)
    return consultation


# -- the staff side -----------------------------------------------------------------------------


def route(session: Session, actor: StaffIdentity, consultation: Consultation, department: str,
          category: str | None, settings: Settings) -> Consultation:
    """A dispatcher sends a submission from the intake queue (or a wrong queue) to a department."""
    department = _department_code(department)
    if category is not None and category not in categories(settings):
        raise problem("category", "请从列表中选择类别")
    previous = consultation.department
    _transition(session, actor, consultation, "route", detail=f"{previous} → {department}")
    consultation.department = department
    consultation.needs_routing = False
    if category is not None:
        consultation.category, consultation.category_source = category, "staff"
    return consultation


def accept(session: Session, actor: StaffIdentity, consultation: Consultation) -> Consultation:
    calendar = consult_calendar(session)
    _transition(session, actor, consultation, "accept")
    consultation.accepted_at = utcnow()
    consultation.needs_routing = False
    consultation.clock_started_on = local_day(consultation.accepted_at)
    _recompute_reply_due(consultation, calendar)
    return consultation


def reject(session: Session, actor: StaffIdentity, consultation: Consultation, reason: str, note: str | None,
           referral: str | None) -> Consultation:
    errors: dict[str, list[str]] = {}
    if reason not in REJECTION_REASONS:
        errors["reason"] = [f"理由应为 {'、'.join(f'{k}（{v}）' for k, v in REJECTION_REASONS.items())} 之一"]
    referral = (referral or "").strip() or None
    if reason == "not_our_duty" and not referral:
        errors["referral"] = ["不属于本机关职责的，须告知申请人应咨询的机关"]
    if referral and len(referral) > 300:
        errors["referral"] = ["不能超过 300 字"]
    note = (note or "").strip() or None
    if note and len(note) > NOTE_MAX:
        errors["note"] = [f"不能超过 {NOTE_MAX} 字"]
    if errors:
        raise ContentProblem(errors)
    public = REJECTION_REASONS[reason] + (f"。建议向{referral}咨询" if referral else "") + (f"。{note}" if note else "")
    _transition(session, actor, consultation, "reject", detail=public, public_note=f"不予受理：{public}")
    consultation.rejection_reason, consultation.rejection_note, consultation.referral = reason, note, referral
    consultation.closed_at = utcnow()
    return consultation


def assign(session: Session, actor: StaffIdentity, consultation: Consultation, handler_id: int | None,
           handler_name: str | None) -> Consultation:
    """Give the case to a handler (a dispatcher chooses; an editor of the department may take it himself)."""
    if handler_id is None:
        require(actor.grants, Permission.DRAFT, consultation.department)
        handler_id, handler_name = actor.user_id, actor.display_name or actor.username
        _transition(session, actor, consultation, "assign", detail=f"{handler_name} 认领", permission=Permission.DRAFT)
    else:
        if not handler_name or not handler_name.strip():
            raise problem("handler_name", "请填写承办人姓名")
        _transition(session, actor, consultation, "assign", detail=f"承办人：{handler_name.strip()}")
    consultation.handler_id, consultation.handler_name = handler_id, (handler_name or "").strip()
    return consultation


def transfer(session: Session, actor: StaffIdentity, consultation: Consultation, department: str,
             reason: str) -> Consultation:
    """Send accepted work to another department: its history and its deadline go with it."""
    department = _department_code(department)
    reason = reason.strip()
    if not reason:
        raise problem("reason", "请填写转办理由")
    if department == consultation.department:
        raise problem("department", "已在该部门")
    previous = consultation.department
    _transition(session, actor, consultation, "transfer", detail=f"{previous} → {department}：{reason}")
    consultation.department = department
    consultation.handler_id = consultation.handler_name = None
    return consultation


def save_draft(session: Session, actor: StaffIdentity, consultation: Consultation, text: str) -> Consultation:
    if len(text) > REPLY_MAX:
        raise problem("reply", f"答复不能超过 {REPLY_MAX} 字")
    _check_handler(actor, consultation)
    if consultation.state == S.ASSIGNED:
        _transition(session, actor, consultation, "draft", public=False)
    else:
        # A later save of the draft: no new step in the case's history, but audited like every staff action.
        CONSULTATION_WORKFLOW.target(ConsultationState(consultation.state), "draft")
        require(actor.grants, Permission.DRAFT, consultation.department)
        consultation.version += 1
        _changed(session, actor, consultation, "draft")
    consultation.reply_draft = text
    consultation.drafter_id = actor.user_id
    return consultation


def request_info(session: Session, actor: StaffIdentity, consultation: Consultation, question: str) -> Consultation:
    """Ask the asker for more: the reply clock stops until the answer arrives."""
    question = question.strip()
    if not question:
        raise problem("question", "请写明需要补充的内容")
    if len(question) > NOTE_MAX:
        raise problem("question", f"不能超过 {NOTE_MAX} 字")
    _check_handler(actor, consultation)
    _transition(session, actor, consultation, "request_info", detail=question,
                public_note=PUBLIC_STEP_NOTES["request_info"] + question)
    consultation.info_request = question
    consultation.info_response = None
    consultation.paused_since = local_day(utcnow())
    return consultation


def submit_for_review(session: Session, actor: StaffIdentity, consultation: Consultation) -> Consultation:
    CONSULTATION_WORKFLOW.target(ConsultationState(consultation.state), "submit_review")
    if not (consultation.reply_draft or "").strip():
        raise problem("reply", "请先起草答复")
    _check_handler(actor, consultation)
    _transition(session, actor, consultation, "submit_review")
    return consultation


def return_for_changes(session: Session, actor: StaffIdentity, consultation: Consultation, note: str) -> Consultation:
    note = note.strip()
    if not note:
        raise problem("note", "请写明退回理由")
    _transition(session, actor, consultation, "return", detail=note, public=False)
    return consultation


def approve(session: Session, actor: StaffIdentity, consultation: Consultation) -> Consultation:
    submitted_by = session.scalar(select(ConsultationStep.actor_id).where(
        ConsultationStep.consultation_id == consultation.id, ConsultationStep.action == "submit_review",
    ).order_by(ConsultationStep.id.desc()).limit(1))
    if actor.user_id in (consultation.drafter_id, submitted_by):
        raise problem("reviewer", "审核人不能审核自己起草或提交的答复")
    _transition(session, actor, consultation, "approve", public=False)
    consultation.reviewer_id, consultation.reviewer_name = actor.user_id, actor.display_name or actor.username
    return consultation


def send_reply(session: Session, actor: StaffIdentity, consultation: Consultation) -> Consultation:
    """The approved text becomes the reply the asker sees (and is e-mailed about)."""
    _transition(session, actor, consultation, "reply")
    now = utcnow()
    consultation.reply = consultation.reply_draft
    consultation.replied_at = now
    consultation.first_replied_at = consultation.first_replied_at or now
    consultation.published_question = consultation.published_reply = consultation.redaction_confirmed_by = None
    emit(session, OutboxEvent, "consult.reply.sent", aggregate_type="consultation", aggregate_id=consultation.id,
         version=consultation.version, payload={"consultation_id": consultation.id, "kind": "reply"})
    return consultation


@dataclass
class PersonalDataReview:
    """What the reviewer sees before publication: the findings and the proposed published texts."""

    question_findings: list[dict[str, Any]]
    reply_findings: list[dict[str, Any]]
    proposed_question: str
    proposed_reply: str


def _finding_dicts(text: str) -> tuple[list[dict[str, Any]], str]:
    findings = find_personal_data(text)
    return [finding._asdict() for finding in findings], redact(text, findings).text


def personal_data_review(consultation: Consultation) -> PersonalDataReview:
    question = f"{consultation.title}\n{consultation.question}"
    question_findings, proposed_question = _finding_dicts(question)
    reply_findings, proposed_reply = _finding_dicts(consultation.reply or consultation.reply_draft or "")
    return PersonalDataReview(question_findings, reply_findings, proposed_question, proposed_reply)


def confirm_redaction(session: Session, actor: StaffIdentity, consultation: Consultation,
                      published_question: str, published_reply: str) -> Consultation:
    """The reviewer confirms the texts to publish: refused while a number or e-mail is still in them."""
    require(actor.grants, Permission.REVIEW, consultation.department)
    if consultation.state not in (S.REPLIED, S.PRIVATE):
        raise problem("state", "答复之后、公开之前确认")
    errors: dict[str, list[str]] = {}
    for name, text in (("published_question", published_question), ("published_reply", published_reply)):
        if not text.strip():
            errors[name] = ["不能为空"]
        elif len(text) > QUESTION_MAX + REPLY_MAX:
            errors[name] = ["过长"]
        else:
            left = [f for f in find_personal_data(text, UNREDACTED_KINDS)]
            if left:
                errors[name] = [f"仍含有个人信息：{'、'.join(sorted({f.kind for f in left}))}"]
    if errors:
        raise ContentProblem(errors)
    consultation.published_question = published_question.strip()
    consultation.published_reply = published_reply.strip()
    consultation.redaction_confirmed_by = actor.display_name or actor.username
    consultation.version += 1
    _step(session, consultation, actor, "redaction_confirmed", consultation.state, consultation.state, public=False)
    _changed(session, actor, consultation, "redaction_confirmed")
    return consultation


def publish(session: Session, actor: StaffIdentity, consultation: Consultation) -> Consultation:
    """Put the question and answer on the public board: needs the asker's consent and a confirmed redaction."""
    require(actor.grants, Permission.PUBLISH, consultation.department)
    CONSULTATION_WORKFLOW.target(ConsultationState(consultation.state), "publish")
    if not consultation.consent_to_publish:
        raise problem("consent_to_publish", "提交人未同意公开，不能公开")
    if not consultation.published_question or not consultation.published_reply:
        raise problem("redaction", "请先由审核人确认隐去个人信息")
    consultation.published_at = utcnow()  # before the transition: its event carries the document
    _transition(session, actor, consultation, "publish")
    return consultation


def keep_private(session: Session, actor: StaffIdentity, consultation: Consultation) -> Consultation:
    _transition(session, actor, consultation, "keep_private")
    return consultation


def unpublish(session: Session, actor: StaffIdentity, consultation: Consultation, reason: str) -> Consultation:
    if not reason.strip():
        raise problem("reason", "请填写撤回理由")
    _transition(session, actor, consultation, "unpublish", detail=reason.strip())
    return consultation


def close(session: Session, actor: StaffIdentity | None, consultation: Consultation) -> Consultation:
    _transition(session, actor, consultation, "close")
    consultation.closed_at = utcnow()
    return consultation


def request_extension(session: Session, actor: StaffIdentity, consultation: Consultation, working_days: int,
                      reason: str) -> ExtensionRequest:
    """A handler asks for more working days; a reviewer of the department decides."""
    require(actor.grants, Permission.DRAFT, consultation.department)
    errors: dict[str, list[str]] = {}
    if not 1 <= working_days <= MAX_EXTENSION_DAYS:
        errors["working_days"] = [f"延期 1 至 {MAX_EXTENSION_DAYS} 个工作日"]
    if not reason.strip():
        errors["reason"] = ["延期须写明理由"]
    elif len(reason) > NOTE_MAX:
        errors["reason"] = [f"不能超过 {NOTE_MAX} 字"]
    if consultation.state in (S.SUBMITTED, S.REJECTED, *ANSWERED):
        errors["state"] = ["只有办理中的咨询可以延期"]
    pending = session.scalar(select(ExtensionRequest.id).where(
        ExtensionRequest.consultation_id == consultation.id, ExtensionRequest.status == "pending"))
    if pending is not None:
        errors["state"] = ["已有待审批的延期申请"]
    if errors:
        raise ContentProblem(errors)
    request = ExtensionRequest(consultation_id=consultation.id, working_days=working_days, reason=reason.strip(),
                               requested_by=actor.display_name or actor.username, requested_by_id=actor.user_id,
                               status="pending", requested_at=utcnow())
    session.add(request)
    consultation.version += 1
    _step(session, consultation, actor, "extension_requested", consultation.state, consultation.state,
          detail=f"{working_days} 个工作日：{reason.strip()}", public=False)
    _changed(session, actor, consultation, "extension_requested")
    session.flush()
    return request


def decide_extension(session: Session, actor: StaffIdentity, consultation: Consultation, request: ExtensionRequest,
                     approved: bool, note: str | None) -> Consultation:
    require(actor.grants, Permission.REVIEW, consultation.department)
    if request.consultation_id != consultation.id:
        raise problem("extension", "该延期申请不属于本件咨询")
    if request.status != "pending":
        raise problem("status", "该申请已处理")
    if request.requested_by_id == actor.user_id:
        raise problem("reviewer", "不能审批自己的延期申请")
    request.status = "approved" if approved else "refused"
    request.decided_by = actor.display_name or actor.username
    request.decision_note = (note or "").strip() or None
    request.decided_at = utcnow()
    action = "extension_approved" if approved else "extension_refused"
    if approved:
        consultation.extension_working_days += request.working_days
        _recompute_reply_due(consultation, consult_calendar(session))
        consultation.reminded_for = consultation.escalated_for = None
    consultation.version += 1
    _step(session, consultation, actor, action, consultation.state, consultation.state,
          detail=f"{request.working_days} 个工作日：{request.reason}", public=approved,
          public_note=f"办理期限延长 {request.working_days} 个工作日，新的答复期限为 {consultation.reply_due}。"
          if approved else None)
    _changed(session, actor, consultation, action)
    return consultation


def add_note(session: Session, actor: StaffIdentity, consultation: Consultation, body: str) -> InternalNote:
    require(actor.grants, Permission.READ_RECORDS, consultation.department)
    body = body.strip()
    if not body:
        raise problem("body", "请填写备注")
    if len(body) > NOTE_MAX:
        raise problem("body", f"备注不能超过 {NOTE_MAX} 字")
    note = InternalNote(consultation_id=consultation.id, author_id=actor.user_id,
                        author_name=actor.display_name or actor.username, body=body, created_at=utcnow())
    session.add(note)
    session.flush()
    _audit(session, actor, "consultation.note", consultation.id)
    return note


def _department_code(code: str) -> str:
    code = (code or "").strip().upper()
    if not re.fullmatch(r"[A-Z0-9_-]{1,40}", code):
        raise problem("department", "部门代码格式不正确")
    return code


def _check_handler(actor: StaffIdentity, consultation: Consultation) -> None:
    """Drafting belongs to the assigned handler (or to an editor who is also a reviewer of the department)."""
    require(actor.grants, Permission.DRAFT, consultation.department)
    if consultation.handler_id not in (None, actor.user_id) and not actor.can(Permission.REVIEW,
                                                                               consultation.department):
        raise problem("handler", f"本件由 {consultation.handler_name} 承办")


# -- steps, events, audit -----------------------------------------------------------------------


def _transition(session: Session, actor: StaffIdentity | None, consultation: Consultation, action: str, *,
                detail: str | None = None, public: bool | None = None, public_note: str | None = None,
                permission: Permission | None = None) -> None:
    current = ConsultationState(consultation.state)
    target = CONSULTATION_WORKFLOW.target(current, action)
    if actor is not None:
        require(actor.grants, permission or ACTION_PERMISSION[action], consultation.department)
    consultation.state = target
    consultation.version += 1
    session.flush()
    shown = (action in PUBLIC_STEP_NOTES or public_note is not None) if public is None else public
    _step(session, consultation, actor, action, current, target, detail=detail, public=shown, public_note=public_note)
    _changed(session, actor, consultation, action)


def _step(session: Session, consultation: Consultation, actor: StaffIdentity | None, action: str,
          from_state: str | None, to_state: str, *, detail: str | None = None, public: bool = True,
          public_note: str | None = None, at: datetime | None = None) -> None:
    note = public_note if public_note is not None else PUBLIC_STEP_NOTES.get(action)
    session.add(ConsultationStep(
        consultation_id=consultation.id, action=action, from_state=from_state, to_state=to_state,
        department=consultation.department, actor_id=actor.user_id if actor else None,
        actor_name=_actor_name(actor, action),
        detail=detail, public_note=note if public else None, public=public, at=at or utcnow(),
    ))


ASKER_ACTIONS = frozenset({"submit", "provide_info", "rate", "reopen"})


def _actor_name(actor: StaffIdentity | None, action: str) -> str:
    if actor is not None:
        return actor.display_name or actor.username
    return "提交人" if action in ASKER_ACTIONS else "系统"


def without_submitter(consultation: Consultation, text: str) -> str:
    """``text`` redacted, and the submitter's own name marked wherever it appears: the detector cannot
    know every name (我是欧阳晓明), but this one is known."""
    name = " ".join((consultation.name or "").split())
    if len(name) >= 2:
        text = text.replace(name, PII_MARKERS[PII_NAME])
    return redact(text).text


def public_summary(consultation: Consultation) -> dict[str, Any]:
    """What other services learn of a consultation: no name, no contact, no question text."""
    return {
        "id": consultation.id,
        "tracking_number": consultation.tracking_number,
        "title": without_submitter(consultation, consultation.title),
        "state": consultation.state,
        "department": consultation.department,
        "category": consultation.category,
        "received_at": consultation.received_at.isoformat(),
        "replied_at": consultation.replied_at.isoformat() if consultation.replied_at else None,
        "reply_due": consultation.reply_due.isoformat() if consultation.reply_due else None,
        "rating": consultation.rating,
    }


def press_intake(settings: Settings, consultation: Consultation) -> dict[str, Any]:
    """What the press office learns of a new consultation: the redacted title and question, and a keyed
    hash of the contact key (counts distinct askers), never the name or a contact detail."""
    asker_key = None
    if consultation.contact_key:
        asker_key = hmac.new(settings.secret_key.encode(), f"press-asker|{consultation.contact_key}".encode(),
                             hashlib.sha256).hexdigest()
    return {
        **public_summary(consultation),
        "question": without_submitter(consultation, consultation.question),
        "asker_key": asker_key,
    }


def _changed(session: Session, actor: StaffIdentity | None, consultation: Consultation, action: str) -> None:
    """The outbox event of a change (search index, press office) and its audit entry."""
    emit(session, OutboxEvent, f"consult.consultation.{action}", aggregate_type="consultation",
         aggregate_id=consultation.id, version=consultation.version,
         payload={"consultation": public_summary(consultation)})
    if action == "publish":
        emit(session, OutboxEvent, "consult.answer.published", aggregate_type="answer", aggregate_id=consultation.id,
             version=consultation.version, payload={"document": answer_search_document(consultation)})
    elif action == "unpublish":
        emit(session, OutboxEvent, "consult.answer.unpublished", aggregate_type="answer",
             aggregate_id=consultation.id, version=consultation.version,
             payload={"document_id": f"answer-{consultation.id}"})
    _audit(session, actor, f"consultation.{action}", consultation.id)


def _audit(session: Session, actor: StaffIdentity | None, action: str, consultation_id: int) -> None:
    who = {} if actor is not None else {"username": "asker" if action.split(".")[-1] in ASKER_ACTIONS else "system"}
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "consult", action, AuditResult.SUCCESS, object_type="consultation", object_id=str(consultation_id),
        **who,
    ))


# -- historical records and publication of answers -------------------------------------------------


def record_answered_consultation(
    session: Session,
    *,
    tracking_number: str,
    title: str,
    question: str,
    reply: str,
    received_at: datetime,
    replied_at: datetime,
    department: str | None = None,
    category: str | None = None,
    settings: Settings | None = None,
    calendar: WorkingCalendar | None = None,
) -> Consultation:
    """Store a consultation answered before this system (historical import), with its real dates.

    Historical records carry no submitter details and count in the statistics; their reply
    deadline is what the default rules would have given them.
    """
    received_on = local_day(received_at)
    reply_days = settings.consult_reply_working_days if settings else 5
    accept_days = settings.consult_accept_working_days if settings else 1
    due = None
    if calendar is not None:
        accept_on = calendar.add_working_days_checked(received_on, accept_days)[0]
        due = calendar.add_working_days_checked(accept_on, reply_days)[0]
    consultation = Consultation(
        tracking_number=tracking_number, title=title, question=question, reply=reply, reply_draft=reply,
        department=department, category=category, category_source="import" if category else None,
        state=S.REPLIED, version=1, received_at=received_at, accepted_at=received_at,
        first_replied_at=replied_at, replied_at=replied_at, created_at=received_at, historical=True,
        clock_started_on=received_on, reply_due=due, reply_working_days=reply_days, consent_to_publish=True,
        paused_working_days=0, extension_working_days=0, reopen_count=0,
        published_question=redact(f"{title}\n{question}").text, published_reply=redact(reply).text,
        redaction_confirmed_by="import",
    )
    session.add(consultation)
    session.flush()
    return consultation


def publish_answer(session: Session, consultation: Consultation, at: datetime | None = None) -> Consultation:
    """Publish an imported answer (its redaction was applied by the import, with the markers)."""
    consultation.state = CONSULTATION_WORKFLOW.target(ConsultationState(consultation.state), "publish")
    consultation.published_at = at or utcnow()
    consultation.version += 1
    session.flush()
    emit(session, OutboxEvent, "consult.answer.published", aggregate_type="answer", aggregate_id=consultation.id,
         version=consultation.version, payload={"document": answer_search_document(consultation)})
    return consultation


def answer_search_document(consultation: Consultation) -> dict[str, Any]:
    """The public form of an answered consultation: the redacted texts, never the submitter."""
    question_text = consultation.published_question or redact(f"{consultation.title}\n{consultation.question}").text
    title, _newline, question = question_text.partition("\n")
    reply = consultation.published_reply or redact(consultation.reply or "").text
    return {
        "id": f"answer-{consultation.id}",
        "doc_type": "answer",
        "title": title,
        "summary": reply[:160],
        "body": f"{question}\n\n{reply}",
        "url": f"/consult/answers/{consultation.id}",
        "published_at": consultation.published_at.isoformat() if consultation.published_at else None,
        "department": consultation.department,
        "category": consultation.category,
        "question": question,
        "reply": reply,
        "received_at": consultation.received_at.isoformat(),
        "replied_at": consultation.replied_at.isoformat() if consultation.replied_at else None,
    }


def is_overdue_unanswered(consultation: Consultation, now: datetime, alarm_days: int) -> bool:
    return consultation.replied_at is None and consultation.state not in (S.REJECTED, *ANSWERED) and (
        now - consultation.received_at >= timedelta(days=alarm_days)
    )


def open_states() -> Iterable[str]:
    return [s.value for s in S if s not in (S.REJECTED, *ANSWERED)]



# -- the hourly deadline sweep ---------------------------------------------------------------------


SWEEP_LOCK_KEY = 0x676B_636F_6E73_7765
"""PostgreSQL advisory lock held by a deadline sweep: two sweeps at once (beat's and a redelivered one)
would both see a case not yet reminded and alert twice."""


@dataclass
class SweepReport:
    reminded: int = 0
    escalated: int = 0
    alarms: int = 0


def _alert(session: Session, consultation: Consultation, kind: str, due: date | None, detail: str) -> None:
    """A staff-only step and a ``consult.deadline.<kind>`` event (identity e-mails the right people)."""
    consultation.version += 1
    _step(session, consultation, None, f"deadline_{kind}", consultation.state, consultation.state, detail=detail,
          public=False)
    emit(session, OutboxEvent, f"consult.deadline.{kind}", aggregate_type="consultation",
         aggregate_id=consultation.id, version=consultation.version, payload={
             "kind": kind, "consultation": public_summary(consultation), "due": due.isoformat() if due else None,
             "handler_id": consultation.handler_id, "department": consultation.department,
         })


def sweep_deadlines(session: Session, settings: Settings, now: datetime | None = None) -> SweepReport:
    """Remind handlers before a deadline, escalate overdue cases to the department's reviewers, and raise
    an alarm for anything unanswered after ``consult_alarm_days``; each at most once per deadline."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(SWEEP_LOCK_KEY)))
    now = now or utcnow()
    today = local_day(now)
    calendar = consult_calendar(session)
    report = SweepReport()
    cases = session.scalars(select(Consultation).where(
        Consultation.state.in_(list(open_states())), Consultation.historical.is_(False))).all()
    for consultation in cases:
        due = current_deadline(consultation)
        status = deadline_status(consultation, calendar, today)
        if status == "due_soon" and consultation.reminded_for != due:
            consultation.reminded_for = due
            _alert(session, consultation, "reminder", due, f"期限 {due} 将至")
            report.reminded += 1
        elif status == "overdue" and consultation.escalated_for != due:
            consultation.escalated_for = due
            _alert(session, consultation, "escalation", due, f"已逾期（期限 {due}），已告知部门审核人")
            report.escalated += 1
        alarm_due = is_overdue_unanswered(consultation, now, settings.consult_alarm_days)
        if consultation.alarm_raised_at is None and alarm_due:
            consultation.alarm_raised_at = now
            _alert(session, consultation, "alarm", due, f"收到已超过 {settings.consult_alarm_days} 天仍未答复")
            report.alarms += 1
    return report


def recompute_open_deadlines(session: Session, settings: Settings) -> int:
    """After the holiday arrangement changed: the deadlines of open cases counted again."""
    calendar = consult_calendar(session)
    changed = 0
    cases = session.scalars(select(Consultation).where(
        Consultation.state.in_(list(open_states())), Consultation.historical.is_(False))).all()
    for consultation in cases:
        before = (consultation.accept_due, consultation.reply_due, consultation.deadline_estimated)
        accept_days, _reply_days = working_days_for(session, settings, consultation.category)
        consultation.accept_due, consultation.deadline_estimated = _deadline(
            calendar, local_day(consultation.received_at), accept_days)
        _recompute_reply_due(consultation, calendar)
        if (consultation.accept_due, consultation.reply_due, consultation.deadline_estimated) != before:
            changed += 1
    return changed
