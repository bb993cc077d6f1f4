"""The weekly briefing pages of the press office console.

* ``GET /press/briefing``: a week picker (the last full week by default, and the twelve before it);
* ``GET /press/briefing.docx?week=YYYY-MM-DD``: the briefing of the week starting that Monday as a
  Word file (see ``services.press.briefing``); a date that is not a Monday, a week not begun yet or
  anything unreadable answers 400 with the reason. Each download is audited (``briefing.export``).

Both require ``Permission.PRESS`` and count the messages of the departments in which the caller
holds it (plus those not routed to a department yet).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response, abort, render_template, request

from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import current_staff, requires
from services.db import get_database, utcnow
from services.permissions import Permission, departments_with
from services.press.briefing import (
    BEIJING,
    DOCX_MIMETYPE,
    BriefingError,
    Week,
    build_weekly_briefing,
    file_name,
)
from services.press.models import OutboxEvent

bp = Blueprint("press_briefing", __name__, url_prefix="/press", template_folder="templates")

RECENT_WEEKS = 13


def register(app: Flask) -> None:
    app.register_blueprint(bp)


def _departments() -> set[str]:
    staff = current_staff()
    if staff is None:  # pragma: no cover - the access rule answers first
        abort(401)
    return departments_with(staff.grants, Permission.PRESS)


@bp.get("/briefing")
@requires(Permission.PRESS)
def briefing_page() -> Any:
    now = utcnow()
    last = Week.last_full(now)
    weeks = [Week(last.monday - timedelta(days=7 * n)) for n in range(RECENT_WEEKS)]
    error = None
    chosen = last
    if request.args.get("week"):
        try:
            chosen = Week.parse(request.args.get("week"), now)
        except BriefingError as problem:
            error = str(problem)
    return render_template(
        "press/briefing.html", weeks=weeks, error=error, today=now.astimezone(BEIJING).date().isoformat(),
        week_value=(request.args.get("week") or "").strip()[:20] if error else chosen.monday.isoformat(),
    ), (400 if error else 200)


@bp.get("/briefing.docx")
@requires(Permission.PRESS)
def briefing_download() -> Response:
    now = utcnow()
    try:
        week = Week.parse(request.args.get("week"), now)
    except BriefingError as problem:
        abort(400, description=str(problem))
    staff = current_staff()
    departments = _departments()
    with get_database("press").transaction() as session:
        content = build_weekly_briefing(session, week, now, departments)
        record_via_outbox(session, OutboxEvent, AuditRecord.by(
            staff, "press", "briefing.export", AuditResult.SUCCESS, object_type="briefing",
            object_id=week.monday.isoformat(), source_address=request.remote_addr,
            detail={"week": week.monday.isoformat(), "departments": sorted(departments), "bytes": len(content)},
        ))
    return Response(content, mimetype=DOCX_MIMETYPE, headers={
        "Content-Disposition": f"attachment; filename={file_name(week)}", "Cache-Control": "private, no-store",
    })

