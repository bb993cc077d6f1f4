"""The bare Flask baseline: the ceiling a Flask app reaches under the same gunicorn settings in the same run.

    gunicorn -c deploy/gunicorn.conf.py bench.bare_app:app

Every load scenario measures this app next to the suite and reports the suite's figures as a share of it,
because the machine is shared and absolute figures drift. It does no work beyond Flask's own: one route
answering a small HTML page, one answering a small JSON document, one accepting a JSON body (201).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

PAGE = "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>公开</title></head>" \
       "<body><p>政策解读</p></body></html>"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def page() -> Any:
        return PAGE

    @app.get("/api")
    def document() -> Any:
        return jsonify(total=0, hits=[], facets={})

    @app.post("/api")
    def accept() -> Any:
        body = request.get_json(silent=True) or {}
        return jsonify(received=len(body)), 201

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    return app


app = create_app()
