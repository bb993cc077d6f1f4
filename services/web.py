"""The app factory every service builds on: settings, i18n, logs, errors, health, docs."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from flask import (
    Blueprint,
    Flask,
    abort,
    jsonify,
    make_response,
    render_template,
    request,
    send_from_directory,
)
from flask_babel import Babel
from flask_smorest import Api
from werkzeug.wrappers import Response

from services.auth import current_staff, enforce_access, public
from services.celery_app import CeleryPublisher, make_celery
from services.db import DatabaseUnavailable, ServiceDatabase, open_service_database, register_database
from services.errors import register_error_handlers
from services.observability import configure_logging, init_request_tracing, metrics_response
from services.outbox import install_after_commit_send
from services.searchengine.factory import make_search_engine
from services.searchengine.port import SearchEngine
from services.security import init_security
from services.settings import Settings, load_settings

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


def cacheable(html: str) -> Response:
    """A public page with an ETag (hash of the body), 304 on a matching If-None-Match, and a short public
    max-age. The locale comes from a cookie as well as the URL, so shared caches key on it (``Vary: Cookie``)."""
    response = make_response(html)
    response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32])
    response.headers["Cache-Control"] = PUBLIC_CACHE_CONTROL
    response.vary.add("Cookie")
    return response.make_conditional(request)


def get_settings(app: Flask) -> Settings:
    settings: Settings = app.extensions["gongkai.settings"]
    return settings


def select_locale() -> str:
    requested = request.args.get("lang") or request.cookies.get("lang")
    if requested in SUPPORTED_LOCALES:
        return requested
    return "zh_CN"


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

    @app.context_processor
    def _shell_context() -> dict[str, Any]:
        return {"current_locale": select_locale(), "service_name": name, "current_staff": current_staff}

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
    """The engine and the shared content alias every public read and index write uses."""
    engine = get_search_engine(app)
    alias = get_settings(app).search_alias
    if not app.extensions.get("gongkai.search_alias_ready"):
        engine.ensure_alias(alias)
        app.extensions["gongkai.search_alias_ready"] = True
    return engine, alias
