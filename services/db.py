"""Database layer: one engine per service, one session per request or task.

Each service owns its tables. On one machine each service has its own SQLite file
(WAL); in production all services share one PostgreSQL database, each in its own
schema, selected per connection through ``search_path``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from services.settings import ConfigError, Settings

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class ServiceBase(DeclarativeBase):
    """Marker base; each service derives its own with its own MetaData."""

    __abstract__ = True


class DatabaseUnavailable(Exception):
    """The service's database cannot be reached."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


class ServiceDatabase:
    """The engine and session factory of one service."""

    def __init__(self, service: str, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        if not _SCHEMA_NAME.match(service) or (schema is not None and not _SCHEMA_NAME.match(schema)):
            raise ValueError(f"bad service or schema name {service!r} / {schema!r}")
        self.service = service
        self._schema = schema or service
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._make_engine(echo)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._bound_connection: Connection | None = None
        self.outbox_model: Any = None
        self.processed_model: Any = None
        self.publisher: Any = None

    @property
    def schema(self) -> str | None:
        return None if self.is_sqlite else self._schema

    def _make_engine(self, echo: bool) -> Engine:
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, echo=echo, connect_args={"timeout": 15})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(
            self.url,
            echo=echo,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"options": f"-csearch_path={self._schema}", "connect_timeout": 5},
        )

    def ensure_schema(self) -> None:
        """Create the service's PostgreSQL schema (no-op on SQLite)."""
        if self.is_sqlite:
            return
        with self.engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"'))

    def check(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError as error:
            raise DatabaseUnavailable(_short_db_error(error)) from None

    def new_session(self) -> Session:
        if self._bound_connection is not None:
            session = Session(
                bind=self._bound_connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
        else:
            session = self.sessionmaker()
        session.info["gongkai_database"] = self
        return session

    @contextmanager
    def bound_to(self, connection: Connection) -> Iterator[None]:
        """Route every session through one outer connection (tests roll it back afterwards)."""
        self._bound_connection = connection
        try:
            yield
        finally:
            self._bound_connection = None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A standalone unit of work outside a request: commit on success, roll back on error."""
        session = self.new_session()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _short_db_error(error: DBAPIError) -> str:
    message = str(error.orig) if error.orig is not None else str(error)
    return message.strip().splitlines()[0] if message.strip() else "database unreachable"


def check_database_url(settings: Settings) -> None:
    """Fail fast, naming DATABASE_URL, when the configured database does not answer."""
    if not settings.database_url:
        return
    database = ServiceDatabase("startup_check", settings.database_url)
    try:
        database.check()
    except DatabaseUnavailable as error:
        raise ConfigError("DATABASE_URL", f"cannot connect to the database ({error})") from None
    finally:
        database.dispose()


EXTENSION_KEY = "gongkai.databases"


def register_database(app: Flask, database: ServiceDatabase) -> None:
    databases = app.extensions.setdefault(EXTENSION_KEY, {})
    if not databases:
        app.teardown_appcontext(_close_sessions)
    databases[database.service] = database


def get_database(service: str, app: Flask | None = None) -> ServiceDatabase:
    databases: dict[str, ServiceDatabase] = (app or current_app).extensions[EXTENSION_KEY]
    return databases[service]


def get_session(service: str) -> Session:
    """The session of the current request or task for one service, created on first use."""
    sessions: dict[str, Session] = g.setdefault("gongkai_sessions", {})
    session = sessions.get(service)
    if session is None:
        session = get_database(service).new_session()
        sessions[service] = session
    return session


def _close_sessions(_exc: BaseException | None) -> None:
    sessions: dict[str, Session] = g.pop("gongkai_sessions", {})
    for session in sessions.values():
        try:
            session.close()
        except DBAPIError as error:
            # The connection died after the request's work (the database restarted, the server ended the
            # session): the rollback of close() fails, but the answer already stands. Drop the connection
            # instead of letting a teardown error turn a finished request into a bare 500.
            log.warning("closing a database session failed; connection discarded: %s", _short_db_error(error))
            session.invalidate()


def open_service_database(settings: Settings, service: str) -> ServiceDatabase:
    """The database of one service, with its outbox and idempotency models attached."""
    from services.registry import SPECS

    models = SPECS[service].models()
    database = ServiceDatabase(
        service, settings.service_database_url(service), schema=f"{settings.database_schema_prefix}{service}"
    )
    database.outbox_model = getattr(models, "OutboxEvent", None)
    database.processed_model = getattr(models, "ProcessedEvent", None)
    return database
