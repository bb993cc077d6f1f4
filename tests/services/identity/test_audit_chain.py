"""The audit chain: every sign-in is recorded, and any edited or deleted entry is found and named."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update

from services.audit import AuditRecord, append_entry, audit_key, prune_before, verify_chain
from services.db import open_service_database
from services.identity.models import AuditEntry, AuditHead
from services.migrations import migrate_all
from services.settings import Settings, load_settings

from support.env import base_env, drop_schemas, subprocess_env, unique_prefix


@pytest.fixture
def audit_db(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    prefix = unique_prefix("a")
    overrides = {"DATABASE_URL": postgres_url, "DATABASE_SCHEMA_PREFIX": prefix}
    settings = load_settings(base_env(tmp_path, **overrides))
    migrate_all(settings)
    yield settings, subprocess_env(tmp_path, **overrides)
    drop_schemas(postgres_url, prefix)


def gongkai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def append_some(settings: Settings, count: int) -> None:
    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            for number in range(count):
                append_entry(session, audit_key(settings.secret_key), AuditRecord(
                    service="interpret", action="policy.publish", result="success", username="editor_a",
                    object_type="policy", object_id=str(number), source_address="10.0.0.8",
                ))
    finally:
        database.dispose()


def test_create_admin_then_verify_then_an_edited_row_is_named(audit_db: tuple[Settings, dict[str, str]]) -> None:
    settings, env = audit_db
    created = gongkai(env, "create-admin", "--username", "root", "--password", "Correct-Horse-42!")
    assert created.returncode == 0, created.stderr
    append_some(settings, 5)
    intact = gongkai(env, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert "6 entries verified" in intact.stdout

    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            session.execute(update(AuditEntry).where(AuditEntry.id == 4).values(result="failure"))
    finally:
        database.dispose()
    broken = gongkai(env, "audit", "verify")
    assert broken.returncode == 1
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "entry 4 was altered" in lines[0]


def test_a_deleted_row_and_a_deleted_last_row_are_found(audit_db: tuple[Settings, dict[str, str]]) -> None:
    settings, _env = audit_db
    append_some(settings, 6)
    database = open_service_database(settings, "identity")
    key = audit_key(settings.secret_key)
    try:
        with database.transaction() as session:
            session.execute(delete(AuditEntry).where(AuditEntry.id == 6))
            report = verify_chain(session, key)
            assert not report.ok
            assert "entries after 5 are missing" in report.reason
            session.rollback()
        with database.transaction() as session:
            session.execute(delete(AuditEntry).where(AuditEntry.id == 3))
            report = verify_chain(session, key)
            assert not report.ok
            assert report.bad_entry_id == 3
            assert "entry 3 is missing" in report.reason
            session.rollback()
        with database.transaction() as session:
            # Recomputing the chain without the key does not help a forger.
            session.execute(text("UPDATE audit_entry SET entry_hash = repeat('0', 64) WHERE id = 2"))
            assert verify_chain(session, key).bad_entry_id == 2
            session.rollback()
    finally:
        database.dispose()


def test_an_append_that_rolled_back_leaves_no_gap_that_reads_as_a_deletion(
    audit_db: tuple[Settings, dict[str, str]],
) -> None:
    settings, _env = audit_db
    append_some(settings, 2)
    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            append_entry(session, audit_key(settings.secret_key), AuditRecord(
                service="consult", action="consultation.accept", result="success", username="dispatcher_a"))
            session.rollback()  # e.g. the database went away before the commit
    finally:
        database.dispose()
    append_some(settings, 2)
    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            report = verify_chain(session, audit_key(settings.secret_key))
    finally:
        database.dispose()
    assert report.ok, report.reason
    assert report.checked == 4


def test_an_entry_appended_while_the_chain_is_walked_is_no_deletion(
    audit_db: tuple[Settings, dict[str, str]],
) -> None:
    """A worker appends while ``gongkai audit verify`` runs: the walk reads the head, then finds an entry past
    it. That entry chains on from the head, so nothing is missing (it read "entries after 3 are missing")."""
    settings, _env = audit_db
    append_some(settings, 3)
    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            second = session.get(AuditEntry, 2)
            assert second is not None
            # The head as a verifier that read it before the third entry committed saw it.
            session.execute(update(AuditHead).where(AuditHead.id == 1)
                            .values(last_entry_id=second.id, last_hash=second.entry_hash))
            report = verify_chain(session, audit_key(settings.secret_key))
    finally:
        database.dispose()
    assert report.ok, report.reason
    assert report.checked == 3


def test_retention_prunes_old_entries_and_the_rest_still_verifies(audit_db: tuple[Settings, dict[str, str]]) -> None:
    from datetime import timedelta

    from services.db import utcnow

    settings, _env = audit_db
    append_some(settings, 4)
    database = open_service_database(settings, "identity")
    key = audit_key(settings.secret_key)
    try:
        with database.transaction() as session:
            # Entries 1 and 2 become older than the retention period (their hashes are recomputed as if they
            # had been written then, which only a holder of the key can do).
            old = utcnow() - timedelta(days=settings.audit_retention_days + 1)
            for entry in session.query(AuditEntry).filter(AuditEntry.id <= 2):
                entry.at = old
            previous = "0" * 64
            from services.audit import chain_hash, entry_fields
            from services.identity.models import AuditHead

            for entry in session.query(AuditEntry).order_by(AuditEntry.id):
                entry.prev_hash = previous
                entry.entry_hash = chain_hash(key, previous, entry_fields(entry))
                previous = entry.entry_hash
            head = session.get(AuditHead, 1)
            assert head is not None
            head.last_hash = previous
        with database.transaction() as session:
            assert prune_before(session, settings.audit_retention_days) == 2
        with database.transaction() as session:
            report = verify_chain(session, key)
        assert report.ok, report.reason
        assert report.checked == 2
    finally:
        database.dispose()


def test_retention_below_180_days_is_refused(tmp_path: Path) -> None:
    from services.settings import ConfigError

    with pytest.raises(ConfigError, match="AUDIT_RETENTION_DAYS"):
        load_settings(base_env(tmp_path, AUDIT_RETENTION_DAYS="90"))


def test_create_admin_refuses_a_weak_password_with_one_line(audit_db: tuple[Settings, dict[str, str]]) -> None:
    _settings, env = audit_db
    weak = gongkai(env, "create-admin", "--username", "root", "--password", "root")
    assert weak.returncode == 1
    lines = [line for line in weak.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "password" in lines[0]


def test_two_first_appends_at_once_both_land_in_one_chain(audit_db: tuple[Settings, dict[str, str]]) -> None:
    """The very first entries of a new database can come from two places at once (a sign-in and an
    event a worker applies): neither may fail, and the chain stays one line."""
    import threading

    settings, env = audit_db
    database = open_service_database(settings, "identity")
    first_holds_its_insert = threading.Event()
    errors: list[BaseException] = []

    def append(name: str, hold: bool) -> None:
        try:
            with database.transaction() as session:
                append_entry(session, audit_key(settings.secret_key), AuditRecord(
                    service="identity", action="login.password", result="success", username=name))
                if hold:  # keep the first transaction open so the second one's first append has to wait on it
                    first_holds_its_insert.set()
                    threading.Event().wait(0.5)
        except BaseException as error:
            errors.append(error)

    try:
        first = threading.Thread(target=append, args=("first", True))
        first.start()
        assert first_holds_its_insert.wait(10)
        second = threading.Thread(target=append, args=("second", False))
        second.start()
        first.join(20)
        second.join(20)
    finally:
        database.dispose()
    assert errors == []
    verified = gongkai(env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "2 entries verified" in verified.stdout
