"""Environments for settings and `gongkai` child processes in tests, and schema clean-up."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def base_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        "GONGKAI_DATA_DIR": str(data_dir),
        "GONGKAI_ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "INFO",
        "LOG_JSON": "true",
    }
    env.update(overrides)
    return env


def subprocess_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment for a `gongkai` child process: this one's, minus stray settings."""
    env = {key: value for key, value in os.environ.items() if key not in _SETTING_NAMES}
    env.update(base_env(data_dir, **overrides))
    return env


_SETTING_NAMES = {
    "GONGKAI_DATA_DIR", "GONGKAI_ENV", "SECRET_KEY", "DATABASE_URL", "DATABASE_SCHEMA_PREFIX",
    "REDIS_URL", "SEARCH_URL", "SEARCH_API_KEY", "SEARCH_CA_FILE", "SEARCH_ALIAS", "GONGKAI_HOST", "GONGKAI_PORT",
}


def drop_schemas(database_url: str, prefix: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        schemas = connection.scalars(
            text("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"),
            {"p": prefix.replace("_", r"\_") + "%"},
        ).all()
        for schema in schemas:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def unique_prefix(label: str) -> str:
    return f"t{label}_{uuid.uuid4().hex[:8]}_"


