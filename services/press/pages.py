"""The press office console (``/press/...``, role press_officer): hot topics, alerts and alert rules.

* ``/press/``: the dashboard: rising topics of the window (24 小时 / 7 天 / 30 天) filtered by department
  and category, one ECharts chart of the top topics over time, and per topic a sparkline, sample
  questions (redacted), departments, whether the office has responded, and the response clocks;
* ``/press/topics/<id>``: one topic: trend chart, why grouped, the drill-down message list, linked
  answers, interpretations and responses;
* ``/press/alerts``: every alert and its response clock; ``/press/rules``: the alert rules;
* ``/press/static/...``: the console's own scripts and styles, and the vendored ECharts.

Chart data travels in ``<script type="application/json">`` blocks read by ``static/js/press-console.js``:
the CSP allows no inline script. Every text shown passes through :func:`services.press.dashboard.safe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, send_from_directory, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from services.auth import public, requires, signed_in_staff
from services.db import get_session, utcnow
from services.permissions import Permission
from services.press import dashboard, rules
from services.press.dashboard import BEIJING, WINDOW_LABELS, WINDOWS
from services.press.models import AlertRule
from services.press.search_interest import rising_searches, snapshot_info, topic_searches
from services.web import content_alias
from services.workflow import ContentProblem

STATIC_DIR = Path(__file__).parent / "static"
STATIC_MAX_AGE = 7 * 24 * 3600
FILTER_MAX_LENGTH = 100
MAX_PAGE = 10_000

bp = Blueprint("press_pages", __name__, url_prefix="/press", template_folder="templates")


@bp.after_request
def _never_cached(response: Response) -> Response:
    if request.endpoint != "press_pages.static_file":
        response.headers["Cache-Control"] = "private, no-store"
    return response


def local_time(moment: datetime | None) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if moment else ""


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"local_time": local_time, "clock_text": dashboard.clock_text, "window_labels": WINDOW_LABELS,
            "kind_labels": rules.KIND_LABELS, "sparkline": dashboard.sparkline_points}


def _db() -> Session:
    return get_session("press")


_staff = signed_in_staff


@bp.get("/static/<path:filename>")
@public
def static_file(filename: str) -> Response:
    """The console's scripts and styles and the vendored ECharts (nothing from a CDN)."""
    return send_from_directory(STATIC_DIR, filename, max_age=STATIC_MAX_AGE)


# -- the dashboard ---------------------------------------------------------------------------------


def _arg(args: Mapping[str, str], name: str) -> str:
    return (args.get(name) or "").strip()[:FILTER_MAX_LENGTH]


def _window(args: Mapping[str, str], errors: dict[str, list[str]]) -> str:
    window = _arg(args, "window") or dashboard.DEFAULT_WINDOW
    if window not in WINDOWS:
        errors["window"] = [_("请选择 24小时、7天 或 30天")]
        return dashboard.DEFAULT_WINDOW
    return window


def _as_of(args: Mapping[str, str], errors: dict[str, list[str]]) -> date | None:
    """The optional 截至日期 (YYYY-MM-DD, Beijing): the windows end with that day instead of now."""
    raw = _arg(args, "as_of")
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        errors["as_of"] = [_("截至日期应为 YYYY-MM-DD 格式")]
        return None
    if day > datetime.now(BEIJING).date() or day.year < 2000:
        errors["as_of"] = [_("截至日期应在 2000 年至今天之间")]
        return None
    return day


def _now(as_of: date | None) -> datetime:
    return dashboard.as_of_moment(as_of) if as_of else utcnow()


def _page_number(args: Mapping[str, str], errors: dict[str, list[str]]) -> int:
    raw = _arg(args, "page") or "1"
    page = int(raw) if raw.isdigit() and len(raw) <= 6 else 0
    if not 1 <= page <= MAX_PAGE:
        errors["page"] = [_("页码无效")]
        return 1
    return page


@bp.get("/")
@requires(Permission.PRESS)
def index() -> tuple[str, int]:
    db = _db()
    errors: dict[str, list[str]] = {}
    window = _window(request.args, errors)
    departments, categories = dashboard.filter_choices(db)
    department = _arg(request.args, "department")
    if department and department not in departments:
        errors["department"] = [_("请从列表中选择部门")]
        department = ""
    category = _arg(request.args, "category")
    if category and category not in categories:
        errors["category"] = [_("请从列表中选择类别")]
        category = ""
    as_of = _as_of(request.args, errors)
    found = dashboard.rising_topics(db, window, department or None, category or None, now=_now(as_of))
    return render_template(
        "press/dashboard.html", staff=_staff(), found=found, chart=found.chart(), errors=errors, window=window,
        as_of=as_of, latest_day=None if found.topics else dashboard.latest_message_day(db),
        department=department, category=category, departments=departments, categories=categories,
        windows=list(WINDOWS), recompute=dashboard.recompute_status(db),
        open_alerts=dashboard.alert_clocks(db, utcnow(), open_only=True, limit=10),
        searches=rising_searches(db, limit=10), search_snapshot=snapshot_info(db),
    ), (400 if errors else 200)


@bp.get("/topics/<int:topic_id>")
@requires(Permission.PRESS)
def topic(topic_id: int) -> tuple[str, int]:
    db = _db()
    errors: dict[str, list[str]] = {}
    window = _window(request.args, errors)
    page = _page_number(request.args, errors)
    as_of = _as_of(request.args, errors)
    detail = dashboard.topic_detail(db, topic_id, window, now=_now(as_of))
    if detail is None:
        abort(404)
    last_at = detail.topic.last_at
    if as_of is None and "as_of" not in errors and last_at is not None and last_at < detail.rising.start:
        # Quiet in the current window: its trend up to its latest message says more than a flat line.
        as_of = last_at.astimezone(BEIJING).date()
        detail = dashboard.topic_detail(db, topic_id, window, now=_now(as_of)) or detail
    messages = dashboard.topic_messages(db, topic_id, page)
    engine, alias = content_alias(current_app)
    documents, search_available = dashboard.linked_documents(engine, alias, detail.keywords)
    counts = detail.trend.counts if detail.trend else [0] * detail.rising.window.buckets
    chart = {"labels": detail.rising.labels, "series": [{"name": detail.label, "id": topic_id, "data": counts}]}
    return render_template(
        "press/topic.html", staff=_staff(), detail=detail, messages=messages, documents=documents,
        search_available=search_available, chart=chart, window=window, windows=list(WINDOWS), errors=errors,
        searches=topic_searches(db, topic_id), as_of=as_of,
    ), (400 if errors else 200)


@bp.get("/alerts")
@requires(Permission.PRESS)
def alerts() -> str:
    return render_template("press/alerts.html", staff=_staff(), clocks=dashboard.alert_clocks(_db(), utcnow()))


# -- alert rules -------------------------------------------------------------------------------------


def _rules_page(*, form: Mapping[str, Any] | None = None, errors: dict[str, list[str]] | None = None,
                status: int = 200) -> tuple[str, int]:
    done = request.args.get("done", "")
    return render_template(
        "press/rules.html", staff=_staff(), rules_list=rules.list_rules(_db()), form=form or _form_values(None),
        errors=errors or {}, done=done if done in ("create", "update", "delete") else "",
        default_hours=rules.DEFAULT_RESPONSE_HOURS,
    ), status


def _form_values(rule: AlertRule | None) -> dict[str, Any]:
    fields = rules.RuleFields.of(rule) if rule is not None else rules.RuleFields(response_hours="")
    return {"name": fields.name, "kind": fields.kind, "min_messages": fields.min_messages,
            "within_hours": fields.within_hours, "min_burst": fields.min_burst, "terms": "\n".join(fields.terms),
            "response_hours": fields.response_hours if fields.response_hours is not None else "",
            "email_to": "\n".join(fields.email_to), "webhook_url": fields.webhook_url or "",
            "enabled": fields.enabled}


def _submitted(form: Mapping[str, str]) -> tuple[rules.RuleFields, dict[str, Any]]:
    names = ("name", "kind", "min_messages", "within_hours", "min_burst", "terms", "response_hours", "email_to",
             "webhook_url")
    data: dict[str, Any] = {name: form.get(name, "") for name in names}
    data["enabled"] = form.get("enabled", "") in ("1", "on")
    return rules.RuleFields.from_mapping(data), data


@bp.get("/rules")
@requires(Permission.PRESS)
def rules_list() -> tuple[str, int]:
    return _rules_page()


@bp.post("/rules")
@requires(Permission.PRESS)
def rules_create() -> Any:
    db = _db()
    fields, shown = _submitted(request.form)
    try:
        rules.create_rule(db, _staff(), fields)
    except ContentProblem as problem:
        db.rollback()
        return _rules_page(form=shown, errors=problem.errors, status=422)
    db.commit()
    return redirect(url_for("press_pages.rules_list", done="create"), 303)


def _load_rule(rule_id: int) -> AlertRule:
    rule = _db().get(AlertRule, rule_id)
    if rule is None:
        abort(404)
    return rule


def _rule_page(rule: AlertRule, *, form: Mapping[str, Any] | None = None,
               errors: dict[str, list[str]] | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("press/rule_edit.html", staff=_staff(), rule=rule, form=form or _form_values(rule),
                           errors=errors or {}, default_hours=rules.DEFAULT_RESPONSE_HOURS), status


@bp.get("/rules/<int:rule_id>")
@requires(Permission.PRESS)
def rule_edit(rule_id: int) -> tuple[str, int]:
    return _rule_page(_load_rule(rule_id))


@bp.post("/rules/<int:rule_id>")
@requires(Permission.PRESS)
def rule_update(rule_id: int) -> Any:
    db = _db()
    rule = _load_rule(rule_id)
    fields, shown = _submitted(request.form)
    try:
        rules.update_rule(db, _staff(), rule, fields)
    except ContentProblem as problem:
        db.rollback()
        return _rule_page(_load_rule(rule_id), form=shown, errors=problem.errors, status=422)
    db.commit()
    return redirect(url_for("press_pages.rules_list", done="update"), 303)


@bp.post("/rules/<int:rule_id>/delete")
@requires(Permission.PRESS)
def rule_delete(rule_id: int) -> Any:
    db = _db()
    rule = _load_rule(rule_id)
    try:
        rules.delete_rule(db, _staff(), rule)
    except ContentProblem as problem:
        db.rollback()
        return _rule_page(_load_rule(rule_id), errors=problem.errors, status=422)
    db.commit()
    return redirect(url_for("press_pages.rules_list", done="delete"), 303)
