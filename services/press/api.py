"""The press office console API (``/api/press/...``, ``Authorization: Bearer <token>``, role press_officer).

* ``GET /api/press/topics?window=&department=&category=``: rising topics with their counts per bucket;
* ``GET /api/press/topics/<id>``: one topic (trend, why grouped, linked answers, interpretations and
  responses, alerts), ``GET /api/press/topics/<id>/messages?page=``: its messages, redacted;
* ``GET /api/press/alerts``: alerts with their response clocks, open clocks first;
* ``/api/press/rules``: the alert rules (list, create, read, replace, delete; every change audited);
* ``GET /api/press/recompute``: the progress of the latest full recompute.

The read side is :mod:`services.press.dashboard`, the rules :mod:`services.press.rules`; a write
commits once at the end, so a refused input leaves nothing written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from services.auth import requires, signed_in_staff
from services.db import get_session, utcnow
from services.errors import api_abort
from services.permissions import Permission
from services.press import dashboard, rules
from services.press.models import AlertRule
from services.press.schemas import (
    AlertListArgsSchema,
    AlertListSchema,
    AlertRuleInputSchema,
    AlertRuleListSchema,
    AlertRuleSchema,
    RecomputeStatusSchema,
    TopicDetailArgsSchema,
    TopicDetailSchema,
    TopicListArgsSchema,
    TopicListSchema,
    TopicMessagePageSchema,
    TopicMessagesArgsSchema,
)
from services.schemas import links_from
from services.web import content_alias

blp = Blueprint("press_api", __name__, url_prefix="/api/press",
                description="热点话题 Hot topics, alerts and alert rules of the press office (bearer token)")

NO_TOPIC = "话题不存在 / no such topic"
NO_RULE = "预警规则不存在 / no such alert rule"


def _db() -> Session:
    return get_session("press")


_staff = signed_in_staff


def _now(args: dict[str, Any]) -> datetime:
    return dashboard.as_of_moment(args["as_of"]) if args.get("as_of") else utcnow()


@blp.get("/topics")
@blp.arguments(TopicListArgsSchema, location="query")
@blp.response(200, TopicListSchema)
@requires(Permission.PRESS)
def list_topics(args: dict[str, Any]) -> dict[str, Any]:
    """Rising topics of the window (24h: hour buckets; 7d, 30d: day buckets), hottest first."""
    found = dashboard.rising_topics(_db(), args["window"], args.get("department"), args.get("category"),
                                    now=_now(args), limit=args["limit"])
    return found.as_dict()


@blp.get("/topics/<int:topic_id>")
@blp.arguments(TopicDetailArgsSchema, location="query")
@blp.response(200, TopicDetailSchema)
@requires(Permission.PRESS)
def get_topic(args: dict[str, Any], topic_id: int) -> dict[str, Any]:
    """One topic: its trend, why its messages were grouped, linked answers, interpretations and responses."""
    detail = dashboard.topic_detail(_db(), topic_id, args["window"], now=_now(args))
    if detail is None:
        api_abort(404, NO_TOPIC)
    engine, alias = content_alias(current_app)
    documents, available = dashboard.linked_documents(engine, alias, detail.keywords)
    return {**detail.as_dict(), "linked_documents": documents, "search_available": available}


@blp.get("/topics/<int:topic_id>/messages")
@blp.arguments(TopicMessagesArgsSchema, location="query")
@blp.response(200, TopicMessagePageSchema)
@requires(Permission.PRESS)
def list_topic_messages(args: dict[str, Any], topic_id: int) -> dict[str, Any]:
    """The drill-down: the topic's messages, newest first, with personal data replaced by markers."""
    db = _db()
    if dashboard.topic_detail(db, topic_id, now=utcnow()) is None:
        api_abort(404, NO_TOPIC)
    return dashboard.topic_messages(db, topic_id, args["page"], args["per_page"]).as_dict()


@blp.get("/alerts")
@blp.arguments(AlertListArgsSchema, location="query")
@blp.response(200, AlertListSchema)
@requires(Permission.PRESS)
def list_alerts(args: dict[str, Any]) -> dict[str, Any]:
    """Alerts with their response clocks: the running ones first (soonest due first), then the answered ones."""
    clocks = dashboard.alert_clocks(_db(), utcnow(), open_only=args["open"])
    return {"items": [clock.as_dict() for clock in clocks]}


@blp.get("/recompute")
@blp.response(200, RecomputeStatusSchema)
@requires(Permission.PRESS)
def recompute_status() -> dict[str, Any]:
    """The progress of the latest full recompute of the topics (``state: none`` if none ever ran)."""
    status = dashboard.recompute_status(_db())
    return status or {"id": None, "state": "none", "stage": None, "done": 0, "total": 0, "percent": 0.0,
                      "error": None, "started_at": None, "finished_at": None}


# -- alert rules ---------------------------------------------------------------------------------


def _rule(rule_id: int) -> AlertRule:
    rule = _db().get(AlertRule, rule_id)
    if rule is None:
        api_abort(404, NO_RULE)
    return rule


@blp.get("/rules")
@blp.response(200, AlertRuleListSchema)
@requires(Permission.PRESS)
def list_rules() -> dict[str, Any]:
    """Every alert rule."""
    return {"items": [rules.rule_dict(rule) for rule in rules.list_rules(_db())]}


@blp.post("/rules")
@blp.arguments(AlertRuleInputSchema)
@blp.response(201, AlertRuleSchema)
@blp.doc(**links_from(201, "id", "GET /api/press/rules/{rule_id}", "PUT /api/press/rules/{rule_id}",
                      "DELETE /api/press/rules/{rule_id}", parameter="rule_id"))
@requires(Permission.PRESS)
def create_rule(body: dict[str, Any]) -> dict[str, Any]:
    """A new alert rule (growth: X new messages within Y hours and a burst score; emergency: terms)."""
    db = _db()
    rule = rules.create_rule(db, _staff(), rules.RuleFields.from_mapping(body))
    db.commit()
    return rules.rule_dict(rule)


@blp.get("/rules/<int:rule_id>")
@blp.response(200, AlertRuleSchema)
@requires(Permission.PRESS)
def get_rule(rule_id: int) -> dict[str, Any]:
    return rules.rule_dict(_rule(rule_id))


@blp.put("/rules/<int:rule_id>")
@blp.arguments(AlertRuleInputSchema)
@blp.response(200, AlertRuleSchema)
@requires(Permission.PRESS)
def update_rule(body: dict[str, Any], rule_id: int) -> dict[str, Any]:
    """Replace a rule's settings (fields left out take their defaults)."""
    db = _db()
    rule = rules.update_rule(db, _staff(), _rule(rule_id), rules.RuleFields.from_mapping(body))
    db.commit()
    return rules.rule_dict(rule)


@blp.delete("/rules/<int:rule_id>")
@blp.response(204)
@requires(Permission.PRESS)
def delete_rule(rule_id: int) -> None:
    """Delete a rule that never fired (one with alerts can only be disabled: 422)."""
    db = _db()
    rules.delete_rule(db, _staff(), _rule(rule_id))
    db.commit()
