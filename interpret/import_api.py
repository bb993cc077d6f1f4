"""The bulk import API: ``POST /api/interpret/manage/imports``.

Send either a file (``multipart/form-data``: ``file`` plus the form fields ``department``, ``published``,
``format``, ``dry_run``) or the rows themselves (``application/json``: ``{"department": ..., "rows": [...]}``).
Every row is checked first; one bad row and nothing is written (422, ``errors.rows`` per row and field).
The rules and the formats are those of :mod:`interpret.importing`.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.sansio.blueprints import BlueprintSetupState
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from interpret.importing import (
    FORMATS,
    ImportFileError,
    RowInput,
    format_of,
    import_policies,
    max_rows_from_env,
    parse_rows,
    rows_from_objects,
)
from services.auth import current_staff, requires
from services.db import get_session
from services.errors import api_abort
from services.permissions import NotPermitted, Permission

MAX_ROWS_CONFIG = "INTERPRET_IMPORT_MAX_ROWS"

blp = Blueprint(
    "interpret_import_api", __name__, url_prefix="/api/interpret/manage",
    description="政策文件批量导入 Bulk import of policies",
)


@blp.record_once
def _configure(state: BlueprintSetupState) -> None:
    state.app.config.setdefault(MAX_ROWS_CONFIG, max_rows_from_env())


class ImportOptionsSchema(Schema):
    class Meta:
        unknown = RAISE

    department = fields.String(required=True, validate=validate.Length(min=1, max=32),
                               metadata={"description": "部门代码：导入的文件属于该部门"})
    published = fields.Boolean(load_default=False, metadata={
        "description": "true: 以已发布状态导入（须有发布权限，按各行的 published_at）；false: 导入为草稿"})
    dry_run = fields.Boolean(load_default=False, metadata={"description": "只检查，不写入"})


class ImportFormSchema(ImportOptionsSchema):
    format = fields.String(load_default=None, validate=validate.OneOf(FORMATS),
                           metadata={"description": "csv 或 json；缺省按文件扩展名"})


class ImportUploadSchema(ImportFormSchema):
    """What the multipart form carries (for the API documentation)."""

    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                                "description": "CSV（UTF-8）或 JSON 文件"})


class ImportJsonSchema(ImportOptionsSchema):
    rows = fields.List(fields.Dict(), required=True, metadata={
        "description": "对象列表，字段为 title, issuer, level, body, document_number, category_group, topic, "
                       "source, written_on, published_at, validity, original_url"})


class ImportedRowSchema(Schema):
    row = fields.Integer(required=True)
    outcome = fields.String(required=True, metadata={"description": "imported, skipped or would_import"})
    title = fields.String(required=True)
    document_number = fields.String(allow_none=True)
    message = fields.String()
    policy_id = fields.Integer(allow_none=True)
    index_number = fields.String(allow_none=True)


class RowErrorSchema(Schema):
    row = fields.Integer(required=True)
    field = fields.String(required=True)
    message = fields.String(required=True)


class ImportReportSchema(Schema):
    total = fields.Integer(required=True)
    imported = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    would_import = fields.Integer(required=True)
    published = fields.Boolean(required=True)
    dry_run = fields.Boolean(required=True)
    summary = fields.String(required=True)
    rows = fields.List(fields.Nested(ImportedRowSchema), required=True)
    errors = fields.List(fields.Nested(RowErrorSchema), required=True)


def _load(schema: Schema, data: Any, location: str) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as error:
        api_abort(422, "请求有误 / invalid request", errors={location: error.messages})
    return loaded


def _request_rows() -> tuple[dict[str, Any], list[RowInput]]:
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):  # the latter: no file
        options = _load(ImportFormSchema(), request.form.to_dict(), "form")
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            api_abort(422, "请选择要导入的文件 / a file is required", errors={"files": {"file": ["required"]}})
        try:
            rows = parse_rows(upload.stream, format_of(upload.filename, options["format"]))
        except ImportFileError as error:
            api_abort(422, str(error), errors={"files": {"file": [str(error)]}})
        return options, rows
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            api_abort(422, "请求体应为 JSON 对象 / the body must be a JSON object",
                      errors={"json": {"_schema": ["expected an object"]}})
        options = _load(ImportJsonSchema(), body, "json")
        return options, rows_from_objects(options["rows"])
    api_abort(415, "请以 multipart/form-data（文件）或 application/json（rows）提交 / "
                   "send multipart/form-data with a file, or application/json with rows")


@blp.post("/imports")
@blp.doc(requestBody={"required": True, "content": {
    "multipart/form-data": {"schema": ImportUploadSchema},
    "application/json": {"schema": ImportJsonSchema},
}})
@blp.response(200, ImportReportSchema, description="imported (or, with dry_run, checked): the per-row report")
@blp.alt_response(403, description="no content.draft (or, for published, content.publish) in the department")
@blp.alt_response(413, description="more rows than INTERPRET_IMPORT_MAX_ROWS (default 5,000), or over 20 MB")
@blp.alt_response(422, description="bad rows (errors.rows: {row: {field: [messages]}}), nothing written")
@requires(Permission.DRAFT)
def create_import() -> dict[str, Any]:
    """Import policies from a CSV/JSON file or a list of rows: all of them, or none when a row is bad.

    A row already there (same issuer and 文号, same original address, or same issuer, title and date) is
    skipped, so sending the same file twice imports it once. Importing as published skips review, so it
    needs ``content.publish`` as well as ``content.draft`` in the department.
    """
    staff = current_staff()
    assert staff is not None
    options, rows = _request_rows()
    limit: int = current_app.config[MAX_ROWS_CONFIG]
    if len(rows) > limit:
        api_abort(413, f"一次最多导入 {limit} 行，本次 {len(rows)} 行，请拆分后分批导入 "
                       f"/ at most {limit} rows per import, got {len(rows)}: split the file")
    session = get_session("interpret")
    try:
        report = import_policies(session, staff, options["department"], rows, published=options["published"],
                                 dry_run=options["dry_run"])
    except NotPermitted:
        session.rollback()
        needed = "content.draft and content.publish" if options["published"] else "content.draft"
        api_abort(403, f"没有在 {options['department']} 导入的权限 / {needed} in {options['department']} required")
    if not report.ok:
        session.rollback()
        api_abort(422, report.summary(), errors={"rows": report.errors_by_row()})
    if report.dry_run:
        session.rollback()
    else:
        session.commit()
    return report.as_dict()
