"""Gunicorn settings for every Gongkai web service (gunicorn -c deploy/gunicorn.conf.py services.wsgi:app).

Everything is read from the environment so one image serves every service:
GONGKAI_BIND, WEB_CONCURRENCY, GUNICORN_THREADS, GUNICORN_TIMEOUT, GUNICORN_GRACEFUL_TIMEOUT,
GUNICORN_MAX_REQUESTS, FORWARDED_ALLOW_IPS, LOG_LEVEL, PROMETHEUS_MULTIPROC_DIR.
"""

import contextlib
import json
import os
from datetime import UTC, datetime

from gunicorn.glogging import Logger


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _default_workers() -> int:
    # 2 * cores + 1, capped: in a container os.cpu_count() reports the host's cores.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2 * cores + 1, 8)


bind = [part.strip() for part in os.environ.get("GONGKAI_BIND", "0.0.0.0:8000").split(",") if part.strip()]
workers = _env_int("WEB_CONCURRENCY", _default_workers())
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)
timeout = _env_int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 25)
# Longer than nginx's upstream keepalive_timeout, so nginx never reuses a connection gunicorn just closed.
keepalive = 10
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = max(max_requests // 10, 1) if max_requests else 0
# The web containers are only reachable inside the compose network, where nginx is the only client.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
# Heartbeat files on tmpfs: on overlay filesystems a slow fsync can get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# gunicorn 27's control socket would live in $HOME, which is the shared data volume; nothing uses it.
control_socket_disable = True
proc_name = "gongkai-" + os.environ.get("GONGKAI_SERVICE", "suite")
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
errorlog = "-"
accesslog = "-"


class JsonAccessLogger(Logger):
    """One JSON object per request on stdout; never the query string (it can carry names, phones, search terms)."""

    def access(self, resp, req, environ, request_time):
        if not self.cfg.accesslog:
            return
        path = environ.get("PATH_INFO", "")
        with contextlib.suppress(UnicodeError):
            path = path.encode("latin-1").decode("utf-8")  # WSGI hands the path over as latin-1
        status = str(resp.status).split(None, 1)[0]
        if path in ("/healthz", "/readyz") and status == "200":
            return  # probes every few seconds would drown the real traffic
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "service": os.environ.get("GONGKAI_SERVICE", "suite"),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "client": environ.get("HTTP_X_REAL_IP") or environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": path,
            "status": int(status) if status.isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        try:
            self.access_log.info(json.dumps(record, ensure_ascii=False))
        except Exception:
            self.exception("access log failed")


logger_class = JsonAccessLogger

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):

    def child_exit(server, worker):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
