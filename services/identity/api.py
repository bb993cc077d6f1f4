"""The identity API: bearer tokens for staff, who am I, the staff of a department."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.audit import AuditResult
from services.auth import current_staff, issue_token, public, requires, signed_in
from services.db import get_session
from services.errors import api_abort
from services.identity.accounts import SignInOutcome, build_identity, complete_sign_in, mfa_required
from services.identity.models import Department, RoleAssignment, User
from services.identity.schemas import DepartmentStaffSchema, MeSchema, TokenRequestSchema, TokenSchema
from services.identity.signin import audit, client_address, password_step, second_factor_step, settings
from services.permissions import Permission

auth_blp = Blueprint("auth_api", __name__, url_prefix="/api/auth", description="工作人员令牌 Staff tokens")
identity_blp = Blueprint("identity_api", __name__, url_prefix="/api/identity", description="部门与人员 Departments")


@auth_blp.post("/token")
@auth_blp.arguments(TokenRequestSchema)
@auth_blp.response(200, TokenSchema)
@auth_blp.alt_response(401, description="wrong credentials or second factor")
@auth_blp.alt_response(423, description="account locked")
@public
def create_token(body: dict[str, Any]) -> dict[str, Any]:
    """Exchange a username, password and (when enrolled) a TOTP code for a bearer token."""
    db = get_session("identity")
    step = password_step(db, body["username"], body["password"])
    db.commit()
    if step.outcome == SignInOutcome.LOCKED:
        api_abort(423, message="账户已锁定 / account locked")
    if step.outcome != SignInOutcome.OK or step.user is None:
        api_abort(401, message="用户名或密码错误 / wrong username or password")
    user: User = step.user
    if user.totp_enabled:
        if not body.get("otp"):
            api_abort(401, message="需要双因素验证码 / second factor required", errors={"json": {"otp": ["required"]}})
        outcome = second_factor_step(db, user, body["otp"])
        db.commit()
        if outcome == "locked":
            api_abort(423, message="账户已锁定 / account locked")
        if outcome != "ok":
            api_abort(401, message="验证码不正确 / wrong second factor", errors={"json": {"otp": ["not valid"]}})
    elif mfa_required(db, user):
        api_abort(403, message="请先在工作人员控制台设置双因素验证 / enrol a second factor in the console first")
    if user.must_change_password:
        api_abort(403, message="请先在工作人员控制台修改密码 / change the password in the console first")
    complete_sign_in(db, user, client_address())
    audit(db, "token.issue", AuditResult.SUCCESS, user)
    identity = build_identity(db, user, "api")
    db.commit()
    minutes = settings().api_token_minutes
    return {"token": issue_token(settings(), identity), "token_type": "Bearer", "expires_in": minutes * 60}


@auth_blp.get("/me")
@auth_blp.response(200, MeSchema)
@signed_in
def me() -> dict[str, Any]:
    """The identity the bearer token carries."""
    staff = current_staff()
    assert staff is not None
    return {
        "user_id": staff.user_id,
        "username": staff.username,
        "display_name": staff.display_name,
        "grants": [{"role": grant.role.value, "department": grant.department} for grant in staff.grants],
    }


@identity_blp.get("/departments/<code>/staff")
@identity_blp.response(200, DepartmentStaffSchema)
@requires(Permission.VIEW_STAFF, department_arg="code")
def department_staff(code: str) -> dict[str, Any]:
    """Who works in a department, with their roles there."""
    db = get_session("identity")
    department = db.scalar(select(Department).where(Department.code == code))
    if department is None:
        api_abort(404, "部门不存在 / no such department")
    rows = db.execute(
        select(User.username, User.display_name, RoleAssignment.role)
        .join(RoleAssignment, RoleAssignment.user_id == User.id)
        .where(RoleAssignment.department_id == department.id, User.active)
        .order_by(User.username, RoleAssignment.role)
    ).all()
    members: dict[str, dict[str, Any]] = {}
    for username, display_name, role in rows:
        members.setdefault(username, {"username": username, "display_name": display_name, "roles": []})
        members[username]["roles"].append(role)
    return {"department": department.code, "name": department.name, "staff": list(members.values())}
