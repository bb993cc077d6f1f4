"""One error shape for every API, a readable page for every other path.

API errors (paths under ``/api/``) answer JSON in flask-smorest's shape:
``{"code": 422, "status": "Unprocessable Entity", "message": "...", "errors": {...}}``.
No response ever carries a stack trace.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, NoReturn

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import gettext as _
from flask_smorest import abort as smorest_abort
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from services.db import DatabaseUnavailable
from services.permissions import NotPermitted
from services.searchengine.port import SearchUnavailable
from services.workflow import ContentProblem, TransitionNotAllowed

log = logging.getLogger(__name__)


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def api_abort(code: int, message: str, errors: dict[str, Any] | None = None) -> NoReturn:
    """End an API request with the one error shape (field errors under ``errors``)."""
    kwargs: dict[str, Any] = {"message": message}
    if errors:
        kwargs["errors"] = errors
    smorest_abort(code, **kwargs)
    raise AssertionError("unreachable")


def error_response(code: int, message: str, errors: dict[str, Any] | None = None) -> tuple[Response, int]:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {"code": code, "status": phrase, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), code


def _page(code: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", code=code, title=title, message=message), code


def _too_many_requests() -> Any:
    """A rate limit was hit (sign-in, the public forms, tracking, search): said in Chinese, in both shapes."""
    message = _("请求过于频繁，请稍后再试。")
    if wants_json():
        return error_response(429, f"{message} / too many requests, please try again later")
    return _page(429, _("请求过于频繁"), message)


def _handle_http_exception(error: HTTPException) -> Any:
    code = error.code or 500
    if code == 429:
        return _too_many_requests()
    if wants_json():
        data = getattr(error, "data", None) or {}
        messages = (data.get("messages") or data.get("errors")) if isinstance(data, dict) else None
        message = data.get("message") if isinstance(data, dict) else None
        response, status = error_response(code, message or error.description or error.name, messages)
        if error.response is not None and code == 405:
            response.headers["Allow"] = error.response.headers.get("Allow", "")
        return response, status
    titles = {404: _("页面不存在"), 403: _("没有权限"), 400: _("请求有误"), 503: _("服务暂时不可用")}
    return _page(code, titles.get(code, error.name), error.description or "")


def _handle_unavailable(what: str, error: Exception) -> Any:
    log.warning("%s unavailable: %s", what, error)
    message = _("搜索服务暂时不可用，请稍后再试。") if what == "search" else _("数据库暂时不可用，请稍后再试。")
    if wants_json():
        response, code = error_response(503, message)
        response.headers["Retry-After"] = "10"
        return response, code
    return _page(503, _("服务暂时不可用"), message)


STATE_LABELS = {
    "draft": "草稿", "submitted": "已提交", "approved": "已审核", "published": "已发布", "withdrawn": "已撤回",
}
ACTION_LABELS = {
    "submit": "提交", "return": "退回", "approve": "审核通过", "publish": "发布", "withdraw": "撤回", "revise": "修订",
}


def _handle_not_permitted(error: NotPermitted) -> Any:
    """A business rule found the actor lacks the permission in the record's department."""
    log.info("refused by a business rule: %s", error)
    message = _("没有权限执行此操作。")
    if wants_json():
        return error_response(403, f"{message} / not permitted")
    return _page(403, _("没有权限"), message)


def _handle_transition_not_allowed(error: TransitionNotAllowed) -> Any:
    """An action the state machine does not allow from the record's current state."""
    state = error.current_label or STATE_LABELS.get(error.current, error.current)
    action = error.action_label or ACTION_LABELS.get(error.action, error.action)
    message = _("当前状态“%(state)s”不能执行“%(action)s”。", state=state, action=action)
    if wants_json():
        return error_response(409, f"{message} / cannot {error.action} from state {error.current}")
    return _page(409, _("操作与当前状态冲突"), message)


def _handle_field_problem(error: Exception) -> Any:
    """Input that breaks a business rule: 422 with field errors, in flask-smorest's shape.

    The exception carries ``errors`` ({field: [messages]}) and optionally ``location``
    (``json`` unless it says otherwise, e.g. ``files`` for an uploaded file).
    """
    errors: dict[str, list[str]] = getattr(error, "errors", {})
    location: str = getattr(error, "location", "json")
    message = _("输入有误，请按提示修改。")
    if wants_json():
        return error_response(422, f"{message} / invalid input: {error}", {location: errors})
    return _page(422, _("输入有误"), f"{message} {error}")


def _handle_unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return _handle_http_exception(error)
    log.exception("unhandled error")
    if wants_json():
        return error_response(500, _("服务器内部错误，已记录，请稍后再试。"))
    return _page(500, _("服务器内部错误"), _("服务器内部错误，已记录，请稍后再试。"))


def register_error_handlers(app: Flask) -> None:
    """Install after flask-smorest's Api so these handlers win for every path."""
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(SearchUnavailable, lambda e: _handle_unavailable("search", e))
    app.register_error_handler(DatabaseUnavailable, lambda e: _handle_unavailable("database", e))
    app.register_error_handler(OperationalError, lambda e: _handle_unavailable("database", e))
    app.register_error_handler(NotPermitted, _handle_not_permitted)
    app.register_error_handler(TransitionNotAllowed, _handle_transition_not_allowed)
    # Business rules of every service raise ContentProblem (subclasses, e.g. a refused attachment, follow).
    app.register_error_handler(ContentProblem, _handle_field_problem)
    app.register_error_handler(Exception, _handle_unexpected)
