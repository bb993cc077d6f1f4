"""The load harness: wrk as a second process on loopback, the targets it loads, and the bare-Flask ceiling.

- :func:`run_wrk` sends a list of varied requests (``bench/lua/requests.lua``) for a bounded time and
  parses wrk's figures: requests/s, latency percentiles, socket errors, the count of each HTTP status.
- :func:`embedded_suite` starts the suite as ``make run`` does (``gongkai up``: one gunicorn for every
  service, a worker and beat, SQLite files and the embedded FTS5 index in a data directory).
- :func:`production_services` starts the production-like configuration: one gunicorn per service with
  ``deploy/gunicorn.conf.py`` on PostgreSQL (schemas of its own, dropped afterwards) and Redis, plus a
  worker and beat, as ``docker-compose.yml`` runs them (without nginx: the load goes to each service).
- :func:`bare_flask` starts ``bench.bare_app`` under the same gunicorn settings, so every scenario can
  report its figures as a share of the ceiling measured in the same run.

wrk is Debian's package (``apt-get install wrk``); without it the scenarios stop with one readable line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests

from bench.common import Row, judge

REPO = Path(__file__).resolve().parents[1]
LUA_SCRIPT = REPO / "bench" / "lua" / "requests.lua"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
Profile = Literal["embedded", "production"]
"""``embedded``: gunicorn as ``gongkai up`` runs it; ``production``: ``deploy/gunicorn.conf.py`` per service."""

# `gongkai up` (services/cli.py) runs gunicorn with these flags; the bare app gets the same ones.
EMBEDDED_GUNICORN_FLAGS = ("--worker-class", "gthread", "--threads", "8", "--graceful-timeout", "10")
PRODUCTION_WEB_CONCURRENCY = 2
"""docker-compose.yml's default WEB_CONCURRENCY per web service."""


class LoadError(SystemExit):
    """The harness cannot run (no wrk, a target that did not start): one readable line."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Mapping[str, Any] | None = None

    def line(self) -> str:
        if any(char in self.path for char in "\t\n "):
            raise ValueError(f"a request path must be URL-encoded: {self.path!r}")
        if self.body is None:
            return f"{self.method}\t{self.path}"
        return f"{self.method}\t{self.path}\t{json.dumps(self.body, ensure_ascii=False)}"


@dataclass
class LoadResult:
    """wrk's figures for one bounded load."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    connections: int = 0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def count(self, *prefixes: str) -> int:
        """Responses whose status starts with one of ``prefixes`` (``"2"``, ``"201"``, ``"5"``)."""
        return sum(n for status, n in self.statuses.items() if status.startswith(prefixes))

    @property
    def failures(self) -> int:
        """5xx answers and socket errors (connect, read, write, timeout)."""
        return self.count("5") + sum(self.socket_errors.get(k, 0) for k in ("connect", "read", "write", "timeout"))

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "seconds": round(self.seconds, 2), "per_second": round(self.per_second, 1),
                "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
                "max_ms": self.max_ms, "statuses": self.statuses, "socket_errors": self.socket_errors,
                "connections": self.connections}

    def line(self) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        errors = {k: v for k, v in self.socket_errors.items() if v}
        return (f"{self.per_second:8.1f} req/s  p50 {self.p50_ms:6.1f} ms  p95 {self.p95_ms:6.1f} ms  "
                f"p99 {self.p99_ms:6.1f} ms  ({self.requests} requests; {statuses}"
                f"{'; socket errors ' + str(errors) if errors else ''})")


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError("wrk is not installed: `apt-get install -y wrk` (Debian's package) and run again")
    return found


def parse_wrk_output(output: str, connections: int = 0) -> LoadResult:
    """The figures of the ``BENCH_JSON`` line that ``bench/lua/requests.lua`` prints."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            latency = data["latency_us"]
            return LoadResult(
                requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
                p50_ms=latency["p50"] / 1000, p90_ms=latency["p90"] / 1000, p95_ms=latency["p95"] / 1000,
                p99_ms=latency["p99"] / 1000, max_ms=latency["max"] / 1000,
                statuses={str(k): int(v) for k, v in data["statuses"].items()},
                socket_errors={str(k): int(v) for k, v in data["errors"].items()}, connections=connections,
            )
    raise LoadError(f"wrk printed no figures:\n{output[-1500:]}")


def run_wrk(base_url: str, load: Sequence[Request], *, connections: int, seconds: float, threads: int = 1,
            timeout: float = 10.0) -> LoadResult:
    """Send ``load`` (round robin, per connection) to ``base_url`` for ``seconds``; return wrk's figures."""
    if not load:
        raise ValueError("no requests to send")
    binary = wrk_binary()
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", prefix="gongkai-wrk-", encoding="utf-8",
                                     delete=False) as listing:
        listing.write("\n".join(item.line() for item in load) + "\n")
    try:
        command = [binary, f"-t{max(1, min(threads, connections))}", f"-c{connections}",
                   f"-d{max(1, round(seconds))}s", f"--timeout={max(1, round(timeout))}s", "--latency",
                   "-s", str(LUA_SCRIPT), base_url.rstrip("/")]
        env = {**os.environ, "BENCH_REQUESTS": listing.name}
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + timeout + 60,
                                  check=False)
    finally:
        os.unlink(listing.name)
    if finished.returncode != 0:
        raise LoadError(f"wrk failed ({finished.returncode}): {(finished.stderr or finished.stdout).strip()[-800:]}")
    return parse_wrk_output(finished.stdout, connections)


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the suite's settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GONGKAI_", "DATABASE_", "REDIS_", "SEARCH_", "WEB_CONCURRENCY", "GUNICORN_",
                                  "PROMETHEUS_", "CONSULT_"))}
    env.update(extra)
    return env


def start(command: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(command), env=dict(env), cwd=REPO, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_http(url: str, processes: Sequence[subprocess.Popen[bytes]], log: Path, timeout: float = 120.0) -> None:
    """Until ``url`` answers 200; a process that exits or the timeout ends the run with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise LoadError(f"{str(process.args)[:120]} exited while starting; log:\n"
                                f"{log_tail(log)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise LoadError(f"{url} did not answer 200 within {timeout:.0f}s; log:\n{log_tail(log)}")


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def gunicorn_command(app: str, port: int, profile: Profile, workers: int) -> list[str]:
    if profile == "production":
        return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), app]
    return [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            *EMBEDDED_GUNICORN_FLAGS]


def gunicorn_env(port: int, profile: Profile, workers: int, extra: Mapping[str, str]) -> dict[str, str]:
    env = clean_env(extra)
    if profile == "production":
        env.update(GONGKAI_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers), LOG_LEVEL="WARNING")
    return env


@contextlib.contextmanager
def bare_flask(profile: Profile, folder: Path, workers: int = 2) -> Iterator[str]:
    """``bench.bare_app`` under the gunicorn settings of ``profile``; yields its base URL."""
    port = free_port()
    log = folder / "bare.log"
    process = start(gunicorn_command("bench.bare_app:app", port, profile, workers),
                    gunicorn_env(port, profile, workers, {"GONGKAI_SERVICE": "bare"}), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", [process], log, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@dataclass
class Suite:
    """A running target: where each service answers, its settings and its data directory."""

    urls: dict[str, str]
    settings: Any
    data_dir: Path
    env: dict[str, str]
    profile: Profile
    logs: list[Path] = field(default_factory=list)

    def url(self, service: str) -> str:
        return self.urls.get(service) or self.urls["suite"]


def suite_settings_env(data_dir: Path, *, database_url: str | None = None, schema_prefix: str = "",
                       redis_url: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a bench target runs with: limits raised so that the load measures the work, not the limiter."""
    env = {
        "GONGKAI_DATA_DIR": str(data_dir), "GONGKAI_ENV": "test", "SECRET_KEY": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING", "SEARCH_RATE_LIMIT": "100000000 per minute",
        "CONSULT_SUBMIT_RATE_LIMIT": "100000000 per minute", "CONSULT_TRACK_RATE_LIMIT": "100000000 per minute",
        "CLASSIFY_RATE_LIMIT": "100000000 per minute",
    }
    if database_url:
        env.update(DATABASE_URL=database_url, DATABASE_SCHEMA_PREFIX=schema_prefix)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


@contextlib.contextmanager
def embedded_suite(data_dir: Path, env: Mapping[str, str], log_dir: Path) -> Iterator[Suite]:
    """``gongkai up --no-seed`` on a free port with ``env`` (from :func:`suite_settings_env`), until /readyz."""
    from services.settings import load_settings

    port = free_port()
    full_env = clean_env({**env, "GONGKAI_PORT": str(port), "GONGKAI_HOST": "127.0.0.1"})
    log = log_dir / "suite.log"
    process = start([sys.executable, "-m", "services.cli", "up", "--no-seed"], full_env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", [process], log, timeout=180)
        yield Suite({"suite": f"http://127.0.0.1:{port}"}, load_settings(full_env), data_dir, full_env, "embedded",
                    [log])
    finally:
        stop(process, grace=30)


@contextlib.contextmanager
def production_services(data_dir: Path, services: Sequence[str], log_dir: Path, *,
                        database_url: str = DEFAULT_DATABASE_URL, redis_url: str | None = None,
                        extra: Mapping[str, str] | None = None, workers: int = PRODUCTION_WEB_CONCURRENCY,
                        ) -> Iterator[Suite]:
    """One gunicorn per service in ``services`` (deploy/gunicorn.conf.py), a worker and beat, on PostgreSQL
    schemas of their own (dropped afterwards) and Redis (a throwaway redis-server unless ``redis_url``)."""
    from bench.freshness import drop_schemas, redis_broker
    from services.migrations import migrate_all
    from services.settings import load_settings

    prefix = f"bl_{uuid.uuid4().hex[:8]}_"
    with redis_broker(redis_url, log_dir) as broker:
        env = clean_env(suite_settings_env(data_dir, database_url=database_url, schema_prefix=prefix,
                                           redis_url=broker, extra=extra))
        settings = load_settings(env)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            migrate_all(settings)
            urls: dict[str, str] = {}
            logs = []
            for service in services:
                port = free_port()
                log = log_dir / f"{service}.log"
                logs.append(log)
                processes.append(start(gunicorn_command("services.wsgi:app", port, "production", workers),
                                       gunicorn_env(port, "production", workers, {**env, "GONGKAI_SERVICE": service}),
                                       log))
                urls[service] = f"http://127.0.0.1:{port}"
            for name in ("worker", "beat"):
                log = log_dir / f"{name}.log"
                logs.append(log)
                processes.append(start([sys.executable, "-m", "services.cli", name], env, log))
            for service, url in urls.items():
                wait_http(f"{url}/healthz", processes, log_dir / f"{service}.log", timeout=120)
            yield Suite(urls, settings, data_dir, env, "production", logs)
        finally:
            for process in reversed(processes):
                stop(process)
            drop_schemas(database_url, prefix)


# -- rows ------------------------------------------------------------------------------------------


def share_of_bare(name: str, result: LoadResult, bare: LoadResult, at_least: float) -> Row:
    """``result``'s requests/s as a share (%) of the bare app's in the same run."""
    share = 100 * result.per_second / bare.per_second if bare.per_second else None
    return judge(f"{name}: requests/s as % of bare Flask", share, "%", at_least=100 * at_least, digits=1)


def none_row(name: str, count: int, unit: str = "requests") -> Row:
    """A count whose target is zero."""
    return Row(name, float(count), unit, f"= 0 {unit}", count == 0, "" if count == 0 else f"{count} {unit} too many")


def failures_row(name: str, result: LoadResult) -> Row:
    """Every request must be answered without a 5xx or a socket error (a wrk timeout counts)."""
    return none_row(f"{name}: failed requests (5xx, socket errors)", result.failures)
