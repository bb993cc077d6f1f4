"""Policies and interpretations: states, the allowed transitions, and the rules that change them.

The API, the pages and the CLI all call these functions. Each checks the actor's
permission in the record's department, applies one transition from the table, keeps
an immutable snapshot of what is published, and writes the outbox events (search
index, both ends of a changed link, audit) in the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from interpret.models import (
    ContentVersion,
    IndexNumberSerial,
    Interpretation,
    OutboxEvent,
    Policy,
    RelatedInterpretation,
)
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.db import utcnow
from services.outbox import emit
from services.permissions import Permission, require
from services.text.richtext import has_markup_beyond_allowed, plain_text, sanitise_html
from services.workflow import REVIEW_WORKFLOW, ReviewState, StateMachine
from services.workflow import ContentProblem as ContentProblem
from services.workflow import problem as problem

ContentState = ReviewState
"""The states of policies and interpretations: the shared review workflow's (services.workflow)."""

S = ContentState
CONTENT_WORKFLOW: StateMachine[ContentState] = REVIEW_WORKFLOW
"""The one table of allowed transitions, for policies and interpretations alike (shared with the press
office's responses, see ``services.workflow.REVIEW_WORKFLOW``)."""

ACTION_PERMISSION: dict[str, Permission] = {
    "submit": Permission.DRAFT,
    "revise": Permission.DRAFT,
    "return": Permission.REVIEW,
    "approve": Permission.REVIEW,
    "publish": Permission.PUBLISH,
    "withdraw": Permission.PUBLISH,
}

LEVELS = ("国家", "省", "本级", "其他")
HIGHER_LEVELS = frozenset({"国家", "省"})
VALIDITIES = ("有效", "失效", "废止", "已修订")
FORMS = ("文字解读", "图解", "视频", "音频", "专家解读", "媒体解读", "问答式解读", "新闻发布会")
INTERPRETER_KINDS = ("第一解读人", "专家", "处室")
DOCUMENT_NUMBER = re.compile(r"^(?P<issuer>[\u4e00-\u9fa5]{1,12})〔(?P<year>\d{4})〕(?P<serial>\d{1,5})号$")
DOCUMENT_NUMBER_IN_TEXT = re.compile(r"[\u4e00-\u9fa5]{1,12}[〔\[［(（]\d{4}[〕\]］)）]\d{1,5}号")

def normalise_document_number(text: str) -> str:
    """Full-width brackets as the standard writes them: 皖科政[2017]12号 → 皖科政〔2017〕12号."""
    cleaned = text.strip().replace(" ", "")
    for bracket in "[［(（":
        cleaned = cleaned.replace(bracket, "〔")
    for bracket in "]］)）":
        cleaned = cleaned.replace(bracket, "〕")
    return cleaned


def validate_document_number(text: str) -> str:
    number = normalise_document_number(text)
    found = DOCUMENT_NUMBER.match(number)
    if not found or not 1949 <= int(found.group("year")) <= utcnow().year + 1:
        raise problem("document_number", "文号格式应为“机关代字〔年份〕序号号”，如 皖科政〔2017〕12号")
    return number


def extract_document_number(text: str) -> str | None:
    """The first 文号 in a text (imports: official documents carry it after the title)."""
    found = DOCUMENT_NUMBER_IN_TEXT.search(text[:400])
    return normalise_document_number(found.group(0)) if found else None


# -- creation and editing -----------------------------------------------------------


def next_index_number(session: Session, department: str, when: date) -> str:
    month = when.strftime("%Y%m")
    locked = session.execute(
        update(IndexNumberSerial)
        .where(IndexNumberSerial.department == department, IndexNumberSerial.month == month)
        .values(last_serial=IndexNumberSerial.last_serial + 1)
    )
    if locked.rowcount == 0:  # type: ignore[attr-defined]
        # The department's first policy of the month. Two of them can race: the loser's insert fails on
        # the key once the winner commits, and it takes the next serial of the winner's row instead.
        try:
            with session.begin_nested():
                session.add(IndexNumberSerial(department=department, month=month, last_serial=1))
        except IntegrityError:
            session.execute(
                update(IndexNumberSerial)
                .where(IndexNumberSerial.department == department, IndexNumberSerial.month == month)
                .values(last_serial=IndexNumberSerial.last_serial + 1)
            )
    serial = session.scalar(
        select(IndexNumberSerial.last_serial).where(
            IndexNumberSerial.department == department, IndexNumberSerial.month == month
        )
    )
    return f"{department}/{month}-{serial:05d}"


@dataclass
class PolicyFields:
    title: str
    issuer: str
    level: str
    body: str
    department: str
    document_number: str | None = None
    category_group: str | None = None
    topic: str | None = None
    source: str | None = None
    written_on: date | None = None
    validity: str = "有效"
    replaced_by_id: int | None = None
    original_url: str | None = None


def _check_policy_fields(session: Session, fields: PolicyFields, policy_id: int | None) -> PolicyFields:
    errors: dict[str, list[str]] = {}
    if not fields.title.strip():
        errors.setdefault("title", []).append("请填写名称")
    if fields.level not in LEVELS:
        errors.setdefault("level", []).append(f"层级应为 {'、'.join(LEVELS)} 之一")
    if fields.validity not in VALIDITIES:
        errors.setdefault("validity", []).append(f"有效性应为 {'、'.join(VALIDITIES)} 之一")
    if fields.validity == "已修订" and fields.replaced_by_id is None:
        errors.setdefault("replaced_by_id", []).append("已修订的文件须指明修订后的文件")
    if fields.body and has_markup_beyond_allowed(fields.body):
        errors.setdefault("body", []).append("正文含有不允许的标记（如脚本），请删除后再保存")
    if fields.document_number:
        try:
            fields.document_number = validate_document_number(fields.document_number)
        except ContentProblem as bad:
            errors.update(bad.errors)
        else:
            clash = session.scalar(
                select(Policy.id).where(
                    Policy.issuer == fields.issuer, Policy.document_number == fields.document_number,
                    Policy.id != (policy_id or 0),
                )
            )
            if clash is not None:
                errors.setdefault("document_number", []).append("该发布机构已有相同文号的文件")
    if fields.replaced_by_id is not None and session.get(Policy, fields.replaced_by_id) is None:
        errors.setdefault("replaced_by_id", []).append("修订后的文件不存在")
    if errors:
        raise ContentProblem(errors)
    return fields


def create_policy(session: Session, actor: StaffIdentity | None, fields: PolicyFields) -> Policy:
    """A draft policy with its 索引号; ``actor`` None only for imports run by the system itself."""
    if actor is not None:
        require(actor.grants, Permission.DRAFT, fields.department)
    _check_policy_fields(session, fields, None)
    policy = Policy(
        **{name: getattr(fields, name) for name in PolicyFields.__dataclass_fields__},
        index_number=next_index_number(session, fields.department, utcnow().date()),
        state=S.DRAFT, version=1, index_version=0,
        author_id=actor.user_id if actor else None, author_name=actor.username if actor else "system",
    )
    session.add(policy)
    session.flush()
    _audit(session, actor, "policy.create", "policy", policy.id)
    return policy


def _begin_edit(session: Session, actor: StaffIdentity, item: Policy | Interpretation) -> None:
    """Only drafts are edited; published or withdrawn content is first revised into a new draft version."""
    require(actor.grants, Permission.DRAFT, item.department)
    if item.state in (S.PUBLISHED, S.WITHDRAWN):
        _transition(session, actor, item, "revise")
    if item.state != S.DRAFT:
        raise problem("state", "只有草稿可以修改；已提交的请先退回")


def update_policy(session: Session, actor: StaffIdentity, policy: Policy, changes: dict[str, Any]) -> Policy:
    """Edit a draft; a published or withdrawn policy is revised into a new draft first."""
    _begin_edit(session, actor, policy)
    names = PolicyFields.__dataclass_fields__
    fields = PolicyFields(**{name: changes.get(name, getattr(policy, name)) for name in names})
    fields.department = policy.department
    _check_policy_fields(session, fields, policy.id)
    for name in PolicyFields.__dataclass_fields__:
        setattr(policy, name, getattr(fields, name))
    session.flush()
    _audit(session, actor, "policy.update", "policy", policy.id)
    return policy


@dataclass
class InterpretationFields:
    title: str
    form: str
    interpreter_kind: str
    department: str
    body: str = ""
    interpreter_name: str | None = None
    summary: str | None = None
    key_points: list[str] | None = None
    text_alternative: str | None = None
    transcript: str | None = None
    media_url: str | None = None


def _check_interpretation_fields(fields: InterpretationFields) -> InterpretationFields:
    errors: dict[str, list[str]] = {}
    if not fields.title.strip():
        errors.setdefault("title", []).append("请填写标题")
    if fields.form not in FORMS:
        errors.setdefault("form", []).append(f"形式应为 {'、'.join(FORMS)} 之一")
    if fields.interpreter_kind not in INTERPRETER_KINDS:
        errors.setdefault("interpreter_kind", []).append(f"解读人应为 {'、'.join(INTERPRETER_KINDS)} 之一")
    if fields.body and has_markup_beyond_allowed(fields.body):
        errors.setdefault("body", []).append("正文含有不允许的标记（如脚本），请删除后再保存")
    if errors:
        raise ContentProblem(errors)
    return fields


def _accessibility_problems(interpretation: Interpretation) -> dict[str, list[str]]:
    """What must be in place before publication so that everyone can read it."""
    errors: dict[str, list[str]] = {}
    if interpretation.form == "图解" and not (interpretation.text_alternative or "").strip():
        errors["text_alternative"] = ["图解须提供文字说明（供读屏软件和搜索使用）"]
    if interpretation.form in ("视频", "音频", "新闻发布会") and not (interpretation.transcript or "").strip():
        errors["transcript"] = ["视频、音频须提供文字实录"]
    if interpretation.form == "文字解读" and not interpretation.body.strip():
        errors["body"] = ["请填写解读正文"]
    return errors


def create_interpretation(session: Session, actor: StaffIdentity, fields: InterpretationFields) -> Interpretation:
    require(actor.grants, Permission.DRAFT, fields.department)
    _check_interpretation_fields(fields)
    values = {name: getattr(fields, name) for name in InterpretationFields.__dataclass_fields__}
    values["key_points"] = fields.key_points or []
    interpretation = Interpretation(
        **values, state=S.DRAFT, version=1, index_version=0, author_id=actor.user_id, author_name=actor.username
    )
    session.add(interpretation)
    session.flush()
    _audit(session, actor, "interpretation.create", "interpretation", interpretation.id)
    return interpretation


def update_interpretation(
    session: Session, actor: StaffIdentity, interpretation: Interpretation, changes: dict[str, Any]
) -> Interpretation:
    _begin_edit(session, actor, interpretation)
    names = InterpretationFields.__dataclass_fields__
    fields = InterpretationFields(**{name: changes.get(name, getattr(interpretation, name)) for name in names})
    fields.department = interpretation.department
    _check_interpretation_fields(fields)
    for name in names:
        setattr(interpretation, name, getattr(fields, name) if name != "key_points" else (fields.key_points or []))
    session.flush()
    _audit(session, actor, "interpretation.update", "interpretation", interpretation.id)
    return interpretation


# -- links ---------------------------------------------------------------------------


def link_policy(session: Session, actor: StaffIdentity, interpretation: Interpretation, policy: Policy) -> None:
    """Link an interpretation to a policy it explains; both ends follow in search."""
    require(actor.grants, Permission.DRAFT, interpretation.department)
    if policy in interpretation.policies:
        return
    interpretation.policies.append(policy)
    session.flush()
    _links_changed(session, actor, interpretation, policy, "link")


def unlink_policy(session: Session, actor: StaffIdentity, interpretation: Interpretation, policy: Policy) -> None:
    require(actor.grants, Permission.DRAFT, interpretation.department)
    if policy not in interpretation.policies:
        return
    if interpretation.state == S.PUBLISHED and len(interpretation.policies) == 1:
        raise problem("policies", "已发布的解读至少要关联一个政策文件")
    interpretation.policies.remove(policy)
    session.flush()
    _links_changed(session, actor, interpretation, policy, "unlink")


def relate_interpretations(
    session: Session, actor: StaffIdentity, first: Interpretation, second: Interpretation
) -> None:
    require(actor.grants, Permission.DRAFT, first.department)
    if first.id == second.id:
        raise problem("related_id", "不能关联自身")
    for a, b in ((first.id, second.id), (second.id, first.id)):
        if session.get(RelatedInterpretation, (a, b)) is None:
            session.add(RelatedInterpretation(interpretation_id=a, related_id=b))
    session.flush()
    for item in (first, second):
        if item.state == S.PUBLISHED:
            _emit_index(session, item)


def related_interpretations(session: Session, interpretation: Interpretation) -> list[Interpretation]:
    return list(
        session.scalars(
            select(Interpretation)
            .join(RelatedInterpretation, RelatedInterpretation.related_id == Interpretation.id)
            .where(RelatedInterpretation.interpretation_id == interpretation.id)
            .order_by(Interpretation.id)
        )
    )


def _links_changed(
    session: Session, actor: StaffIdentity, interpretation: Interpretation, policy: Policy, change: str
) -> None:
    for item in (interpretation, policy):
        if item.state == S.PUBLISHED:
            _emit_index(session, item)
    _audit(session, actor, f"interpretation.{change}", "interpretation", interpretation.id, policy_id=policy.id)


# -- transitions -----------------------------------------------------------------------


def _transition(session: Session, actor: StaffIdentity | None, item: Policy | Interpretation, action: str) -> None:
    target = CONTENT_WORKFLOW.target(ContentState(item.state), action)
    if actor is not None:
        require(actor.grants, ACTION_PERMISSION[action], item.department)
        if action == "approve" and item.author_id == actor.user_id:
            raise problem("approver", "审核人不能审核自己起草的内容")
    now = utcnow()
    if action == "submit":
        item.submitted_at = now
    elif action == "approve":
        item.approved_at = now
        item.approver_id = actor.user_id if actor else None
    elif action == "return":
        item.scheduled_at = None
    elif action == "revise":
        item.version += 1
    item.state = target
    session.flush()
    kind = "policy" if isinstance(item, Policy) else "interpretation"
    _audit(session, actor, f"{kind}.{action}", kind, item.id)


def submit(session: Session, actor: StaffIdentity, item: Policy | Interpretation) -> None:
    _transition(session, actor, item, "submit")


def return_to_draft(session: Session, actor: StaffIdentity, item: Policy | Interpretation) -> None:
    _transition(session, actor, item, "return")


def approve(session: Session, actor: StaffIdentity, item: Policy | Interpretation) -> None:
    _transition(session, actor, item, "approve")


def publish(
    session: Session,
    actor: StaffIdentity | None,
    item: Policy | Interpretation,
    at: datetime | None = None,
    *,
    as_of: datetime | None = None,
) -> None:
    """Publish now, or schedule for ``at`` (the beat task publishes it when the time comes).

    ``as_of`` records an earlier publication date, for imports of what was published elsewhere.
    """
    if isinstance(item, Interpretation):
        errors = _accessibility_problems(item)
        if not item.policies:
            errors["policies"] = ["发布解读前须关联至少一个政策文件"]
        if errors:
            raise ContentProblem(errors)
    now = utcnow()
    if at is not None and at > now:
        if actor is not None:
            require(actor.grants, Permission.PUBLISH, item.department)
        CONTENT_WORKFLOW.target(ContentState(item.state), "publish")
        item.scheduled_at = at
        session.flush()
        kind = "policy" if isinstance(item, Policy) else "interpretation"
        _audit(session, actor, f"{kind}.schedule", kind, item.id, scheduled_at=at.isoformat())
        return
    _transition(session, actor, item, "publish")
    published_at = as_of or now
    item.published_at = published_at
    item.first_published_at = item.first_published_at or published_at
    item.scheduled_at = None
    session.flush()
    session.add(ContentVersion(
        content_type="policy" if isinstance(item, Policy) else "interpretation", content_id=item.id,
        version=item.version, snapshot=_snapshot(item), published_at=published_at,
        published_by=actor.username if actor else "scheduler",
    ))
    _emit_index(session, item)
    # The other ends of its links list it now.
    others: list[Policy | Interpretation] = list(item.interpretations if isinstance(item, Policy) else item.policies)
    for other in others:
        if other.state == S.PUBLISHED:
            _emit_index(session, other)


def withdraw(session: Session, actor: StaffIdentity, item: Policy | Interpretation) -> None:
    _transition(session, actor, item, "withdraw")
    item.withdrawn_at = utcnow()
    _emit_removal(session, item)
    others: list[Policy | Interpretation] = list(item.interpretations if isinstance(item, Policy) else item.policies)
    for other in others:
        if other.state == S.PUBLISHED:
            _emit_index(session, other)


def import_published_policy(session: Session, fields: PolicyFields, published_at: datetime) -> Policy:
    """A policy that was already published elsewhere (bulk import, demo data), with its real date."""
    policy = create_policy(session, None, fields)
    for action in ("submit", "approve"):
        _transition(session, None, policy, action)
    publish(session, None, policy, as_of=published_at)
    return policy


def publish_due(session: Session) -> list[tuple[str, int]]:
    """Publish everything approved whose scheduled time has come (the beat task calls this)."""
    now = utcnow()
    published: list[tuple[str, int]] = []
    models: tuple[type[Policy] | type[Interpretation], ...] = (Policy, Interpretation)
    for model in models:
        due: list[Policy] | list[Interpretation] = session.scalars(  # type: ignore[assignment]
            select(model).where(model.state == S.APPROVED, model.scheduled_at.is_not(None), model.scheduled_at <= now)
            .order_by(model.scheduled_at)
        ).all()
        for item in due:
            publish(session, None, item)
            published.append((model.__tablename__, item.id))
    return published


# -- packages: a policy and its interpretations together (同步审签、同步发布) -------------------


def package_items(policy: Policy) -> list[Policy | Interpretation]:
    items: list[Policy | Interpretation] = [policy]
    items.extend(i for i in policy.interpretations if i.department == policy.department)
    return items


def _check_package(policy: Policy) -> list[Policy | Interpretation]:
    if policy.level != "本级":
        raise problem("level", "只有本级政策文件与其解读可以一并报送和发布")
    items = package_items(policy)
    if len(items) == 1:
        raise problem("interpretations", "本级政策文件须与其解读同步报送：请先起草并关联解读")
    return items


def submit_package(session: Session, actor: StaffIdentity, policy: Policy) -> None:
    for item in _check_package(policy):
        submit(session, actor, item)


def approve_package(session: Session, actor: StaffIdentity, policy: Policy) -> None:
    for item in _check_package(policy):
        approve(session, actor, item)


def publish_package(session: Session, actor: StaffIdentity, policy: Policy, at: datetime | None = None) -> None:
    items = _check_package(policy)
    for item in items:
        if isinstance(item, Interpretation) and (errors := _accessibility_problems(item)):
            raise ContentProblem(errors)
    for item in items:
        publish(session, actor, item, at)


# -- what the index and the public pages see ------------------------------------------------


def _snapshot(item: Policy | Interpretation) -> dict[str, Any]:
    return policy_document(item) if isinstance(item, Policy) else interpretation_document(item)


def policy_document(policy: Policy) -> dict[str, Any]:
    """The public form of a policy, as search and the public pages show it."""
    published = [i for i in policy.interpretations if i.state == S.PUBLISHED]
    text = plain_text(policy.body)
    return {
        "id": f"policy-{policy.id}",
        "doc_type": "policy",
        "title": policy.title,
        "summary": text[:160],
        # The 文号 heads the searchable text, as it heads the printed document (people search by it).
        "body": f"{policy.document_number}\n{text}" if policy.document_number else text,
        "body_html": sanitise_html(policy.body),
        "url": f"/interpret/policies/{policy.id}",
        "published_at": policy.published_at.isoformat() if policy.published_at else None,
        "department": policy.department,
        "level": policy.level,
        "validity": policy.validity,
        "category": policy.topic,
        "document_number": policy.document_number,
        "written_on": policy.written_on.isoformat() if policy.written_on else None,
        "index_number": policy.index_number,
        "issuer": policy.issuer,
        "category_group": policy.category_group,
        "source": policy.source,
        "original_url": policy.original_url,
        "replaced_by": (
            {"id": policy.replaced_by.id, "title": policy.replaced_by.title,
             "url": f"/interpret/policies/{policy.replaced_by.id}"} if policy.replaced_by else None
        ),
        "related": [
            {"id": i.id, "title": i.title, "url": f"/interpret/interpretations/{i.id}", "form": i.form}
            for i in published
        ],
        "attachments": [
            {"id": a.id, "filename": a.filename, "size": a.size, "content_type": a.content_type}
            for a in policy.attachments
        ],
    }


def interpretation_document(interpretation: Interpretation) -> dict[str, Any]:
    # Search reads the text an infographic or a video says, not only its title.
    searchable = "\n".join(
        part for part in (plain_text(interpretation.body), interpretation.text_alternative, interpretation.transcript)
        if part
    )
    published_policies = [p for p in interpretation.policies if p.state == S.PUBLISHED]
    higher = any(p.level in HIGHER_LEVELS for p in interpretation.policies)
    return {
        "id": f"interpretation-{interpretation.id}",
        "doc_type": "interpretation",
        "title": interpretation.title,
        "summary": interpretation.summary or searchable[:160],
        "body": searchable,
        "body_html": sanitise_html(interpretation.body),
        "url": f"/interpret/interpretations/{interpretation.id}",
        "published_at": interpretation.published_at.isoformat() if interpretation.published_at else None,
        "department": interpretation.department,
        "form": interpretation.form,
        "level": "上级" if higher else "本级",
        "interpreter_kind": interpretation.interpreter_kind,
        "interpreter_name": interpretation.interpreter_name,
        "key_points": list(interpretation.key_points or []),
        "text_alternative": interpretation.text_alternative,
        "transcript": interpretation.transcript,
        "media_url": interpretation.media_url,
        "related": [
            {"id": p.id, "title": p.title, "url": f"/interpret/policies/{p.id}", "document_number": p.document_number}
            for p in published_policies
        ],
        "related_interpretations": [
            {"id": i.id, "title": i.title, "url": f"/interpret/interpretations/{i.id}", "form": i.form}
            for i in interpretation.related_items
            if i.state == S.PUBLISHED
        ],
    }


def _emit_index(session: Session, item: Policy | Interpretation) -> None:
    item.index_version += 1
    session.flush()
    kind = "policy" if isinstance(item, Policy) else "interpretation"
    emit(session, OutboxEvent, f"interpret.{kind}.published", aggregate_type=kind, aggregate_id=item.id,
         version=item.index_version, payload={"document": _snapshot(item)})


def _emit_removal(session: Session, item: Policy | Interpretation) -> None:
    item.index_version += 1
    session.flush()
    kind = "policy" if isinstance(item, Policy) else "interpretation"
    emit(session, OutboxEvent, f"interpret.{kind}.withdrawn", aggregate_type=kind, aggregate_id=item.id,
         version=item.index_version, payload={"doc_type": kind})


def _audit(session: Session, actor: StaffIdentity | None, action: str, object_type: str, object_id: int,
           **detail: Any) -> None:
    system = {} if actor is not None else {"username": "system"}
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "interpret", action, AuditResult.SUCCESS, object_type=object_type, object_id=str(object_id),
        detail=detail or None, **system,
    ))
