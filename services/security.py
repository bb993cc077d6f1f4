"""Web protections every app gets: security headers, CSRF on forms, rate limits, safe redirects."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from services.settings import Settings

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI sets inline styles; its page alone may use them (still no inline script).
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def safe_next(target: str | None, default: str = "/") -> str:
    """A same-site path to go to after sign-in or a language switch; anything else becomes ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _add_headers(settings: Settings) -> Callable[[Response], Response]:
    def add(response: Response) -> Response:
        docs = request.path.endswith("/docs")
        response.headers.setdefault(
            "Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if settings.behind_tls:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.path.startswith(("/staff", "/api/auth")):
            response.headers["Cache-Control"] = "no-store"
        return response

    return add


def init_security(app: Flask, settings: Settings) -> Limiter:
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.config.update(
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_CHECK_DEFAULT=False,  # checked for page forms only (see services.web._protect_forms)
        WTF_CSRF_SSL_STRICT=settings.behind_tls,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.after_request(_add_headers(settings))
    csrf = CSRFProtect(app)
    app.extensions["gongkai.csrf"] = csrf
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.rate_limit_storage,
        strategy="moving-window",
        swallow_errors=True,  # a Redis outage must not turn into errors for the public
        in_memory_fallback_enabled=True,
    )
    app.extensions["gongkai.limiter"] = limiter
    return limiter
