"""The embedded search engine: SQLite FTS5 in one file, no server.

Layout of the file
    ``indices``      registry of versioned indices (name, alias, version number)
    ``aliases``      alias -> index; swapping is one upsert in one transaction
    ``ix{id}_docs``  one row per document or tombstone: external version, keyword columns
                     for filters (and facets later), the document as JSON
    ``ix{id}_text``  FTS5 (unicode61) over text the application prepared: jieba words
                     (``title_seg``, ``body_seg``) and CJK bigrams (``title_cjk``,
                     ``body_cjk``); rowid = the docs row
    ``ix{id}_suggest`` the suggestion keys of live documents (``analysis.suggestion_entries``:
                     the normalised title and the title from its word starts, with weights);
                     a prefix is a range scan of its ``key`` index

Indices made before the suggestion table (and two covering indexes) existed get them, filled
from their documents, when the engine first opens the file.

Ranking is computed in SQL on the BM25 of every match (``analysis`` has the formula), so
paging stays exact; facets and the total come from one statement over the matches.

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
import logging
import math
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from services.searchengine.analysis import (
    EXPIRED_FACTOR,
    EXPIRED_VALIDITIES,
    MLT_MAX_QUERY_TERMS,
    MLT_MIN_DOC_FREQ,
    MLT_MIN_WORD_LENGTH,
    RECENCY_FLOOR,
    RECENCY_LAMBDA_PER_MS,
    TextPlan,
    check_related_args,
    check_suggest_args,
    explain,
    mlt_minimum_should_match,
    now_ms,
    ordered_facet,
    plan_text,
    published_bounds,
    suggestion_entries,
    suggestion_key,
)
from services.searchengine.highlight import highlight_document
from services.searchengine.port import (
    DOC_TYPES,
    FACET_FIELDS,
    KEYWORD_FIELDS,
    TITLE_WEIGHT,
    EngineHealth,
    IndexNotFound,
    SearchEngineError,
    SearchHit,
    SearchQuery,
    SearchResult,
    SearchUnavailable,
    Suggestion,
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
from services.text.segment import cjk_bigrams, get_segmenter, segment_for_index

logger = logging.getLogger(__name__)

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
#: Added after the first release: made with every new index, and added to older indices when
#: the engine first opens the file (``_upgrade_indices``). name -> statement.
_ADDED_SCHEMA: dict[str, str] = {
    # Suggestions: a prefix is a range scan of ``key``.
    "{prefix}_suggest": (
        "CREATE TABLE IF NOT EXISTS {suggest} (seq INTEGER NOT NULL, key TEXT NOT NULL, weight INTEGER NOT NULL)"
    ),
    "{prefix}_suggest_by_key": 'CREATE INDEX IF NOT EXISTS "{prefix}_suggest_by_key" ON {suggest} (key)',
    "{prefix}_suggest_by_seq": 'CREATE INDEX IF NOT EXISTS "{prefix}_suggest_by_seq" ON {suggest} (seq)',
    # What a full-text match needs of each matching row (filters, date, validity), without
    # reading the row and its JSON: a third of the time of a broad query.
    "{prefix}_by_seq": (
        'CREATE INDEX IF NOT EXISTS "{prefix}_by_seq" ON {docs} '
        f"(seq, tombstone, published_ts, doc_id, doc_type, {', '.join(KEYWORD_FIELDS)})"
    ),
    # Facet counts without text read this index alone.
    "{prefix}_facets": (
        'CREATE INDEX IF NOT EXISTS "{prefix}_facets" ON {docs} '
        f"(tombstone, doc_type, {', '.join(KEYWORD_FIELDS)}, published_ts)"
    ),
}
#: Sorts after any character a key can hold: ``key < prefix + _KEY_END`` bounds a prefix scan.
_KEY_END = "\U0010ffff"

#: bm25() weights in the column order of the text table.
_BM25_WEIGHTS = ", ".join(str(weight) for weight in (TITLE_WEIGHT, 1.0, TITLE_WEIGHT, 1.0))
#: SQLite sorts NULL lowest, so undated documents come last (Elasticsearch: missing=_last).
_DATE_ORDER = "published_ts DESC, doc_id"
_LIVE = "d.tombstone = 0"
#: The recency and validity factors of ``analysis`` in SQL, on the docs row ``d``; parameters
#: in ``_factor_params`` order.
_FACTOR = (
    "(CASE WHEN d.published_ts IS NULL THEN ? ELSE ? + ? * exp(? * abs(? - d.published_ts)) END)"
    f" * (CASE WHEN d.validity IN ({', '.join('?' * len(EXPIRED_VALIDITIES))}) THEN ? ELSE 1.0 END)"
)
#: Facet counts over the matches, found once (a CTE used several times is materialised).
_FACETS = "WITH matched AS (SELECT {columns} {matches}) {counts}"
_FACET_COUNT = (
    "SELECT '{name}' AS field, {name} AS value, count(*) AS n FROM matched "
    "WHERE {name} IS NOT NULL AND {name} <> '' GROUP BY {name}"
)
_FIELD_COUNT = (
    "SELECT d.{name} AS value, count(*) AS n {matches} AND d.{name} IS NOT NULL AND d.{name} <> '' GROUP BY d.{name}"
)
#: The matches with their text score and ranking factors, multiplied.
_RANKED = (
    "SELECT seq, published_ts, doc_id, text_score, text_score * factor AS score FROM ("
    "  SELECT d.seq AS seq, d.published_ts AS published_ts, d.doc_id AS doc_id,"
    "  {text_score} AS text_score, {factor} AS factor {matches})"
)
#: Related documents: BM25 candidates read per wanted one, to apply minimum_should_match.
_RELATED_CANDIDATES_PER_HIT = 4
#: More-like-this: words held by more than this share of the documents are not asked for,
#: unless they are held by at most _MLT_CHEAP_DOC_FREQ documents (cheap to score anyway).
MLT_MAX_DOC_SHARE = 0.1
_MLT_CHEAP_DOC_FREQ = 500
#: More-like-this: the words of a document whose documents are counted, at most.
_LIKE_LOOKUPS = 40

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


_FileId = tuple[int, int]
"""(device, inode) of the index file."""


class _Tables(NamedTuple):
    name: str
    prefix: str
    docs: str
    text: str
    suggest: str
    vocab: str

    def sql(self, template: str, **parts: str) -> str:
        """``template`` with ``{prefix}``, ``{docs}``, ``{text}``, ``{suggest}``, ``{vocab}``
        (and ``parts``) filled in."""
        return template.format(**self._asdict(), **parts)


def _tables(index_name: str, index_id: int) -> _Tables:
    prefix = f"ix{int(index_id)}"
    return _Tables(
        index_name, prefix, f'"{prefix}_docs"', f'"{prefix}_text"', f'"{prefix}_suggest"', f'temp."{prefix}_vocab"'
    )


def _fts_string(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _cjk_phrase(term: str) -> str | None:
    tokens = cjk_bigrams(term)
    return _fts_string(" ".join(tokens)) if tokens else None


def _any_of(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else "(" + " OR ".join(phrases) + ")"


def match_expression(text: str | TextPlan) -> str | None:
    """The FTS5 query for ``text`` (see the matching rules in ``port``; a ``TextPlan``
    brings synonyms); None when the text holds nothing to match."""
    plan = plan_text(text) if isinstance(text, str) else text
    phrases = []
    for options in plan.phrases:
        forms = [form for form in map(_cjk_phrase, options) if form]
        if forms:
            phrases.append(_any_of(forms))
    alternatives = []
    if phrases:
        alternatives.append(f"{{title_cjk body_cjk}} : ({' AND '.join(phrases)})")
    if plan.words:
        words = []
        for word, synonyms in plan.words:
            forms = [form for form in map(_cjk_phrase, synonyms) if form]
            if forms:
                synonym = f"{{title_cjk body_cjk}} : {_any_of(forms)}"
                words.append(f"({{title_seg body_seg}} : {_fts_string(word)} OR {synonym})")
            else:
                words.append(f"{{title_seg body_seg}} : {_fts_string(word)}")
        alternatives.append(f"({' AND '.join(words)})")
    return " OR ".join(alternatives) or None


def _factor_params(now: int) -> list[Any]:
    """Parameters of ``_FACTOR`` for a query made at ``now`` (epoch ms); published_ts is in seconds."""
    return [
        RECENCY_FLOOR,
        RECENCY_FLOOR,
        1 - RECENCY_FLOOR,
        RECENCY_LAMBDA_PER_MS * 1000,
        now / 1000,
        *EXPIRED_VALIDITIES,
        EXPIRED_FACTOR,
    ]


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


class _Prepared(NamedTuple):
    """A checked document in the forms the tables take, made before the write lock is taken."""

    doc_id: str
    version: int
    row: dict[str, Any]
    text: tuple[str, str, str, str]
    suggestions: list[tuple[str, int]]


def _prepare(doc_id: str, document: dict[str, Any], version: int) -> _Prepared:
    checked = validate_document(doc_id, document)
    validate_version(version)
    return _Prepared(doc_id, version, _docs_row(checked, version), _text_row(checked), _suggestions(checked))


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
    since, until = published_bounds(query.date_from, query.date_to)
    if since is not None:
        clauses.append("d.published_ts >= ?")
        params.append(since.timestamp())
    if until is not None:
        clauses.append("d.published_ts < ?")
        params.append(until.timestamp())
    return " AND ".join(clauses), params


def _suggestions(document: dict[str, Any]) -> list[tuple[str, int]]:
    return suggestion_entries(document.get("title") or "", document.get("published_at"))


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
        self._schema_ready_in: _FileId | None = None
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
        try:
            connection.execute("SELECT exp(0.0)")
        except sqlite3.OperationalError:  # SQLite built without its math functions
            connection.create_function("exp", 1, math.exp, deterministic=True)
        return connection

    def _file_id(self) -> _FileId | None:
        """Which file is at ``path`` now (None: none is)."""
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def _ensure_schema(self, connection: sqlite3.Connection, file_id: _FileId | None) -> None:
        if file_id is not None and self._schema_ready_in == file_id:
            return
        with self._schema_lock:
            if file_id is None or self._schema_ready_in != file_id:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.executescript(_REGISTRY_SCHEMA)
                self._upgrade_indices(connection)
                self._schema_ready_in = file_id

    @staticmethod
    def _upgrade_indices(connection: sqlite3.Connection) -> None:
        """Add what ``_ADDED_SCHEMA`` lists to indices made before it; a new suggestion table
        is filled from the index's documents. Takes the write lock only when something is missing."""

        def missing() -> list[tuple[_Tables, list[str]]]:
            existing = {row["name"] for row in connection.execute("SELECT name FROM sqlite_master")}
            found = []
            for row in connection.execute("SELECT id, name FROM indices").fetchall():
                tables = _tables(row["name"], row["id"])
                absent = [name for name in _ADDED_SCHEMA if tables.sql(name) not in existing]
                if absent:
                    found.append((tables, absent))
            return found

        if not missing():
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            for tables, absent in missing():  # again, under the lock
                logger.info("adding %s to search index %s", ", ".join(tables.sql(name) for name in absent), tables.name)
                for name in absent:
                    connection.execute(tables.sql(_ADDED_SCHEMA[name]))
                if "{prefix}_suggest" in absent:
                    FtsSearchEngine._fill_suggestions(connection, tables)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    @staticmethod
    def _fill_suggestions(connection: sqlite3.Connection, tables: _Tables) -> None:
        documents = connection.execute(tables.sql("SELECT seq, document FROM {docs} d WHERE {live}", live=_LIVE))
        for document in documents.fetchall():
            entries = _suggestions(json.loads(document["document"]))
            connection.executemany(
                tables.sql("INSERT INTO {suggest} (seq, key, weight) VALUES (?, ?, ?)"),
                [(document["seq"], key, weight) for key, weight in entries],
            )

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use, again after a fork, and again when the
        file it opened is no longer the one at ``path``.

        Kept open rather than opened per call: closing the last connection of a WAL
        database checkpoints it, which made every write several times slower.

        A connection to a file that was removed (or replaced) would go on reading the old content and
        writing where nobody reads: each call checks the file (one ``stat``) and reopens, which makes
        a new, empty index file with its registry; the alias is then recreated on demand
        (``KeptAlias``) and reconciliation refills it. (SQLite does not checkpoint nor delete the
        ``-wal``/``-shm`` files when closing a connection to a moved file, so closing the old one is safe.)"""
        local = self._per_thread
        cached: sqlite3.Connection | None = getattr(local, "connection", None)
        if cached is not None and local.pid == os.getpid():
            if local.file_id == self._file_id():
                return cached
            logger.warning("search index file %s was removed or replaced: opening it afresh", self.path)
            self._discard_connection()
        connection = self._open()
        file_id = self._file_id()
        try:
            self._ensure_schema(connection, file_id)
        except BaseException:
            connection.close()
            raise
        local.connection, local.pid, local.file_id = connection, os.getpid(), file_id
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
            raise IndexNotFound(f"no such index or alias: {target}")
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
        for template in (*_INDEX_SCHEMA, *_ADDED_SCHEMA.values()):
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
        connection.execute(tables.sql("DROP TABLE IF EXISTS {vocab}"))
        connection.execute(tables.sql("DROP TABLE IF EXISTS {suggest}"))
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
        # Looked up first without the write lock: a process's first search must not wait for a writer.
        with self._transaction(write=False) as connection:
            current = self._current(connection, alias)
        if current is not None:
            return current
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
        prepared = _prepare(doc_id, document, version)  # segment before taking the write lock
        with self._transaction(write=True) as connection:
            return self._write_prepared(connection, self._resolve(connection, target), prepared)

    def index_documents(self, target: str, documents: Sequence[tuple[str, dict[str, Any], int]]) -> list[bool]:
        """``index_document`` for each, in one transaction: every document is checked and
        segmented first (one bad document writes nothing), then one write lock and one commit
        for the lot rather than one per document."""
        prepared = [_prepare(doc_id, document, version) for doc_id, document, version in documents]
        if not prepared:
            return []
        with self._transaction(write=True) as connection:
            tables = self._resolve(connection, target)
            return [self._write_prepared(connection, tables, item) for item in prepared]

    def _write_prepared(self, connection: sqlite3.Connection, tables: _Tables, prepared: _Prepared) -> bool:
        stored = self._stored_version(connection, tables, prepared.doc_id)
        if stored is not None and stored["version"] >= prepared.version:
            return False
        seq = self._write_docs_row(connection, tables, prepared.row, stored["seq"] if stored else None)
        self._replace_text(connection, tables, seq, prepared.text, prepared.suggestions, fresh=stored is None)
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
            self._replace_text(connection, tables, seq, None, [])
            return True

    @staticmethod
    def _replace_text(
        connection: sqlite3.Connection,
        tables: _Tables,
        seq: int,
        text: tuple[str, str, str, str] | None,
        suggestions: list[tuple[str, int]],
        fresh: bool = False,
    ) -> None:
        """Make the searchable forms of docs row ``seq`` those of ``text`` (None: a deleted
        document has none), the suggestions in step. ``fresh``: the row was just inserted, so
        it has nothing to delete yet."""
        if not fresh:
            connection.execute(tables.sql("DELETE FROM {text} WHERE rowid = ?"), (seq,))
        if text is not None:
            connection.execute(
                tables.sql(
                    "INSERT INTO {text} (rowid, title_seg, body_seg, title_cjk, body_cjk) VALUES (?, ?, ?, ?, ?)"
                ),
                (seq, *text),
            )
        if not fresh:
            connection.execute(tables.sql("DELETE FROM {suggest} WHERE seq = ?"), (seq,))
        connection.executemany(
            tables.sql("INSERT INTO {suggest} (seq, key, weight) VALUES (?, ?, ?)"),
            [(seq, key, weight) for key, weight in suggestions],
        )

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
        plan = plan_text(query.text, query.synonyms) if query.has_text else None
        expression = match_expression(plan) if plan is not None else None
        where, params = _filters(query)
        now = now_ms()
        # One read transaction: the alias, the total, the facets and the page come from one snapshot.
        with self._transaction(write=False) as connection:
            tables = self._resolve(connection, alias)
            if expression is None:
                matches = tables.sql("FROM {docs} d WHERE {where}", where=where)
                total, facets = self._count_documents(connection, matches, params, query.facets)
                rows = self._page(connection, tables, matches, params, query, score=None)
            else:
                # FTS5's MATCH and bm25() need the table's own name, not an alias. CROSS JOIN
                # keeps the full-text match as the outer loop: left to itself, the planner may
                # walk every docs row and run the match once per row (hundreds of times slower).
                matches = tables.sql(
                    'FROM {text} CROSS JOIN {docs} d INDEXED BY "{prefix}_by_seq" ON d.seq = {text}.rowid '
                    "WHERE {text} MATCH ? AND {where}",
                    where=where,
                )
                if query.facets or where != _LIVE:
                    total, facets = self._count(connection, matches, [expression, *params], query.facets)
                else:  # deleted documents have no text row: the text table alone can count
                    text_only = tables.sql("FROM {text} WHERE {text} MATCH ?")
                    total, facets = self._count(connection, text_only, [expression], ())
                score = (
                    None
                    if query.sorts_by_date
                    else _Score(
                        tables.sql("-bm25({text}, {weights})", weights=_BM25_WEIGHTS), _FACTOR, _factor_params(now)
                    )
                )
                rows = self._page(connection, tables, matches, [expression, *params], query, score)
        hits = []
        marks = plan.marks if plan is not None else ()
        for row in rows:
            document = json.loads(row["document"])
            hit = hit_from_document(document, row["score"])
            if query.highlight:
                hit = replace(hit, highlights=highlight_document(document, marks))
            if query.explain:
                hit = replace(hit, explanation=explain(document, row["score"], now, text_score=row["text_score"]))
            hits.append(hit)
        return SearchResult(total, hits, facets)

    @staticmethod
    def _count_documents(
        connection: sqlite3.Connection, matches: str, params: list[Any], fields: tuple[str, ...]
    ) -> tuple[int, dict[str, dict[str, int]]]:
        """``_count`` for matches found without text (``matches`` is ``FROM docs d WHERE ...``):
        one statement per field, each served by the covering ``facets`` index, is several
        times faster than collecting the rows once."""
        (total,) = connection.execute("SELECT count(*) " + matches, params).fetchone()
        facets = {}
        for name in fields:
            if name not in FACET_FIELDS:  # SearchQuery checks this too; names go into SQL
                raise ValueError(f"unknown facet {name!r}")
            rows = connection.execute(_FIELD_COUNT.format(name=name, matches=matches), params).fetchall()
            facets[name] = ordered_facet({row["value"]: int(row["n"]) for row in rows})
        return int(total), facets

    @staticmethod
    def _count(
        connection: sqlite3.Connection, matches: str, params: list[Any], fields: tuple[str, ...]
    ) -> tuple[int, dict[str, dict[str, int]]]:
        """The number of matches and, for each of ``fields``, their count per value, from one
        statement (the matches are found once)."""
        if not fields:
            (total,) = connection.execute("SELECT count(*) " + matches, params).fetchone()
            return int(total), {}
        unknown = set(fields) - set(FACET_FIELDS)
        if unknown:  # SearchQuery checks this too; names go into SQL
            raise ValueError(f"unknown facets {sorted(unknown)}")
        columns = list(dict.fromkeys(("doc_type", *fields)))
        counts = " UNION ALL ".join(_FACET_COUNT.format(name=name) for name in columns)
        selected = ", ".join(f"d.{name} AS {name}" for name in columns)
        rows = connection.execute(_FACETS.format(columns=selected, matches=matches, counts=counts), params).fetchall()
        per_field: dict[str, dict[str, int]] = {name: {} for name in columns}
        for row in rows:
            per_field[row["field"]][row["value"]] = int(row["n"])
        total = sum(per_field["doc_type"].values())
        return total, {name: ordered_facet(per_field[name]) for name in fields}

    @staticmethod
    def _page(
        connection: sqlite3.Connection,
        tables: _Tables,
        matches: str,
        params: list[Any],
        query: SearchQuery,
        score: _Score | None,
    ) -> list[sqlite3.Row]:
        """One page of ``matches``, in relevance order when ``score`` is given, else by date.
        The page is chosen on (seq, score, date) alone; only its rows' documents are read,
        rather than carrying every match's JSON through the sort."""
        order = f"score DESC, {_DATE_ORDER}" if score else _DATE_ORDER
        if score is None:
            ranked = tables.sql(
                "SELECT d.seq AS seq, d.published_ts AS published_ts, d.doc_id AS doc_id, "
                "NULL AS text_score, NULL AS score {matches}",
                matches=matches,
            )
            ranked_params = params
        else:
            ranked = _RANKED.format(text_score=score.text_score, factor=score.factor, matches=matches)
            ranked_params = [*score.params, *params]
        rows: list[sqlite3.Row] = connection.execute(
            tables.sql(
                "SELECT d.document, page.score, page.text_score FROM ("
                "  {ranked} ORDER BY {order} LIMIT ? OFFSET ?"
                ") page JOIN {docs} d ON d.seq = page.seq ORDER BY {outer_order}",
                ranked=ranked,
                order=order,
                outer_order=", ".join(f"page.{term}" for term in order.split(", ")),
            ),
            [*ranked_params, query.per_page, query.offset],
        ).fetchall()
        return rows

    # -- the port: suggestions and related documents ------------------------------------------

    def suggest(self, alias: str, prefix: str, limit: int = 8, doc_types: tuple[str, ...] = ()) -> list[Suggestion]:
        check_suggest_args(limit, doc_types)
        key = suggestion_key(prefix)
        if not key:
            return []
        type_clause = f"AND d.doc_type IN ({', '.join('?' * len(doc_types))})" if doc_types else ""
        with self._transaction(write=False) as connection:
            tables = self._resolve(connection, alias)
            rows = connection.execute(
                tables.sql(
                    "SELECT d.document FROM ("
                    "  SELECT s.seq AS seq, max(s.weight) AS weight FROM {suggest} s"
                    "  WHERE s.key >= ? AND s.key < ? GROUP BY s.seq"
                    ") m JOIN {docs} d ON d.seq = m.seq WHERE {live} {types} "
                    "ORDER BY m.weight DESC, d.doc_id LIMIT ?",
                    live=_LIVE,
                    types=type_clause,
                ),
                [key, key + _KEY_END, *doc_types, limit],
            ).fetchall()
        suggestions = []
        for row in rows:
            document = json.loads(row["document"])
            suggestions.append(
                Suggestion(document.get("title") or "", document["id"], document["doc_type"], document.get("url") or "")
            )
        return suggestions

    def related(self, alias: str, doc_id: str, limit: int = 5, doc_types: tuple[str, ...] = ()) -> list[SearchHit]:
        check_related_args(limit, doc_types)
        type_clause = f"AND d.doc_type IN ({', '.join('?' * len(doc_types))})" if doc_types else ""
        with self._transaction(write=False) as connection:
            tables = self._resolve(connection, alias)
            source = connection.execute(
                tables.sql(
                    "SELECT t.title_seg, t.body_seg, d.seq FROM {docs} d JOIN {text} t ON t.rowid = d.seq "
                    "WHERE d.doc_id = ? AND {live}",
                    live=_LIVE,
                ),
                (doc_id,),
            ).fetchone()
            if source is None:
                return []
            terms = self._like_terms(connection, tables, f"{source['title_seg']} {source['body_seg']}")
            if not terms:
                return []
            expression = "{title_seg body_seg} : (" + " OR ".join(map(_fts_string, terms)) + ")"
            # Rank on (seq, score) alone; read documents and words for the best candidates only.
            rows = connection.execute(
                tables.sql(
                    "SELECT d.document, best.score, t.title_seg, t.body_seg FROM ("
                    "  SELECT d.seq AS seq, d.published_ts AS published_ts, d.doc_id AS doc_id,"
                    "  -bm25({text}, {weights}) AS score"
                    '  FROM {text} CROSS JOIN {docs} d INDEXED BY "{prefix}_by_seq" ON d.seq = {text}.rowid'
                    "  WHERE {text} MATCH ? AND {live} AND d.seq <> ? {types}"
                    "  ORDER BY score DESC, {date_order} LIMIT ?"
                    ") best JOIN {docs} d ON d.seq = best.seq JOIN {text} t ON t.rowid = best.seq "
                    "ORDER BY best.score DESC, best.published_ts DESC, best.doc_id",
                    weights=_BM25_WEIGHTS,
                    live=_LIVE,
                    types=type_clause,
                    date_order=_DATE_ORDER,
                ),
                [expression, source["seq"], *doc_types, limit * _RELATED_CANDIDATES_PER_HIT],
            ).fetchall()
        wanted = set(terms)
        required = mlt_minimum_should_match(len(terms))
        hits = []
        for row in rows:
            shared = wanted.intersection(f"{row['title_seg']} {row['body_seg']}".split())
            if len(shared) >= required:
                hits.append(hit_from_document(json.loads(row["document"]), row["score"]))
        return hits[:limit]

    @staticmethod
    def _like_terms(connection: sqlite3.Connection, tables: _Tables, segmented: str) -> list[str]:
        """The words that best characterise a document, as Lucene's more-like-this picks
        them: term frequency times idf, at most MLT_MAX_QUERY_TERMS, words shorter than
        MLT_MIN_WORD_LENGTH or held by fewer than MLT_MIN_DOC_FREQ documents left out, and
        (unlike Elasticsearch's default) in a large index words held by more than
        MLT_MAX_DOC_SHARE of the documents too: BM25 gives them little weight anyway, and
        FTS5 scores every document an OR query matches (Lucene skips most).

        FTS5 counts a word's documents by walking all its postings (milliseconds for a common
        word among 50,000 documents), so only _LIKE_LOOKUPS words are counted: the most
        frequent in the document weighted by their rarity in jieba's general dictionary.
        (Keeping counts up to date in a table of our own instead tripled what every write
        puts on disk.)"""
        frequencies = Counter(word for word in segmented.split() if len(word) >= MLT_MIN_WORD_LENGTH)
        segmenter = get_segmenter()
        candidates = sorted(frequencies, key=lambda word: (-frequencies[word] * segmenter.rarity(word), word))
        connection.execute(
            tables.sql("CREATE VIRTUAL TABLE IF NOT EXISTS {vocab} USING fts5vocab(main, '{prefix}_text', 'row')")
        )
        lookup = tables.sql("SELECT doc FROM {vocab} WHERE term = ?")
        counts: dict[str, int] = {}
        for word in candidates[:_LIKE_LOOKUPS]:
            row = connection.execute(lookup, (word,)).fetchone()
            counts[word] = int(row["doc"]) if row else 0
        (total,) = connection.execute(tables.sql("SELECT count(*) FROM {docs} d WHERE {live}", live=_LIVE)).fetchone()
        most = max(_MLT_CHEAP_DOC_FREQ, int(total * MLT_MAX_DOC_SHARE))
        scored = sorted(
            (-frequencies[word] * (1 + math.log(max(total, 1) / (count + 1))), word)
            for word, count in counts.items()
            if MLT_MIN_DOC_FREQ <= count <= most
        )
        return [word for _, word in scored[:MLT_MAX_QUERY_TERMS]]


class _Score(NamedTuple):
    """A relevance score in SQL: the text score (BM25) times the ranking factors."""

    text_score: str
    factor: str
    params: list[Any]
