"""The consult REST API (published answers; submission arrives with the consult workflow)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint

from consult.schemas import AnswerListArgsSchema, AnswerPageSchema, PublicAnswerSchema
from services.auth import public
from services.public_read import latest_documents, public_document

blp = Blueprint("consult_api", __name__, url_prefix="/api/consult", description="咨询回复 Consultations and answers")


@blp.get("/answers")
@blp.arguments(AnswerListArgsSchema, location="query")
@blp.response(200, AnswerPageSchema)
@public
def list_answers(args: dict[str, Any]) -> dict[str, Any]:
    """Published answers, newest first."""
    return latest_documents(current_app, "answer", args["page"], args["per_page"]).as_dict()


@blp.get("/answers/<int:answer_id>")
@blp.response(200, PublicAnswerSchema)
@public
def get_answer(answer_id: int) -> dict[str, Any]:
    """One published answer."""
    return public_document(current_app, f"answer-{answer_id}")
