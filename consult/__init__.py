"""consult: the public Q&A inbox (咨询/留言) and its published answers (咨询回复)."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from consult import api, pages
    from services.web import create_service_app

    app, rest = create_service_app("consult", __name__, settings=settings, api_title="Gongkai consult 咨询回复")
    rest.register_blueprint(api.blp)
    limiter = app.extensions["gongkai.limiter"]
    limiter.limit(app.extensions["gongkai.settings"].classify_rate_limit)(api.classify_blp)
    rest.register_blueprint(api.classify_blp)
    app.register_blueprint(pages.bp)
    return app
