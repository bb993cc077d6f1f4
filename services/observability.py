"""Request ids, JSON logs and Prometheus metrics shared by every service.

A request id arrives in ``X-Request-ID`` (or is made), is returned in the response,
is attached to every log line, is stored with outbox events and travels in the
headers of the Celery tasks a request causes, so one id follows the work end to end.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from pythonjsonlogger.json import JsonFormatter

_request_id: ContextVar[str | None] = ContextVar("gongkai_request_id", default=None)
_service: ContextVar[str | None] = ContextVar("gongkai_service", default=None)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

REQUEST_COUNT = Counter(
    "gongkai_http_requests_total", "HTTP requests answered", ["service", "method", "status"]
)
REQUEST_LATENCY = Histogram(
    "gongkai_http_request_seconds", "HTTP request latency", ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    _request_id.set(value)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("celery") and hasattr(record, "data"):
            # Celery attaches task arguments; they can carry what a citizen wrote.
            del record.data
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        if not hasattr(record, "service"):
            record.service = _service.get() or self.service
        return True


_CONFIGURED_MARK = "_gongkai_handler"


def configure_logging(service: str, level: str = "INFO", json_lines: bool = True) -> None:
    """Send every log record to stderr, as one JSON object a line unless asked otherwise."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _CONFIGURED_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _CONFIGURED_MARK, True)
    formatter: logging.Formatter
    if json_lines:
        formatter = JsonFormatter(
            "{asctime}{levelname}{name}{message}{service}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(RequestContextFilter(service))
    root.addHandler(handler)
    root.setLevel(level)
    # Werkzeug's own access log repeats query strings, which can carry personal data.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # The file-system broker has no host; kombu warns about that on every connection.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)


access_log = logging.getLogger("gongkai.access")


def init_request_tracing(app: Flask, service: str) -> None:
    @app.before_request
    def _start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()
        g.request_id = request_id
        g.request_started = time.perf_counter()
        set_request_id(request_id)
        _service.set(service)

    @app.after_request
    def _finish_request(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        started = g.get("request_started")
        if started is not None:
            elapsed = time.perf_counter() - started
            REQUEST_COUNT.labels(service, request.method, str(response.status_code)).inc()
            REQUEST_LATENCY.labels(service, request.method).observe(elapsed)
            # The path only: query strings may hold names or contact details.
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={"duration_ms": round(elapsed * 1000, 1), "status": response.status_code},
            )
        return response

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        set_request_id(None)
        _service.set(None)


def metrics_response() -> Response:
    registry: Any
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
