"""The consult REST API.

* ``blp`` — public reads: published answers (from the search index), statistics, the category list.
* ``classify_blp`` — the category suggestion (rate-limited per address).
* ``asker_blp`` — the asker: submit, track with the query code, rate, reopen, answer a request for
  information (POSTs rate-limited per address; the contract of ARCHITECTURE.md).
* ``manage_blp`` — the staff API under ``/api/consult/manage`` (``Authorization: Bearer <token>``).

The business rules live in :mod:`consult.workflow`; each write here commits once at the end, so an
error anywhere leaves nothing half-written. A case outside the caller's read scope answers 404.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from flask import Response, current_app
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from consult import workflow
from consult.models import (
    CannedReply,
    Consultation,
    ConsultationStep,
    ExtensionRequest,
    InternalNote,
    SubmissionAttachment,
)
from consult.schemas import (
    AnswerListArgsSchema,
    AnswerPageSchema,
    AssignSchema,
    BulkAssignResultSchema,
    BulkAssignSchema,
    CategoryListSchema,
    ClassifyArgsSchema,
    ClassifyResultSchema,
    ConsultationDetailSchema,
    DraftSchema,
    EmptySchema,
    ExportArgsSchema,
    ExtensionDecisionSchema,
    ExtensionRequestSchema,
    InboxArgsSchema,
    InboxSchema,
    InformationSchema,
    PersonalDataReviewSchema,
    PublicAnswerSchema,
    QueryCodeArgsSchema,
    RatingSchema,
    RedactionSchema,
    RejectSchema,
    ReopenSchema,
    RouteSchema,
    StatisticsArgsSchema,
    SubmissionResultSchema,
    SubmissionSchema,
    TextSchema,
    TrackingSchema,
    TransferSchema,
)
from consult.workflow import ACTION_LABELS, ANSWERED, CONSULTATION_WORKFLOW, STATE_LABELS, ConsultationState
from services.auth import StaffIdentity, public, requires, signed_in_staff
from services.db import get_session, utcnow
from services.errors import api_abort
from services.permissions import Permission, departments_with
from services.public_read import filtered_documents, public_document
from services.schemas import links_from
from services.settings import Settings
from services.workflow import ContentProblem

log = logging.getLogger(__name__)

blp = Blueprint("consult_api", __name__, url_prefix="/api/consult", description="咨询回复 Published answers")
classify_blp = Blueprint("consult_classify", __name__, url_prefix="/api/consult",
                         description="咨询分类 Category suggestion (rate-limited per address)")
asker_blp = Blueprint("consult_asker_api", __name__, url_prefix="/api/consult",
                      description="我要咨询 Submitting and tracking a consultation (rate-limited per address)")
manage_blp = Blueprint("consult_manage", __name__, url_prefix="/api/consult/manage",
                       description="咨询办理 The staff workflow (bearer token)")

WRONG_CODE = "受理编号或查询码不正确 / unknown tracking number or wrong query code"


def _db() -> Session:
    return get_session("consult")


def _settings() -> Settings:
    settings: Settings = current_app.extensions["gongkai.settings"]
    return settings


# -- public reads ------------------------------------------------------------------------------


@blp.get("/answers")
@blp.arguments(AnswerListArgsSchema, location="query")
@blp.response(200, AnswerPageSchema)
@public
def list_answers(args: dict[str, Any]) -> dict[str, Any]:
    """Published answers, newest first, by department, category and month (``YYYY-MM``)."""
    return filtered_documents(
        current_app, "answer", args["page"], args["per_page"],
        fields={"department": args.get("department", ""), "category": args.get("category", "")},
        month=args.get("month"),
    ).as_dict()


@blp.get("/answers/<int:answer_id>")
@blp.response(200, PublicAnswerSchema)
@public
def get_answer(answer_id: int) -> dict[str, Any]:
    """One published answer: the question and reply as published (personal data removed)."""
    return public_document(current_app, f"answer-{answer_id}")


@blp.get("/statistics")
@blp.arguments(StatisticsArgsSchema, location="query")
@blp.response(200)
@public
def statistics(args: dict[str, Any]) -> dict[str, Any]:
    """Received, answered, on-time share and median working days to answer: overall, by department and month."""
    from consult import statistics as stats

    db = _db()
    result: dict[str, Any] = stats.compute(db, workflow.consult_calendar(db), year=args.get("year"))
    return result


@blp.get("/categories")
@blp.response(200, CategoryListSchema)
@public
def list_categories() -> dict[str, Any]:
    """The categories an asker may choose, with the department each goes to; the lists the forms use."""
    from consult.routing import department_for

    settings = _settings()
    return {
        "categories": [
            {"name": name, "department": (department_for(name, settings.router_departments_file) or (None,))[0]}
            for name in workflow.categories(settings)
        ],
        "rejection_reasons": workflow.REJECTION_REASONS,
        "ratings": workflow.RATINGS,
    }


# -- category suggestion -----------------------------------------------------------------------

NO_MODEL_MESSAGE = "智能分类暂不可用：尚未安装分类模型，请手动选择类别 / no router model installed yet"


@classify_blp.post("/classify")
@classify_blp.arguments(ClassifyArgsSchema)
@classify_blp.response(200, ClassifyResultSchema)
@classify_blp.alt_response(503, description="no router model installed yet")
@public
def classify(args: dict[str, Any]) -> dict[str, Any]:
    """The likely category of a message, its confidence (0..1) and the department it goes to."""
    from consult.routing import department_for, load_current_router

    settings = _settings()
    router = load_current_router(settings.data_dir)
    if router is None:
        api_abort(503, NO_MODEL_MESSAGE)
    category, confidence = router.classify(args["text"])
    department = department_for(category, settings.router_departments_file)
    return {
        "category": category,
        "confidence": round(confidence, 4),
        "department": department._asdict() if department is not None else None,
        "auto_assign": confidence >= settings.router_confidence_threshold,
    }


# -- the asker -----------------------------------------------------------------------------------


@asker_blp.post("/consultations")
@asker_blp.arguments(SubmissionSchema)
@asker_blp.response(201, SubmissionResultSchema)
@asker_blp.doc(**links_from(201, "tracking_number", "GET /api/consult/consultations/{tracking_number}",
                            parameter="tracking_number", query={"code": "query_code"}))
@asker_blp.alt_response(200, schema=SubmissionResultSchema,
                        description="the same question from the same contact within 24 hours: its tracking number")
@public
def submit(args: dict[str, Any]) -> Any:
    """Submit a question. The query code is shown once: keep it with the tracking number to follow the case."""
    db = _db()
    try:
        result = workflow.submit_consultation(db, _settings(), workflow.Submission(**args))
    except workflow.AutomatedSubmission:
        db.rollback()
        log.info("consult: a submission filled the honeypot field; nothing stored")
        return {"tracking_number": f"ZX{workflow.local_day(utcnow()):%Y%m%d}-0000",
                "query_code": workflow.new_query_code(), "deadline": None, "duplicate": False, "warnings": []}, 201
    consultation = result.consultation
    body = {
        "tracking_number": consultation.tracking_number,
        "query_code": result.query_code,
        "deadline": workflow.current_deadline(consultation),
        "duplicate": result.duplicate,
        "warnings": result.warnings if not result.duplicate else ["您已提交过相同的咨询，请使用原受理编号查询"],
    }
    db.commit()
    return body, (200 if result.duplicate else 201)


def _asker_case(db: Session, tracking_number: str, code: str, location: str = "json") -> Consultation:
    """The asker's consultation, or 422 on ``code`` (the same answer whether the number or the code is wrong)."""
    consultation = db.scalar(select(Consultation).where(Consultation.tracking_number == tracking_number.strip()))
    if not workflow.check_query_code(consultation, code) or consultation is None:
        api_abort(422, WRONG_CODE, {location: {"code": ["受理编号或查询码不正确"]}})
    return consultation


def tracking_view(settings: Settings, db: Session, consultation: Consultation) -> dict[str, Any]:
    """What the asker sees (the API and the tracking page): never an internal note or a staff name."""
    calendar = workflow.consult_calendar(db)
    steps = db.scalars(select(ConsultationStep).where(
        ConsultationStep.consultation_id == consultation.id, ConsultationStep.public.is_(True)
    ).order_by(ConsultationStep.id)).all()
    reopen_until = workflow.reopen_deadline(settings, consultation)
    answered = consultation.state in ANSWERED
    return {
        "tracking_number": consultation.tracking_number,
        "title": consultation.title,
        "question": consultation.question,
        "state": consultation.state,
        "state_label": STATE_LABELS[consultation.state],
        "category": consultation.category,
        "received_at": consultation.received_at,
        "deadline": workflow.current_deadline(consultation),
        "deadline_status": workflow.deadline_status(consultation, calendar),
        "deadline_warning": workflow.year_warning(consultation),
        "info_request": consultation.info_request if consultation.state == ConsultationState.AWAITING_INFO else None,
        "reply": consultation.reply if answered else None,
        "replied_at": consultation.replied_at if answered else None,
        "rejection_reason": workflow.REJECTION_REASONS.get(consultation.rejection_reason or ""),
        "referral": consultation.referral,
        "rating": consultation.rating,
        "can_rate": answered and not (consultation.rated_at and consultation.replied_at
                                      and consultation.rated_at >= consultation.replied_at),
        "can_reopen_until": reopen_until if answered and consultation.rating == "dissatisfied"
        and reopen_until and reopen_until > utcnow() else None,
        "steps": [{"at": step.at, "action": step.action, "label": ACTION_LABELS.get(step.action, step.action),
                   "note": step.public_note} for step in steps],
    }


@asker_blp.get("/consultations/<tracking_number>")
@asker_blp.arguments(QueryCodeArgsSchema, location="query")
@asker_blp.response(200, TrackingSchema)
@public
def track(args: dict[str, Any], tracking_number: str) -> dict[str, Any]:
    """The asker's view of a consultation: status, deadline, each public step and the reply."""
    db = _db()
    return tracking_view(_settings(), db, _asker_case(db, tracking_number, args["code"], "query"))


@asker_blp.post("/consultations/<tracking_number>/rating")
@asker_blp.arguments(RatingSchema)
@asker_blp.response(200, TrackingSchema)
@public
def rate(args: dict[str, Any], tracking_number: str) -> dict[str, Any]:
    """Rate the reply: satisfied, basically satisfied or dissatisfied (满意 / 基本满意 / 不满意), with a comment."""
    db = _db()
    consultation = _asker_case(db, tracking_number, args["code"])
    workflow.rate(db, consultation, args["rating"], args.get("comment"))
    db.commit()
    return tracking_view(_settings(), db, consultation)


@asker_blp.post("/consultations/<tracking_number>/reopen")
@asker_blp.arguments(ReopenSchema)
@asker_blp.response(200, TrackingSchema)
@public
def reopen(args: dict[str, Any], tracking_number: str) -> dict[str, Any]:
    """Not satisfied: have the case handled again (once, within the configured days of the reply)."""
    db = _db()
    consultation = _asker_case(db, tracking_number, args["code"])
    workflow.reopen(db, _settings(), consultation, args.get("reason"))
    db.commit()
    return tracking_view(_settings(), db, consultation)


@asker_blp.post("/consultations/<tracking_number>/information")
@asker_blp.arguments(InformationSchema)
@asker_blp.response(200, TrackingSchema)
@public
def provide_information(args: dict[str, Any], tracking_number: str) -> dict[str, Any]:
    """Answer the office's request for more information (the reply clock runs again)."""
    db = _db()
    consultation = _asker_case(db, tracking_number, args["code"])
    workflow.provide_info(db, consultation, args["text"])
    db.commit()
    return tracking_view(_settings(), db, consultation)


# -- the staff API -------------------------------------------------------------------------------


_staff = signed_in_staff


def readable_departments(staff: StaffIdentity) -> set[str]:
    return departments_with(staff.grants, Permission.READ_RECORDS)


def case_or_404(db: Session, staff: StaffIdentity, consultation_id: int) -> Consultation:
    consultation = db.get(Consultation, consultation_id)
    if consultation is None or consultation.department not in readable_departments(staff):
        api_abort(404, "咨询不存在 / no such consultation")
    return consultation


def allowed_actions(staff: StaffIdentity, consultation: Consultation) -> list[str]:
    """What the state machine allows from here and the caller may do."""
    return [
        action for action in CONSULTATION_WORKFLOW.allowed_actions(ConsultationState(consultation.state))
        if action in workflow.ACTION_PERMISSION
        and staff.can(workflow.ACTION_PERMISSION[action], consultation.department)
        and not (action == "approve" and consultation.drafter_id == staff.user_id)
    ]


def summary(consultation: Consultation, calendar: Any) -> dict[str, Any]:
    return {
        "id": consultation.id, "tracking_number": consultation.tracking_number, "title": consultation.title,
        "category": consultation.category, "department": consultation.department, "state": consultation.state,
        "state_label": STATE_LABELS[consultation.state], "handler_id": consultation.handler_id,
        "handler_name": consultation.handler_name, "received_at": consultation.received_at,
        "deadline": workflow.current_deadline(consultation),
        "deadline_status": workflow.deadline_status(consultation, calendar),
        "needs_routing": consultation.needs_routing, "flagged": bool(consultation.sensitive_terms),
        "version": consultation.version,
    }


def inbox_conditions(staff: StaffIdentity, args: dict[str, Any]) -> list[Any]:
    """The inbox's filters for a caller (staff API): open cases (or one state) in the caller's departments."""
    departments = readable_departments(staff)
    if args.get("department"):
        departments &= {args["department"]}
    conditions: list[Any] = [Consultation.department.in_(sorted(departments))]
    if args.get("state"):
        conditions.append(Consultation.state == args["state"])
    else:
        conditions.append(Consultation.state.in_(list(workflow.open_states())))
    if args.get("category"):
        conditions.append(Consultation.category == args["category"])
    if args.get("flagged") is not None:
        flagged = Consultation.sensitive_terms.is_not(None)
        conditions.append(flagged if args["flagged"] else ~flagged)
    if args.get("needs_routing") is not None:
        conditions.append(Consultation.needs_routing.is_(bool(args["needs_routing"])))
    return conditions


@manage_blp.get("/consultations")
@manage_blp.arguments(InboxArgsSchema, location="query")
@manage_blp.response(200, InboxSchema)
@requires(Permission.READ_RECORDS)
def inbox(args: dict[str, Any]) -> dict[str, Any]:
    """The inbox: open consultations (or one state) in the caller's departments, soonest deadline first."""
    from consult.staff_pages import due_conditions, inbox_rows

    db = _db()
    staff = _staff()
    calendar = workflow.consult_calendar(db)
    today = workflow.local_day(utcnow())
    conditions = inbox_conditions(staff, args)
    if args.get("due"):
        # The badge's rule (workflow.deadline_status) in SQL, as the console's filter has it: the database
        # pages and counts (loading every open case to test it here took 0.3 s at 10,000 cases).
        conditions += due_conditions(args["due"], today, lambda: calendar)
    total, page_rows = inbox_rows(db, conditions, (args["page"] - 1) * args["per_page"], args["per_page"])
    return {"total": total, "page": args["page"], "per_page": args["per_page"],
            "items": [summary(c, calendar) for c in page_rows]}


def detail(db: Session, staff: StaffIdentity, consultation: Consultation) -> dict[str, Any]:
    calendar = workflow.consult_calendar(db)
    steps = db.scalars(select(ConsultationStep).where(ConsultationStep.consultation_id == consultation.id)
                       .order_by(ConsultationStep.id)).all()
    notes = db.scalars(select(InternalNote).where(InternalNote.consultation_id == consultation.id)
                       .order_by(InternalNote.id)).all()
    extensions = db.scalars(select(ExtensionRequest).where(ExtensionRequest.consultation_id == consultation.id)
                            .order_by(ExtensionRequest.id)).all()
    files = db.execute(select(SubmissionAttachment.id, SubmissionAttachment.filename, SubmissionAttachment.size,
                              SubmissionAttachment.content_type)
                       .where(SubmissionAttachment.consultation_id == consultation.id)).all()
    return {
        **summary(consultation, calendar),
        **{name: getattr(consultation, name) for name in (
            "question", "name", "phone", "email", "consent_to_publish", "category_source", "category_confidence",
            "sensitive_terms", "accept_due", "reply_due", "paused_working_days", "extension_working_days",
            "info_request", "info_response", "reply_draft", "reply", "published_question", "published_reply",
            "redaction_confirmed_by", "rejection_reason", "referral", "rating", "rating_comment", "reopen_count",
            "accepted_at", "replied_at", "published_at",
        )},
        "deadline_warning": workflow.year_warning(consultation),
        "allowed_actions": allowed_actions(staff, consultation),
        "steps": steps, "notes": notes, "extensions": extensions,
        "attachments": [dict(row._mapping) for row in files],
    }


@manage_blp.get("/consultations/<int:consultation_id>")
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.READ_RECORDS)
def get_consultation(consultation_id: int) -> dict[str, Any]:
    """One consultation with its submitter (staff only), history, notes and what the caller may do next."""
    db = _db()
    staff = _staff()
    return detail(db, staff, case_or_404(db, staff, consultation_id))


def _act(consultation_id: int, action: Any) -> dict[str, Any]:
    """Load the case in the caller's scope, apply one rule, commit once, answer the new detail."""
    db = _db()
    staff = _staff()
    consultation = case_or_404(db, staff, consultation_id)
    action(db, staff, consultation)
    db.commit()
    return detail(db, staff, consultation)


@manage_blp.post("/consultations/<int:consultation_id>/route")
@manage_blp.arguments(RouteSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DISPATCH)
def route(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Send a submission from the intake queue to a department (and set its category)."""
    return _act(consultation_id, lambda db, staff, c: workflow.route(
        db, staff, c, args["department"], args.get("category"), _settings()))


@manage_blp.post("/consultations/<int:consultation_id>/accept")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DISPATCH)
def accept(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Accept (受理): the reply clock starts."""
    return _act(consultation_id, workflow.accept)


@manage_blp.post("/consultations/<int:consultation_id>/reject")
@manage_blp.arguments(RejectSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DISPATCH)
def reject(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Do not accept (不予受理), with a reason from the list (and the competent office for ``not_our_duty``)."""
    return _act(consultation_id, lambda db, staff, c: workflow.reject(
        db, staff, c, args["reason"], args.get("note"), args.get("referral")))


@manage_blp.post("/consultations/<int:consultation_id>/assign")
@manage_blp.arguments(AssignSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.READ_RECORDS)
def assign(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Give the case to a handler (dispatcher), or take it yourself (an editor: omit the handler)."""
    return _act(consultation_id, lambda db, staff, c: workflow.assign(
        db, staff, c, args.get("handler_id"), args.get("handler_name")))


@manage_blp.post("/consultations/bulk-assign")
@manage_blp.arguments(BulkAssignSchema)
@manage_blp.response(200, BulkAssignResultSchema)
@requires(Permission.DISPATCH)
def bulk_assign(args: dict[str, Any]) -> dict[str, Any]:
    """Assign several cases to one handler: all of them, or none (the first refusal is reported)."""
    db = _db()
    staff = _staff()
    assigned = []
    for consultation_id in dict.fromkeys(args["consultation_ids"]):
        consultation = case_or_404(db, staff, consultation_id)
        workflow.assign(db, staff, consultation, args.get("handler_id"), args.get("handler_name"))
        assigned.append(consultation.tracking_number)
    db.commit()
    return {"assigned": assigned}


@manage_blp.post("/consultations/<int:consultation_id>/transfer")
@manage_blp.arguments(TransferSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DISPATCH)
def transfer(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Transfer to another department: the history and the deadline go with the case."""
    return _act(consultation_id, lambda db, staff, c: workflow.transfer(
        db, staff, c, args["department"], args["reason"]))


@manage_blp.put("/consultations/<int:consultation_id>/draft")
@manage_blp.arguments(DraftSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DRAFT)
def save_draft(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Save the reply draft (the first save starts drafting)."""
    return _act(consultation_id, lambda db, staff, c: workflow.save_draft(db, staff, c, args["reply"]))


@manage_blp.post("/consultations/<int:consultation_id>/request-info")
@manage_blp.arguments(TextSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DRAFT)
def request_info(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Ask the asker for more information: the reply clock stops until they answer."""
    return _act(consultation_id, lambda db, staff, c: workflow.request_info(db, staff, c, args["text"]))


@manage_blp.post("/consultations/<int:consultation_id>/submit-review")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DRAFT)
def submit_review(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Send the draft to a reviewer of the department."""
    return _act(consultation_id, workflow.submit_for_review)


@manage_blp.post("/consultations/<int:consultation_id>/return")
@manage_blp.arguments(TextSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.REVIEW)
def return_for_changes(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Send the draft back to the handler with a note."""
    return _act(consultation_id, lambda db, staff, c: workflow.return_for_changes(db, staff, c, args["text"]))


@manage_blp.post("/consultations/<int:consultation_id>/approve")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.REVIEW)
def approve(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Approve the reply (not one's own draft)."""
    return _act(consultation_id, workflow.approve)


@manage_blp.post("/consultations/<int:consultation_id>/reply")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DRAFT)
def send_reply(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Send the approved reply to the asker (an e-mail tells them it is ready)."""
    return _act(consultation_id, workflow.send_reply)


@manage_blp.get("/consultations/<int:consultation_id>/personal-data")
@manage_blp.response(200, PersonalDataReviewSchema)
@requires(Permission.REVIEW)
def personal_data(consultation_id: int) -> Any:
    """Personal data found in the question and the reply, and the texts proposed for publication."""
    db = _db()
    return workflow.personal_data_review(case_or_404(db, _staff(), consultation_id))


@manage_blp.post("/consultations/<int:consultation_id>/confirm-redaction")
@manage_blp.arguments(RedactionSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.REVIEW)
def confirm_redaction(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Confirm the texts to publish (refused while a phone, ID number, e-mail or bank card is left in them)."""
    return _act(consultation_id, lambda db, staff, c: workflow.confirm_redaction(
        db, staff, c, args["published_question"], args["published_reply"]))


@manage_blp.post("/consultations/<int:consultation_id>/publish")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.PUBLISH)
def publish(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Publish the question and answer on the 咨询回复 board (needs consent and a confirmed redaction)."""
    return _act(consultation_id, workflow.publish)


@manage_blp.post("/consultations/<int:consultation_id>/keep-private")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.PUBLISH)
def keep_private(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Keep the answer off the public board."""
    return _act(consultation_id, workflow.keep_private)


@manage_blp.post("/consultations/<int:consultation_id>/unpublish")
@manage_blp.arguments(TextSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.PUBLISH)
def unpublish(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Take a published answer off the board (and out of search), with a reason."""
    return _act(consultation_id, lambda db, staff, c: workflow.unpublish(db, staff, c, args["text"]))


@manage_blp.post("/consultations/<int:consultation_id>/close")
@manage_blp.arguments(EmptySchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DISPATCH)
def close(_args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Close (办结) an answered case."""
    return _act(consultation_id, workflow.close)


@manage_blp.post("/consultations/<int:consultation_id>/extensions")
@manage_blp.arguments(ExtensionRequestSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.DRAFT)
def request_extension(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Ask for more working days, with a reason; a reviewer of the department decides."""
    return _act(consultation_id, lambda db, staff, c: workflow.request_extension(
        db, staff, c, args["working_days"], args["reason"]))


@manage_blp.post("/consultations/<int:consultation_id>/extensions/<int:extension_id>/decision")
@manage_blp.arguments(ExtensionDecisionSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.REVIEW)
def decide_extension(args: dict[str, Any], consultation_id: int, extension_id: int) -> dict[str, Any]:
    """Approve or refuse an extension request (not one's own)."""
    def decide(db: Session, staff: StaffIdentity, consultation: Consultation) -> None:
        request = db.get(ExtensionRequest, extension_id)
        if request is None or request.consultation_id != consultation.id:
            api_abort(404, "延期申请不存在 / no such extension request")
        workflow.decide_extension(db, staff, consultation, request, args["approve"], args.get("note"))

    return _act(consultation_id, decide)


@manage_blp.post("/consultations/<int:consultation_id>/notes")
@manage_blp.arguments(TextSchema)
@manage_blp.response(200, ConsultationDetailSchema)
@requires(Permission.READ_RECORDS)
def add_note(args: dict[str, Any], consultation_id: int) -> dict[str, Any]:
    """Add an internal note (never shown to the asker, never published)."""
    return _act(consultation_id, lambda db, staff, c: workflow.add_note(db, staff, c, args["text"]))


@manage_blp.get("/consultations/<int:consultation_id>/suggestions")
@manage_blp.response(200)
@requires(Permission.READ_RECORDS)
def suggestions(consultation_id: int) -> dict[str, Any]:
    """Canned replies for the case's category and similar published answers, for the reply editor."""
    db = _db()
    consultation = case_or_404(db, _staff(), consultation_id)
    return {"canned_replies": canned_replies_for(db, consultation.category),
            "similar_answers": similar_answers(consultation)}


def canned_replies_for(db: Session, category: str | None) -> list[dict[str, Any]]:
    rows = db.scalars(select(CannedReply).where(
        (CannedReply.category == category) | CannedReply.category.is_(None)).order_by(CannedReply.title)).all()
    return [{"id": row.id, "category": row.category, "title": row.title, "body": row.body} for row in rows]


def similar_answers(consultation: Consultation, limit: int = 5) -> list[dict[str, Any]]:
    """Published answers like this question (from the search index; none while search is down)."""
    from services.searchengine.port import SearchQuery, SearchUnavailable
    from services.web import content_alias

    engine, alias = content_alias(current_app)
    try:
        result = engine.search(alias, SearchQuery(text=consultation.title, doc_types=("answer",), per_page=limit))
    except SearchUnavailable:
        return []
    return [{"id": hit.document.get("id"), "title": hit.document.get("title"), "url": hit.document.get("url"),
             "summary": hit.document.get("summary")} for hit in result.hits
            if hit.document.get("id") != f"answer-{consultation.id}"]


@manage_blp.get("/export")
@manage_blp.arguments(ExportArgsSchema, location="query")
@manage_blp.response(200, description="an .xlsx workbook")
@requires(Permission.READ_RECORDS)
def export(args: dict[str, Any]) -> Response:
    """The consultations received in a period (Beijing dates), as an Excel workbook; no contact details."""
    from consult.export import check_period, export_period, period_filename

    today = workflow.local_day(utcnow())
    end: date = args.get("end") or today
    start: date = args.get("start") or end.replace(day=1)
    try:
        check_period(start, end)
    except ContentProblem as bad:
        api_abort(422, str(bad), {"query": bad.errors})
    departments = readable_departments(_staff())
    if args.get("department"):
        departments &= {args["department"]}
    db = _db()
    content = export_period(db, workflow.consult_calendar(db), start, end, departments)
    filename = period_filename(start, end)
    return Response(content, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
