"""Revoked staff identities, visible to every service without asking the identity service.

Signing out revokes that session; disabling, locking or re-roling a user revokes
everything issued to them before that moment. Redis holds the list when configured,
otherwise a small SQLite file under the data directory shared by the suite's processes.
A store that cannot be reached is treated as holding nothing (logged): an outage of it
must not lock every member of staff out, and tokens still expire on their own.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Protocol

import redis

log = logging.getLogger(__name__)

SESSION_TTL_SECONDS = 12 * 3600
"""No token lives longer than this, so no revocation needs to be kept longer."""


class RevocationStore(Protocol):
    def revoke_session(self, session_id: str) -> None: ...

    def revoke_user(self, user_id: int) -> None: ...

    def is_revoked(self, session_id: str, user_id: int, issued_at: float) -> bool:
        """``issued_at`` is the token's signing time in whole seconds (itsdangerous)."""
        ...


class RedisRevocations:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)

    def revoke_session(self, session_id: str) -> None:
        self._client.set(f"gongkai:revoked:session:{session_id}", "1", ex=SESSION_TTL_SECONDS)

    def revoke_user(self, user_id: int) -> None:
        self._client.set(f"gongkai:revoked:user:{user_id}", str(time.time()), ex=SESSION_TTL_SECONDS)

    def is_revoked(self, session_id: str, user_id: int, issued_at: float) -> bool:
        try:
            values: list[bytes | None] = self._client.mget(  # type: ignore[assignment]
                f"gongkai:revoked:session:{session_id}", f"gongkai:revoked:user:{user_id}"
            )
        except redis.RedisError as error:
            log.warning("revocation list unreachable, accepting signed identity: %s", error)
            return False
        session_flag, user_since = values
        return session_flag is not None or (user_since is not None and issued_at < float(user_since))


class SqliteRevocations:
    SETUP_ATTEMPTS = 50

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL is kept in the file, so it is set once, here. Setting it is not covered by the busy timeout:
        # the first requests of every web thread and process, which all get here at once, wait their turn.
        for attempt in range(self.SETUP_ATTEMPTS):
            try:
                with self._connect() as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS revoked (kind TEXT, key TEXT, at REAL, PRIMARY KEY (kind, key))"
                    )
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == self.SETUP_ATTEMPTS - 1:
                    raise
                time.sleep(0.1)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=5)

    def _put(self, kind: str, key: str) -> None:
        now = time.time()
        with self._connect() as connection:
            connection.execute("INSERT OR REPLACE INTO revoked VALUES (?, ?, ?)", (kind, key, now))
            connection.execute("DELETE FROM revoked WHERE at < ?", (now - SESSION_TTL_SECONDS,))

    def revoke_session(self, session_id: str) -> None:
        self._put("session", session_id)

    def revoke_user(self, user_id: int) -> None:
        self._put("user", str(user_id))

    def is_revoked(self, session_id: str, user_id: int, issued_at: float) -> bool:
        try:
            with self._connect() as connection:
                rows = connection.execute(
                    "SELECT kind, at FROM revoked WHERE (kind = 'session' AND key = ?) OR (kind = 'user' AND key = ?)",
                    (session_id, str(user_id)),
                ).fetchall()
        except sqlite3.Error as error:
            log.warning("revocation list unreadable, accepting signed identity: %s", error)
            return False
        return any(kind == "session" or issued_at < at for kind, at in rows)


def make_revocation_store(redis_url: str | None, data_dir: Path) -> RevocationStore:
    if redis_url:
        return RedisRevocations(redis_url)
    return SqliteRevocations(data_dir / "revocations.sqlite3")
