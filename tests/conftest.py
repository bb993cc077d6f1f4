"""Shared fixtures: real PostgreSQL and Redis (found or started), settings, the suite.

Tests that only need the database roll back per test; tests that run real worker
processes commit into their own schema prefix and drop it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from services.settings import Settings, load_settings

from support.env import base_env, drop_schemas, unique_prefix
from support.org import create_org
from support.servers import resolve_postgres_url, resolve_redis_url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url, process = resolve_postgres_url()
    yield url
    if process is not None:
        process.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, process = resolve_redis_url()
    yield url
    if process is not None:
        process.stop()


@pytest.fixture(scope="session")
def pg_settings(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings on the real PostgreSQL, migrated once for the session in a prefix of its own."""
    from services.migrations import migrate_all

    prefix = unique_prefix("s")
    data_dir = tmp_path_factory.mktemp("pg-suite")
    settings = load_settings(
        base_env(data_dir, DATABASE_URL=postgres_url, DATABASE_SCHEMA_PREFIX=prefix, LOGIN_RATE_LIMIT="20 per minute")
    )
    migrate_all(settings)
    yield settings
    drop_schemas(postgres_url, prefix)


@pytest.fixture(scope="session")
def suite_apps(pg_settings: Settings) -> dict[str, Flask]:
    from services.suite import create_suite

    return create_suite(pg_settings).apps


def _all_databases(apps: dict[str, Flask]) -> list[Any]:
    from services.db import EXTENSION_KEY

    return [database for app in apps.values() for database in app.extensions.get(EXTENSION_KEY, {}).values()]


@pytest.fixture
def suite(suite_apps: dict[str, Flask], tmp_path: Path) -> Iterator[dict[str, Flask]]:
    """The suite's apps with every database rolled back after the test and a fresh search index."""
    from services.searchengine.fts import FtsSearchEngine

    connections = []
    bindings = []
    for database in _all_databases(suite_apps):
        connection = database.engine.connect()
        transaction = connection.begin()
        binding = database.bound_to(connection)
        binding.__enter__()
        connections.append((connection, transaction))
        bindings.append(binding)
    engine = FtsSearchEngine(tmp_path / "index.sqlite3")
    for app in suite_apps.values():
        app.extensions["gongkai.search_engine"] = engine
        app.extensions.pop("gongkai.search_alias_ready", None)
        app.extensions.pop("gongkai.readiness_cache", None)
        app.extensions["gongkai.limiter"].reset()
    try:
        yield suite_apps
    finally:
        for binding in bindings:
            binding.__exit__(None, None, None)
        for connection, transaction in connections:
            transaction.rollback()
            connection.close()


@pytest.fixture
def org(suite: dict[str, Flask]) -> dict[str, Any]:
    """A bureau with two divisions, and one user per role in each division (plus an admin and an auditor)."""
    from services.db import get_database

    settings = suite["identity"].extensions["gongkai.settings"]
    with get_database("identity", suite["identity"]).transaction() as session:
        return create_org(session, settings)
