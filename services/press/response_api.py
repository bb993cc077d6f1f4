"""The staff API of responses to public concerns (回应关切) and media focus items (媒体聚焦):
``/api/press/manage/responses``.

Staff calls carry ``Authorization: Bearer <token>``. The rules live in :mod:`services.press.workflow`:
``NotPermitted`` → 403, ``TransitionNotAllowed`` → 409, ``ContentProblem`` → 422 with field errors. A
response in a department the caller may not read answers 404. Every write commits once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from flask_smorest.error_handler import ErrorSchema
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.auth import StaffIdentity, requires, signed_in_staff
from services.db import get_session
from services.errors import api_abort
from services.permissions import Permission, departments_with
from services.press import workflow
from services.press.models import Response
from services.press.schemas import (
    ResponseActionArgsSchema,
    ResponseCreateSchema,
    ResponseListArgsSchema,
    ResponseListSchema,
    ResponseSchema,
    ResponseUpdateSchema,
)
from services.press.workflow import ACTION_PERMISSION, ACTIONS, ResponseFields
from services.schemas import links_from
from services.web import content_alias

blp = Blueprint("press_responses_api", __name__, url_prefix="/api/press/manage/responses",
                description="回应关切与媒体聚焦（新闻宣传）")


def _db() -> Session:
    return get_session("press")


_staff = signed_in_staff


def _readable(staff: StaffIdentity) -> set[str]:
    return departments_with(staff.grants, Permission.READ_RECORDS)


def _response_or_404(db: Session, staff: StaffIdentity, response_id: int) -> Response:
    response = db.get(Response, response_id)
    if response is None or response.department not in _readable(staff):
        api_abort(404, "回应不存在 / no such response")
    return response


def policy_lookup() -> workflow.PolicyLookup:
    engine, alias = content_alias(current_app)
    return workflow.index_lookup(engine, alias)


def response_out(db: Session, staff: StaffIdentity, response: Response) -> dict[str, Any]:
    return {
        **{name: getattr(response, name) for name in (
            "id", "kind", "title", "summary", "body", "outlet", "published_on", "url", "department", "state",
            "version", "author_name", "reviewer_name", "created_at", "updated_at", "published_at", "policy_refs")},
        "topic_ids": workflow.topic_ids_of(db, response),
        "public_url": workflow.public_url(response.id) if response.state == workflow.S.PUBLISHED else None,
        "allowed_actions": workflow.allowed_actions(staff, response),
        "history": workflow.history(db, response),
    }


@blp.get("")
@blp.arguments(ResponseListArgsSchema, location="query")
@blp.response(200, ResponseListSchema)
@requires(Permission.READ_RECORDS)
def list_responses(args: dict[str, Any]) -> dict[str, Any]:
    """Responses in the departments the caller may read, recently changed first (filters: state, kind,
    department, q in the title)."""
    db, staff = _db(), _staff()
    query = select(Response).where(Response.department.in_(sorted(_readable(staff))))
    for name in ("state", "kind", "department"):
        if args.get(name):
            query = query.where(getattr(Response, name) == args[name])
    if args.get("q"):
        query = query.where(Response.title.contains(args["q"], autoescape=True))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    page, per_page = args["page"], args["per_page"]
    items = db.scalars(
        query.order_by(Response.updated_at.desc(), Response.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return {"total": total, "page": page, "per_page": per_page, "items": items}


@blp.get("/<int:response_id>")
@blp.response(200, ResponseSchema)
@requires(Permission.READ_RECORDS)
def get_response(response_id: int) -> dict[str, Any]:
    """One response with its links, history and the actions open to the caller."""
    db, staff = _db(), _staff()
    return response_out(db, staff, _response_or_404(db, staff, response_id))


@blp.post("")
@blp.arguments(ResponseCreateSchema)
@blp.response(201, ResponseSchema)
@blp.doc(**links_from(201, "id", "GET /api/press/manage/responses/{response_id}",
                      "PATCH /api/press/manage/responses/{response_id}",
                      "POST /api/press/manage/responses/{response_id}/submit", parameter="response_id"))
@requires(Permission.PRESS)
def create_response(body: dict[str, Any]) -> dict[str, Any]:
    """Draft a response (回应关切) or a media focus item (媒体聚焦: outlet, date, address and summary
    required), linked to topics and published policies."""
    db, staff = _db(), _staff()
    department = workflow.department_for_new(staff, body.pop("department", None))
    topic_ids = body.pop("topic_ids", [])
    policy_ids = body.pop("policy_ids", [])
    refs = workflow.check_policies(policy_lookup(), policy_ids) if policy_ids else []
    response = workflow.create_response(db, staff, ResponseFields(**body), department, topic_ids=topic_ids,
                                        policy_refs=refs)
    db.commit()
    return response_out(db, staff, response)


@blp.patch("/<int:response_id>")
@blp.arguments(ResponseUpdateSchema)
@blp.response(200, ResponseSchema)
@requires(Permission.PRESS)
def update_response(changes: dict[str, Any], response_id: int) -> dict[str, Any]:
    """Edit a draft; a published or withdrawn response becomes a new draft version (and leaves the public
    pages and search until it is published again)."""
    db, staff = _db(), _staff()
    response = _response_or_404(db, staff, response_id)
    topic_ids = changes.pop("topic_ids", None)
    policy_ids = changes.pop("policy_ids", None)
    refs = workflow.check_policies(policy_lookup(), policy_ids) if policy_ids is not None else None
    workflow.update_response(db, staff, response, changes, topic_ids=topic_ids, policy_refs=refs)
    db.commit()
    return response_out(db, staff, response)


ACTION_DOCS = {
    "submit": "Submit a draft for review (提交审核).",
    "return": "Return a submitted or approved response to its author as a draft (退回), with a comment.",
    "approve": "Approve a submitted response (审核通过); whoever wrote or submitted it may not.",
    "publish": "Publish an approved response (发布): indexed for search, and the response clock of the open "
               "alerts of its topics stops.",
    "withdraw": "Withdraw a published response from the public pages and search (撤回).",
    "revise": "Start a new draft version of a published or withdrawn response (修订).",
}


def _transition_view(action: str) -> None:
    def view(*args: Any, response_id: int) -> dict[str, Any]:
        body: dict[str, Any] = args[0] if args else {}
        db, staff = _db(), _staff()
        response = _response_or_404(db, staff, response_id)
        workflow.transition(db, staff, response, action, body.get("comment"))
        db.commit()
        return response_out(db, staff, response)

    view.__name__ = view.__qualname__ = f"response_{action}"
    view.__doc__ = ACTION_DOCS[action]
    decorated: Callable[..., Any] = requires(ACTION_PERMISSION[action])(view)
    decorated = blp.response(200, ResponseSchema)(decorated)
    for status, description in (
        (403, "not permitted in the response's department"),
        (404, "no such response in the caller's departments"),
        (409, "not allowed from the response's current state"),
        (422, "a business rule refuses it (field errors), e.g. approving what one wrote"),
    ):
        decorated = blp.alt_response(status, schema=ErrorSchema, description=description)(decorated)
    decorated = blp.arguments(ResponseActionArgsSchema, required=False)(decorated)
    blp.route(f"/<int:response_id>/{action}", methods=["POST"], endpoint=view.__name__)(decorated)


for _action in ACTIONS:
    _transition_view(_action)
