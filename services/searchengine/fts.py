"""The embedded search engine: SQLite FTS5 in one file, no server.

Layout of the file
    ``indices``      registry of versioned indices (name, alias, version number)
    ``aliases``      alias -> index; swapping is one upsert in one transaction
    ``ix{id}_docs``  one row per document or tombstone: external version, keyword columns
                     for filters (and facets later), the document as JSON
    ``ix{id}_text``  FTS5 (unicode61) over text the application prepared: jieba words
                     (``title_seg``, ``body_seg``) and CJK bigrams (``title_cjk``,
                     ``body_cjk``); rowid = the docs row

Why bigrams computed here rather than FTS5's ``trigram`` tokenizer: a trigram index cannot
match a 2-character query ("公积") at all, and would rank differently from Elasticsearch's
``cjk_bigram``. Pre-computed bigrams match any 2+ character substring through the index
and give both adapters the same tokens (ARCHITECTURE.md, principle 5).

Each thread uses its own connection (WAL, busy timeout), reopened after ``fork``, so one
engine can be shared between threads and by Celery prefork workers.

SQL is assembled from templates: the only names put into it are table names derived from
integer registry ids and fixed column names; every value is a bound parameter.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from services.searchengine.port import (
    DOC_TYPES,
    KEYWORD_FIELDS,
    TITLE_WEIGHT,
    EngineHealth,
    SearchEngineError,
    SearchQuery,
    SearchResult,
    SearchUnavailable,
    hit_from_document,
    index_number,
    indices_to_prune,
    parse_published_at,
    sort_by_number,
    validate_alias,
    validate_document,
    validate_version,
    versioned_index_name,
)
from services.text.segment import cjk_bigrams, segment_for_index, segment_query, split_phrases

_REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS indices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    alias TEXT NOT NULL,
    number INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (alias, number)
);
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY,
    index_name TEXT NOT NULL REFERENCES indices (name)
);
"""

_INDEX_SCHEMA = (
    """
    CREATE TABLE {docs} (
        seq INTEGER PRIMARY KEY,
        doc_id TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        tombstone INTEGER NOT NULL,
        deleted_at TEXT,
        doc_type TEXT,
        published_ts REAL,
        {keyword_columns},
        document TEXT
    )
    """,
    # Serve the date order (and its LIMIT) and the filters' counts from indexes.
    'CREATE INDEX "{prefix}_by_date" ON {docs} (tombstone, published_ts DESC, doc_id)',
    *(
        f'CREATE INDEX "{{prefix}}_by_{field}" ON {{docs}} ({field}, tombstone, published_ts DESC, doc_id)'
        for field in ("doc_type", *KEYWORD_FIELDS)
    ),
    # remove_diacritics 0: Elasticsearch's lowercase filter keeps diacritics too.
    """
    CREATE VIRTUAL TABLE {text} USING fts5(
        title_seg, body_seg, title_cjk, body_cjk,
        tokenize = 'unicode61 remove_diacritics 0'
    )
    """,
)

#: bm25() weights in the column order of the text table.
_BM25_WEIGHTS = ", ".join(str(weight) for weight in (TITLE_WEIGHT, 1.0, TITLE_WEIGHT, 1.0))
#: SQLite sorts NULL lowest, so undated documents come last (Elasticsearch: missing=_last).
_DATE_ORDER = "published_ts DESC, doc_id"
_LIVE = "d.tombstone = 0"

_UNAVAILABLE_MARKERS = (
    "locked",
    "busy",
    "unable to open",
    "disk i/o",
    "readonly",
    "not a database",
    "malformed",
    "disk is full",
)


class _Tables(NamedTuple):
    name: str
    prefix: str
    docs: str
    text: str

    def sql(self, template: str, **parts: str) -> str:
        """``template`` with ``{prefix}``, ``{docs}``, ``{text}`` (and ``parts``) filled in."""
        return template.format(**self._asdict(), **parts)


def _tables(index_name: str, index_id: int) -> _Tables:
    prefix = f"ix{int(index_id)}"
    return _Tables(index_name, prefix, f'"{prefix}_docs"', f'"{prefix}_text"')


def _fts_string(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def match_expression(text: str) -> str | None:
    """The FTS5 query for ``text`` (see the matching rules in ``port``); None when the
    text holds nothing to match."""
    phrases = [tokens for tokens in map(cjk_bigrams, split_phrases(text)) if tokens]
    words = segment_query(text)
    alternatives = []
    if phrases:
        all_phrases = " AND ".join(_fts_string(" ".join(tokens)) for tokens in phrases)
        alternatives.append(f"{{title_cjk body_cjk}} : ({all_phrases})")
    if words:
        all_words = " AND ".join(_fts_string(word) for word in words)
        alternatives.append(f"{{title_seg body_seg}} : ({all_words})")
    return " OR ".join(alternatives) or None


def _text_row(document: dict[str, Any]) -> tuple[str, str, str, str]:
    title = document.get("title") or ""
    body = document.get("body") or ""
    return (
        segment_for_index(title),
        segment_for_index(body),
        " ".join(cjk_bigrams(title)),
        " ".join(cjk_bigrams(body)),
    )


def _docs_row(document: dict[str, Any], version: int) -> dict[str, Any]:
    published = parse_published_at(document.get("published_at"))
    return {
        "doc_id": document["id"],
        "version": version,
        "tombstone": 0,
        "deleted_at": None,
        "doc_type": document["doc_type"],
        "published_ts": published.timestamp() if published else None,
        **{name: document.get(name) for name in KEYWORD_FIELDS},
        "document": json.dumps(document, ensure_ascii=False),
    }


def _tombstone_row(doc_id: str, version: int) -> dict[str, Any]:
    """Keeps the version of a delete, so that a late write of an older version is ignored."""
    return {
        "doc_id": doc_id,
        "version": version,
        "tombstone": 1,
        "deleted_at": datetime.now(UTC).isoformat(),
        "doc_type": None,
        "published_ts": None,
        **{name: None for name in KEYWORD_FIELDS},
        "document": None,
    }


def _filters(query: SearchQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (on the docs table, as ``d``) for the query's filters."""
    clauses = [_LIVE]
    params: list[Any] = []
    if query.doc_types:
        clauses.append(f"d.doc_type IN ({', '.join('?' * len(query.doc_types))})")
        params.extend(query.doc_types)
    for name, value in sorted(query.filters.items()):
        if name not in KEYWORD_FIELDS:  # SearchQuery checks this too; names go into SQL
            raise ValueError(f"unknown filter {name!r}")
        clauses.append(f"d.{name} = ?")
        params.append(value)
    return " AND ".join(clauses), params


def _translate(error: sqlite3.Error, path: Path) -> Exception:
    message = str(error)
    if isinstance(error, sqlite3.DatabaseError) and any(marker in message.lower() for marker in _UNAVAILABLE_MARKERS):
        return SearchUnavailable(f"搜索索引不可用 / search index unavailable ({path}): {message}")
    return SearchEngineError(f"search index error ({path}): {message}")


class FtsSearchEngine:
    """``SearchEngine`` on SQLite FTS5 (stdlib ``sqlite3``)."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._per_thread = threading.local()

    # -- connections ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SearchUnavailable(f"搜索索引不可用 / cannot create {self.path.parent}: {error}") from error
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        connection.row_factory = sqlite3.Row
        # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits,
        # which the index (derived data, rebuilt and reconciled from the services) can afford.
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _ensure_schema(self, connection: sqlite3.Connection) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.executescript(_REGISTRY_SCHEMA)
                self._schema_ready = True

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use and again after a fork.

        Kept open rather than opened per call: closing the last connection of a WAL
        database checkpoints it, which made every write several times slower."""
        local = self._per_thread
        cached: sqlite3.Connection | None = getattr(local, "connection", None)
        if cached is not None and local.pid == os.getpid():
            return cached
        connection = self._open()
        try:
            self._ensure_schema(connection)
        except BaseException:
            connection.close()
            raise
        local.connection, local.pid = connection, os.getpid()
        return connection

    def _discard_connection(self) -> None:
        connection = getattr(self._per_thread, "connection", None)
        self._per_thread.connection = None
        if connection is not None and self._per_thread.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction on this thread's connection; writes take the write lock up front."""
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            self._discard_connection()  # the next call starts from a fresh connection
            raise _translate(error, self.path) from error

    # -- registry ------------------------------------------------------------------------

    @staticmethod
    def _resolve(connection: sqlite3.Connection, target: str) -> _Tables:
        row = connection.execute(
            "SELECT i.id, i.name FROM indices i "
            "WHERE i.name = ? OR i.name = (SELECT index_name FROM aliases WHERE alias = ?)",
            (target, target),
        ).fetchone()
        if row is None:
            raise SearchEngineError(f"no such index or alias: {target}")
        return _tables(row["name"], row["id"])

    @staticmethod
    def _current(connection: sqlite3.Connection, alias: str) -> str | None:
        row = connection.execute("SELECT index_name FROM aliases WHERE alias = ?", (alias,)).fetchone()
        return row["index_name"] if row else None

    @staticmethod
    def _names(connection: sqlite3.Connection, alias: str) -> list[str]:
        rows = connection.execute("SELECT name FROM indices WHERE alias = ?", (alias,)).fetchall()
        return sort_by_number(alias, [row["name"] for row in rows])

    @staticmethod
    def _create(connection: sqlite3.Connection, alias: str) -> str:
        (highest,) = connection.execute(
            "SELECT coalesce(max(number), 0) FROM indices WHERE alias = ?", (alias,)
        ).fetchone()
        name = versioned_index_name(alias, highest + 1)
        cursor = connection.execute(
            "INSERT INTO indices (name, alias, number, created_at) VALUES (?, ?, ?, ?)",
            (name, alias, highest + 1, datetime.now(UTC).isoformat()),
        )
        assert cursor.lastrowid is not None
        tables = _tables(name, cursor.lastrowid)
        keyword_columns = ", ".join(f"{field} TEXT" for field in KEYWORD_FIELDS)
        for template in _INDEX_SCHEMA:
            connection.execute(tables.sql(template, keyword_columns=keyword_columns))
        return name

    @staticmethod
    def _point(connection: sqlite3.Connection, alias: str, index: str) -> None:
        connection.execute(
            "INSERT INTO aliases (alias, index_name) VALUES (?, ?) "
            "ON CONFLICT (alias) DO UPDATE SET index_name = excluded.index_name",
            (alias, index),
        )

    def _drop(self, connection: sqlite3.Connection, index: str) -> None:
        tables = self._resolve(connection, index)
        connection.execute(tables.sql("DROP TABLE IF EXISTS {text}"))
        connection.execute(tables.sql("DROP TABLE IF EXISTS {docs}"))
        connection.execute("DELETE FROM indices WHERE name = ?", (index,))

    # -- the port: indices and aliases -------------------------------------------------------

    def health(self) -> EngineHealth:
        try:
            with self._transaction(write=False) as connection:
                (version,) = connection.execute("SELECT sqlite_version()").fetchone()
                connection.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(x)")
                connection.execute("DROP TABLE temp.fts5_probe")
        except (SearchUnavailable, SearchEngineError) as error:
            return EngineHealth(False, str(error))
        return EngineHealth(True, f"SQLite {version} FTS5 at {self.path}")

    def ensure_alias(self, alias: str) -> str:
        validate_alias(alias)
        with self._transaction(write=True) as connection:
            current = self._current(connection, alias)
            if current is not None:
                return current
            index = self._create(connection, alias)
            self._point(connection, alias, index)
            return index

    def create_index(self, alias: str) -> str:
        validate_alias(alias)
        with self._transaction(write=True) as connection:
            return self._create(connection, alias)

    def swap_alias(self, alias: str, new_index: str) -> str | None:
        validate_alias(alias)
        if index_number(alias, new_index) is None:
            raise SearchEngineError(f"{new_index} is not a versioned index of {alias}")
        with self._transaction(write=True) as connection:
            self._resolve(connection, new_index)
            old = self._current(connection, alias)
            self._point(connection, alias, new_index)
            return old

    def current_index(self, alias: str) -> str | None:
        with self._transaction(write=False) as connection:
            return self._current(connection, alias)

    def list_indices(self, alias: str) -> list[str]:
        with self._transaction(write=False) as connection:
            return self._names(connection, alias)

    def prune(self, alias: str, keep: int = 1) -> list[str]:
        with self._transaction(write=True) as connection:
            names = self._names(connection, alias)
            doomed = indices_to_prune(alias, names, self._current(connection, alias), keep)
            for index in doomed:
                self._drop(connection, index)
            return doomed

    def drop_index(self, index: str) -> None:
        with self._transaction(write=True) as connection:
            row = connection.execute("SELECT alias FROM aliases WHERE index_name = ?", (index,)).fetchone()
            if row is not None:
                raise SearchEngineError(f"{index} is behind alias {row['alias']}; swap the alias first")
            if connection.execute("SELECT 1 FROM indices WHERE name = ?", (index,)).fetchone():
                self._drop(connection, index)

    # -- the port: documents ---------------------------------------------------------------

    def index_document(self, target: str, doc_id: str, document: dict[str, Any], version: int) -> bool:
        checked = validate_document(doc_id, document)
        validate_version(version)
        row = _docs_row(checked, version)
        text = _text_row(checked)  # segment before taking the write lock
        with self._transaction(write=True) as connection:
            tables = self._resolve(connection, target)
            stored = self._stored_version(connection, tables, doc_id)
            if stored is not None and stored["version"] >= version:
                return False
            seq = self._write_docs_row(connection, tables, row, stored["seq"] if stored else None)
            connection.execute(tables.sql("DELETE FROM {text} WHERE rowid = ?"), (seq,))
            connection.execute(
                tables.sql(
                    "INSERT INTO {text} (rowid, title_seg, body_seg, title_cjk, body_cjk) VALUES (?, ?, ?, ?, ?)"
                ),
                (seq, *text),
            )
            return True

    def delete_document(self, target: str, doc_id: str, version: int) -> bool:
        validate_version(version)
        tombstone = _tombstone_row(doc_id, version)
        with self._transaction(write=True) as connection:
            tables = self._resolve(connection, target)
            stored = self._stored_version(connection, tables, doc_id)
            if stored is not None and stored["version"] > version:
                return False
            seq = self._write_docs_row(connection, tables, tombstone, stored["seq"] if stored else None)
            connection.execute(tables.sql("DELETE FROM {text} WHERE rowid = ?"), (seq,))
            return True

    @staticmethod
    def _stored_version(connection: sqlite3.Connection, tables: _Tables, doc_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = connection.execute(
            tables.sql("SELECT seq, version FROM {docs} WHERE doc_id = ?"), (doc_id,)
        ).fetchone()
        return row

    @staticmethod
    def _write_docs_row(connection: sqlite3.Connection, tables: _Tables, row: dict[str, Any], seq: int | None) -> int:
        """Insert ``row``, or replace the row ``seq``; return the row's seq."""
        if seq is None:
            cursor = connection.execute(
                tables.sql(
                    "INSERT INTO {docs} ({columns}) VALUES ({values})",
                    columns=", ".join(row),
                    values=", ".join(f":{name}" for name in row),
                ),
                row,
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid
        connection.execute(
            tables.sql(
                "UPDATE {docs} SET {assignments} WHERE seq = :seq",
                assignments=", ".join(f"{name} = :{name}" for name in row),
            ),
            {**row, "seq": seq},
        )
        return seq

    def get_document(self, target: str, doc_id: str) -> dict[str, Any] | None:
        with self._transaction(write=False) as connection:
            tables = self._resolve(connection, target)
            row = connection.execute(
                tables.sql("SELECT document, version FROM {docs} d WHERE doc_id = ? AND {live}", live=_LIVE),
                (doc_id,),
            ).fetchone()
        if row is None:
            return None
        return {**json.loads(row["document"]), "_version": row["version"]}

    def count(self, target: str, doc_type: str | None = None) -> int:
        if doc_type is not None and doc_type not in DOC_TYPES:
            raise ValueError(f"doc_type must be one of {DOC_TYPES}, not {doc_type!r}")
        where, params = _filters(SearchQuery(doc_types=(doc_type,) if doc_type else ()))
        with self._transaction(write=False) as connection:
            tables = self._resolve(connection, target)
            (total,) = connection.execute(
                tables.sql("SELECT count(*) FROM {docs} d WHERE {where}", where=where), params
            ).fetchone()
        return int(total)

    def refresh(self, target: str) -> None:
        """Committed writes are visible already; this only checks that ``target`` exists."""
        with self._transaction(write=False) as connection:
            self._resolve(connection, target)

    def close(self) -> None:
        """Close this thread's connection (other threads' close when those threads end)."""
        self._discard_connection()

    # -- the port: search --------------------------------------------------------------------

    def search(self, alias: str, query: SearchQuery) -> SearchResult:
        expression = match_expression(query.text) if query.has_text else None
        where, params = _filters(query)
        # One read transaction: the alias, the total and the page come from one snapshot.
        with self._transaction(write=False) as connection:
            tables = self._resolve(connection, alias)
            if expression is None:
                matches = tables.sql("FROM {docs} d WHERE {where}", where=where)
                return self._page(connection, tables, matches, params, query, score=None)
            # FTS5's MATCH and bm25() need the table's own name, not an alias. CROSS JOIN
            # keeps the full-text match as the outer loop: left to itself, the planner may
            # walk every docs row and run the match once per row (hundreds of times slower).
            matches = tables.sql(
                "FROM {text} CROSS JOIN {docs} d ON d.seq = {text}.rowid WHERE {text} MATCH ? AND {where}",
                where=where,
            )
            score = None if query.sorts_by_date else tables.sql("-bm25({text}, {weights})", weights=_BM25_WEIGHTS)
            return self._page(connection, tables, matches, [expression, *params], query, score)

    @staticmethod
    def _page(
        connection: sqlite3.Connection,
        tables: _Tables,
        matches: str,
        params: list[Any],
        query: SearchQuery,
        score: str | None,
    ) -> SearchResult:
        """The total of ``matches`` and one page of it, in relevance order when ``score``
        is given, else by date. The page is chosen on (seq, score, date) alone; only its
        rows' documents are read, rather than carrying every match's JSON through the sort."""
        (total,) = connection.execute("SELECT count(*) " + matches, params).fetchone()
        order = f"score DESC, {_DATE_ORDER}" if score else _DATE_ORDER
        rows = connection.execute(
            tables.sql(
                "SELECT d.document, page.score FROM ("
                "  SELECT d.seq, d.published_ts AS published_ts, d.doc_id AS doc_id, {score} AS score {matches}"
                "  ORDER BY {order} LIMIT ? OFFSET ?"
                ") page JOIN {docs} d ON d.seq = page.seq ORDER BY {outer_order}",
                score=score or "NULL",
                matches=matches,
                order=order,
                outer_order=", ".join(f"page.{term}" for term in order.split(", ")),
            ),
            [*params, query.per_page, query.offset],
        ).fetchall()
        return SearchResult(total, [hit_from_document(json.loads(row["document"]), row["score"]) for row in rows])
