"""The signed staff identity every service verifies on its own, and who may reach each view.

The identity service signs a token after sign-in; every service checks the signature
with the shared secret key, so no service calls another to know who is asking. Pages
read the token from the session cookie (with an idle timeout); APIs only from
``Authorization: Bearer`` (a cookie never authorises an API call, so APIs need no CSRF token).

Every view declares its access rule with :func:`public`, :func:`signed_in` or
:func:`requires`; a view without a rule is refused (and the authorization matrix test fails).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from flask import Flask, abort, current_app, g, jsonify, redirect, request, session
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from services.permissions import Grant, Permission, Role, is_allowed
from services.revocation import RevocationStore, make_revocation_store
from services.settings import Settings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_SALT = "gongkai.staff-identity"  # noqa: S105 (a signing namespace, not a secret)
SESSION_KEY = "staff_token"
LAST_SEEN_KEY = "staff_last_seen"
SESSION_MAX_AGE = 12 * 3600
"""A console session ends after 12 hours however active it is."""


@dataclass(frozen=True)
class StaffIdentity:
    user_id: int
    username: str
    display_name: str
    grants: tuple[Grant, ...]
    session_id: str
    kind: str
    """``session`` (console) or ``api`` (bearer token)."""

    def can(self, permission: Permission, department: str | None = None) -> bool:
        return is_allowed(self.grants, permission, department)

    @property
    def roles(self) -> set[Role]:
        return {grant.role for grant in self.grants}

    @property
    def departments(self) -> list[str]:
        return sorted({grant.department for grant in self.grants})


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=TOKEN_SALT)


def issue_token(settings: Settings, identity: StaffIdentity) -> str:
    payload = {
        "u": identity.user_id,
        "n": identity.username,
        "d": identity.display_name,
        "g": [[grant.role.value, grant.department, list(grant.scope)] for grant in identity.grants],
        "s": identity.session_id,
        "k": identity.kind,
    }
    return _serializer(settings).dumps(payload)


def read_token(
    settings: Settings, token: str, max_age: int, revocations: RevocationStore | None = None
) -> StaffIdentity | None:
    """The identity a token carries, or None if it is forged, expired or revoked."""
    try:
        payload, signed_at = _serializer(settings).loads(token, max_age=max_age, return_timestamp=True)
    except (SignatureExpired, BadSignature):
        return None
    try:
        grants = tuple(Grant(Role(role), department, tuple(scope)) for role, department, scope in payload["g"])
        identity = StaffIdentity(payload["u"], payload["n"], payload["d"], grants, payload["s"], payload["k"])
    except (KeyError, TypeError, ValueError):
        return None
    if revocations is not None and revocations.is_revoked(
        identity.session_id, identity.user_id, signed_at.timestamp()
    ):
        return None
    return identity


def revocations() -> RevocationStore:
    store: RevocationStore | None = current_app.extensions.get("gongkai.revocations")
    if store is None:
        settings = _settings()
        store = make_revocation_store(settings.redis_url, settings.data_dir)
        current_app.extensions["gongkai.revocations"] = store
    return store


def _settings() -> Settings:
    settings: Settings = current_app.extensions["gongkai.settings"]
    return settings


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def signed_in_staff() -> StaffIdentity:
    """The staff member a view's access rule (``@requires`` / ``@signed_in``) has let in: 401 if nobody is
    signed in (the rule rules that out; a view without such a rule must not call this)."""
    staff = current_staff()
    if staff is None:
        abort(401)
    return staff


def current_staff() -> StaffIdentity | None:
    """Who is asking: from the bearer token on APIs, from the session on pages; None if nobody."""
    if "staff_identity" in g:
        cached: StaffIdentity | None = g.staff_identity
        return cached
    settings = _settings()
    identity: StaffIdentity | None = None
    if is_api_request():
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            identity = read_token(settings, header[7:].strip(), settings.api_token_minutes * 60, revocations())
            if identity is not None and identity.kind != "api":
                identity = None
    else:
        token = session.get(SESSION_KEY)
        last_seen = session.get(LAST_SEEN_KEY, 0)
        if token and time.time() - float(last_seen) <= settings.idle_timeout_minutes * 60:
            identity = read_token(settings, token, SESSION_MAX_AGE, revocations())
            if identity is not None and identity.kind == "session":
                session[LAST_SEEN_KEY] = int(time.time())
            else:
                identity = None
        elif token:
            g.session_timed_out = True
            session.pop(SESSION_KEY, None)
    g.staff_identity = identity
    return identity


def start_console_session(identity: StaffIdentity) -> None:
    session.clear()
    session[SESSION_KEY] = issue_token(_settings(), identity)
    session[LAST_SEEN_KEY] = int(time.time())


def end_console_session() -> None:
    """Sign out: the session's identity is revoked for every service, not only forgotten here."""
    token = session.get(SESSION_KEY)
    if token:
        identity = read_token(_settings(), token, SESSION_MAX_AGE)
        if identity is not None:
            revocations().revoke_session(identity.session_id)
    session.clear()


# -- access rules ------------------------------------------------------------------


@dataclass(frozen=True)
class AccessRule:
    kind: str
    """``public``, ``signed_in`` or ``permission``."""
    permission: Permission | None = None
    department_arg: str | None = None
    """The view argument naming the department the request concerns, if any."""


ACCESS_ATTRIBUTE = "gongkai_access_rule"

FRAMEWORK_PUBLIC_ENDPOINTS = frozenset({"api-docs.openapi_json"})
"""Endpoints registered by libraries rather than our own decorators."""


def _with_rule(rule: AccessRule) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        setattr(view, ACCESS_ATTRIBUTE, rule)
        return view

    return decorate


def public(view: F) -> F:
    """Anyone may reach this view."""
    return _with_rule(AccessRule("public"))(view)


def signed_in(view: F) -> F:
    """Any signed-in staff member may reach this view."""
    return _with_rule(AccessRule("signed_in"))(view)


def requires(permission: Permission, *, department_arg: str | None = None) -> Callable[[F], F]:
    """Staff holding ``permission`` (in the department named by ``department_arg``) may reach this view."""
    return _with_rule(AccessRule("permission", permission, department_arg))


def access_rule(app: Flask, endpoint: str) -> AccessRule | None:
    if endpoint in FRAMEWORK_PUBLIC_ENDPOINTS:
        return AccessRule("public")
    view = app.view_functions.get(endpoint)
    return getattr(view, ACCESS_ATTRIBUTE, None) if view is not None else None


def _refuse_anonymous() -> Any:
    if is_api_request():
        response = jsonify({"code": 401, "status": "Unauthorized", "message": "请先登录 / sign-in required"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="gongkai"'
        return response, 401
    target = request.full_path if request.query_string else request.path
    notice = "&timeout=1" if g.get("session_timed_out") else ""
    return redirect(f"/staff/login?next={quote(target)}{notice}")


def enforce_access() -> Any:
    """``before_request`` of every app: apply the view's rule, refuse views without one."""
    if request.endpoint is None:
        return None  # 404 and 405 are answered by the error handlers
    rule = access_rule(current_app, request.endpoint)
    if rule is None:
        log.error("refused: endpoint %s declares no access rule", request.endpoint)
        abort(403)
    if rule.kind == "public":
        return None
    identity = current_staff()
    if identity is None:
        return _refuse_anonymous()
    if rule.kind == "permission":
        assert rule.permission is not None
        department = (request.view_args or {}).get(rule.department_arg) if rule.department_arg else None
        if not identity.can(rule.permission, department):
            abort(403)
    return None


def authorize(identity: StaffIdentity | None, permission: Permission, department: str | None = None) -> StaffIdentity:
    """For checks inside a view or a command, after the record's department is known."""
    if identity is None:
        abort(401)
    if not identity.can(permission, department):
        abort(403)
    return identity
