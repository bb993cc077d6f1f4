"""The portal shell: home page, shared templates and static assets, suite readiness."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from services.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"

ServiceProbe = Callable[[], tuple[bool, dict[str, Any]]]


def create_app(settings: Settings | None = None, probes: dict[str, ServiceProbe] | None = None) -> Flask:
    """The portal; ``probes`` answer each service's readiness for the suite's ``/readyz``."""
    from services.portal import pages
    from services.web import create_service_app

    app, _rest = create_service_app(
        "portal", __name__, settings=settings, owns_database=False, serves_readiness=False
    )
    app.extensions["gongkai.service_probes"] = probes or {}
    app.register_blueprint(pages.bp)
    return app
