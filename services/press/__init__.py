"""press: hot topics and responses to public concerns (回应关切) for the press office."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from services.web import create_service_app

    app, _rest = create_service_app("press", __name__, settings=settings, api_title="Gongkai press 回应关切")
    return app
