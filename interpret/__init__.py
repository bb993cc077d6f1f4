"""interpret: source policies (源政策文件) and their interpretations (政策解读)."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from interpret import api, dashboard, import_api, pages
    from services.web import create_service_app

    app, rest = create_service_app("interpret", __name__, settings=settings, api_title="Gongkai interpret 政策解读")
    rest.register_blueprint(api.blp)
    rest.register_blueprint(import_api.blp)
    app.register_blueprint(pages.bp)
    dashboard.register(app, rest)
    return app
