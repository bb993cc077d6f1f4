"""Public pages of the consult service."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from services.auth import public
from services.public_read import latest_documents, page_number, public_document

bp = Blueprint("consult_pages", __name__, url_prefix="/consult", template_folder="templates")


@bp.get("/")
@public
def index() -> Response:
    return redirect(url_for("consult_pages.answers"))


@bp.get("/answers")
@public
def answers() -> str:
    listing = latest_documents(current_app, "answer", page_number(request.args.get("page")), 20)
    return render_template("consult/answers.html", listing=listing)


@bp.get("/answers/<int:answer_id>")
@public
def answer(answer_id: int) -> str:
    return render_template("consult/answer.html", answer=public_document(current_app, f"answer-{answer_id}"))
