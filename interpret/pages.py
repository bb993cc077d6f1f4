"""Public pages of the interpret service."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from services.auth import public
from services.public_read import latest_documents, page_number, public_document

bp = Blueprint("interpret_pages", __name__, url_prefix="/interpret", template_folder="templates")


@bp.get("/")
@public
def index() -> Response:
    return redirect(url_for("interpret_pages.policies"))


@bp.get("/policies")
@public
def policies() -> str:
    listing = latest_documents(current_app, "policy", page_number(request.args.get("page")), 20)
    return render_template("interpret/policies.html", listing=listing)


@bp.get("/policies/<int:policy_id>")
@public
def policy(policy_id: int) -> str:
    document = public_document(current_app, f"policy-{policy_id}")
    return render_template("interpret/policy.html", policy=document)


@bp.get("/interpretations")
@public
def interpretations() -> str:
    listing = latest_documents(current_app, "interpretation", page_number(request.args.get("page")), 20)
    return render_template("interpret/interpretations.html", listing=listing)
