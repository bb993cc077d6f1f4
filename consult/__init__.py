"""consult: the public Q&A inbox (咨询/留言) and its published answers (咨询回复)."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from consult import api, pages, staff_pages
    from services.web import create_service_app

    app, rest = create_service_app("consult", __name__, settings=settings, api_title="Gongkai consult 咨询回复")
    limiter = app.extensions["gongkai.limiter"]
    settings = app.extensions["gongkai.settings"]
    rest.register_blueprint(api.blp)
    limiter.limit(settings.classify_rate_limit)(api.classify_blp)
    rest.register_blueprint(api.classify_blp)
    limiter.limit(settings.consult_submit_rate_limit, methods=["POST"])(api.asker_blp)
    limiter.limit(settings.consult_track_rate_limit, methods=["GET"])(api.asker_blp)
    rest.register_blueprint(api.asker_blp)
    rest.register_blueprint(api.manage_blp)
    limiter.limit(settings.consult_submit_rate_limit, methods=["POST"])(pages.asker_bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(pages.asker_bp)
    app.register_blueprint(staff_pages.bp)
    return app
