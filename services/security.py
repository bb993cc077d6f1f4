"""Web protections every app gets: security headers, CSRF on forms, rate limits, safe redirects."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Flask, Response, abort, request
from flask import Request as FlaskRequest
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.utils import cached_property

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


SNIFFING_WINDOW = 1445
"""How far into a response a browser looks for HTML when it guesses a type (WHATWG MIME Sniffing's
"resource header")."""
_ACTIVE_MARKUP = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|script|iframe|frame|object|embed|svg|img|meta|base|style|link)[\s/>]",
    re.IGNORECASE,
)


def markup_in_sniffing_window(data: bytes) -> bool:
    """Whether the start of a file holds HTML or SVG a content sniffer would act on. A polyglot (a real GIF,
    PNG or PDF header followed by a page with script) passes a check of its first bytes; this refuses it.
    Every tag matched is four letters or more plus a delimiter, so compressed image data does not match by
    chance; only the window a sniffer reads is searched, so a PDF form with XHTML deep inside is accepted."""
    return _ACTIVE_MARKUP.search(data[:SNIFFING_WINDOW]) is not None


def suspicious_filename(raw: str | None) -> bool:
    """An upload's name no browser sends: control characters (a NUL) or a ``..`` path step. (A browser may
    send a whole Windows path, ``C:\\fakepath\\x.pdf``: that is not suspicious, its last part is used.)"""
    name = raw or ""
    if any(ord(character) < 32 or ord(character) == 127 for character in name):
        return True
    return any(part.strip() == ".." for part in re.split(r"[\\/]", name))


NUL = "\x00"
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL and unpaired surrogates: nobody types them, and PostgreSQL can neither store nor compare them."""
UNSTORABLE_REFUSED = (
    "请求中含有无法处理的字符（空字符或不成对的代理字符），请删除后重试。/ "
    "The request contains a NUL character or an unpaired surrogate."
)


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_unstorable(key) or _unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unstorable(item) for item in value)
    return False


def refuse_unstorable_characters() -> None:
    """Answer 400 to a NUL character or an unpaired surrogate in the path or a JSON body; let through, they
    failed deep in a query or an encoder as a 500. (Forms and the query: :class:`GongkaiRequest`.)"""
    if _unstorable(request.path):
        abort(400, description=UNSTORABLE_REFUSED)
    if request.is_json and _unstorable(request.get_json(silent=True)):
        abort(400, description=UNSTORABLE_REFUSED)


class GongkaiRequest(FlaskRequest):
    """The request every app sees: what PostgreSQL cannot take never gets that far.

    * The query's parameters lose their NUL characters (a filter or a search with one means the same
      without it; the query string keeps undecodable bytes percent-encoded, so it holds no surrogate).
    * A form field holding a NUL or an unpaired surrogate is refused (400) when the form is first read,
      by whichever code reads it first (the CSRF check, a view), and only then: a view that sets an
      upload's size limit sets it before the body is parsed.
    """

    @cached_property
    def args(self) -> MultiDict[str, str]:
        return self.parameter_storage_class(
            (key.replace(NUL, ""), value.replace(NUL, ""))
            for key, value in parse_qsl(self.query_string.decode(), keep_blank_values=True,
                                        errors="werkzeug.url_quote")
        )

    def _load_form_data(self) -> None:
        super()._load_form_data()
        if _unstorable(self.form.to_dict(flat=False)):
            raise BadRequest(UNSTORABLE_REFUSED)


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
    app.request_class = GongkaiRequest
    app.before_request(refuse_unstorable_characters)
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
