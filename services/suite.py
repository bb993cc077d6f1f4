"""The whole suite in one process: every service's app mounted by path under one origin."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from services.registry import SPECS
from services.settings import SERVICES, Settings, load_settings
from services.web import readiness_report

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

PATH_OWNERS: tuple[tuple[str, str], ...] = (
    ("/api/interpret", "interpret"),
    ("/interpret", "interpret"),
    ("/api/consult", "consult"),
    ("/consult", "consult"),
    ("/api/search", "search"),
    ("/search", "search"),
    ("/api/press", "press"),
    ("/press", "press"),
    ("/api/auth", "identity"),
    ("/api/identity", "identity"),
    ("/staff", "identity"),
)
"""Path prefix -> service; everything else belongs to the portal. nginx routes the same way."""


def owner_of(path: str) -> str:
    for prefix, service in PATH_OWNERS:
        if path == prefix or path.startswith(prefix + "/"):
            return service
    return "portal"


class PathDispatcher:
    """Routes by path prefix without stripping it: each app registers its full paths."""

    def __init__(self, apps: dict[str, Flask]) -> None:
        self.apps = apps

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = self.apps[owner_of(environ.get("PATH_INFO", "/"))]
        return app.wsgi_app(environ, start_response)  # type: ignore[no-any-return]


def create_app_for(service: str, settings: Settings) -> Flask:
    """The Flask app of one service (not the portal)."""
    package = importlib.import_module(SPECS[service].package)
    app: Flask = package.create_app(settings)
    return app


def create_service_apps(settings: Settings) -> dict[str, Flask]:
    return {service: create_app_for(service, settings) for service in SERVICES}


def _in_process_probe(app: Flask) -> Callable[[], tuple[bool, dict[str, Any]]]:
    return lambda: readiness_report(app)


def create_suite(settings: Settings | None = None) -> PathDispatcher:
    from services.portal import create_app as create_portal

    settings = settings or load_settings()
    apps: dict[str, Flask] = create_service_apps(settings)
    probes = {name: _in_process_probe(app) for name, app in apps.items()}
    apps["portal"] = create_portal(settings, probes)
    return PathDispatcher(apps)


def create_worker_app(settings: Settings | None = None) -> Flask:
    """The Flask app Celery workers and beat run in: every service's database, no routes."""
    from services.celery_app import CeleryPublisher
    from services.db import open_service_database, register_database
    from services.observability import configure_logging
    from services.outbox import install_after_commit_send
    from services.web import get_celery

    settings = settings or load_settings()
    configure_logging("worker", settings.log_level, settings.log_json)
    app = Flask("gongkai_worker")
    app.config["SECRET_KEY"] = settings.secret_key
    app.extensions["gongkai.settings"] = settings
    install_after_commit_send()
    publisher = CeleryPublisher(get_celery(settings))
    for service in SERVICES:
        database = open_service_database(settings, service)
        database.publisher = publisher
        register_database(app, database)
    return app
