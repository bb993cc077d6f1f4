"""The consult REST API (published answers; submission arrives with the consult workflow)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint

from consult.schemas import (
    AnswerListArgsSchema,
    AnswerPageSchema,
    ClassifyArgsSchema,
    ClassifyResultSchema,
    PublicAnswerSchema,
)
from services.auth import public
from services.errors import api_abort
from services.public_read import latest_documents, public_document

blp = Blueprint("consult_api", __name__, url_prefix="/api/consult", description="咨询回复 Consultations and answers")
classify_blp = Blueprint("consult_classify", __name__, url_prefix="/api/consult",
                         description="咨询分类 Category suggestion (rate-limited per address)")


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


NO_MODEL_MESSAGE = "智能分类暂不可用：尚未安装分类模型，请手动选择类别 / no router model installed yet"


@classify_blp.post("/classify")
@classify_blp.arguments(ClassifyArgsSchema)
@classify_blp.response(200, ClassifyResultSchema)
@classify_blp.alt_response(503, description="no router model installed yet")
@public
def classify(args: dict[str, Any]) -> dict[str, Any]:
    """The likely category of a message, its confidence (0..1) and the department it goes to."""
    from consult.routing import department_for, load_current_router

    settings = current_app.extensions["gongkai.settings"]
    router = load_current_router(settings.data_dir)
    if router is None:
        api_abort(503, NO_MODEL_MESSAGE)
    category, confidence = router.classify(args["text"])
    department = department_for(category, settings.router_departments_file)
    return {
        "category": category,
        "confidence": round(confidence, 4),
        "department": department._asdict() if department is not None else None,
        "auto_assign": confidence >= settings.router_confidence_threshold,
    }
