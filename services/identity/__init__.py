"""identity: staff departments, users, roles and the signed identity every service verifies."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.identity import admin, api, calendar_admin, pages
    from services.web import create_service_app

    app, rest = create_service_app("identity", __name__, settings=settings, api_title="Gongkai identity 工作人员")
    limiter = app.extensions["gongkai.limiter"]
    login_rate = app.extensions["gongkai.settings"].login_rate_limit
    limiter.limit(login_rate, methods=["POST"])(api.auth_blp)
    limiter.limit(login_rate, methods=["POST"])(pages.bp)
    rest.register_blueprint(api.auth_blp)
    rest.register_blueprint(api.identity_blp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(calendar_admin.bp)
    return app
