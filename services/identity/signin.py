"""The sign-in steps shared by the login pages and the token API: password, second factor, lockout, audit."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request
from sqlalchemy.orm import Session

from services.audit import AuditRecord, AuditResult, append_entry, audit_key
from services.identity.accounts import (
    SignInOutcome,
    check_password_sign_in,
    check_second_factor,
    record_second_factor_failure,
)
from services.identity.models import User
from services.settings import Settings


def settings() -> Settings:
    value: Settings = current_app.extensions["gongkai.settings"]
    return value


def client_address() -> str | None:
    return request.remote_addr


def audit(session: Session, action: str, result: str, user: User | None = None, username: str | None = None,
          **detail: object) -> None:
    append_entry(
        session,
        audit_key(settings().secret_key),
        AuditRecord(
            service="identity", action=action, result=result,
            user_id=user.id if user else None, username=user.username if user else username,
            department=",".join(sorted({a.department.code for a in user.roles})) if user else None,
            source_address=client_address(), detail=dict(detail),
        ),
    )


@dataclass
class PasswordStep:
    outcome: str
    user: User | None


def password_step(session: Session, username: str, password: str) -> PasswordStep:
    result = check_password_sign_in(session, settings(), username, password, client_address())
    outcome_to_result = {
        SignInOutcome.OK: AuditResult.SUCCESS,
        SignInOutcome.LOCKED: AuditResult.DENIED,
    }
    audit(session, "login.password", outcome_to_result.get(result.outcome, AuditResult.FAILURE),
          result.user, username=username[:64], outcome=result.outcome)
    return PasswordStep(result.outcome, result.user)


def second_factor_step(session: Session, user: User, code: str) -> str:
    """``ok``, ``bad`` or ``locked``."""
    if check_second_factor(session, settings(), user, code):
        audit(session, "login.second_factor", AuditResult.SUCCESS, user)
        return "ok"
    locked = record_second_factor_failure(session, settings(), user, client_address())
    audit(session, "login.second_factor", AuditResult.DENIED if locked else AuditResult.FAILURE, user)
    return "locked" if locked else "bad"
