"""With the broker stopped, writes succeed; when it returns, every event is delivered once in effect.

Real parts only: PostgreSQL, a Redis started on a spare port and stopped mid-test,
a `gongkai worker` and a `gongkai beat` process, the embedded search index.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from interpret.models import OutboxEvent
from search.models import ProcessedEvent
from services.db import get_database
from services.migrations import migrate_all
from services.observability import set_request_id
from services.outbox import pending_count
from services.searchengine.factory import make_search_engine
from services.settings import Settings, load_settings
from services.suite import create_worker_app

from support.content import published_policy
from support.env import base_env, drop_schemas, subprocess_env, unique_prefix
from support.servers import RedisProcess

pytestmark = pytest.mark.slow

EVENTS = 30


@pytest.fixture
def outage_setup(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Settings, RedisProcess, dict[str, str]]]:
    prefix = unique_prefix("o")
    redis = RedisProcess().start()
    overrides = {
        "DATABASE_URL": postgres_url,
        "DATABASE_SCHEMA_PREFIX": prefix,
        "REDIS_URL": redis.url,
        "OUTBOX_RELAY_INTERVAL": "0.5",
    }
    settings = load_settings(base_env(tmp_path, **overrides))
    migrate_all(settings)
    try:
        yield settings, redis, subprocess_env(tmp_path, **overrides)
    finally:
        redis.stop()
        drop_schemas(postgres_url, prefix)


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", command], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(condition, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_outbox_survives_a_broker_outage(outage_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, redis, env = outage_setup
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    worker = start("worker", env, worker_log)
    beat = start("beat", env, beat_log)
    app = create_worker_app(settings)
    interpret_db = get_database("interpret", app)
    search_db = get_database("search", app)
    engine = make_search_engine(None, settings.data_dir)
    engine.ensure_alias(settings.search_alias)
    try:
        redis.stop()

        # Writes succeed while the broker is down, and do not hang on it.
        write_times = []
        for number in range(EVENTS):
            set_request_id(f"outage-request-{number:04d}")
            began = time.monotonic()
            with interpret_db.transaction() as session:
                published_policy(session, f"关于停电期间第{number}号事项的通知")
            write_times.append(time.monotonic() - began)
        set_request_id(None)
        # Each publication also carries four audit entries (create, submit, approve, publish).
        assert pending_count(interpret_db, OutboxEvent) == EVENTS * 5
        assert max(write_times) < 2.0, write_times  # a send that retried would stall 2 s or more

        redis.start()  # same port, empty: nothing was sent while it was down
        waited = wait_for(lambda: pending_count(interpret_db, OutboxEvent) == 0, 60, "the relay to send every event")
        wait_for(lambda: engine.count(settings.search_alias, "policy") == EVENTS, 60, "every policy to be indexed")

        with search_db.transaction() as session:
            processed = session.scalar(
                select(func.count())
                .select_from(ProcessedEvent)
                .where(ProcessedEvent.consumer == "search.index_document")
            )
        assert processed == EVENTS

        # A relay that crashed after sending but before marking sends everything again.
        with interpret_db.transaction() as session:
            session.execute(update(OutboxEvent).values(sent_at=None))
        wait_for(lambda: pending_count(interpret_db, OutboxEvent) == 0, 60, "the second delivery")
        wait_for(lambda: worker_log.read_text().count("'duplicate'") >= EVENTS, 60, "the duplicates to be seen")

        with search_db.transaction() as session:
            processed_again = session.scalar(select(func.count()).select_from(ProcessedEvent))
        assert processed_again == EVENTS
        assert engine.count(settings.search_alias, "policy") == EVENTS
        document = engine.get_document(settings.search_alias, "policy-1")
        assert document is not None and document["_version"] == 1

        # The audit entries travelled the same way (behind the index writes, which have a queue of their
        # own): all there, once, and the chain verifies.
        from services.audit import audit_key, verify_chain

        def audit_chain():  # type: ignore[no-untyped-def]
            with get_database("identity", app).transaction() as session:
                return verify_chain(session, audit_key(settings.secret_key))

        wait_for(lambda: audit_chain().checked >= EVENTS * 4, 60, "every audit entry to be appended")
        chain = audit_chain()
        assert chain.ok, chain.reason
        assert chain.checked == EVENTS * 4

        # The request id of the write follows the event into the worker's log.
        assert '"request_id": "outage-request-0000"' in worker_log.read_text()
        print(
            f"\nbroker outage: events={EVENTS} delivered_after={waited:.1f}s processed={processed} "
            f"after_redelivery={processed_again} indexed={engine.count(settings.search_alias, 'policy')}"
        )
    finally:
        stop(beat)
        stop(worker)
        engine.close()
