"""search: the shared index the public reads from."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from search import admin_pages, api, pages, status_api
    from search.schemas import document_empty_values
    from services.web import create_service_app

    app, rest = create_service_app("search", __name__, settings=settings, api_title="Gongkai search 站内搜索")
    document_empty_values(rest)
    limiter = app.extensions["gongkai.limiter"]
    limiter.limit(app.extensions["gongkai.settings"].search_rate_limit)(api.blp)
    rest.register_blueprint(api.blp)
    rest.register_blueprint(status_api.blp)
    rest.register_blueprint(status_api.reconcile_blp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(admin_pages.bp)
    return app
