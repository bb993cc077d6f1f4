"""press: hot topics and responses to public concerns (回应关切) for the press office."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.web import create_service_app

    app, _rest = create_service_app("press", __name__, settings=settings, api_title="Gongkai press 回应关切")
    from services.press import briefing_pages

    briefing_pages.register(app)
    from services.press import response_api, response_pages  # responses (回应关切 / 媒体聚焦)

    _rest.register_blueprint(response_api.blp)
    app.register_blueprint(response_pages.public_bp)
    app.register_blueprint(response_pages.staff_bp)
    from services.press import api, pages  # the console: topics, alerts, alert rules

    _rest.register_blueprint(api.blp)
    app.register_blueprint(pages.bp)
    return app
