"""Staff entrance pages."""

from __future__ import annotations

from flask import Blueprint, render_template

from services.settings import WEB_APPS

bp = Blueprint("identity_pages", __name__, url_prefix="/staff", template_folder="templates")


@bp.get("/")
def entrance() -> str:
    services = [name for name in WEB_APPS if name != "portal"]
    return render_template("identity/entrance.html", services=services)
