"""The app factory every service builds on: settings, i18n, logs, errors, health, docs."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import swagger_ui_bundle
from flask import (
    Blueprint,
    Flask,
    abort,
    g,
    jsonify,
    make_response,
    render_template,
    request,
    send_from_directory,
)
from flask_babel import Babel, get_translations
from flask_smorest import Api
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from werkzeug.routing import IntegerConverter
from werkzeug.wrappers import Response

from services.auth import current_staff, enforce_access, public
from services.celery_app import CeleryPublisher, make_celery
from services.db import DatabaseUnavailable, ServiceDatabase, open_service_database, register_database
from services.errors import register_error_handlers
from services.observability import configure_logging, init_request_tracing, metrics_response
from services.outbox import install_after_commit_send
from services.schemas import MAX_RECORD_ID
from services.searchengine.factory import make_search_engine
from services.searchengine.port import KeptAlias, SearchEngine, parse_published_at
from services.security import init_security
from services.settings import Settings, load_settings

log = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")

SUPPORTED_LOCALES = ("zh_CN", "en")
SHELL_DIR = Path(__file__).parent / "portal"

ReadinessCheck = Callable[[], tuple[bool, str]]


FORM_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _protect_forms() -> None:
    """CSRF on every state-changing page request; APIs accept bearer tokens only, never cookies."""
    if request.method in FORM_METHODS and not request.path.startswith("/api/"):
        from flask import current_app

        current_app.extensions["gongkai.csrf"].protect()


PUBLIC_CACHE_CONTROL = "public, max-age=60"


def beijing_date(value: Any) -> str:
    """``YYYY-MM-DD`` in Beijing of a datetime, a date, or an ISO string (a bare date is shown as it is) —
    the date every public page shows."""
    if isinstance(value, datetime):
        return value.astimezone(BEIJING).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not value:
        return ""
    if len(value) == 10:
        return value
    try:
        parsed = parse_published_at(value)
    except ValueError:
        return value[:10]
    return parsed.astimezone(BEIJING).date().isoformat() if parsed else ""


def cacheable(html: str) -> Response:
    """A public page with an ETag (hash of the body), 304 on a matching If-None-Match, and a short public
    max-age. The locale comes from a cookie as well as the URL, so shared caches key on it (``Vary: Cookie``)."""
    response = make_response(html)
    response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32])
    response.headers["Cache-Control"] = PUBLIC_CACHE_CONTROL
    response.vary.add("Cookie")
    return response.make_conditional(request)


# -- the shared cache of hot public reads ---------------------------------------------------------
#
# Rendered anonymous public pages (views marked with ``shared_page``) and search answers
# (``search.query.run_search``) are kept for a few seconds, keyed by path + query + locale: in Redis
# when ``REDIS_URL`` is set (shared by every process and service), else in each process. Staleness is
# bounded by the time to live (settings ``PUBLIC_CACHE_SECONDS`` and ``SEARCH_CACHE_SECONDS``): a page is at
# most ``PUBLIC_CACHE_SECONDS`` (default 2) older than the
# index, a search answer at most ``SEARCH_CACHE_SECONDS`` (default 1), which keeps publication ->
# searchable within its 2 s target (bench.freshness --under-submissions).
# 0 turns a cache off; the test environment defaults to 0 so that a test sees its own writes at once.
# Never for a signed-in person (a session cookie or a bearer token), never for anything but GET, never a
# response that sets a cookie or is not a 200.

LOCAL_CACHE_ENTRIES = 4096
"""At most this many entries in a process's own cache (the oldest go first)."""
CACHE_PAUSE_SECONDS = 30.0
"""After Redis failed, the cache is skipped (reads rendered afresh) for this long."""
ELDER_MODE_COOKIE = "elder_mode"
"""``1``: the large-font, high-contrast mode (长者模式) is on. Set by ``/elder-mode`` or the switch's script."""
ANONYMOUS_COOKIES = frozenset({"lang", ELDER_MODE_COOKIE})
_SHARED_PAGE = "_gongkai_shared_page"
_CACHED_HEADERS = ("Content-Type", "ETag", "Cache-Control", "Vary", "Last-Modified")

V = TypeVar("V", bound=Callable[..., Any])


class LocalCache:
    """A small time-bounded cache in this process (thread-safe, oldest entries dropped first)."""

    def __init__(self, max_entries: int = LOCAL_CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[key]
                return None
            return found[1]

    def set(self, key: str, value: bytes, seconds: float) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (time.monotonic() + seconds, value)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class RedisCache:
    """The same cache in Redis (``SET .. PX``), shared by every process; a Redis error is logged once, and
    the cache skipped for ``CACHE_PAUSE_SECONDS``: the public is answered from the index meanwhile."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._paused_until = 0.0

    def _failed(self, error: Exception) -> None:
        self._paused_until = time.monotonic() + CACHE_PAUSE_SECONDS
        log.warning("public cache skipped for %.0f s: %s", CACHE_PAUSE_SECONDS, type(error).__name__)

    def get(self, key: str) -> bytes | None:
        if time.monotonic() < self._paused_until:
            return None
        try:
            value = self._client.get(key)
        except self._errors as error:
            self._failed(error)
            return None
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, seconds: float) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            self._client.set(key, value, px=max(1, int(seconds * 1000)))
        except self._errors as error:
            self._failed(error)


def public_cache(app: Flask) -> LocalCache | RedisCache:
    """The app's cache of hot public reads (Redis when ``REDIS_URL`` is set, else this process's)."""
    cache: LocalCache | RedisCache | None = app.extensions.get("gongkai.public_cache")
    if cache is None:
        url = get_settings(app).redis_url
        cache = RedisCache(url) if url else LocalCache()
        app.extensions["gongkai.public_cache"] = cache
    return cache


def anonymous_request() -> bool:
    """No bearer token and no cookie but the language: nobody signed in, nothing personal on the page."""
    return "Authorization" not in request.headers and all(name in ANONYMOUS_COOKIES for name in request.cookies)


def shared_page(view: V) -> V:
    """Mark a public page whose anonymous GETs may be answered from the shared cache (see above)."""
    setattr(view, _SHARED_PAGE, True)
    return view


def _page_key(app: Flask) -> str:
    query = request.query_string.decode("latin-1")
    mode = "elder" if elder_mode() else "standard"
    return f"gongkai:page:{app.extensions['gongkai.service']}:{select_locale()}:{mode}:{request.path}?{query}"


def _serve_shared_page() -> Response | None:
    from flask import current_app

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    seconds: float = app.config["PUBLIC_CACHE_SECONDS"]
    if seconds <= 0 or request.method != "GET" or request.endpoint is None:
        return None
    view = app.view_functions.get(request.endpoint)
    if view is None or not getattr(view, _SHARED_PAGE, False) or not anonymous_request():
        return None
    key = _page_key(app)
    stored = public_cache(app).get(key)
    if stored is None:
        g.gongkai_page_key = key
        return None
    head, _, body = stored.partition(b"\n")
    response = Response(body, status=200, headers=json.loads(head))
    return response.make_conditional(request)


def _store_shared_page(response: Response) -> Response:
    key: str | None = g.pop("gongkai_page_key", None)
    if (key is None or response.status_code != 200 or response.direct_passthrough or "Set-Cookie" in response.headers
            or not response.headers.get("Cache-Control", "").startswith("public")):
        return response
    from flask import current_app

    headers = {name: response.headers[name] for name in _CACHED_HEADERS if name in response.headers}
    value = json.dumps(headers).encode() + b"\n" + response.get_data()
    public_cache(current_app).set(key, value, current_app.config["PUBLIC_CACHE_SECONDS"])
    return response


def cached_answer(app: Flask, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON-able value, from the shared cache for ``SEARCH_CACHE_SECONDS`` (see above)."""
    seconds: float = app.config.get("SEARCH_CACHE_SECONDS", 0.0)
    if seconds <= 0:
        return compute()
    cache = public_cache(app)
    full_key = f"gongkai:answer:{key}"
    stored = cache.get(full_key)
    if stored is not None:
        return json.loads(stored)
    value = compute()
    cache.set(full_key, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), seconds)
    return value


# -- translations in templates -------------------------------------------------------------------


def _install_template_gettext(app: Flask) -> None:
    """``_()``, ``gettext`` and ``ngettext`` in templates read the request's translations once per render
    (``gongkai_translations``, from the shell's context processor) instead of looking the locale up again
    for every string; same results as Jinja's new-style gettext (escaped, always %-formatted)."""

    def translations(context: Context) -> Any:
        return context.get("gongkai_translations") or get_translations()

    @pass_context
    def gettext(context: Context, string: str, **variables: Any) -> str:
        text = translations(context).ugettext(string)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 (our own catalogue's text, as Jinja's new-style gettext does)
        result: str = text % variables
        return result

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, num: int, **variables: Any) -> str:
        variables.setdefault("num", num)
        text = translations(context).ungettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 (our own catalogue's text, as Jinja's new-style gettext does)
        result: str = text % variables
        return result

    app.jinja_env.globals.update(gettext=gettext, _=gettext, ngettext=ngettext)


def get_settings(app: Flask) -> Settings:
    settings: Settings = app.extensions["gongkai.settings"]
    return settings


def select_locale() -> str:
    requested = request.args.get("lang") or request.cookies.get("lang")
    if requested in SUPPORTED_LOCALES:
        return requested
    return "zh_CN"


def elder_mode() -> bool:
    """Whether this visitor switched the large-font, high-contrast mode on (rendered on the server: no flash)."""
    return request.cookies.get(ELDER_MODE_COOKIE) == "1"


def get_search_engine(app: Flask) -> SearchEngine:
    engine: SearchEngine | None = app.extensions.get("gongkai.search_engine")
    if engine is None:
        settings = get_settings(app)
        engine = make_search_engine(
            settings.search_url, settings.data_dir, api_key=settings.search_api_key, ca_file=settings.search_ca_file
        )
        app.extensions["gongkai.search_engine"] = engine
    return engine


def _shell_blueprint() -> Blueprint:
    # Shared base template and error page; the portal app also serves /static.
    return Blueprint("shell", __name__, template_folder=str(SHELL_DIR / "templates"))


class RecordIdConverter(IntegerConverter):
    """``<int:...>`` in every route: a record id is the databases' INTEGER, so a larger number matches no
    route (404) instead of reaching PostgreSQL, which refuses the comparison (a 500, found by the API fuzzing).
    The bound shows in the OpenAPI documents as the parameter's maximum."""

    def __init__(self, url_map: Any, fixed_digits: int = 0, min: int | None = None,
                 max: int | None = MAX_RECORD_ID, signed: bool = False) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


def create_service_app(
    name: str,
    import_name: str,
    *,
    settings: Settings | None = None,
    api_title: str | None = None,
    owns_database: bool = True,
    serves_readiness: bool = True,
) -> tuple[Flask, Api]:
    """A Flask app for one service with everything the platform gives every service."""
    settings = settings or load_settings()
    configure_logging(name, settings.log_level, settings.log_json)

    app = Flask(import_name, static_folder=None)
    app.url_map.converters["int"] = RecordIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        API_TITLE=api_title or f"Gongkai {name}",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=f"/api/{name}",
        OPENAPI_JSON_PATH="openapi.json",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.behind_tls,
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        BABEL_DEFAULT_LOCALE="zh_CN",
        BABEL_TRANSLATION_DIRECTORIES=str(SHELL_DIR / "translations"),
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["gongkai.settings"] = settings
    app.extensions["gongkai.service"] = name
    app.extensions["gongkai.readiness"] = {}
    app.register_blueprint(_shell_blueprint())
    Babel(app, locale_selector=select_locale)
    _install_template_gettext(app)
    app.config.update(PUBLIC_CACHE_SECONDS=settings.public_cache_seconds,
                      SEARCH_CACHE_SECONDS=settings.search_cache_seconds)

    @app.context_processor
    def _shell_context() -> dict[str, Any]:
        return {"current_locale": select_locale(), "service_name": name, "current_staff": current_staff,
                "gongkai_translations": get_translations(), "elder_mode": elder_mode()}

    init_request_tracing(app, name)
    init_security(app, settings)
    app.before_request(_protect_forms)
    app.before_request(enforce_access)
    api = Api(app)
    register_error_handlers(app)
    install_after_commit_send()

    if owns_database:
        database = open_service_database(settings, name)
        database.publisher = CeleryPublisher(get_celery(settings))
        register_database(app, database)
        add_readiness_check(app, "database", _database_check(database))
    add_readiness_check(app, "broker", _broker_check(settings))
    add_readiness_check(app, "search", lambda: _search_check(app))
    _register_health(app, name, serves_readiness)
    _register_api_docs(app, name)
    if name == "search":  # every query is segmented: load jieba's dictionaries now, not on the first search
        from services.text import preload_in_background

        preload_in_background()
    # After the rate limit and the access rule (registered above), so a cached page obeys both.
    app.before_request(_serve_shared_page)
    app.after_request(_store_shared_page)
    return app, api


_celery_by_broker: dict[tuple[str, str], Any] = {}


def get_celery(settings: Settings) -> Any:
    """One sending Celery app per process and broker (web processes only send tasks)."""
    key = (settings.broker_url, str(settings.data_dir))
    celery = _celery_by_broker.get(key)
    if celery is None:
        celery = make_celery(settings)
        _celery_by_broker[key] = celery
    return celery


def add_readiness_check(app: Flask, check_name: str, check: ReadinessCheck) -> None:
    app.extensions["gongkai.readiness"][check_name] = check


def _database_check(database: ServiceDatabase) -> ReadinessCheck:
    def check() -> tuple[bool, str]:
        try:
            database.check()
        except DatabaseUnavailable as error:
            return False, str(error)
        return True, database.url.get_backend_name()

    return check


def _broker_check(settings: Settings) -> ReadinessCheck:
    def check() -> tuple[bool, str]:
        if settings.redis_url:
            import redis

            try:
                redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1).ping()
            except redis.RedisError as error:
                return False, f"redis: {error}"
            return True, "redis"
        queue = settings.broker_dir / "queue"
        if queue.is_dir():
            return True, "filesystem"
        return False, f"broker folder missing: {queue}"

    return check


def _search_check(app: Flask) -> tuple[bool, str]:
    health = get_search_engine(app).health()
    return health.ok, health.detail


def readiness_report(app: Flask) -> tuple[bool, dict[str, Any]]:
    """Run a service's checks; cached for one second so probes cannot overload a dependency."""
    cached = app.extensions.get("gongkai.readiness_cache")
    now = time.monotonic()
    if cached and now - cached[0] < 1.0:
        return cached[1], cached[2]
    checks: dict[str, Any] = {}
    for check_name, check in app.extensions["gongkai.readiness"].items():
        try:
            ok, detail = check()
        except Exception as error:  # a probe must answer, whatever broke
            ok, detail = False, f"{type(error).__name__}: {error}"
        checks[check_name] = {"ok": ok, "detail": detail}
    ready = all(item["ok"] for item in checks.values())
    app.extensions["gongkai.readiness_cache"] = (now, ready, checks)
    return ready, checks


def _register_health(app: Flask, name: str, serves_readiness: bool) -> None:
    health = Blueprint(f"{name}_health", __name__)

    @health.get("/healthz")
    @public
    def healthz() -> Any:
        return jsonify({"status": "ok", "service": name})

    @public
    def readyz() -> Any:
        ready, checks = readiness_report(app)
        body = {"status": "ready" if ready else "not ready", "service": name, "checks": checks}
        return jsonify(body), 200 if ready else 503

    if serves_readiness:
        health.add_url_rule("/readyz", view_func=readyz, methods=["GET"])

    @health.get("/metrics")
    @public
    def metrics() -> Any:
        return metrics_response()

    app.register_blueprint(health)


def _register_api_docs(app: Flask, name: str) -> None:
    docs = Blueprint(f"{name}_api_docs", __name__)
    assets = Path(swagger_ui_bundle.swagger_ui_path)

    @docs.get(f"/api/{name}/docs")
    @public
    def api_docs() -> Any:
        return render_template("api_docs.html", spec_url=f"/api/{name}/openapi.json", assets=f"/api/{name}/docs/assets")

    @docs.get(f"/api/{name}/docs/assets/<path:filename>")
    @public
    def api_docs_asset(filename: str) -> Any:
        if filename not in {"swagger-ui-bundle.js", "swagger-ui.css"}:
            abort(404)
        return send_from_directory(assets, filename, max_age=86400)

    app.register_blueprint(docs)


def content_alias(app: Flask) -> tuple[SearchEngine, str]:
    """The engine and the shared content alias every public read and index write uses. The alias is
    made on first use, and made again, empty, should the engine lose it (``KeptAlias``)."""
    engine = get_search_engine(app)
    alias = get_settings(app).search_alias
    if not app.extensions.get("gongkai.search_alias_ready"):
        engine.ensure_alias(alias)
        app.extensions["gongkai.search_alias_ready"] = True
    kept: KeptAlias | None = app.extensions.get("gongkai.kept_alias")
    if kept is None or kept.engine is not engine or kept.alias != alias:
        kept = KeptAlias(engine, alias)
        app.extensions["gongkai.kept_alias"] = kept
    return kept, alias
