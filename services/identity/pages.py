"""The staff console's sign-in pages: password, second factor, first-login password change, TOTP enrolment."""

from __future__ import annotations

import time
from typing import Any

import segno
from flask import Blueprint, redirect, render_template, request, session
from werkzeug.wrappers import Response

from services.audit import AuditResult
from services.auth import current_staff, end_console_session, public, signed_in, start_console_session
from services.db import get_session
from services.identity.accounts import (
    AccountError,
    SignInOutcome,
    build_identity,
    complete_sign_in,
    confirm_totp_enrolment,
    mfa_required,
    provisioning_uri,
    set_password,
    start_totp_enrolment,
)
from services.identity.models import User
from services.identity.signin import audit, client_address, password_step, second_factor_step, settings
from services.permissions import ROLE_LABELS, Permission
from services.security import safe_next

bp = Blueprint("identity_pages", __name__, url_prefix="/staff", template_folder="templates")

PENDING = "pending_sign_in"
PENDING_SECONDS = 300


def _pending_user() -> User | None:
    """The user part-way through signing in (password checked, more steps due)."""
    pending = session.get(PENDING)
    if not pending or pending.get("expires", 0) < time.time():
        session.pop(PENDING, None)
        return None
    user = get_session("identity").get(User, pending["user_id"])
    if user is None or not user.active:
        session.pop(PENDING, None)
        return None
    return user


def _second_factor_outstanding(user: User) -> bool:
    """Part-way through signing in with an enrolled second factor not yet given (only the code page may follow)."""
    return user.totp_enabled and not session.get(PENDING, {}).get("second_factor_done")


def _next_step(user: User) -> Response:
    """Send the user to the next step still due, or finish signing in."""
    db = get_session("identity")
    if user.totp_enabled and not session[PENDING].get("second_factor_done"):
        return redirect("/staff/login/otp")
    if not user.totp_enabled and mfa_required(db, user):
        return redirect("/staff/totp/setup")
    if user.must_change_password:
        return redirect("/staff/password")
    target = safe_next(session[PENDING].get("next"), "/staff/")
    complete_sign_in(db, user, client_address())
    audit(db, "login", AuditResult.SUCCESS, user)
    identity = build_identity(db, user, "session")
    db.commit()
    start_console_session(identity)
    return redirect(target)


@bp.get("/login")
@public
def login_form() -> str:
    return render_template(
        "identity/login.html", next=safe_next(request.args.get("next"), "/staff/"),
        timed_out=request.args.get("timeout") == "1",
    )


@bp.post("/login")
@public
def login() -> Any:
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")[:256]
    next_target = safe_next(request.form.get("next"), "/staff/")
    db = get_session("identity")
    if not username or not password:
        return render_template("identity/login.html", next=next_target, error="请输入用户名和密码。"), 400
    step = password_step(db, username, password)
    db.commit()
    if step.outcome == SignInOutcome.LOCKED:
        return render_template("identity/login.html", next=next_target, locked=True), 423
    if step.outcome != SignInOutcome.OK or step.user is None:
        return render_template("identity/login.html", next=next_target, error="用户名或密码错误。"), 401
    end_console_session()
    session[PENDING] = {"user_id": step.user.id, "expires": time.time() + PENDING_SECONDS, "next": next_target}
    return _next_step(step.user)


@bp.route("/login/otp", methods=["GET", "POST"])
@public
def login_second_factor() -> Any:
    user = _pending_user()
    if user is None or not user.totp_enabled:
        return redirect("/staff/login")
    if request.method == "GET":
        return render_template("identity/otp.html")
    db = get_session("identity")
    outcome = second_factor_step(db, user, request.form.get("code", "")[:32])
    db.commit()
    if outcome == "locked":
        session.pop(PENDING, None)
        return render_template("identity/login.html", next="/staff/", locked=True), 423
    if outcome == "bad":
        return render_template("identity/otp.html", error="验证码不正确。"), 401
    session[PENDING] = {**session[PENDING], "second_factor_done": True}
    return _next_step(user)


def _account_page_user(path: str) -> tuple[User | None, Response | None]:
    """Who may use an account page (enrolment, password): the signed-in user, or one part-way
    through signing in whose enrolled second factor is already given; otherwise where to go."""
    staff = current_staff()
    user = get_session("identity").get(User, staff.user_id) if staff else _pending_user()
    if user is None:
        return None, redirect(f"/staff/login?next={path}")
    if staff is None and _second_factor_outstanding(user):
        return None, redirect("/staff/login/otp")  # a password alone must not replace or skip the factor
    return user, None


def _qr(user: User, secret: str) -> str:
    return str(segno.make(provisioning_uri(user, secret), error="m").svg_inline(scale=4, title="TOTP"))


@bp.route("/totp/setup", methods=["GET", "POST"])
@public
def totp_setup() -> Any:
    """Enrol a second factor: during sign-in when a role requires it, or later by choice."""
    db = get_session("identity")
    staff = current_staff()
    user, detour = _account_page_user("/staff/totp/setup")
    if detour is not None:
        return detour
    assert user is not None
    if request.method == "GET" or not user.totp_pending_secret:
        secret = start_totp_enrolment(user)
        db.commit()
        return render_template("identity/totp_setup.html", secret=secret, qr_svg=_qr(user, secret))
    try:
        codes = confirm_totp_enrolment(db, settings(), user, request.form.get("code", "")[:32])
    except AccountError as error:
        secret = user.totp_pending_secret
        return render_template(
            "identity/totp_setup.html", secret=secret, qr_svg=_qr(user, secret), error=str(error)
        ), 400
    audit(db, "totp.enrol", AuditResult.SUCCESS, user)
    db.commit()
    if PENDING in session and staff is None:
        session[PENDING] = {**session[PENDING], "second_factor_done": True}
    return render_template("identity/recovery_codes.html", codes=codes, continue_url="/staff/login/continue")


@bp.get("/login/continue")
@public
def login_continue() -> Any:
    user = _pending_user()
    if user is None:
        return redirect("/staff/" if current_staff() else "/staff/login")
    return _next_step(user)


@bp.route("/password", methods=["GET", "POST"])
@public
def change_password() -> Any:
    db = get_session("identity")
    staff = current_staff()
    user, detour = _account_page_user("/staff/password")
    if detour is not None:
        return detour
    assert user is not None
    forced = user.must_change_password
    if request.method == "GET":
        return render_template("identity/password.html", forced=forced)
    new_password = request.form.get("new_password", "")[:256]
    if new_password != request.form.get("confirm_password", "")[:256]:
        return render_template("identity/password.html", forced=forced, error="两次输入的新密码不一致。"), 400
    try:
        set_password(db, settings(), user, new_password, by_admin=False)
    except AccountError as error:
        return render_template("identity/password.html", forced=forced, error=str(error)), 400
    audit(db, "password.change", AuditResult.SUCCESS, user)
    db.commit()
    if staff is None:
        return _next_step(user)
    return render_template("identity/password.html", forced=False, done=True)


@bp.post("/logout")
@signed_in
def logout() -> Response:
    staff = current_staff()
    db = get_session("identity")
    user = db.get(User, staff.user_id) if staff else None
    audit(db, "logout", AuditResult.SUCCESS, user)
    db.commit()
    end_console_session()
    return redirect("/staff/login")


@bp.get("/")
@signed_in
def home() -> str:
    staff = current_staff()
    assert staff is not None
    return render_template(
        "identity/home.html", staff=staff, role_labels=ROLE_LABELS, Permission=Permission,
        services=["identity", "interpret", "consult", "search", "press"],
    )
