"""The suite as real processes on spare loopback ports, for tests that break its parts.

``RunningSuite`` starts gunicorn (every service under one port), a Celery worker and Celery beat
as separate processes, so a test can kill or restart any one of them, and talks to them over
HTTP like a browser or a script would. The databases (PostgreSQL schemas under a prefix of
their own, or SQLite files), the broker (a Redis the test may stop) and the search engine (the
embedded index or an osmem-server the test may kill) are whatever the test passes in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from services.settings import Settings, load_settings

from support.env import base_env, drop_schemas, subprocess_env, unique_prefix
from support.org import STAFF_PASSWORD, create_org
from support.servers import free_port

FAULT_TEST_ENV = {
    "OUTBOX_RELAY_INTERVAL": "0.5",
    # The tests send hundreds of requests from one address: the per-address limits are not under test.
    "CONSULT_SUBMIT_RATE_LIMIT": "100000 per minute",
    "CONSULT_TRACK_RATE_LIMIT": "100000 per minute",
    "SEARCH_RATE_LIMIT": "100000 per minute",
    "CLASSIFY_RATE_LIMIT": "100000 per minute",
    "LOGIN_RATE_LIMIT": "100000 per minute",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Answer:
    """An HTTP answer, or ``status == 0`` when the connection failed (refused, reset, timed out)."""

    status: int
    body: bytes
    headers: dict[str, str]
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.25) -> float:
    """Poll until ``condition()`` is truthy; return the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """Living direct children of a process (gunicorn's workers under its master), from /proc.

    A killed child the parent has not reaped yet (a zombie) is not counted: it serves nothing.
    """
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            # The command name may hold spaces and parentheses: the state and the ppid follow the last ')'.
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state not in ("Z", "X"):
                children.append(int(entry.name))
    return sorted(children)


def print_counts(scenario: str, **counts: float) -> None:
    """One line per fault test, the figures the issue asks every fault test to show."""
    figures = " ".join(f"{name}={value}" for name, value in counts.items())
    print(f"\n[fault] {scenario}: {figures}", flush=True)


class RunningSuite:
    def __init__(
        self,
        work_dir: Path,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        search_url: str | None = None,
        web_workers: int = 2,
        worker_concurrency: int = 2,
        **extra_env: str,
    ) -> None:
        self.work_dir = work_dir
        self.data_dir = work_dir / "var"
        self.logs = work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.schema_prefix = unique_prefix("f") if database_url else ""
        overrides = dict(FAULT_TEST_ENV)
        overrides.update(GONGKAI_PORT=str(self.port), WEB_CONCURRENCY=str(web_workers),
                         WORKER_CONCURRENCY=str(worker_concurrency), PUBLIC_BASE_URL=self.base_url)
        if database_url:
            overrides.update(DATABASE_URL=database_url, DATABASE_SCHEMA_PREFIX=self.schema_prefix)
        if redis_url:
            overrides["REDIS_URL"] = redis_url
        if search_url:
            overrides["SEARCH_URL"] = search_url
        overrides.update(extra_env)
        self.overrides = overrides
        self.settings: Settings = load_settings(base_env(self.data_dir, **overrides))
        self.env = subprocess_env(self.data_dir, **overrides)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._tokens: dict[str, str] = {}
        self._worker_app: Flask | None = None

    # ------------------------------------------------------------------ lifecycle

    def prepare(self, *, with_org: bool = True) -> None:
        """Migrate every service's database, create the search alias and (by default) the test org."""
        from services.db import get_database
        from services.migrations import migrate_all
        from services.searchengine.factory import make_search_engine

        migrate_all(self.settings)
        make_search_engine(self.settings.search_url, self.settings.data_dir).ensure_alias(self.settings.search_alias)
        if with_org:
            with get_database("identity", self.app).transaction() as session:
                create_org(session, self.settings)

    def start(self, *, web: bool = True, worker: bool = True, beat: bool = True, ready_timeout: float = 90) -> None:
        if web:
            self.start_web()
        if worker:
            self.start_worker()
        if beat:
            self.start_beat()
        if web:
            self.wait_ready(ready_timeout)

    def start_web(self) -> None:
        self._spawn("web", [
            sys.executable, "-m", "gunicorn", "services.wsgi:app",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.settings.web_workers),
            "--worker-class", "gthread", "--threads", "4",
            "--graceful-timeout", "5", "--timeout", "60",
        ], GONGKAI_SERVICE="suite")  # fmt: skip

    def start_worker(self, name: str = "worker") -> None:
        self._spawn(name, [sys.executable, "-m", "services.cli", "worker"])

    def start_beat(self) -> None:
        self._spawn("beat", [sys.executable, "-m", "services.cli", "beat"])

    def _spawn(self, name: str, command: list[str], **env: str) -> None:
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and every process of its group (a worker's pool children too)."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self, name: str) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        if self._worker_app is not None:
            from services.db import EXTENSION_KEY

            for database in self._worker_app.extensions.get(EXTENSION_KEY, {}).values():
                database.engine.dispose()
        if self.database_url:
            drop_schemas(self.database_url, self.schema_prefix)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_ready(self, timeout: float = 90) -> float:
        def ready() -> bool:
            web = self.processes.get("web")
            if web is not None and web.poll() is not None:
                raise AssertionError(f"gunicorn exited with {web.returncode}:\n{self.log('web')[-3000:]}")
            return self.get("/readyz").status == 200

        return wait_for(ready, timeout, f"{self.base_url}/readyz to answer 200", interval=0.5)

    # ------------------------------------------------------------------ in-process access

    @property
    def app(self) -> Flask:
        """The worker app in this process: every service's database, for looking at what was stored."""
        if self._worker_app is None:
            from services.suite import create_worker_app

            self._worker_app = create_worker_app(self.settings)
        return self._worker_app

    def search_engine(self) -> Any:
        from services.searchengine.factory import make_search_engine

        return make_search_engine(self.settings.search_url, self.settings.data_dir)

    # ------------------------------------------------------------------ HTTP

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Answer:
        data = None
        sent = {"Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        if token:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        address = self.base_url + urllib.parse.quote(path, safe="/?=&%:+,;@")
        request = urllib.request.Request(address, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return Answer(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), dict(error.headers))
        except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out, incomplete read
            return Answer(0, b"", {}, error=f"{type(error).__name__}: {error}")

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Answer:
        return self.request("POST", path, json_body=json_body, **kwargs)

    def token(self, username: str) -> str:
        """A staff API token for one of the org's users (``admin1``, ``editor_a``, ``reviewer_b``, ...)."""
        if username not in self._tokens:
            answer = self.post("/api/auth/token", {"username": username, "password": STAFF_PASSWORD})
            assert answer.status == 200, (answer.status, answer.text)
            self._tokens[username] = answer.json()["token"]
        return self._tokens[username]


@contextlib.contextmanager
def running_suite(work_dir: Path, *, start: bool = True, **options: Any) -> Iterator[RunningSuite]:
    """A prepared (and by default started) suite, stopped and its schemas dropped afterwards."""
    suite = RunningSuite(work_dir, **options)
    try:
        suite.prepare()
        if start:
            suite.start()
        yield suite
    finally:
        suite.close()
