"""Each service's migrations have one head and build exactly the tables its models describe."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from services.db import ServiceDatabase, open_service_database
from services.migrations import current_revision, heads, migrate_all, service_metadata
from services.settings import SERVICES, Settings, load_settings

from support.env import base_env


def schema_drift(database: ServiceDatabase) -> list[object]:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, service_metadata(database.service)))


@pytest.mark.parametrize("service", SERVICES)
def test_one_head_per_service(service: str) -> None:
    assert len(heads(service)) == 1


@pytest.mark.parametrize("service", SERVICES)
def test_postgres_schema_matches_models(pg_settings: Settings, service: str) -> None:
    database = open_service_database(pg_settings, service)
    try:
        assert current_revision(database) == heads(service)[0]
        assert schema_drift(database) == []
    finally:
        database.dispose()


def test_sqlite_schema_matches_models_and_migrating_twice_is_harmless(tmp_path: Path) -> None:
    settings = load_settings(base_env(tmp_path))
    migrate_all(settings)
    migrate_all(settings)
    for service in SERVICES:
        database = open_service_database(settings, service)
        try:
            assert (tmp_path / "db" / f"{service}.sqlite3").exists()
            assert schema_drift(database) == []
        finally:
            database.dispose()
