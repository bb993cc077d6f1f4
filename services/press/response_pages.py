"""Pages of responses to public concerns (回应关切) and media focus items (媒体聚焦).

* Public (``public_bp``): ``/press/responses`` lists what is published, newest first, optionally one
  kind; ``/press/responses/<id>`` shows one item (a media focus item links to the outlet's original,
  ``rel=noopener``). Both read the shared index only, never the press tables, and are cacheable.
* Staff (``staff_bp``): ``/press/staff/responses`` lists the responses of the departments the user may
  read; ``/press/staff/responses/new`` (``?topic=<id>`` pre-links a topic) and
  ``/press/staff/responses/<id>`` carry the form (topic and policy pickers), the history and the forms
  of only the actions allowed now, each posting to ``/press/staff/responses/<id>/<action>``.

Every rule lives in :mod:`services.press.workflow`; a view parses the form, calls it and commits once.
A refused input rolls back and shows the page again with the field errors (422); an action the state
does not allow answers 409 on the same page; a response outside the readable departments answers 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as HttpResponse

from services.auth import StaffIdentity, public, requires, signed_in_staff
from services.db import get_session
from services.permissions import NotPermitted, Permission, departments_with
from services.press import workflow
from services.press.models import Response, Topic
from services.press.workflow import ACTION_LABELS, ACTION_PERMISSION, ACTIONS, KIND_LABELS, STATE_LABELS
from services.public_read import filtered_documents, page_number, public_document
from services.searchengine.port import SearchQuery
from services.text.pii import redact
from services.text.richtext import sanitise_html
from services.web import beijing_date, cacheable, content_alias
from services.workflow import ContentProblem, TransitionNotAllowed

public_bp = Blueprint("press_responses", __name__, url_prefix="/press", template_folder="templates")
staff_bp = Blueprint("press_staff_responses", __name__, url_prefix="/press/staff/responses",
                     template_folder="templates")

BEIJING = ZoneInfo("Asia/Shanghai")
PER_PAGE = 20
STAFF_PER_PAGE = 50
TOPIC_CHOICES = 30
POLICY_RESULTS = 10
MAX_PAGE = 10_000


def _safe_external_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


china_day = beijing_date


def kind_names() -> dict[str, str]:
    """``KIND_LABELS`` in the visitor's language (same keys; a key without a translation keeps its label)."""
    names = {"response": _("回应关切"), "media_focus": _("媒体聚焦")}
    return {key: names.get(key, label) for key, label in KIND_LABELS.items()}


def state_names() -> dict[str, str]:
    """``STATE_LABELS`` in the visitor's language."""
    names = {"draft": _("草稿"), "submitted": _("已提交"), "approved": _("已审核"), "published": _("已发布"),
             "withdrawn": _("已撤回")}
    return {key: names.get(key, label) for key, label in STATE_LABELS.items()}


def action_names() -> dict[str, str]:
    """``ACTION_LABELS`` in the visitor's language."""
    names = {"submit": _("提交"), "return": _("退回"), "approve": _("审核通过"), "publish": _("发布"),
             "withdraw": _("撤回"), "revise": _("修订")}
    return {key: names.get(key, label) for key, label in ACTION_LABELS.items()}


@public_bp.context_processor
def _public_helpers() -> dict[str, Any]:
    return {"china_day": china_day, "item_href": _item_href}


def _item_href(document: Mapping[str, Any]) -> str:
    """The page of a listed item, built from its id (the index's ``url`` is not trusted as a link)."""
    number = str(document.get("id") or "").removeprefix(workflow.DOC_PREFIX)
    return url_for("press_responses.response_page", response_id=int(number)) if number.isdigit() else "#"


# -- public pages -----------------------------------------------------------------------------------------


@public_bp.get("/responses")
@public
def responses() -> HttpResponse:
    kind = request.args.get("kind", "")
    kind = kind if kind in KIND_LABELS else ""
    listing = filtered_documents(
        current_app, workflow.DOC_TYPE, page_number(request.args.get("page")), PER_PAGE,
        fields={"form": KIND_LABELS[kind]} if kind else None,
    )
    return cacheable(render_template(
        "press/responses/list.html", listing=listing, kind=kind, kinds=kind_names(),
        query={"kind": kind} if kind else {},
    ))


@public_bp.get("/responses/<int:response_id>")
@public
def response_page(response_id: int) -> HttpResponse:
    document = public_document(current_app, f"{workflow.DOC_PREFIX}{response_id}")
    body = sanitise_html(str(document.get("body_html") or ""))
    policies = []
    for item in document.get("related") or []:
        if isinstance(item, Mapping):
            number = str(item.get("id") or "").removeprefix("policy-")
            if number.isdigit():
                policies.append({"title": item.get("title") or "", "url": f"/interpret/policies/{number}"})
    return cacheable(render_template(
        "press/responses/detail.html", item=document, body=body, policies=policies,
        original_url=_safe_external_url(document.get("original_url")),
    ))


# -- staff pages: helpers -------------------------------------------------------------------------------------


@staff_bp.after_request
def _never_cached(response: HttpResponse) -> HttpResponse:
    response.headers["Cache-Control"] = "private, no-store"
    return response


@staff_bp.context_processor
def _helpers() -> dict[str, Any]:
    states, actions, kinds = state_names(), action_names(), kind_names()
    return {"state_label": lambda state: states.get(state, state),
            "action_label": lambda action: actions.get(action, action),
            "kind_label": lambda kind: kinds.get(kind, kind), "local_time": _local_time,
            "Permission": Permission}


def _local_time(moment: Any) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if moment else ""


def _db() -> Session:
    return get_session("press")


_staff = signed_in_staff


def _readable(staff: StaffIdentity) -> set[str]:
    return departments_with(staff.grants, Permission.READ_RECORDS)


def _load(response_id: int) -> Response:
    response = _db().get(Response, response_id)
    if response is None or response.department not in _readable(_staff()):
        abort(404)
    return response


def _form_ints(values: list[str], field: str) -> list[int]:
    numbers = []
    for raw in values:
        raw = raw.strip()
        if not raw:
            continue
        if not raw.isdigit() or len(raw) > 12:
            raise ContentProblem({field: [_("编号无效")]})
        numbers.append(int(raw))
    return numbers


def _policy_ids(form: Mapping[str, Any]) -> list[str]:
    """Checked policies plus those typed in (``policy-12`` or just ``12``, separated by commas or spaces)."""
    chosen = list(form.getlist("policy_ids")) if hasattr(form, "getlist") else []
    typed = str(form.get("policy_more") or "").replace("，", ",").replace(",", " ").split()
    ids = []
    for raw in [*chosen, *typed]:
        raw = raw.strip()
        ids.append(f"policy-{raw}" if raw.isdigit() else raw)
    return [value for value in ids if value]


def _fields_from(form: Mapping[str, Any]) -> workflow.ResponseFields:
    raw_date = str(form.get("published_on") or "").strip()
    published_on: date | None = None
    if raw_date:
        try:
            published_on = date.fromisoformat(raw_date)
        except ValueError:
            raise ContentProblem({"published_on": [_("日期格式应为 YYYY-MM-DD")]}) from None
    return workflow.ResponseFields(
        kind=str(form.get("kind") or ""), title=str(form.get("title") or ""),
        summary=str(form.get("summary") or ""), body=str(form.get("body") or ""),
        outlet=str(form.get("outlet") or "") or None, published_on=published_on,
        url=str(form.get("url") or "") or None,
    )


def _topic_choices(db: Session, linked: list[int]) -> list[dict[str, Any]]:
    """The picker's topics, labels redacted like everywhere else in the console (a label is built from
    messages' words and may hold a phone or ID number)."""
    recent = list(db.scalars(select(Topic).order_by(Topic.last_at.desc().nulls_last(), Topic.id.desc())
                             .limit(TOPIC_CHOICES)))
    have = {topic.id for topic in recent}
    missing = [topic_id for topic_id in linked if topic_id not in have]
    if missing:
        recent = list(db.scalars(select(Topic).where(Topic.id.in_(missing)))) + recent
    return [{"id": topic.id, "label": redact(topic.label or "").text, "size": topic.size} for topic in recent]


def _policy_results(query: str) -> list[dict[str, Any]]:
    """Published policies matching the picker's search (from the shared index)."""
    if not query:
        return []
    engine, alias = content_alias(current_app)
    found = engine.search(alias, SearchQuery(text=query[:100], doc_types=("policy",), per_page=POLICY_RESULTS))
    return [{"id": hit.id, "title": hit.title} for hit in found.hits]


def _render_form(response: Response | None, *, status: int = 200, errors: dict[str, list[str]] | None = None,
                 values: Mapping[str, Any] | None = None, conflict: str | None = None) -> tuple[str, int]:
    db, staff = _db(), _staff()
    if values is not None:
        linked_topics = _form_ints(values.getlist("topic_ids") if hasattr(values, "getlist") else [], "topic_ids") \
            if not (errors and "topic_ids" in errors) else []
        linked_policies = [{"id": ref, "title": ref} for ref in _policy_ids(values)]
        form = {name: values.get(name, "") for name in ("kind", "title", "summary", "body", "outlet", "published_on",
                                                       "url")}
    elif response is not None:
        linked_topics = workflow.topic_ids_of(db, response)
        linked_policies = list(response.policy_refs or [])
        form = {name: getattr(response, name) or "" for name in workflow.FIELD_NAMES}
    else:
        topic = request.args.get("topic", "")
        exists = topic.isdigit() and len(topic) <= 12 and db.get(Topic, int(topic)) is not None
        linked_topics = [int(topic)] if exists else []
        linked_policies = []
        form = {"kind": request.args.get("kind") if request.args.get("kind") in KIND_LABELS else "response"}
    policy_query = (request.args.get("policy_q") or "").strip()
    known = {ref["id"] for ref in linked_policies}
    results = [hit for hit in _policy_results(policy_query) if hit["id"] not in known]
    editable = response is None or (
        staff.can(Permission.PRESS, response.department) and response.state in ("draft", "published", "withdrawn"))
    return render_template(
        "press/responses/form.html", staff=staff, response=response, form=form, errors=errors or {},
        kinds=kind_names(), topics=_topic_choices(db, linked_topics), linked_topics=set(linked_topics),
        linked_policies=linked_policies, policy_results=results, policy_query=policy_query, editable=editable,
        actions=workflow.allowed_actions(staff, response) if response is not None else [],
        history=workflow.history(db, response) if response is not None else [], conflict=conflict,
        done=_done_label(request.args.get("done", "")),
    ), status


def _done_label(done: str) -> str | None:
    if done in ACTIONS:
        return action_names()[done]
    return {"create": str(_("新建")), "update": str(_("保存"))}.get(done)


def _conflict_message(error: TransitionNotAllowed) -> str:
    state = state_names().get(error.current, error.current)
    action = action_names().get(error.action, error.action)
    return str(_("当前状态“%(state)s”不能执行“%(action)s”，请刷新后查看最新状态。", state=state, action=action))


# -- staff pages ------------------------------------------------------------------------------------------------


@staff_bp.get("/")
@requires(Permission.READ_RECORDS)
def staff_list() -> tuple[str, int]:
    db, staff = _db(), _staff()
    state = request.args.get("state", "")
    state = state if state in STATE_LABELS else ""
    raw_page = request.args.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() and 1 <= int(raw_page) <= MAX_PAGE else 1
    query = select(Response).where(Response.department.in_(sorted(_readable(staff))))
    if state:
        query = query.where(Response.state == state)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.scalars(query.order_by(Response.updated_at.desc(), Response.id.desc())
                       .offset((page - 1) * STAFF_PER_PAGE).limit(STAFF_PER_PAGE)).all()
    return render_template(
        "press/responses/staff_list.html", staff=staff, items=items, total=total, page=page, state=state,
        states=state_names(), pages=max(1, -(-total // STAFF_PER_PAGE)),
    ), 200


@staff_bp.get("/new")
@requires(Permission.PRESS)
def new_form() -> tuple[str, int]:
    return _render_form(None)


@staff_bp.post("/new")
@requires(Permission.PRESS)
def create() -> Any:
    db, staff = _db(), _staff()
    try:
        department = workflow.department_for_new(staff, (request.form.get("department") or "").strip() or None)
        fields = _fields_from(request.form)
        topic_ids = _form_ints(request.form.getlist("topic_ids"), "topic_ids")
        policy_ids = _policy_ids(request.form)
        refs = workflow.check_policies(_lookup(), policy_ids) if policy_ids else []
        response = workflow.create_response(db, staff, fields, department, topic_ids=topic_ids, policy_refs=refs)
    except ContentProblem as problem:
        db.rollback()
        return _render_form(None, status=422, errors=problem.errors, values=request.form)
    db.commit()
    return redirect(url_for("press_staff_responses.detail", response_id=response.id, done="create"), 303)


def _lookup() -> workflow.PolicyLookup:
    engine, alias = content_alias(current_app)
    return workflow.index_lookup(engine, alias)


@staff_bp.get("/<int:response_id>")
@requires(Permission.READ_RECORDS)
def detail(response_id: int) -> tuple[str, int]:
    return _render_form(_load(response_id))


@staff_bp.post("/<int:response_id>")
@requires(Permission.PRESS)
def update(response_id: int) -> Any:
    db, staff = _db(), _staff()
    response = _load(response_id)
    try:
        changes = {name: getattr(_fields_from(request.form), name) for name in workflow.FIELD_NAMES}
        topic_ids = _form_ints(request.form.getlist("topic_ids"), "topic_ids")
        policy_ids = _policy_ids(request.form)
        refs = workflow.check_policies(_lookup(), policy_ids) if policy_ids else []
        workflow.update_response(db, staff, response, changes, topic_ids=topic_ids, policy_refs=refs)
    except ContentProblem as problem:
        db.rollback()
        return _render_form(_load(response_id), status=422, errors=problem.errors, values=request.form)
    except TransitionNotAllowed as refused:
        db.rollback()
        return _render_form(_load(response_id), status=409, conflict=_conflict_message(refused))
    db.commit()
    return redirect(url_for("press_staff_responses.detail", response_id=response_id, done="update"), 303)


def _action_view(action: str) -> Callable[[int], Any]:
    def view(response_id: int) -> Any:
        db, staff = _db(), _staff()
        response = _load(response_id)
        try:
            workflow.transition(db, staff, response, action, (request.form.get("comment") or "")[:2000])
        except ContentProblem as problem:
            db.rollback()
            return _render_form(_load(response_id), status=422, errors=problem.errors)
        except TransitionNotAllowed as refused:
            db.rollback()
            return _render_form(_load(response_id), status=409, conflict=_conflict_message(refused))
        except NotPermitted:
            db.rollback()
            raise
        db.commit()
        return redirect(url_for("press_staff_responses.detail", response_id=response_id, done=action), 303)

    view.__name__ = view.__qualname__ = f"action_{action}"
    return view


for _action in ACTIONS:
    staff_bp.add_url_rule(f"/<int:response_id>/{_action}", view_func=requires(ACTION_PERMISSION[_action])(
        _action_view(_action)), methods=["POST"])
