"""The interpret REST API: public reads, and the staff API under ``/api/interpret/manage``.

Staff calls carry ``Authorization: Bearer <token>``. Each view declares who may reach it;
the business rules in :mod:`interpret.workflow` check the permission in the record's own
department (``NotPermitted`` → 403), the state machine (``TransitionNotAllowed`` → 409) and
the input (``ContentProblem`` → 422 with field errors); see ``services.errors``.

A record in a department the caller may not read answers 404, as if it did not exist.
Every write commits once, at the end: an error anywhere leaves nothing half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask_smorest import Blueprint
from flask_smorest.error_handler import ErrorSchema
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from interpret import attachments, workflow
from interpret.models import Attachment, ContentVersion, Interpretation, Policy
from interpret.schemas import (
    AttachmentListSchema,
    AttachmentSchema,
    InterpretationCreateSchema,
    InterpretationListSchema,
    InterpretationSchema,
    InterpretationUpdateSchema,
    ManageInterpretationListArgsSchema,
    ManagePolicyListArgsSchema,
    PolicyCreateSchema,
    PolicyLinkArgsSchema,
    PolicyListArgsSchema,
    PolicyListSchema,
    PolicyPageSchema,
    PolicySchema,
    PolicyUpdateSchema,
    PublicPolicySchema,
    PublishArgsSchema,
    RelatedArgsSchema,
)
from interpret.workflow import (
    ACTION_PERMISSION,
    CONTENT_WORKFLOW,
    ContentProblem,
    ContentState,
    InterpretationFields,
    PolicyFields,
)
from services.auth import StaffIdentity, public, requires, signed_in_staff
from services.db import get_session
from services.errors import api_abort, error_response
from services.permissions import GRANTS, Permission, departments_with, require
from services.public_read import latest_documents, public_document
from services.schemas import links_from
from services.settings import Settings

blp = Blueprint(
    "interpret_api", __name__, url_prefix="/api/interpret", description="政策文件与政策解读"
)
# The public attachment download is a plain Flask blueprint of this service; it is registered
# with the API so that the app factory keeps registering one API blueprint and the pages.
blp.record_once(lambda state: state.app.register_blueprint(attachments.bp))

log = logging.getLogger(__name__)

ACTIONS = ("submit", "return", "approve", "publish", "withdraw", "revise")
PACKAGE_ACTIONS: dict[str, tuple[ContentState, Permission]] = {
    "submit": (ContentState.DRAFT, Permission.DRAFT),
    "approve": (ContentState.SUBMITTED, Permission.REVIEW),
    "publish": (ContentState.APPROVED, Permission.PUBLISH),
}
UPLOAD_OVERHEAD = 64 * 1024
"""Room for the multipart framing around the file itself."""


# -- public reads -------------------------------------------------------------------------------


@blp.get("/policies")
@blp.arguments(PolicyListArgsSchema, location="query")
@blp.response(200, PolicyPageSchema)
@public
def list_policies(args: dict[str, Any]) -> dict[str, Any]:
    """Published policies, newest first."""
    return latest_documents(current_app, "policy", args["page"], args["per_page"]).as_dict()


@blp.get("/policies/<int:policy_id>")
@blp.response(200, PublicPolicySchema)
@public
def get_policy(policy_id: int) -> dict[str, Any]:
    """One published policy."""
    return public_document(current_app, f"policy-{policy_id}")


# -- helpers ------------------------------------------------------------------------------------


def _db() -> Session:
    return get_session("interpret")


_staff = signed_in_staff


def _settings() -> Settings:
    settings: Settings = current_app.extensions["gongkai.settings"]
    return settings


def _readable(staff: StaffIdentity) -> set[str]:
    return departments_with(staff.grants, Permission.READ_RECORDS)


def _commit(db: Session) -> None:
    """The one commit of a write (the workflow only flushes)."""
    db.commit()


@blp.errorhandler(IntegrityError)
def _conflict(error: IntegrityError) -> Any:
    """A unique key (文号, 索引号) taken by a concurrent write between our check and our flush."""
    _db().rollback()
    log.info("interpret API: integrity conflict: %s", error.orig)
    return error_response(409, "数据已被他人同时修改（如文号重复），请刷新后重试 / conflicting change, please retry")


def _policy_or_404(db: Session, staff: StaffIdentity, policy_id: int) -> Policy:
    policy = db.get(Policy, policy_id)
    if policy is None or policy.department not in _readable(staff):
        api_abort(404, "政策文件不存在 / no such policy")
    return policy


def _interpretation_or_404(db: Session, staff: StaffIdentity, interpretation_id: int) -> Interpretation:
    interpretation = db.get(Interpretation, interpretation_id)
    if interpretation is None or interpretation.department not in _readable(staff):
        api_abort(404, "政策解读不存在 / no such interpretation")
    return interpretation


def _visible(item: Policy | Interpretation | None, staff: StaffIdentity) -> bool:
    """Whether the caller may refer to a record: their departments', or anything published."""
    return item is not None and (item.department in _readable(staff) or item.state == ContentState.PUBLISHED)


def _referenced_policy(db: Session, staff: StaffIdentity, policy_id: int, field: str) -> Policy:
    policy = db.get(Policy, policy_id)
    if policy is None or not _visible(policy, staff):
        raise ContentProblem({field: ["政策文件不存在"]})
    return policy


def _department_for_new(staff: StaffIdentity, requested: str | None) -> str:
    """The department a new record belongs to: as asked, or the one where the caller drafts."""
    if requested:
        return requested
    drafting = sorted({grant.department for grant in staff.grants if grant.role in GRANTS[Permission.DRAFT]})
    if len(drafting) != 1:
        raise ContentProblem({"department": ["请指明所属部门"]})
    return drafting[0]


def _columns(item: Any) -> dict[str, Any]:
    return {column.key: getattr(item, column.key) for column in inspect(item).mapper.column_attrs}


def _allowed_actions(staff: StaffIdentity, item: Policy | Interpretation) -> list[str]:
    """What the state machine allows from here and the caller may do (never approving their own draft)."""
    return [
        action for action in CONTENT_WORKFLOW.allowed_actions(ContentState(item.state))
        if staff.can(ACTION_PERMISSION[action], item.department)
        and not (action == "approve" and item.author_id == staff.user_id)
    ]


def _history(db: Session, kind: str, item_id: int) -> list[dict[str, Any]]:
    versions = db.scalars(
        select(ContentVersion).where(ContentVersion.content_type == kind, ContentVersion.content_id == item_id)
        .order_by(ContentVersion.version)
    )
    return [
        {"version": version.version, "title": (version.snapshot or {}).get("title"),
         "published_at": version.published_at, "published_by": version.published_by}
        for version in versions
    ]


def _attachment_out(attachment: Attachment) -> dict[str, Any]:
    return {**_columns(attachment), "public_url": attachments.public_url(attachment)}


def _link(item: Policy | Interpretation) -> dict[str, Any]:
    out = {"id": item.id, "title": item.title, "department": item.department, "state": item.state}
    if isinstance(item, Policy):
        out.update(document_number=item.document_number, level=item.level)
    else:
        out.update(form=item.form)
    return out


def _package_actions(staff: StaffIdentity, policy: Policy) -> list[str]:
    if policy.level != "本级":
        return []
    items = workflow.package_items(policy)
    if len(items) == 1:
        return []
    return [
        action for action, (state, permission) in PACKAGE_ACTIONS.items()
        if all(item.state == state for item in items) and staff.can(permission, policy.department)
        and not (action == "approve" and any(item.author_id == staff.user_id for item in items))
    ]


def _policy_out(db: Session, staff: StaffIdentity, policy: Policy) -> dict[str, Any]:
    return {
        **_columns(policy),
        "allowed_actions": _allowed_actions(staff, policy),
        "package_actions": _package_actions(staff, policy),
        "history": _history(db, "policy", policy.id),
        "interpretations": [_link(item) for item in policy.interpretations if _visible(item, staff)],
        "attachments": [_attachment_out(item) for item in attachments.attachments_of(db, policy)],
    }


def _interpretation_out(db: Session, staff: StaffIdentity, interpretation: Interpretation) -> dict[str, Any]:
    return {
        **_columns(interpretation),
        "allowed_actions": _allowed_actions(staff, interpretation),
        "history": _history(db, "interpretation", interpretation.id),
        "policies": [_link(item) for item in interpretation.policies if _visible(item, staff)],
        "related": [
            _link(item) for item in workflow.related_interpretations(db, interpretation) if _visible(item, staff)
        ],
    }


def _listing(
    db: Session, staff: StaffIdentity, model: type[Policy] | type[Interpretation], args: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    query = select(model).where(model.department.in_(sorted(_readable(staff))))
    if args.get("state"):
        query = query.where(model.state == args["state"])
    if args.get("department"):
        query = query.where(model.department == args["department"])
    if args.get("q"):
        query = query.where(model.title.contains(args["q"], autoescape=True))
    for name, value in extra.items():
        if value:
            query = query.where(getattr(model, name) == value)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    page, per_page = args["page"], args["per_page"]
    items = db.scalars(
        query.order_by(model.updated_at.desc(), model.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return {"total": total, "page": page, "per_page": per_page, "items": items}


# -- policies ---------------------------------------------------------------------------------------


@blp.get("/manage/policies")
@blp.arguments(ManagePolicyListArgsSchema, location="query")
@blp.response(200, PolicyListSchema)
@requires(Permission.READ_RECORDS)
def manage_list_policies(args: dict[str, Any]) -> dict[str, Any]:
    """Policies in the departments the caller may read, recently changed first (filters: state,
    department, level, q in the title)."""
    return _listing(_db(), _staff(), Policy, args, {"level": args.get("level")})


@blp.get("/manage/policies/<int:policy_id>")
@blp.response(200, PolicySchema)
@requires(Permission.READ_RECORDS)
def manage_get_policy(policy_id: int) -> dict[str, Any]:
    """One policy with its interpretations, attachments, the actions open to the caller and its
    published versions."""
    db, staff = _db(), _staff()
    return _policy_out(db, staff, _policy_or_404(db, staff, policy_id))


@blp.post("/manage/policies")
@blp.arguments(PolicyCreateSchema)
@blp.response(201, PolicySchema)
@blp.doc(**links_from(201, "id", "GET /api/interpret/manage/policies/{policy_id}",
                      "PATCH /api/interpret/manage/policies/{policy_id}",
                      "POST /api/interpret/manage/policies/{policy_id}/submit",
                      "GET /api/interpret/manage/policies/{policy_id}/attachments",
                      "POST /api/interpret/manage/packages/{policy_id}/submit", parameter="policy_id"))
@requires(Permission.DRAFT)
def manage_create_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Draft a policy; its 索引号 is generated."""
    db, staff = _db(), _staff()
    department = _department_for_new(staff, body.pop("department", None))
    if body.get("replaced_by_id") is not None:
        _referenced_policy(db, staff, body["replaced_by_id"], "replaced_by_id")
    policy = workflow.create_policy(db, staff, PolicyFields(department=department, **body))
    _commit(db)
    return _policy_out(db, staff, policy)


@blp.patch("/manage/policies/<int:policy_id>")
@blp.arguments(PolicyUpdateSchema)
@blp.response(200, PolicySchema)
@requires(Permission.DRAFT)
def manage_update_policy(changes: dict[str, Any], policy_id: int) -> dict[str, Any]:
    """Edit a draft; a published or withdrawn policy becomes a new draft version (the published
    version stays public until the new one is published)."""
    db, staff = _db(), _staff()
    policy = _policy_or_404(db, staff, policy_id)
    if changes.get("replaced_by_id") is not None:
        _referenced_policy(db, staff, changes["replaced_by_id"], "replaced_by_id")
    workflow.update_policy(db, staff, policy, changes)
    _commit(db)
    return _policy_out(db, staff, policy)


# -- interpretations ------------------------------------------------------------------------------


@blp.get("/manage/interpretations")
@blp.arguments(ManageInterpretationListArgsSchema, location="query")
@blp.response(200, InterpretationListSchema)
@requires(Permission.READ_RECORDS)
def manage_list_interpretations(args: dict[str, Any]) -> dict[str, Any]:
    """Interpretations in the departments the caller may read (filters: state, department, form, q)."""
    return _listing(_db(), _staff(), Interpretation, args, {"form": args.get("form")})


@blp.get("/manage/interpretations/<int:interpretation_id>")
@blp.response(200, InterpretationSchema)
@requires(Permission.READ_RECORDS)
def manage_get_interpretation(interpretation_id: int) -> dict[str, Any]:
    """One interpretation with its policies, related interpretations, actions and published versions."""
    db, staff = _db(), _staff()
    return _interpretation_out(db, staff, _interpretation_or_404(db, staff, interpretation_id))


@blp.post("/manage/interpretations")
@blp.arguments(InterpretationCreateSchema)
@blp.response(201, InterpretationSchema)
@blp.doc(**links_from(201, "id", "GET /api/interpret/manage/interpretations/{interpretation_id}",
                      "PATCH /api/interpret/manage/interpretations/{interpretation_id}",
                      "POST /api/interpret/manage/interpretations/{interpretation_id}/submit",
                      "POST /api/interpret/manage/interpretations/{interpretation_id}/policies",
                      "POST /api/interpret/manage/interpretations/{interpretation_id}/related",
                      parameter="interpretation_id"))
@requires(Permission.DRAFT)
def manage_create_interpretation(body: dict[str, Any]) -> dict[str, Any]:
    """Draft an interpretation (link it to its policies before it can be published)."""
    db, staff = _db(), _staff()
    department = _department_for_new(staff, body.pop("department", None))
    interpretation = workflow.create_interpretation(db, staff, InterpretationFields(department=department, **body))
    _commit(db)
    return _interpretation_out(db, staff, interpretation)


@blp.patch("/manage/interpretations/<int:interpretation_id>")
@blp.arguments(InterpretationUpdateSchema)
@blp.response(200, InterpretationSchema)
@requires(Permission.DRAFT)
def manage_update_interpretation(changes: dict[str, Any], interpretation_id: int) -> dict[str, Any]:
    """Edit a draft; a published or withdrawn interpretation becomes a new draft version."""
    db, staff = _db(), _staff()
    interpretation = _interpretation_or_404(db, staff, interpretation_id)
    workflow.update_interpretation(db, staff, interpretation, changes)
    _commit(db)
    return _interpretation_out(db, staff, interpretation)


@blp.post("/manage/interpretations/<int:interpretation_id>/policies")
@blp.arguments(PolicyLinkArgsSchema)
@blp.response(200, InterpretationSchema)
@requires(Permission.DRAFT)
def manage_link_policy(body: dict[str, Any], interpretation_id: int) -> dict[str, Any]:
    """Link the interpretation to a policy it explains (one of the caller's, or any published one)."""
    db, staff = _db(), _staff()
    interpretation = _interpretation_or_404(db, staff, interpretation_id)
    policy = _referenced_policy(db, staff, body["policy_id"], "policy_id")
    workflow.link_policy(db, staff, interpretation, policy)
    _commit(db)
    return _interpretation_out(db, staff, interpretation)


@blp.delete("/manage/interpretations/<int:interpretation_id>/policies/<int:policy_id>")
@blp.response(200, InterpretationSchema)
@requires(Permission.DRAFT)
def manage_unlink_policy(interpretation_id: int, policy_id: int) -> dict[str, Any]:
    """Remove a link (a published interpretation keeps at least one)."""
    db, staff = _db(), _staff()
    interpretation = _interpretation_or_404(db, staff, interpretation_id)
    policy = db.get(Policy, policy_id)
    if policy is None or not _visible(policy, staff):
        api_abort(404, "政策文件不存在 / no such policy")
    workflow.unlink_policy(db, staff, interpretation, policy)
    _commit(db)
    return _interpretation_out(db, staff, interpretation)


@blp.post("/manage/interpretations/<int:interpretation_id>/related")
@blp.arguments(RelatedArgsSchema)
@blp.response(200, InterpretationSchema)
@requires(Permission.DRAFT)
def manage_relate_interpretations(body: dict[str, Any], interpretation_id: int) -> dict[str, Any]:
    """Mark two interpretations as related (both pages list the other)."""
    db, staff = _db(), _staff()
    interpretation = _interpretation_or_404(db, staff, interpretation_id)
    other = db.get(Interpretation, body["related_id"])
    if other is None or not _visible(other, staff):
        raise ContentProblem({"related_id": ["政策解读不存在"]})
    workflow.relate_interpretations(db, staff, interpretation, other)
    _commit(db)
    return _interpretation_out(db, staff, interpretation)


# -- transitions: POST /manage/<policies|interpretations>/<id>/<action> ----------------------------


def _apply(db: Session, staff: StaffIdentity, item: Policy | Interpretation, action: str,
           body: dict[str, Any]) -> None:
    if action == "submit":
        workflow.submit(db, staff, item)
    elif action == "return":
        workflow.return_to_draft(db, staff, item)
    elif action == "approve":
        workflow.approve(db, staff, item)
    elif action == "publish":
        workflow.publish(db, staff, item, body.get("publish_at"))
    elif action == "withdraw":
        workflow.withdraw(db, staff, item)
    else:  # revise: the workflow has no public wrapper (editing revises implicitly)
        workflow._transition(db, staff, item, "revise")


ACTION_DOCS = {
    "submit": "Submit a draft for review (提交审核).",
    "return": "Return a submitted or approved item to its author as a draft (退回); cancels a scheduled publication.",
    "approve": "Approve a submitted item (审核通过); the author may not approve their own.",
    "publish": "Publish now, or at ``publish_at`` (定时发布; the beat task publishes it when the time comes).",
    "withdraw": "Withdraw a published item from the public pages and search (撤回).",
    "revise": "Start a new draft version of a published or withdrawn item (修订); the published one stays public.",
}


def _documented_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    for status, description in (
        (403, "not permitted in the record's department"),
        (404, "no such record in the caller's departments"),
        (409, "not allowed from the record's current state"),
        (422, "a business rule refuses it (field errors), e.g. self-approval or a missing policy link"),
    ):
        view = blp.alt_response(status, schema=ErrorSchema, description=description)(view)
    return view


def _transition_view(kind: str, action: str) -> None:
    schema = PolicySchema if kind == "policy" else InterpretationSchema

    def view(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = args[0] if args else {}
        db, staff = _db(), _staff()
        if kind == "policy":
            policy = _policy_or_404(db, staff, kwargs["policy_id"])
            _apply(db, staff, policy, action, body)
            _commit(db)
            return _policy_out(db, staff, policy)
        interpretation = _interpretation_or_404(db, staff, kwargs["interpretation_id"])
        _apply(db, staff, interpretation, action, body)
        _commit(db)
        return _interpretation_out(db, staff, interpretation)

    view.__name__ = view.__qualname__ = f"manage_{kind}_{action}"
    view.__doc__ = ACTION_DOCS[action]
    decorated: Callable[..., Any] = requires(ACTION_PERMISSION[action])(view)
    decorated = _documented_errors(blp.response(200, schema)(decorated))
    if action == "publish":
        decorated = blp.arguments(PublishArgsSchema, required=False)(decorated)
    plural = "policies" if kind == "policy" else "interpretations"
    blp.route(f"/manage/{plural}/<int:{kind}_id>/{action}", methods=["POST"], endpoint=view.__name__)(decorated)


for _kind in ("policy", "interpretation"):
    for _action in ACTIONS:
        _transition_view(_kind, _action)


# -- packages: an own-level policy and its interpretations together (同步审签、同步发布) ----------------


def _package_view(action: str, permission: Permission) -> None:
    def view(*args: Any, policy_id: int) -> dict[str, Any]:
        body: dict[str, Any] = args[0] if args else {}
        db, staff = _db(), _staff()
        policy = _policy_or_404(db, staff, policy_id)
        if action == "submit":
            workflow.submit_package(db, staff, policy)
        elif action == "approve":
            workflow.approve_package(db, staff, policy)
        else:
            workflow.publish_package(db, staff, policy, body.get("publish_at"))
        _commit(db)
        return _policy_out(db, staff, policy)

    view.__name__ = view.__qualname__ = f"manage_package_{action}"
    view.__doc__ = (
        f"{action.capitalize()} an own-level (本级) policy together with its interpretations of the same "
        "department, all or nothing."
    )
    decorated: Callable[..., Any] = requires(permission)(view)
    decorated = _documented_errors(blp.response(200, PolicySchema)(decorated))
    if action == "publish":
        decorated = blp.arguments(PublishArgsSchema, required=False)(decorated)
    blp.route(f"/manage/packages/<int:policy_id>/{action}", methods=["POST"], endpoint=view.__name__)(decorated)


for _action, (_state, _permission) in PACKAGE_ACTIONS.items():
    _package_view(_action, _permission)


# -- attachments of a policy ----------------------------------------------------------------------

UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": f"{attachments.ALLOWED_LABEL}; size limit ATTACHMENT_MAX_BYTES"}},
    }}},
}


def _attachment_or_404(db: Session, policy: Policy, attachment_id: int) -> Attachment:
    attachment = db.get(Attachment, attachment_id)
    if attachment is None or attachment.owner_type != attachments.OWNER_POLICY or attachment.owner_id != policy.id:
        api_abort(404, "附件不存在 / no such attachment")
    return attachment


@blp.get("/manage/policies/<int:policy_id>/attachments")
@blp.response(200, AttachmentListSchema)
@requires(Permission.READ_RECORDS)
def manage_list_attachments(policy_id: int) -> dict[str, Any]:
    """The attachments of a policy."""
    db, staff = _db(), _staff()
    policy = _policy_or_404(db, staff, policy_id)
    return {"items": [_attachment_out(item) for item in attachments.attachments_of(db, policy)]}


@blp.post("/manage/policies/<int:policy_id>/attachments")
@blp.doc(requestBody=UPLOAD_BODY)
@blp.response(201, AttachmentSchema)
@requires(Permission.DRAFT)
def manage_upload_attachment(policy_id: int) -> dict[str, Any]:
    """Attach a file (multipart field ``file``) to a draft policy: PDF, Word or a PNG/JPEG/GIF image,
    recognised by its content; anything else, or a file over the size limit, is refused with 422."""
    db, staff, settings = _db(), _staff(), _settings()
    policy = _policy_or_404(db, staff, policy_id)
    require(staff.grants, Permission.DRAFT, policy.department)  # before reading the body
    limit = settings.attachment_max_bytes
    request.max_content_length = limit + UPLOAD_OVERHEAD
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        raise attachments.AttachmentRejected(
            f"文件超过大小上限（{attachments.size_label(limit)}）"
        ) from None
    if upload is None:
        raise attachments.AttachmentRejected("请选择要上传的文件（表单字段 file）")
    data = upload.stream.read(limit + 1)
    attachment = attachments.add_attachment(db, settings, staff, policy, upload.filename or "", data)
    _commit(db)
    return _attachment_out(attachment)


@blp.get("/manage/policies/<int:policy_id>/attachments/<int:attachment_id>")
@blp.response(200, description="the file")
@requires(Permission.READ_RECORDS)
def manage_download_attachment(policy_id: int, attachment_id: int) -> Response:
    """Download an attachment (also of a draft, for review)."""
    db, staff = _db(), _staff()
    policy = _policy_or_404(db, staff, policy_id)
    return attachments.file_response(_settings(), _attachment_or_404(db, policy, attachment_id))


@blp.delete("/manage/policies/<int:policy_id>/attachments/<int:attachment_id>")
@blp.response(204)
@requires(Permission.DRAFT)
def manage_delete_attachment(policy_id: int, attachment_id: int) -> None:
    """Remove an attachment of a draft policy."""
    db, staff = _db(), _staff()
    policy = _policy_or_404(db, staff, policy_id)
    attachment = _attachment_or_404(db, policy, attachment_id)
    digest = attachment.sha256
    attachments.delete_attachment(db, staff, policy, attachment)
    _commit(db)
    attachments.remove_unreferenced_blob(db, _settings(), digest)
