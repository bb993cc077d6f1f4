"""identity: staff departments, users, roles and the signed identity every service verifies."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.identity import pages
    from services.web import create_service_app

    app, _rest = create_service_app("identity", __name__, settings=settings, api_title="Gongkai identity 工作人员")
    app.register_blueprint(pages.bp)
    return app
