"""Staff pages and API for the coverage of own-level policies by interpretations, and the statistics.

* ``/interpret/dashboard``: the missing and late own-level policies (see ``interpret.coverage``);
* ``/interpret/statistics`` and ``/interpret/statistics.xlsx``: per department and period;
* ``GET /api/interpret/manage/coverage`` and ``/statistics``: the same data as JSON.

Everything requires ``Permission.READ_RECORDS`` and shows only the departments in which the caller
holds it; asking for another department is refused (403). The period is given as ``start`` and
``end`` (Beijing dates, inclusive; by default from 1 January to today).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, render_template, request
from flask_smorest import Api
from flask_smorest import Blueprint as ApiBlueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from interpret.coverage import (
    CoverageReport,
    DepartmentStatistics,
    Period,
    PeriodError,
    configured_late_working_days,
    coverage,
    statistics,
    statistics_workbook,
    total_statistics,
)
from interpret.workflow import FORMS
from services.auth import current_staff, requires
from services.db import get_session
from services.errors import api_abort
from services.permissions import Permission, departments_with

bp = Blueprint("interpret_dashboard", __name__, url_prefix="/interpret", template_folder="templates")
api_blp = ApiBlueprint(
    "interpret_coverage_api", __name__, url_prefix="/api/interpret/manage",
    description="本级政策解读覆盖情况与统计（工作人员）",
)

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DEPARTMENT_MAX_LENGTH = 32


def register(app: Flask, rest: Api) -> None:
    """Add the staff pages to the interpret app and the JSON endpoints to its API."""
    app.register_blueprint(bp)
    rest.register_blueprint(api_blp)


def scope() -> list[str]:
    """The departments in which the caller may read records (the rule of every view here ensures some)."""
    staff = current_staff()
    if staff is None:
        abort(401)
    return sorted(departments_with(staff.grants, Permission.READ_RECORDS))


def chosen_departments(department: str | None) -> list[str]:
    """The caller's departments, or the one asked for if it is among them (else 403)."""
    departments = scope()
    if not department:
        return departments
    if department not in departments:
        abort(403, description="无权查看该部门的数据")
    return [department]


# -- pages -------------------------------------------------------------------------------------


def _page_filters() -> tuple[dict[str, str], Period | None, str | None]:
    filters = {name: (request.args.get(name) or "").strip()[:DEPARTMENT_MAX_LENGTH] for name in
               ("department", "start", "end")}
    try:
        period = Period.parse(filters["start"], filters["end"])
    except PeriodError as error:
        return filters, None, error.message
    filters["start"], filters["end"] = period.start.isoformat(), period.end.isoformat()
    return filters, period, None


@bp.get("/dashboard")
@requires(Permission.READ_RECORDS)
def dashboard() -> Any:
    filters, period, error = _page_filters()
    departments = chosen_departments(filters["department"])
    report = coverage(get_session("interpret"), departments, period) if period else None
    return render_template(
        "interpret/dashboard.html", report=report, filters=filters, error=error, scope=scope(),
    ), (400 if error else 200)


@bp.get("/statistics")
@requires(Permission.READ_RECORDS)
def statistics_page() -> Any:
    filters, period, error = _page_filters()
    departments = chosen_departments(filters["department"])
    rows: list[DepartmentStatistics] = []
    if period is not None:
        rows = statistics(get_session("interpret"), departments, period.start, period.end)
    return render_template(
        "interpret/dashboard_statistics.html", rows=rows, total=total_statistics(rows), forms=FORMS,
        filters=filters, error=error, scope=scope(), late_working_days=configured_late_working_days(),
    ), (400 if error else 200)


@bp.get("/statistics.xlsx")
@requires(Permission.READ_RECORDS)
def statistics_download() -> Response:
    filters, period, error = _page_filters()
    if period is None:
        abort(400, description=error)
    departments = chosen_departments(filters["department"])
    content = statistics_workbook(get_session("interpret"), departments, period.start, period.end)
    name = f"interpret-statistics-{period.start:%Y%m%d}-{period.end:%Y%m%d}.xlsx"
    return Response(content, mimetype=XLSX_MIMETYPE, headers={
        "Content-Disposition": f"attachment; filename={name}", "Cache-Control": "private, no-store",
    })


# -- API ---------------------------------------------------------------------------------------


class CoverageArgsSchema(Schema):
    department = fields.String(
        validate=validate.Length(min=1, max=DEPARTMENT_MAX_LENGTH),
        metadata={"description": "部门代码（须在调用者的权限范围内）；缺省为调用者的全部部门"},
    )
    start = fields.Date(metadata={"description": "开始日期（北京时间，含）；缺省为结束日期所在年份的 1 月 1 日"})
    end = fields.Date(metadata={"description": "结束日期（北京时间，含）；缺省为今天"})

    @validates_schema
    def _period(self, data: dict[str, Any], **_: Any) -> None:
        try:
            Period.resolve(data.get("start"), data.get("end"))
        except PeriodError as error:
            raise ValidationError(error.message, error.field_name) from None


class CoverageItemSchema(Schema):
    policy_id = fields.Integer(required=True)
    department = fields.String(required=True)
    title = fields.String(required=True)
    index_number = fields.String(allow_none=True)
    document_number = fields.String(allow_none=True)
    published_on = fields.Date(required=True, metadata={"description": "政策文件首次发布日期（北京时间）"})
    due_on = fields.Date(required=True, metadata={"description": "按时发布解读的最后一天"})
    url = fields.String(required=True)


class LateItemSchema(CoverageItemSchema):
    interpretation_id = fields.Integer(required=True)
    interpretation_title = fields.String(required=True)
    interpretation_url = fields.String(required=True)
    interpreted_on = fields.Date(required=True, metadata={"description": "最早的解读首次发布日期（北京时间）"})
    working_days_after = fields.Integer(required=True, metadata={"description": "(发布日期, 解读日期] 内的工作日数"})
    working_days_late = fields.Integer(required=True, metadata={"description": "间隔工作日数减去允许的工作日数"})


class CoverageReportSchema(Schema):
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    departments = fields.List(fields.String(), required=True)
    late_working_days = fields.Integer(required=True, metadata={"description": "允许解读晚于政策的工作日数"})
    own_level = fields.Integer(required=True)
    covered = fields.Integer(required=True)
    on_time = fields.Integer(required=True)
    missing_count = fields.Integer(required=True)
    late_count = fields.Integer(required=True)
    missing = fields.List(fields.Nested(CoverageItemSchema), required=True)
    late = fields.List(fields.Nested(LateItemSchema), required=True)
    uncovered_years = fields.List(fields.Integer(), required=True,
                                  metadata={"description": "节假日安排未知、按周一至周五计算的年份"})


class DepartmentStatisticsSchema(Schema):
    department = fields.String(required=True)
    policies = fields.Integer(required=True)
    own_level = fields.Integer(required=True)
    interpretations = fields.Integer(required=True)
    covered = fields.Integer(required=True)
    on_time = fields.Integer(required=True)
    coverage_share = fields.Float(allow_none=True)
    on_time_share = fields.Float(allow_none=True)
    forms = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class CoverageStatisticsSchema(Schema):
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    late_working_days = fields.Integer(required=True)
    rows = fields.List(fields.Nested(DepartmentStatisticsSchema), required=True)
    total = fields.Nested(DepartmentStatisticsSchema, required=True)


def _api_period(args: dict[str, Any]) -> Period:
    try:
        return Period.resolve(args.get("start"), args.get("end"))
    except PeriodError as error:  # pragma: no cover - the schema refuses these first
        api_abort(422, "参数有误", {"query": {error.field_name: [error.message]}})


def _api_departments(args: dict[str, Any]) -> list[str]:
    department = args.get("department")
    departments = scope()
    if department and department not in departments:
        api_abort(403, "无权查看该部门的数据")
    return [department] if department else departments


@api_blp.get("/coverage")
@api_blp.arguments(CoverageArgsSchema, location="query")
@api_blp.response(200, CoverageReportSchema)
@requires(Permission.READ_RECORDS)
def get_coverage(args: dict[str, Any]) -> CoverageReport:
    """Own-level policies missing an interpretation, or interpreted late, in the caller's departments."""
    return coverage(get_session("interpret"), _api_departments(args), _api_period(args))


@api_blp.get("/statistics")
@api_blp.arguments(CoverageArgsSchema, location="query")
@api_blp.response(200, CoverageStatisticsSchema)
@requires(Permission.READ_RECORDS)
def get_statistics(args: dict[str, Any]) -> dict[str, Any]:
    """Policies, interpretations, coverage, on-time share and forms per department for a period."""
    period = _api_period(args)
    rows = statistics(get_session("interpret"), _api_departments(args), period.start, period.end)
    return {"start": period.start, "end": period.end, "late_working_days": configured_late_working_days(),
            "rows": rows, "total": total_statistics(rows)}
