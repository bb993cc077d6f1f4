"""The interpret REST API (public reads for now; staff endpoints come with identity)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint

from interpret.schemas import PolicyListArgsSchema, PolicyPageSchema, PublicPolicySchema
from services.auth import public
from services.public_read import latest_documents, public_document

blp = Blueprint(
    "interpret_api", __name__, url_prefix="/api/interpret", description="政策文件与政策解读"
)


@blp.get("/policies")
@blp.arguments(PolicyListArgsSchema, location="query")
@blp.response(200, PolicyPageSchema)
@public
def list_policies(args: dict[str, Any]) -> dict[str, Any]:
    """Published policies, newest first."""
    return latest_documents(current_app, "policy", args["page"], args["per_page"]).as_dict()


@blp.get("/policies/<int:policy_id>")
@blp.response(200, PublicPolicySchema)
@public
def get_policy(policy_id: int) -> dict[str, Any]:
    """One published policy."""
    return public_document(current_app, f"policy-{policy_id}")
