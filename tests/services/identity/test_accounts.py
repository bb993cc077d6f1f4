"""Passwords, lockout, second factor and recovery codes, through the same functions every caller uses."""

import time
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask

from services.db import get_database, utcnow
from services.identity.accounts import (
    AccountError,
    SignInOutcome,
    check_password_sign_in,
    confirm_totp_enrolment,
    create_user,
    password_problems,
    set_password,
    start_totp_enrolment,
    unlock,
    use_recovery_code,
    verify_totp,
)
from services.identity.models import LoginAttempt, User

from support.org import STAFF_PASSWORD


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Short1!", "至少 12 位"),
        ("alllowercaseletters", "至少三类"),
        ("ALLUPPER123456", "至少三类"),
        ("Zhang.San-2026!", "不能包含用户名"),
    ],
)
def test_password_policy(password: str, problem: str) -> None:
    assert any(problem in message for message in password_problems(password, "zhang.san", 12))


def test_a_good_password_passes() -> None:
    assert password_problems("Correct-Horse-42!", "zhangsan", 12) == []


def _settings(suite: dict[str, Flask]) -> Any:
    return suite["identity"].extensions["gongkai.settings"]


def test_lockout_after_repeated_failures_and_unlock(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    settings = _settings(suite)
    database = get_database("identity", suite["identity"])
    with database.transaction() as session:
        for _ in range(settings.lockout_threshold - 1):
            outcome = check_password_sign_in(session, settings, "editor_a", "wrong", "127.0.0.1").outcome
            assert outcome == SignInOutcome.BAD_CREDENTIALS
        locked = check_password_sign_in(session, settings, "editor_a", "wrong", "127.0.0.1")
        assert locked.outcome == SignInOutcome.LOCKED
        assert locked.locked_until is not None
        assert locked.locked_until - utcnow() > timedelta(minutes=settings.lockout_minutes - 1)
        # While locked even the right password is refused, and the attempt is recorded.
        refused = check_password_sign_in(session, settings, "editor_a", STAFF_PASSWORD, None)
        assert refused.outcome == SignInOutcome.LOCKED
        user = session.query(User).filter_by(username="editor_a").one()
        unlock(session, user)
        assert check_password_sign_in(session, settings, "editor_a", STAFF_PASSWORD, None).outcome == SignInOutcome.OK
        attempts = session.query(LoginAttempt).filter_by(username="editor_a").count()
    assert attempts == settings.lockout_threshold + 2


def test_unknown_usernames_look_like_wrong_passwords(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    settings = _settings(suite)
    with get_database("identity", suite["identity"]).transaction() as session:
        result = check_password_sign_in(session, settings, "nobody", STAFF_PASSWORD, None)
    assert result.outcome == SignInOutcome.BAD_CREDENTIALS
    assert result.user is None


def test_new_accounts_must_change_password_and_reuse_is_refused(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    settings = _settings(suite)
    with get_database("identity", suite["identity"]).transaction() as session:
        user = create_user(session, settings, username="newbie", display_name="新人", password=STAFF_PASSWORD)
        assert user.must_change_password
        with pytest.raises(AccountError, match="不能与当前密码相同"):
            set_password(session, settings, user, STAFF_PASSWORD, by_admin=False)
        set_password(session, settings, user, "Another-Good-77#", by_admin=False)
        assert not user.must_change_password
        with pytest.raises(AccountError) as duplicate:
            create_user(session, settings, username="NEWBIE", display_name="x", password=STAFF_PASSWORD)
    assert duplicate.value.field == "username"


def test_totp_codes_work_once_and_recovery_codes_once(suite: dict[str, Flask], org: dict[str, Any]) -> None:
    settings = _settings(suite)
    with get_database("identity", suite["identity"]).transaction() as session:
        user = session.query(User).filter_by(username="reviewer_a").one()
        secret = start_totp_enrolment(user)
        with pytest.raises(AccountError):
            confirm_totp_enrolment(session, settings, user, "000000")
        code = pyotp.TOTP(secret).now()
        codes = confirm_totp_enrolment(session, settings, user, code)
        assert user.totp_enabled
        assert len(codes) == 10
        assert not verify_totp(user, code), "a used code must not work twice"
        later = pyotp.TOTP(secret).at(time.time() + 30)
        assert verify_totp(user, later)
        assert use_recovery_code(session, settings, user, codes[0])
        assert not use_recovery_code(session, settings, user, codes[0])
        assert not use_recovery_code(session, settings, user, "abcdef-123456")


def test_starting_a_new_enrolment_leaves_the_current_factor_working(
    suite: dict[str, Flask], org: dict[str, Any]
) -> None:
    settings = _settings(suite)
    with get_database("identity", suite["identity"]).transaction() as session:
        user = session.query(User).filter_by(username="dispatcher_a").one()
        first = start_totp_enrolment(user)
        confirm_totp_enrolment(session, settings, user, pyotp.TOTP(first).now())
        second = start_totp_enrolment(user)  # e.g. someone opened the enrolment page
        assert user.totp_enabled
        assert user.totp_secret == first
        assert verify_totp(user, pyotp.TOTP(first).at(time.time() + 30))
        assert second != first
