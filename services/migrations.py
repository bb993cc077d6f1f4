"""Alembic per service: each service's migrations live in its own ``migrations/`` folder."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from services.db import ServiceDatabase, open_service_database
from services.registry import SPECS
from services.settings import SERVICES, Settings

VERSION_TABLE = "alembic_version"


def alembic_config(database: ServiceDatabase) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SPECS[database.service].migrations_dir))
    config.set_main_option("path_separator", "os")
    config.attributes["database"] = database
    return config


def service_metadata(service: str) -> MetaData:
    metadata: MetaData = SPECS[service].models().Base.metadata
    return metadata


def upgrade(database: ServiceDatabase, revision: str = "head") -> None:
    database.ensure_schema()
    command.upgrade(alembic_config(database), revision)


def migrate_all(settings: Settings) -> list[str]:
    """Bring every service's database to its newest revision; returns the services migrated."""
    migrated = []
    for service in SERVICES:
        database = open_service_database(settings, service)
        try:
            upgrade(database)
        finally:
            database.dispose()
        migrated.append(service)
    return migrated


def heads(service: str) -> tuple[str, ...]:
    script = ScriptDirectory(str(SPECS[service].migrations_dir))
    return tuple(script.get_heads())


def current_revision(database: ServiceDatabase) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def run_env() -> None:
    """The body of every service's ``migrations/env.py``."""
    from alembic import context

    database: ServiceDatabase = context.config.attributes["database"]
    metadata = service_metadata(database.service)
    with database.engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            render_as_batch=database.is_sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
