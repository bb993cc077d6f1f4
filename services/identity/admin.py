"""Admin pages (departments, users, roles, locks, second-factor resets) and the auditors' log view."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from services.audit import AuditResult
from services.auth import current_staff, requires, revocations
from services.db import get_session, utcnow
from services.identity.accounts import (
    AccountError,
    assign_role,
    create_department,
    create_user,
    is_locked,
    reset_totp,
    set_password,
    unlock,
)
from services.identity.models import AuditEntry, Department, RoleAssignment, RolePolicy, User
from services.identity.signin import audit, settings
from services.permissions import ROLE_LABELS, Permission, Role

bp = Blueprint("identity_admin", __name__, url_prefix="/staff", template_folder="templates")

DEPARTMENT_KINDS = {"bureau": "厅/局", "division": "处室", "unit": "直属单位"}
AUDIT_PAGE_SIZE = 50


def _acting_user() -> User | None:
    staff = current_staff()
    return get_session("identity").get(User, staff.user_id) if staff else None


def _record_user_change(action: str, user_id: int, **detail: Any) -> None:
    """Audit a change to an account and end its sessions everywhere, so it takes effect at once."""
    _record(action, "user", user_id, **detail)
    revocations().revoke_user(user_id)


def _record(action: str, object_type: str, object_id: Any, **detail: Any) -> None:
    user = _acting_user()
    audit(get_session("identity"), action, AuditResult.SUCCESS, user, object_type=object_type,
          object_id=str(object_id), **detail)


def _departments() -> list[Department]:
    return list(get_session("identity").scalars(select(Department).order_by(Department.code)))


# -- users -------------------------------------------------------------------------


@bp.get("/admin/users")
@requires(Permission.MANAGE_IDENTITY)
def users(error: str | None = None, status: int = 200) -> Any:
    db = get_session("identity")
    listing = db.scalars(
        select(User).options(selectinload(User.roles).selectinload(RoleAssignment.department)).order_by(User.username)
    ).all()
    return render_template(
        "identity/admin_users.html", users=listing, role_labels=ROLE_LABELS, is_locked=is_locked, error=error,
    ), status


@bp.post("/admin/users")
@requires(Permission.MANAGE_IDENTITY)
def add_user() -> Any:
    db = get_session("identity")
    try:
        user = create_user(
            db, settings(), username=request.form.get("username", "").strip(),
            display_name=request.form.get("display_name", "")[:100], password=request.form.get("password", ""),
            email=request.form.get("email", "").strip()[:200] or None,
        )
    except AccountError as error:
        db.rollback()
        return users(error=str(error), status=400)
    _record("user.create", "user", user.id, username=user.username)
    db.commit()
    return redirect(f"/staff/admin/users/{user.id}")


def _user_or_404(user_id: int) -> User:
    user = get_session("identity").get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.get("/admin/users/<int:user_id>")
@requires(Permission.MANAGE_IDENTITY)
def user_detail(user_id: int, error: str | None = None, status: int = 200) -> Any:
    return render_template(
        "identity/admin_user.html", user=_user_or_404(user_id), departments=_departments(),
        roles=list(Role), role_labels=ROLE_LABELS, is_locked=is_locked, error=error,
    ), status


@bp.post("/admin/users/<int:user_id>/roles")
@requires(Permission.MANAGE_IDENTITY)
def add_role(user_id: int) -> Any:
    db = get_session("identity")
    user = _user_or_404(user_id)
    try:
        role = Role(request.form.get("role", ""))
    except ValueError:
        return user_detail(user_id, error="请选择角色。", status=400)
    department = db.scalar(select(Department).where(Department.code == request.form.get("department", "")))
    if department is None:
        return user_detail(user_id, error="请选择部门。", status=400)
    assign_role(db, user, role, department)
    _record_user_change("role.grant", user.id, role=role.value, department=department.code)
    db.commit()
    return redirect(f"/staff/admin/users/{user.id}")


@bp.post("/admin/users/<int:user_id>/roles/<int:assignment_id>/delete")
@requires(Permission.MANAGE_IDENTITY)
def remove_role(user_id: int, assignment_id: int) -> Any:
    db = get_session("identity")
    assignment = db.get(RoleAssignment, assignment_id)
    if assignment is None or assignment.user_id != user_id:
        abort(404)
    detail = {"role": assignment.role, "department": assignment.department.code}
    db.delete(assignment)
    _record_user_change("role.revoke", user_id, **detail)
    db.commit()
    return redirect(f"/staff/admin/users/{user_id}")


def _change_user(user_id: int, action: str, change: Callable[[Session, User], None], *, revoke: bool) -> Any:
    db = get_session("identity")
    user = _user_or_404(user_id)
    change(db, user)
    if revoke:
        _record_user_change(action, user.id)
    else:
        _record(action, "user", user.id)
    db.commit()
    return redirect(f"/staff/admin/users/{user.id}")


@bp.post("/admin/users/<int:user_id>/unlock")
@requires(Permission.MANAGE_IDENTITY)
def unlock_user(user_id: int) -> Any:
    return _change_user(user_id, "user.unlock", unlock, revoke=False)


@bp.post("/admin/users/<int:user_id>/reset-totp")
@requires(Permission.MANAGE_IDENTITY)
def reset_second_factor(user_id: int) -> Any:
    return _change_user(user_id, "totp.reset", reset_totp, revoke=True)


@bp.post("/admin/users/<int:user_id>/password")
@requires(Permission.MANAGE_IDENTITY)
def reset_password(user_id: int) -> Any:
    db = get_session("identity")
    user = _user_or_404(user_id)
    try:
        set_password(db, settings(), user, request.form.get("password", ""), by_admin=True)
    except AccountError as error:
        db.rollback()
        return user_detail(user_id, error=str(error), status=400)
    _record_user_change("password.reset", user.id)
    db.commit()
    return redirect(f"/staff/admin/users/{user.id}")


@bp.post("/admin/users/<int:user_id>/active")
@requires(Permission.MANAGE_IDENTITY)
def set_active(user_id: int) -> Any:
    db = get_session("identity")
    user = _user_or_404(user_id)
    staff = current_staff()
    if staff is not None and staff.user_id == user.id:
        return user_detail(user_id, error="不能停用自己的账户。", status=400)
    user.active = request.form.get("active") == "1"
    _record_user_change("user.enable" if user.active else "user.disable", user.id)
    db.commit()
    return redirect(f"/staff/admin/users/{user.id}")


# -- departments and role policies -------------------------------------------------


@bp.get("/admin/departments")
@requires(Permission.MANAGE_IDENTITY)
def departments(error: str | None = None, status: int = 200) -> Any:
    return render_template(
        "identity/admin_departments.html", departments=_departments(), kinds=DEPARTMENT_KINDS, error=error
    ), status


@bp.post("/admin/departments")
@requires(Permission.MANAGE_IDENTITY)
def add_department() -> Any:
    db = get_session("identity")
    parent_code = request.form.get("parent", "")
    parent = db.scalar(select(Department).where(Department.code == parent_code)) if parent_code else None
    kind = request.form.get("kind", "")
    if kind not in DEPARTMENT_KINDS:
        return departments(error="请选择部门类型。", status=400)
    if parent_code and parent is None:
        return departments(error="上级部门不存在。", status=400)
    try:
        department = create_department(
            db, request.form.get("code", "").strip(), request.form.get("name", "")[:100], kind, parent
        )
    except AccountError as error:
        db.rollback()
        return departments(error=str(error), status=400)
    _record("department.create", "department", department.code, name=department.name)
    db.commit()
    return redirect("/staff/admin/departments")


@bp.route("/admin/policies", methods=["GET", "POST"])
@requires(Permission.MANAGE_IDENTITY)
def role_policies() -> Any:
    db = get_session("identity")
    policies = {policy.role: policy for policy in db.scalars(select(RolePolicy))}
    if request.method == "POST":
        required = set(request.form.getlist("mfa_required"))
        for role in Role:
            policy = policies.get(role.value) or RolePolicy(role=role.value)
            policy.mfa_required = role.value in required
            db.add(policy)
        _record("policy.mfa", "role_policy", "all", required=sorted(required))
        db.commit()
        return redirect("/staff/admin/policies")
    required_roles = {role for role, policy in policies.items() if policy.mfa_required}
    return render_template(
        "identity/admin_policies.html", roles=list(Role), role_labels=ROLE_LABELS, required=required_roles
    )


# -- audit log ---------------------------------------------------------------------


def _audit_query() -> tuple[Any, dict[str, str]]:
    filters = {name: request.args.get(name, "").strip()[:64] for name in ("username", "action", "date_from", "date_to")}
    query = select(AuditEntry)
    if filters["username"]:
        query = query.where(AuditEntry.username == filters["username"])
    if filters["action"]:
        query = query.where(AuditEntry.action == filters["action"])
    for name, bound in (("date_from", time.min), ("date_to", time.max)):
        if filters[name]:
            try:
                day = datetime.strptime(filters[name], "%Y-%m-%d").date()
            except ValueError:
                abort(400, description="日期格式应为 YYYY-MM-DD")
            moment = datetime.combine(day, bound, tzinfo=UTC)
            query = query.where(AuditEntry.at >= moment if name == "date_from" else AuditEntry.at <= moment)
    return query, filters


@bp.get("/audit")
@requires(Permission.VIEW_AUDIT)
def audit_log() -> str:
    db = get_session("identity")
    query, filters = _audit_query()
    page = max(1, min(int(request.args.get("page", "1")) if request.args.get("page", "1").isdigit() else 1, 10_000))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    offset = (page - 1) * AUDIT_PAGE_SIZE
    entries = db.scalars(query.order_by(AuditEntry.id.desc()).limit(AUDIT_PAGE_SIZE).offset(offset))
    return render_template(
        "identity/audit.html", entries=list(entries), filters=filters, page=page, total=total,
        pages=max(1, -(-total // AUDIT_PAGE_SIZE)), retention_days=settings().audit_retention_days,
    )


@bp.get("/audit/export.csv")
@requires(Permission.EXPORT_AUDIT)
def audit_export() -> Response:
    db = get_session("identity")
    query, _filters = _audit_query()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "时间(UTC)", "服务", "用户", "部门", "操作", "对象类型", "对象", "结果", "来源地址", "哈希"])
    for entry in db.scalars(query.order_by(AuditEntry.id)):
        writer.writerow([
            entry.id, entry.at.isoformat(), entry.service, entry.username or "", entry.department or "", entry.action,
            entry.object_type or "", entry.object_id or "", entry.result, entry.source_address or "", entry.entry_hash,
        ])
    _record("audit.export", "audit_log", "csv")
    db.commit()
    stamp = utcnow().strftime("%Y%m%d%H%M%S")
    return Response(
        "\ufeff" + buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=audit-{stamp}.csv"},
    )
