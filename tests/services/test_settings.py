from pathlib import Path

import pytest

from services.settings import ConfigError, load_settings


def test_single_machine_defaults_need_no_server(tmp_path: Path) -> None:
    settings = load_settings({"GONGKAI_DATA_DIR": str(tmp_path)})
    assert settings.database_url is None
    assert settings.service_database_url("consult") == f"sqlite:///{tmp_path / 'db' / 'consult.sqlite3'}"
    assert settings.broker_url == "filesystem://"
    assert settings.search_url is None
    # The generated secret key is kept, so a second start keeps sessions valid.
    assert len(settings.secret_key) >= 32
    assert load_settings({"GONGKAI_DATA_DIR": str(tmp_path)}).secret_key == settings.secret_key


def test_postgres_urls_are_normalised_to_psycopg(tmp_path: Path) -> None:
    settings = load_settings({"GONGKAI_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://u@db:5432/gk"})
    assert settings.database_url == "postgresql+psycopg://u@db:5432/gk"
    assert settings.uses_postgres()


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SEARCH_URL", "localhost:9200", "must start with http:// or https://"),
        ("SEARCH_URL", "http://", "has no host name"),
        ("SEARCH_URL", "http://es:notaport", "is malformed"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL: URL must start with"),
        ("REDIS_URL", "http://redis", "REDIS_URL: URL must start with redis"),
        ("GONGKAI_PORT", "eighty", "GONGKAI_PORT: expected a whole number"),
        ("BEHIND_TLS", "maybe", "BEHIND_TLS: expected true or false"),
        ("SECRET_KEY", "short", "SECRET_KEY: must be at least 32 characters"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: expected DEBUG"),
        ("OUTBOX_RELAY_INTERVAL", "-1", "OUTBOX_RELAY_INTERVAL: must be positive"),
        ("CELERY_VISIBILITY_TIMEOUT", "0", "CELERY_VISIBILITY_TIMEOUT: must be at least 1"),
        ("CELERY_VISIBILITY_TIMEOUT", "172800", "CELERY_VISIBILITY_TIMEOUT: must be at most 86400"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"GONGKAI_DATA_DIR": str(tmp_path), name: value})
    assert raised.value.setting == name
    assert fragment in str(raised.value)


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY: is required"):
        load_settings({"GONGKAI_DATA_DIR": str(tmp_path), "GONGKAI_ENV": "production"})
