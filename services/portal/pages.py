"""Home page, static assets, language switch and the suite's readiness."""

from __future__ import annotations

from typing import Any

import requests
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, send_from_directory
from werkzeug.wrappers import Response

from services.auth import public
from services.portal import STATIC_DIR
from services.public_read import latest_documents
from services.searchengine.port import SearchUnavailable
from services.security import safe_next
from services.settings import SERVICES
from services.web import ELDER_MODE_COOKIE, get_settings, readiness_report

bp = Blueprint("portal_pages", __name__)

STATIC_MAX_AGE = 7 * 24 * 3600


@bp.get("/")
@public
def home() -> str:
    latest: dict[str, Any] = {}
    search_down = False
    for doc_type in ("policy", "interpretation", "answer"):
        try:
            latest[doc_type] = latest_documents(current_app, doc_type, 1, 6).items
        except SearchUnavailable:
            latest[doc_type], search_down = [], True
    return render_template("home.html", latest=latest, search_down=search_down)


@bp.get("/static/<path:filename>")
@public
def static(filename: str) -> Response:
    return send_from_directory(STATIC_DIR, filename, max_age=STATIC_MAX_AGE)


@bp.get("/lang/<code>")
@public
def switch_language(code: str) -> Response:
    response = redirect(safe_next(request.args.get("next")))
    if code in ("zh_CN", "en"):
        response.set_cookie("lang", code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


@bp.get("/elder-mode")
@public
def switch_elder_mode() -> Response:
    """The 长者模式 switch without JavaScript: ``?on=1`` (or ``0``) and ``return_to``, a path on this site
    (not ``next``: the header's form is on every page, the sign-in form's ``next`` among them).

    The cookie is readable by the switch's script, which flips it in place when JavaScript runs; it is only
    a display preference.
    """
    response = redirect(safe_next(request.args.get("return_to")))
    if request.args.get("on") == "1":
        response.set_cookie(ELDER_MODE_COOKIE, "1", max_age=365 * 24 * 3600, samesite="Lax")
    else:
        response.delete_cookie(ELDER_MODE_COOKIE, samesite="Lax")
    return response


def _probe_over_http(base_url: str) -> tuple[bool, dict[str, Any]]:
    try:
        answer = requests.get(f"{base_url}/readyz", timeout=2)
        body = answer.json()
    except (requests.RequestException, ValueError) as error:
        return False, {"reachable": {"ok": False, "detail": str(error)}}
    return answer.status_code == 200, body.get("checks", {})


@bp.get("/readyz")
@public
def suite_readyz() -> Any:
    """200 only when every service is ready; names each service and its checks."""
    probes = current_app.extensions["gongkai.service_probes"]
    service_urls = get_settings(current_app).service_urls
    services: dict[str, Any] = {}
    for service in SERVICES:
        if service in probes:
            ok, checks = probes[service]()
        elif service in service_urls:
            ok, checks = _probe_over_http(service_urls[service])
        else:
            ok, checks = False, {"configured": {"ok": False, "detail": f"SERVICE_URL_{service.upper()} is not set"}}
        services[service] = {"ready": ok, "checks": checks}
    portal_ok, portal_checks = readiness_report(current_app)
    ready = portal_ok and all(item["ready"] for item in services.values())
    body = {"status": "ready" if ready else "not ready", "services": services, "portal": portal_checks}
    return jsonify(body), 200 if ready else 503
