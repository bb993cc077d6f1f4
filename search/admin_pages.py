"""The site-search console under ``/search/admin/``.

* Synonym groups and best bets, kept by the disclosure office (``content.publish``): list,
  add (refused with field errors, nothing saved, when invalid), delete; every change is
  audited and applies to searches within seconds, without a rebuild.
* The zero-result report for editors (``records.read``): the queries that found nothing.
* Index reconciliation (索引核对, ``content.publish``, like the reindex status): the last runs of
  ``search.reconcile`` with their counts per type, and a button that queues a run for a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from search import curation
from search import reconcile as reconciliation
from search.curation import BestBetInput, QueryCount
from search.query import CHINA, SearchParams, run_search, today_in_china
from services.auth import requires, signed_in_staff
from services.db import get_session
from services.permissions import Permission
from services.searchengine.port import SearchEngineError, SearchUnavailable
from services.web import content_alias, get_settings
from services.workflow import ContentProblem

bp = Blueprint("search_admin", __name__, url_prefix="/search/admin", template_folder="templates")

REPORT_DAYS = (7, 30, 90, 365)
DEFAULT_REPORT_DAYS = 30
REPORT_LIMIT = 100
PREVIEW_RESULTS = 10


def _db() -> Session:
    return get_session("search")


_staff = signed_in_staff


def _done(allowed: tuple[str, ...]) -> str | None:
    done = request.args.get("done")
    return done if done in allowed else None


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"local_time": local_time, "Permission": Permission}


def local_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


# -- synonyms ------------------------------------------------------------------------------------


def _render_synonyms(*, status: int = 200, errors: dict[str, list[str]] | None = None,
                     values: Mapping[str, str] | None = None) -> tuple[str, int]:
    return render_template(
        "search/admin/synonyms.html", staff=_staff(), groups=curation.synonym_groups(_db()), errors=errors or {},
        values=values or {}, done=_done(("add", "delete")),
    ), status


@bp.route("/synonyms", methods=["GET", "POST"])
@requires(Permission.PUBLISH)
def synonyms() -> Any:
    if request.method == "GET":
        return _render_synonyms()
    db = _db()
    try:
        curation.add_synonym_group(db, _staff(), request.form.get("terms") or "")
    except ContentProblem as problem:
        db.rollback()
        return _render_synonyms(status=422, errors=problem.errors, values=request.form)
    db.commit()
    curation.clear_curation_cache(current_app)
    return redirect(url_for("search_admin.synonyms", done="add"), 303)


@bp.post("/synonyms/<int:group_id>/delete")
@requires(Permission.PUBLISH)
def synonyms_delete(group_id: int) -> Response:
    """Delete a synonym group; one already deleted (a second click) leads to the same list."""
    db = _db()
    curation.delete_synonym_group(db, _staff(), group_id)
    db.commit()
    curation.clear_curation_cache(current_app)
    return redirect(url_for("search_admin.synonyms", done="delete"), 303)


# -- best bets -----------------------------------------------------------------------------------


def _pinned_documents(doc_ids: list[str]) -> tuple[dict[str, dict[str, Any] | None], bool]:
    """The indexed documents of the pins (None: not in the index); False when the engine is down."""
    found: dict[str, dict[str, Any] | None] = {}
    try:
        engine, alias = content_alias(current_app)
        for doc_id in dict.fromkeys(doc_ids):
            try:
                found[doc_id] = engine.get_document(alias, doc_id)
            except SearchEngineError:
                found[doc_id] = None
    except SearchUnavailable:
        return {}, False
    return found, True


def _document_exists(doc_id: str) -> bool | None:
    try:
        engine, alias = content_alias(current_app)
        document = engine.get_document(alias, doc_id)
    except SearchUnavailable:
        return None
    except SearchEngineError:
        return False
    return document is not None and not document.get("deleted")


def _preview(text: str) -> tuple[list[dict[str, Any]] | None, bool]:
    """The engine's first results for ``text`` (not logged, no curation), to find the document to pin."""
    if not curation.has_words(curation.normalise_query(text)):
        return None, True
    try:
        results = run_search(current_app, SearchParams(q=text, per_page=PREVIEW_RESULTS), log_query=False,
                             curated=False)
    except SearchUnavailable:
        return None, False
    hits: list[dict[str, Any]] = results["hits"]
    return hits, True


def _render_best_bets(*, status: int = 200, errors: dict[str, list[str]] | None = None,
                      values: Mapping[str, str] | None = None) -> tuple[str, int]:
    bets = curation.best_bets(_db())
    documents, engine_ok = _pinned_documents([bet.doc_id for bet in bets])
    preview_text = (request.args.get("preview") or "")[:200]
    preview, preview_ok = _preview(preview_text) if preview_text else (None, True)
    return render_template(
        "search/admin/best_bets.html", staff=_staff(), bets=bets, documents=documents,
        engine_ok=engine_ok and preview_ok, today=today_in_china(), errors=errors or {}, values=values or {},
        done=_done(("add", "delete")), preview_text=preview_text, preview=preview,
    ), status


@bp.route("/best-bets", methods=["GET", "POST"])
@requires(Permission.PUBLISH)
def best_bets() -> Any:
    if request.method == "GET":
        return _render_best_bets()
    db = _db()
    form = request.form
    values = BestBetInput(query=form.get("query") or "", doc_id=form.get("doc_id") or "",
                          until=form.get("until") or "", label=form.get("label") or "")
    try:
        curation.add_best_bet(db, _staff(), values, today=today_in_china(), document_exists=_document_exists)
    except ContentProblem as problem:
        db.rollback()
        return _render_best_bets(status=422, errors=problem.errors, values=form)
    db.commit()
    curation.clear_curation_cache(current_app)
    return redirect(url_for("search_admin.best_bets", done="add"), 303)


@bp.post("/best-bets/<int:bet_id>/delete")
@requires(Permission.PUBLISH)
def best_bets_delete(bet_id: int) -> Response:
    """Delete a best bet; one already deleted (a second click) leads to the same list."""
    db = _db()
    curation.delete_best_bet(db, _staff(), bet_id)
    db.commit()
    curation.clear_curation_cache(current_app)
    return redirect(url_for("search_admin.best_bets", done="delete"), 303)


# -- the zero-result report ----------------------------------------------------------------------


@bp.get("/zero-results")
@requires(Permission.READ_RECORDS)
def zero_results() -> str:
    raw = request.args.get("days") or ""
    days = int(raw) if raw.isdigit() and int(raw) in REPORT_DAYS else DEFAULT_REPORT_DAYS
    since = datetime.now(UTC) - timedelta(days=days)
    rows: list[QueryCount] = curation.zero_result_queries(_db(), since, REPORT_LIMIT)
    return render_template("search/admin/zero_results.html", staff=_staff(), rows=rows, days=days,
                           report_days=REPORT_DAYS, limit=REPORT_LIMIT)


# -- index reconciliation ------------------------------------------------------------------------


@bp.route("/reconcile", methods=["GET", "POST"])
@requires(Permission.PUBLISH)
def reconcile() -> Any:
    """The last runs with their counts per type; POST queues a run for a worker (while one is queued or
    running, a second click queues nothing)."""
    if request.method == "POST":
        db = _db()
        _, queued = reconciliation.request_run(db, _staff(), get_settings(current_app).search_alias)
        db.commit()
        return redirect(url_for("search_admin.reconcile", done="queued" if queued else "already"), 303)
    runs = reconciliation.recent_runs(_db())
    active = any(run["state"] in reconciliation.ACTIVE_STATES for run in runs)
    return render_template("search/admin/reconcile.html", staff=_staff(), runs=runs, active=active,
                           count_names=reconciliation.COUNT_NAMES, done=_done(("queued", "already")))
