"""Staff accounts: passwords, sign-in with lockout, second factor, roles and departments.

These plain functions are what the login page, the token API, the admin pages and
the ``gongkai create-admin`` command all call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.auth import StaffIdentity
from services.db import utcnow
from services.identity.models import Department, LoginAttempt, RecoveryCode, RoleAssignment, RolePolicy, User
from services.permissions import Grant, Role
from services.settings import Settings

_hasher = PasswordHasher()
# A hash to verify against when the username is unknown, so timing does not tell.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
DEPARTMENT_CODE = re.compile(r"^[A-Za-z0-9]{2,32}$")
TOTP_ISSUER = "公开 Gongkai"
RECOVERY_CODES = 10


class AccountError(Exception):
    """A request about an account that cannot be granted; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str = "_schema") -> None:
        super().__init__(message)
        self.field = field


# -- passwords ---------------------------------------------------------------------


def password_problems(password: str, username: str, min_length: int) -> list[str]:
    """What is wrong with a new password (empty when it meets the policy)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"密码至少 {min_length} 位 / at least {min_length} characters")
    classes = sum(
        bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
    )
    if classes < 3:
        problems.append("需包含大写字母、小写字母、数字、符号中的至少三类 / three of: upper, lower, digit, symbol")
    if username and username.lower() in password.lower():
        problems.append("密码不能包含用户名 / must not contain the username")
    return problems


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _password_matches(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def set_password(session: Session, settings: Settings, user: User, new_password: str, *, by_admin: bool) -> None:
    problems = password_problems(new_password, user.username, settings.password_min_length)
    if not by_admin and _password_matches(user, new_password):
        problems.append("新密码不能与当前密码相同 / must differ from the current password")
    if problems:
        raise AccountError("；".join(problems), field="password")
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = by_admin
    session.flush()


# -- sign-in -----------------------------------------------------------------------


class SignInOutcome:
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass
class SignInResult:
    outcome: str
    user: User | None = None
    locked_until: datetime | None = None


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def check_password_sign_in(
    session: Session, settings: Settings, username: str, password: str, source_address: str | None
) -> SignInResult:
    """First step of signing in; records the attempt and locks the account after repeated failures."""
    now = utcnow()
    user = session.scalar(select(User).where(User.username == username))
    if user is not None and is_locked(user, now):
        _record_attempt(session, username, user, False, source_address)
        return SignInResult(SignInOutcome.LOCKED, user, user.locked_until)
    matches = _password_matches(user, password)
    if user is None or not matches:
        _record_attempt(session, username, user, False, source_address)
        if user is not None and _lock_if_too_many_failures(session, settings, user):
            return SignInResult(SignInOutcome.LOCKED, user, user.locked_until)
        return SignInResult(SignInOutcome.BAD_CREDENTIALS)
    if not user.active:
        _record_attempt(session, username, user, False, source_address)
        return SignInResult(SignInOutcome.DISABLED, user)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return SignInResult(SignInOutcome.OK, user)


def record_second_factor_failure(
    session: Session, settings: Settings, user: User, source_address: str | None
) -> bool:
    """A wrong second factor counts as a failed sign-in; returns True when it locked the account."""
    _record_attempt(session, user.username, user, False, source_address)
    return _lock_if_too_many_failures(session, settings, user)


def complete_sign_in(session: Session, user: User, source_address: str | None) -> None:
    user.last_login_at = utcnow()
    _record_attempt(session, user.username, user, True, source_address)


def _record_attempt(
    session: Session, username: str, user: User | None, succeeded: bool, source_address: str | None
) -> None:
    session.add(
        LoginAttempt(
            username=username[:64], user_id=user.id if user else None, succeeded=succeeded,
            source_address=source_address, at=utcnow(),
        )
    )
    session.flush()


def _lock_if_too_many_failures(session: Session, settings: Settings, user: User) -> bool:
    """Failures count within the window, and only since the last success or unlock."""
    now = utcnow()
    since = now - timedelta(minutes=settings.lockout_window_minutes)
    last_success = session.scalar(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.user_id == user.id, LoginAttempt.succeeded)
    )
    if last_success is not None and last_success > since:
        since = last_success
    if user.locked_until is not None and user.locked_until > since:
        since = user.locked_until  # attempts made while locked do not count towards the next lock
    failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.user_id == user.id, LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since)
    )
    if (failures or 0) < settings.lockout_threshold:
        return False
    user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
    session.flush()
    return True


def unlock(session: Session, user: User) -> None:
    user.locked_until = None
    session.add(LoginAttempt(username=user.username, user_id=user.id, succeeded=True, source_address="admin-unlock",
                             at=utcnow()))
    session.flush()


# -- second factor -----------------------------------------------------------------


def mfa_required(session: Session, user: User) -> bool:
    roles = {assignment.role for assignment in user.roles}
    if not roles:
        return False
    required = session.scalars(select(RolePolicy.role).where(RolePolicy.mfa_required, RolePolicy.role.in_(roles)))
    return any(True for _ in required)


def start_totp_enrolment(user: User) -> str:
    """A fresh secret for the user to add to an authenticator app.

    It stays pending: the factor in use (if any) keeps working until a code from the
    new secret is confirmed, so merely opening the enrolment page changes nothing.
    """
    user.totp_pending_secret = pyotp.random_base32()
    return user.totp_pending_secret


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=TOTP_ISSUER)


def _matching_step(secret: str, code: str) -> int | None:
    """The time step (now, or one step either side) whose code this is."""
    if not re.fullmatch(r"\d{6}", code.strip()):
        return None
    totp = pyotp.TOTP(secret)
    now = int(time.time())
    for drift in (0, -1, 1):
        step = (now // totp.interval) + drift
        if hmac.compare_digest(totp.at(step * totp.interval), code.strip()):
            return step
    return None


def verify_totp(user: User, code: str) -> bool:
    """A current code of the enrolled factor, each time step usable once (a replayed code is refused)."""
    if not user.totp_enabled or not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


def _code_digest(settings: Settings, code: str) -> str:
    normalised = code.strip().replace("-", "").lower()
    return hmac.new(settings.secret_key.encode(), normalised.encode(), hashlib.sha256).hexdigest()


def confirm_totp_enrolment(session: Session, settings: Settings, user: User, code: str) -> list[str]:
    """Activate the second factor once the user proves the app works; returns recovery codes (shown once)."""
    step = _matching_step(user.totp_pending_secret, code) if user.totp_pending_secret else None
    if step is None:
        raise AccountError("验证码不正确 / the code is not correct", field="otp")
    user.totp_secret = user.totp_pending_secret
    user.totp_pending_secret = None
    user.totp_last_step = step
    user.totp_enabled = True
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        session.delete(old)
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    for code_text in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=_code_digest(settings, code_text)))
    session.flush()
    return codes


def use_recovery_code(session: Session, settings: Settings, user: User, code: str) -> bool:
    digest = _code_digest(settings, code)
    match = session.scalar(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_hash == digest, RecoveryCode.used_at.is_(None)
        )
    )
    if match is None:
        return False
    match.used_at = utcnow()
    session.flush()
    return True


def check_second_factor(session: Session, settings: Settings, user: User, code: str) -> bool:
    return verify_totp(user, code) or use_recovery_code(session, settings, user, code)


def reset_totp(session: Session, user: User) -> None:
    user.totp_secret = None
    user.totp_pending_secret = None
    user.totp_enabled = False
    user.totp_last_step = None
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        session.delete(old)
    session.flush()


# -- departments, users, roles -----------------------------------------------------


def department_scope(session: Session, department: Department) -> tuple[str, ...]:
    """The department's code and the codes of every department below it."""
    codes = [department.code]
    frontier = [department.id]
    while frontier:
        children = session.execute(select(Department.id, Department.code).where(Department.parent_id.in_(frontier)))
        frontier = []
        for child_id, code in children:
            codes.append(code)
            frontier.append(child_id)
    return tuple(codes)


def build_identity(session: Session, user: User, kind: str) -> StaffIdentity:
    grants = tuple(
        Grant(Role(assignment.role), assignment.department.code, department_scope(session, assignment.department))
        for assignment in user.roles
        if assignment.department.active
    )
    return StaffIdentity(user.id, user.username, user.display_name, grants, uuid.uuid4().hex, kind)


def create_department(session: Session, code: str, name: str, kind: str, parent: Department | None) -> Department:
    if not DEPARTMENT_CODE.match(code):
        raise AccountError("部门代码为 2–32 位字母或数字 / 2-32 letters or digits", field="code")
    if session.scalar(select(Department).where(Department.code == code)) is not None:
        raise AccountError("部门代码已存在 / code already in use", field="code")
    if not name.strip():
        raise AccountError("请填写部门名称 / name required", field="name")
    department = Department(code=code, name=name.strip(), kind=kind, parent_id=parent.id if parent else None)
    session.add(department)
    session.flush()
    return department


def create_user(
    session: Session,
    settings: Settings,
    *,
    username: str,
    display_name: str,
    password: str,
    email: str | None = None,
) -> User:
    if not USERNAME.match(username):
        raise AccountError("用户名为 3–64 位字母、数字或 _ . - / 3-64 letters, digits, _ . -", field="username")
    if session.scalar(select(User).where(func.lower(User.username) == username.lower())) is not None:
        raise AccountError("用户名已存在 / username already in use", field="username")
    problems = password_problems(password, username, settings.password_min_length)
    if problems:
        raise AccountError("；".join(problems), field="password")
    user = User(
        username=username, display_name=display_name.strip() or username, email=email or None,
        password_hash=hash_password(password), must_change_password=True, active=True,
    )
    session.add(user)
    session.flush()
    return user


def assign_role(session: Session, user: User, role: Role, department: Department) -> RoleAssignment:
    existing = session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.user_id == user.id, RoleAssignment.role == role.value,
            RoleAssignment.department_id == department.id,
        )
    )
    if existing is not None:
        return existing
    assignment = RoleAssignment(user_id=user.id, role=role.value, department_id=department.id)
    session.add(assignment)
    session.flush()
    session.refresh(user)
    return assignment
