"""Backup and restore of the whole suite (``gongkai backup`` / ``gongkai restore``).

One archive (tar.gz, mode 0600: it holds personal data and the secret key) with:

``databases/<service>.sqlite3``
    On one machine: each service's SQLite file, copied with the sqlite3 backup API (a consistent
    copy while the suite runs).
``databases/<service>/<table>.copy`` and ``databases/<service>/sequences.json``
    On PostgreSQL: every table of every service schema in PostgreSQL's own COPY text format, all read
    in ONE ``REPEATABLE READ, READ ONLY`` transaction (one snapshot of the whole suite), and the
    sequences' positions. Not ``pg_dump``: the archive must restore under another schema prefix (a
    dump names its schemas), no client of the server's version has to be installed, and the tables
    are created on restore by the services' own migrations at the revision the data was written
    with. COPY text is what ``pg_dump`` itself writes, so timestamps with time zone, JSON, bytes and
    numerics come back exactly.
``files/...``
    What the services keep on disk and cannot rebuild: the policy attachments, the installed router
    models and the revocation list of signed-out sessions. Not the search index (rebuilt on restore),
    caches, metrics, logs or the broker's queue.
``settings.env``
    The settings in effect, ``SECRET_KEY`` included: the audit chain, recovery codes and contact
    hashes are keyed with it.
``manifest.json`` (the last member)
    Format version, creation time, Gongkai version, each service's Alembic revision, the rows of every
    table and the size and SHA-256 of every other member.

Restore checks every member against the manifest before it writes anything, refuses a target that
holds data unless told to replace it, loads the databases (then migrates them to this version's
schema), puts the files back, writes the settings file into the data directory, and rebuilds the
search index. A failure while loading leaves the target empty again. The outbox events sent in the hour
before the backup are marked pending again: the snapshot may hold an event whose consumer had not applied it
yet, and consumers apply each event once, so sending it again is safe.
"""

from __future__ import annotations

import contextlib
import graphlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Engine, create_engine, update
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from tqdm import tqdm

from services.settings import SERVICES, Settings, load_settings

FORMAT = "gongkai-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SETTINGS_MEMBER = "settings.env"
VERSION_TABLE = "alembic_version"
RESTORED_SETTINGS_FILE = "restored-settings.env"
"""Written into the data directory by a restore: the backup's settings, for the operator to adopt."""

DATA_TREES = (Path("attachments"), Path("models") / "router")
"""Directories under the data directory whose files cannot be rebuilt (policy attachments, router models)."""
DATA_DATABASES = (Path("revocations.sqlite3"),)
"""SQLite files under the data directory that are not a service's database (signed-out sessions)."""
PARTIAL_FILE_PREFIX = "."
"""Files being written: the atomic writes use a hidden temporary name first."""

REQUEUE_WINDOW = timedelta(hours=1)
"""Outbox events sent this long before the backup are sent again after a restore: a consumer may not
have applied them when the snapshot was taken (consumers are idempotent, so a repeat is a no-op)."""

PG_SESSION = (
    "SET LOCAL TIME ZONE 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL bytea_output = 'hex'",
    "SET LOCAL client_encoding = 'UTF8'",
)
"""The same text form of every value on both sides of a COPY (pg_dump sets these too)."""

COPY_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore cannot go on; the message is the one line shown."""


def _bar(progress: bool, **options: Any) -> Any:
    return tqdm(disable=not progress, **options)


# -- archives ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _ArchiveWriter:
    """Adds staged files to the tar.gz and records their size and checksum for the manifest."""

    def __init__(self, tar: tarfile.TarFile, staging: Path) -> None:
        self.tar = tar
        self.staging = staging
        self.members: dict[str, dict[str, Any]] = {}
        self.created = time.time()

    def staged(self, name: str) -> Path:
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, name: str, path: Path, *, mode: int = 0o600, keep: bool = False) -> None:
        info = tarfile.TarInfo(name)
        info.size = path.stat().st_size
        info.mode = mode
        info.mtime = int(self.created)
        with path.open("rb") as stream:
            self.tar.addfile(info, stream)
        self.members[name] = {"size": info.size, "sha256": _sha256(path), "mode": mode}
        if not keep:
            path.unlink()

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o600
        info.mtime = int(self.created)
        self.tar.addfile(info, io.BytesIO(data))
        if name != MANIFEST:
            self.members[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "mode": 0o600}


def _safe_member_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name:
        raise BackupError(f"archive member {name!r} has an unsafe name")
    return path


def unpack_verified(archive: Path, staging: Path, *, progress: bool = False) -> dict[str, Any]:
    """Unpack ``archive`` into ``staging`` and check every member against the manifest; the manifest.

    Raises BackupError for a missing, damaged, truncated or tampered archive."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    size = archive.stat().st_size
    found: dict[str, dict[str, Any]] = {}
    manifest_bytes: bytes | None = None
    try:
        with archive.open("rb") as raw, _bar(progress, total=size, desc="校验 verifying", unit="B",
                                             unit_scale=True) as bar, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                bar.update(raw.tell() - bar.n)
                if not member.isfile():
                    raise BackupError(f"{archive}: unexpected archive member {member.name!r} (not a file)")
                name = str(_safe_member_name(member.name))
                source = tar.extractfile(member)
                assert source is not None
                if name == MANIFEST:
                    manifest_bytes = source.read()
                    continue
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                written = 0
                with target.open("wb") as out:
                    while chunk := source.read(COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                found[name] = {"size": written, "sha256": digest.hexdigest()}
            bar.update(size - bar.n)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BackupError(f"{archive}: not a readable Gongkai backup, damaged or truncated ({detail})") from None
    if manifest_bytes is None:
        raise BackupError(f"{archive}: damaged or truncated, or not a Gongkai backup (no {MANIFEST} in it)")
    try:
        manifest: dict[str, Any] = json.loads(manifest_bytes)
    except ValueError:
        raise BackupError(f"{archive}: {MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: not a Gongkai backup (no '{FORMAT}' manifest)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{archive}: backup format {manifest.get('format_version')} is not supported by this "
                          f"version (format {FORMAT_VERSION})")
    expected: dict[str, dict[str, Any]] = manifest.get("members") or {}
    missing = sorted(set(expected) - set(found))
    if missing:
        raise BackupError(f"{archive}: truncated or incomplete: {len(missing)} members missing (first: {missing[0]})")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise BackupError(f"{archive}: member {extra[0]} is not in the manifest")
    for name, facts in sorted(expected.items()):
        if found[name]["sha256"] != facts.get("sha256") or found[name]["size"] != facts.get("size"):
            raise BackupError(f"{archive}: member {name} does not match its checksum (damaged or altered)")
    return manifest


# -- settings ------------------------------------------------------------------------------------


class _RecordingEnvironment(Mapping[str, str]):
    """An environment that remembers which names were looked up (to learn every setting's name)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def setting_names(environ: Mapping[str, str]) -> set[str]:
    """The names of the environment variables the settings are read from."""
    recorder = _RecordingEnvironment(environ)
    load_settings(recorder)
    return recorder.names


def settings_in_effect(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Every setting given in the environment, and SECRET_KEY even when it comes from the key file."""
    values = {name: environ[name] for name in sorted(setting_names(environ)) if environ.get(name, "") != ""}
    values["SECRET_KEY"] = settings.secret_key
    return dict(sorted(values.items()))


def render_env_file(values: Mapping[str, str], created_at: str) -> str:
    lines = [
        f"# Gongkai settings in effect when the backup of {created_at} was made (NAME=value, one a line).",
        "# SECRET_KEY is the key the audit chain, recovery codes and contact hashes were made with:",
        "# keep this file as safe as the archive, and run the restored suite with the same SECRET_KEY.",
    ]
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise BackupError(f"setting {name} holds a line break and cannot be written to an env file")
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def parse_env_file(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value
    return values


# -- SQLite --------------------------------------------------------------------------------------


def _sqlite_path(settings: Settings, service: str) -> Path:
    database = make_url(settings.service_database_url(service)).database
    assert database, service
    return Path(database)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)


def _sqlite_tables(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _quote_sqlite(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_counts(path: Path) -> dict[str, int]:
    connection = _read_only(path)
    try:
        # The names come from sqlite_master of the file itself, quoted.
        return {table: int(connection.execute(f"SELECT count(*) FROM {_quote_sqlite(table)}").fetchone()[0])  # noqa: S608
                for table in _sqlite_tables(connection) if table != VERSION_TABLE}
    finally:
        connection.close()


def _sqlite_revision(path: Path) -> str | None:
    connection = _read_only(path)
    try:
        if VERSION_TABLE not in _sqlite_tables(connection):
            return None
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    finally:
        connection.close()


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API), as one self-contained file."""
    reader = sqlite3.connect(source, timeout=15)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
        writer.execute("PRAGMA journal_mode=DELETE")
    finally:
        writer.close()
        reader.close()


def _backup_sqlite(settings: Settings, writer: _ArchiveWriter, bar: Any) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for service in SERVICES:
        path = _sqlite_path(settings, service)
        if not path.is_file():
            raise BackupError(f"{service}: no database at {path} (run `gongkai migrate` first)")
        name = f"databases/{service}.sqlite3"
        staged = writer.staged(name)
        sqlite_copy(path, staged)
        revision = _sqlite_revision(staged)
        if revision is None:
            raise BackupError(f"{service}: {path} has no schema revision (run `gongkai migrate` first)")
        counts = _sqlite_counts(staged)
        services[service] = {"revision": revision, "tables": {table: {"rows": rows} for table, rows in counts.items()}}
        writer.add(name, staged)
        bar.update(1)
    return services


# -- PostgreSQL ----------------------------------------------------------------------------------


def _pg_engine(settings: Settings) -> Engine:
    assert settings.database_url
    return create_engine(settings.database_url, poolclass=NullPool, connect_args={"connect_timeout": 10})


def _schema(settings: Settings, service: str) -> str:
    return f"{settings.database_schema_prefix}{service}"


def _pg_tables(cursor: Any, schema: str) -> dict[str, list[str]]:
    """The ordinary tables of a schema and their columns (generated columns left out: COPY fills them)."""
    cursor.execute(
        "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname", (schema,))
    tables = {}
    for oid, name in cursor.fetchall():
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
            "AND attgenerated = '' ORDER BY attnum", (oid,))
        tables[str(name)] = [str(column) for (column,) in cursor.fetchall()]
    return tables


def _pg_schema_exists(cursor: Any, schema: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return cursor.fetchone() is not None


def _copy_statement(schema: str, table: str, columns: list[str], direction: str) -> Any:
    from psycopg import sql

    return sql.SQL("COPY {} ({}) " + direction).format(
        sql.Identifier(schema, table), sql.SQL(", ").join(sql.Identifier(column) for column in columns))


def _backup_postgres(settings: Settings, writer: _ArchiveWriter, bar: Any) -> dict[str, Any]:
    from psycopg import sql

    services: dict[str, Any] = {}
    engine = _pg_engine(settings)
    try:
        with engine.connect() as connection:
            snapshot = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with snapshot.begin():
                cursor = snapshot.connection.driver_connection.cursor()  # type: ignore[union-attr]
                for statement in PG_SESSION:
                    cursor.execute(statement)
                for service in SERVICES:
                    schema = _schema(settings, service)
                    if not _pg_schema_exists(cursor, schema):
                        raise BackupError(f"{service}: no schema {schema} in the database (run `gongkai migrate` "
                                          "first, or check DATABASE_SCHEMA_PREFIX)")
                    tables = _pg_tables(cursor, schema)
                    if VERSION_TABLE not in tables:
                        raise BackupError(f"{service}: schema {schema} has no revision (run `gongkai migrate` first)")
                    cursor.execute(sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(schema, VERSION_TABLE)))
                    row = cursor.fetchone()
                    if row is None:
                        raise BackupError(f"{service}: schema {schema} has no revision (run `gongkai migrate` first)")
                    described: dict[str, Any] = {}
                    for table, columns in tables.items():
                        if table == VERSION_TABLE:
                            continue
                        name = f"databases/{service}/{table}.copy"
                        staged = writer.staged(name)
                        rows = 0
                        with staged.open("wb") as out, cursor.copy(_copy_statement(schema, table, columns,
                                                                                   "TO STDOUT")) as copy:
                            for chunk in copy:
                                data = bytes(chunk)
                                rows += data.count(b"\n")  # COPY text escapes the line breaks inside values
                                out.write(data)
                        writer.add(name, staged)
                        described[table] = {"rows": rows, "columns": columns}
                        bar.update(1)
                    cursor.execute(
                        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = %s ORDER BY 1",
                        (schema,))
                    sequences = {str(name): value for name, value in cursor.fetchall()}
                    writer.add_bytes(f"databases/{service}/sequences.json",
                                     json.dumps(sequences, indent=1, sort_keys=True).encode())
                    services[service] = {"revision": str(row[0]), "tables": described}
    finally:
        engine.dispose()
    return services


def _pg_table_count(settings: Settings) -> int:
    engine = _pg_engine(settings)
    try:
        with engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            return sum(len(_pg_tables(cursor, _schema(settings, service))) for service in SERVICES)
    finally:
        engine.dispose()


def _load_order(cursor: Any, schema: str, tables: list[str]) -> list[str]:
    """Referenced tables before the tables that refer to them (a table referring to itself is fine:
    COPY checks its foreign keys when the statement ends)."""
    cursor.execute(
        "SELECT child.relname, parent.relname FROM pg_constraint con "
        "JOIN pg_class child ON child.oid = con.conrelid JOIN pg_class parent ON parent.oid = con.confrelid "
        "JOIN pg_namespace n ON n.oid = con.connamespace WHERE con.contype = 'f' AND n.nspname = %s", (schema,))
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter({table: set() for table in tables})
    for child, parent in cursor.fetchall():
        if child != parent and child in tables and parent in tables:
            sorter.add(str(child), str(parent))
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as error:
        raise BackupError(f"schema {schema}: foreign keys form a cycle ({error.args[1]}); cannot order the load") \
            from None


def _restore_postgres(settings: Settings, manifest: dict[str, Any], staging: Path, bar: Any) -> None:
    from psycopg import sql

    from services.db import open_service_database
    from services.migrations import upgrade

    for service in SERVICES:
        database = open_service_database(settings, service)
        try:
            upgrade(database, manifest["services"][service]["revision"])
        finally:
            database.dispose()
    engine = _pg_engine(settings)
    try:
        with engine.begin() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for statement in PG_SESSION:
                cursor.execute(statement)
            for service in SERVICES:
                schema = _schema(settings, service)
                described: dict[str, Any] = manifest["services"][service]["tables"]
                present = _pg_tables(cursor, schema)
                unknown = sorted(set(described) - set(present))
                if unknown:
                    raise BackupError(f"{service}: table {unknown[0]} of the backup is not in the schema of revision "
                                      f"{manifest['services'][service]['revision']}")
                # A migration may insert rows of its own; the backup's rows replace them.
                filled = [table for table in present if table != VERSION_TABLE]
                if filled:
                    cursor.execute(sql.SQL("TRUNCATE {}").format(
                        sql.SQL(", ").join(sql.Identifier(schema, table) for table in filled)))
                for table in _load_order(cursor, schema, list(described)):
                    columns = described[table]["columns"]
                    with (staging / f"databases/{service}/{table}.copy").open("rb") as source, \
                            cursor.copy(_copy_statement(schema, table, columns, "FROM STDIN")) as copy:
                        while chunk := source.read(COPY_CHUNK):
                            copy.write(chunk)
                    cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
                    loaded = cursor.fetchone()[0]
                    if loaded != described[table]["rows"]:
                        raise BackupError(f"{service}.{table}: {loaded} rows loaded, the manifest lists "
                                          f"{described[table]['rows']}")
                    bar.update(1)
                sequences = json.loads((staging / f"databases/{service}/sequences.json").read_bytes())
                for name, value in sorted(sequences.items()):
                    if value is not None:
                        cursor.execute("SELECT setval(%s::regclass, %s, true)",
                                       (sql.Identifier(schema, name).as_string(cursor), value))
    finally:
        engine.dispose()


# -- what the target holds -----------------------------------------------------------------------


def _data_files(data_dir: Path) -> list[Path]:
    """The files under the data directory that a backup carries, relative to it."""
    found = []
    for tree in DATA_TREES:
        root = data_dir / tree
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.startswith(PARTIAL_FILE_PREFIX):
                found.append(path.relative_to(data_dir))
    return found


def target_contents(settings: Settings) -> list[str]:
    """What the target of a restore already holds, one short phrase each; empty when there is nothing."""
    held = []
    if settings.uses_postgres():
        engine = _pg_engine(settings)
        try:
            with engine.connect() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                from psycopg import sql

                for service in SERVICES:
                    schema = _schema(settings, service)
                    rows = 0
                    for table in _pg_tables(cursor, schema):
                        if table == VERSION_TABLE:
                            continue
                        cursor.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1000) AS sample")
                                       .format(sql.Identifier(schema, table)))
                        rows += int(cursor.fetchone()[0])
                    if rows:
                        held.append(f"{service}: {rows:,}{'+' if rows >= 1000 else ''} rows in schema {schema}")
        finally:
            engine.dispose()
    else:
        for service in SERVICES:
            path = _sqlite_path(settings, service)
            if path.is_file():
                try:
                    rows = sum(_sqlite_counts(path).values())
                except sqlite3.Error as error:
                    raise BackupError(f"{service}: cannot read {path} ({error})") from None
                if rows:
                    held.append(f"{service}: {rows:,} rows in {path}")
    files = _data_files(settings.data_dir)
    if files:
        held.append(f"{len(files)} files under {settings.data_dir}")
    return held


def clear_target(settings: Settings) -> None:
    """Remove every service database and every backed-up data file of the target (restore --force,
    or after a failed restore)."""
    if settings.uses_postgres():
        from psycopg import sql

        engine = _pg_engine(settings)
        try:
            with engine.begin() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                for service in SERVICES:
                    cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(_schema(settings, service))))
        finally:
            engine.dispose()
    else:
        for service in SERVICES:
            path = _sqlite_path(settings, service)
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    for tree in DATA_TREES:
        shutil.rmtree(settings.data_dir / tree, ignore_errors=True)
    for database in DATA_DATABASES:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{settings.data_dir / database}{suffix}").unlink(missing_ok=True)


# -- backup --------------------------------------------------------------------------------------


@dataclass
class BackupReport:
    path: Path
    size: int
    backend: str
    revisions: dict[str, str]
    tables: int
    rows: int
    files: int
    seconds: float


def _gongkai_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gongkai")
    except PackageNotFoundError:
        return "unknown"


def backup(settings: Settings, out: Path, *, environ: Mapping[str, str] | None = None,
           progress: bool = False) -> BackupReport:
    """Write the whole suite into one archive at ``out`` (replaced atomically when it exists)."""
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    out = out.expanduser().absolute()
    if out.is_dir():
        raise BackupError(f"--out {out}: is a directory; name the archive file")
    if not out.parent.is_dir():
        raise BackupError(f"--out {out}: no such directory {out.parent}")
    created_at = datetime.now(UTC)
    values = settings_in_effect(settings, environ)
    backend = "postgresql" if settings.uses_postgres() else "sqlite"
    try:
        descriptor, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    except OSError as error:
        raise BackupError(f"--out {out}: cannot write there ({error.strerror or error})") from None
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=".gongkai-backup-"))
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                writer = _ArchiveWriter(tar, staging)
                files = _data_files(settings.data_dir)
                extra = [database for database in DATA_DATABASES if (settings.data_dir / database).is_file()]
                tables = _pg_table_count(settings) - len(SERVICES) if backend == "postgresql" else len(SERVICES)
                with _bar(progress, total=tables + len(files) + len(extra), desc="备份 backing up",
                          unit="item") as bar:
                    if backend == "postgresql":
                        services = _backup_postgres(settings, writer, bar)
                    else:
                        services = _backup_sqlite(settings, writer, bar)
                    for relative in files:
                        path = settings.data_dir / relative
                        writer.add(f"files/{relative.as_posix()}", path, mode=path.stat().st_mode & 0o777, keep=True)
                        bar.update(1)
                    for relative in extra:
                        staged = writer.staged(f"files/{relative.as_posix()}")
                        sqlite_copy(settings.data_dir / relative, staged)
                        writer.add(f"files/{relative.as_posix()}", staged)
                        bar.update(1)
                writer.add_bytes(SETTINGS_MEMBER, render_env_file(values, created_at.isoformat()).encode())
                manifest = {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "created_at": created_at.isoformat(),
                    "gongkai_version": _gongkai_version(),
                    "backend": backend,
                    "services": services,
                    "members": writer.members,
                }
                writer.add_bytes(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rows = sum(table["rows"] for service in services.values() for table in service["tables"].values())
    return BackupReport(
        path=out, size=out.stat().st_size, backend=backend,
        revisions={service: facts["revision"] for service, facts in services.items()},
        tables=sum(len(facts["tables"]) for facts in services.values()), rows=rows,
        files=len(files) + len(extra), seconds=time.monotonic() - started,
    )


# -- restore -------------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    created_at: str
    gongkai_version: str
    backend: str
    rows: int
    files: int
    settings_file: Path
    differing: list[str] = field(default_factory=list)
    secret_key_note: str | None = None
    requeued: int = 0
    index_counts: dict[str, int] = field(default_factory=dict)
    index_error: str | None = None
    seconds: float = 0.0


def _check_compatible(manifest: dict[str, Any], settings: Settings, archive: Path) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from services.registry import SPECS

    target = "postgresql" if settings.uses_postgres() else "sqlite"
    if manifest.get("backend") != target:
        where = ("PostgreSQL (DATABASE_URL is set)" if target == "postgresql"
                 else "SQLite files (DATABASE_URL is not set)")
        raise BackupError(f"{archive}: the backup holds {manifest.get('backend')} databases and the current "
                          f"settings use {where}: restore it with the same kind of database")
    for service in SERVICES:
        facts = (manifest.get("services") or {}).get(service)
        if not facts or not facts.get("revision"):
            raise BackupError(f"{archive}: the manifest has no revision for {service}")
        try:
            ScriptDirectory(str(SPECS[service].migrations_dir)).get_revision(facts["revision"])
        except CommandError:
            raise BackupError(
                f"{archive}: made by a newer Gongkai ({manifest.get('gongkai_version')}; {service} schema revision "
                f"{facts['revision']} is unknown here): upgrade Gongkai before restoring") from None


def _restore_sqlite(settings: Settings, manifest: dict[str, Any], staging: Path, bar: Any) -> None:
    for service in SERVICES:
        staged = staging / f"databases/{service}.sqlite3"
        counts = _sqlite_counts(staged)
        expected = {table: facts["rows"] for table, facts in manifest["services"][service]["tables"].items()}
        if counts != expected:
            raise BackupError(f"{service}: the database in the archive does not hold the rows the manifest lists")
        target = _sqlite_path(settings, service)
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        partial = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(staged, partial)
        os.replace(partial, target)
        bar.update(len(expected))


def _restore_files(settings: Settings, manifest: dict[str, Any], staging: Path, bar: Any) -> int:
    placed = 0
    for name, facts in sorted(manifest["members"].items()):
        if not name.startswith("files/"):
            continue
        relative = Path(*PurePosixPath(name).parts[1:])
        target = settings.data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(staging / name, target)
        os.chmod(target, int(facts.get("mode", 0o600)) & 0o777)
        placed += 1
        bar.update(1)
    return placed


def _requeue_recent_events(settings: Settings, since: datetime) -> int:
    from services.db import open_service_database

    requeued = 0
    for service in SERVICES:
        database = open_service_database(settings, service)
        try:
            model = database.outbox_model
            if model is None:
                continue
            with database.transaction() as session:
                result = session.execute(update(model).where(model.sent_at >= since).values(sent_at=None))
                requeued += int(getattr(result, "rowcount", 0) or 0)
        finally:
            database.dispose()
    return requeued


def _write_private(path: Path, text: str) -> None:
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _adopt_settings(settings: Settings, environ: Mapping[str, str], staging: Path,
                    report: RestoreReport) -> None:
    """Write the backup's settings into the data directory; name the settings that differ from the
    current environment (names only: values may be secrets). On one machine without SECRET_KEY in the
    environment, the backup's key becomes the key file's."""
    text = (staging / SETTINGS_MEMBER).read_text(encoding="utf-8")
    _write_private(report.settings_file, text)
    saved = parse_env_file(text)
    current = {name: environ.get(name, "") for name in saved}
    current["SECRET_KEY"] = settings.secret_key
    report.differing = sorted(name for name, value in saved.items() if current.get(name, "") != value)
    backup_key = saved.get("SECRET_KEY")
    if not backup_key or backup_key == settings.secret_key:
        return
    if (environ.get("SECRET_KEY") or "").strip():
        report.secret_key_note = (
            f"SECRET_KEY differs from the backup's: start the suite with SECRET_KEY from {report.settings_file}, "
            "or the audit chain will not verify and recovery codes will not match")
    else:
        _write_private(settings.data_dir / "secret_key", backup_key)
        report.secret_key_note = f"the backup's SECRET_KEY is now in {settings.data_dir / 'secret_key'}"


def _mark_unfinished_rebuilds(settings: Settings) -> None:
    """A rebuild that was running when the backup was taken will never finish here."""
    from search.models import ReindexRun
    from search.reindex import ABANDONED, BUILDING
    from services.db import open_service_database, utcnow

    database = open_service_database(settings, "search")
    try:
        with database.transaction() as session:
            session.execute(update(ReindexRun).where(ReindexRun.state == BUILDING).values(
                state=ABANDONED, building_slot=None, finished_at=utcnow(), error="interrupted by backup and restore"))
    finally:
        database.dispose()


def rebuild_index(settings: Settings, *, progress: bool = False) -> dict[str, int]:
    """``gongkai search reindex`` for the restored data, with a bar per document type."""
    from search.reindex import reindex, worker_apps
    from services.db import EXTENSION_KEY
    from services.suite import create_worker_app
    from services.web import get_search_engine

    app = create_worker_app(settings)
    bars: dict[str, Any] = {}

    def show(doc_type: str, done: int, total: int) -> None:
        bar = bars.get(doc_type)
        if bar is None:
            if not total:
                return
            bar = bars[doc_type] = _bar(progress, total=total, desc=f"索引 {doc_type}", unit="doc")
        bar.total = max(bar.total or 0, total)
        bar.update(done - bar.n)

    try:
        with app.app_context():
            report = reindex(worker_apps(app), progress=show)
            engine = get_search_engine(app)
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        return report.counts
    finally:
        for bar in bars.values():
            bar.close()
        for database in app.extensions.get(EXTENSION_KEY, {}).values():
            database.dispose()


@contextmanager
def _staging_dir(settings: Settings) -> Iterator[Path]:
    """A private directory for the unpacked archive, on the data directory's disk (it has room for the data)."""
    created = not settings.data_dir.exists()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=settings.data_dir, prefix=".restore-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):  # removed only if nothing was restored into it
                settings.data_dir.rmdir()


def restore(settings: Settings, archive: Path, *, force: bool = False, environ: Mapping[str, str] | None = None,
            progress: bool = False, rebuild: bool = True) -> RestoreReport:
    """Restore the archive onto the databases and data directory of ``settings`` (see the module's
    docstring). Nothing is written before the archive is verified and the target found empty (or
    ``force``); a failure while loading leaves the target empty."""
    from services.migrations import migrate_all

    started = time.monotonic()
    environ = os.environ if environ is None else environ
    archive = archive.expanduser().absolute()
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    with _staging_dir(settings) as staging:
        manifest = unpack_verified(archive, staging, progress=progress)
        _check_compatible(manifest, settings, archive)
        held = target_contents(settings)
        if held and not force:
            raise BackupError(f"the target already holds data ({'; '.join(held)}): restore onto an empty one, "
                              "or pass --force to replace it")
        # Empty schemas or files go too: the data is loaded into the schema of the backup's revision.
        clear_target(settings)
        tables = sum(len(facts["tables"]) for facts in manifest["services"].values())
        files = [name for name in manifest["members"] if name.startswith("files/")]
        report = RestoreReport(
            created_at=str(manifest["created_at"]), gongkai_version=str(manifest.get("gongkai_version")),
            backend=str(manifest["backend"]),
            rows=sum(table["rows"] for facts in manifest["services"].values() for table in facts["tables"].values()),
            files=len(files), settings_file=settings.data_dir / RESTORED_SETTINGS_FILE,
        )
        try:
            with _bar(progress, total=tables + len(files), desc="恢复 restoring", unit="item") as bar:
                if settings.uses_postgres():
                    _restore_postgres(settings, manifest, staging, bar)
                else:
                    _restore_sqlite(settings, manifest, staging, bar)
                migrate_all(settings)
                _restore_files(settings, manifest, staging, bar)
            since = datetime.fromisoformat(report.created_at) - REQUEUE_WINDOW
            report.requeued = _requeue_recent_events(settings, since)
            _mark_unfinished_rebuilds(settings)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                clear_target(settings)
            raise
        _adopt_settings(settings, environ, staging, report)
    if rebuild:
        from services.searchengine.port import SearchEngineError, SearchUnavailable

        try:
            report.index_counts = rebuild_index(settings, progress=progress)
        except (SearchUnavailable, SearchEngineError) as error:
            report.index_error = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    report.seconds = time.monotonic() - started
    return report
