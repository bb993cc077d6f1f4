"""The search engine breaks while staff publish and the public submit: writes go on, search says it is
unavailable (or answers correctly), and the index comes back complete.

1. Elasticsearch (an osmem-server of the test's own on a spare port) hangs (SIGSTOP: search answers 503
   after the client's 10 s request timeout), then is killed with SIGKILL during publications and started
   again on the same port, empty (osmem keeps everything in memory: the index is lost). Meanwhile writes
   succeed; public search answers 503 with a clear message in the one error shape, at once; ``/readyz``
   names the failing search check. Afterwards the index events queued meanwhile are
   delivered (the tasks retry with backoff; the alias is recreated on demand), ``gongkai search reconcile``
   reports the documents the lost index held as missing and repairs them, a second run finds no drift,
   and every published document is searchable with its newest version.
2. The embedded engine (SQLite FTS5 in the data folder): (a) its file is locked (``BEGIN EXCLUSIVE`` from
   another connection) during publications: writes succeed, search keeps answering what was indexed
   before (WAL readers are not blocked), and the index catches up once the lock goes; (b) the file (with
   its ``-wal`` and ``-shm``) is removed: every process opens a new one, the alias is recreated and new
   publications are indexed, search answers with what the new file holds (never a 500), and
   ``gongkai search reconcile`` puts back everything the old file held.

Beat (the hourly reconciliation) is stopped while the index is broken, so that only the command repairs
it and its counts can be checked exactly; it is started again at the end, and every outbox empties.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from osmem_server import OsmemServer

from search.reconcile import COMMAND, index_ids, reconcile_recorded
from search.reindex import SOURCES, worker_apps
from services.db import get_database
from services.outbox import pending_count
from services.searchengine.factory import FTS_RELATIVE_PATH
from services.searchengine.port import DOC_TYPES, IndexNotFound
from services.settings import SERVICES

from support.running_suite import Answer, RunningSuite, print_counts, running_suite, wait_for
from support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
SEARCH_TEXT = "科技创新券"
UNAVAILABLE = "搜索服务暂时不可用"
CONVERGES_WITHIN = 150.0
"""The index tasks retry with backoff up to 60 s (plus jitter) while the engine is down."""


# -- publishing through the staff API -----------------------------------------------------------------


class Newsroom:
    """``editor_a`` drafts and submits, ``reviewer_a`` approves, ``disclosure_office_a`` publishes; a revision
    of a published policy goes round again (a newer version for the index)."""

    def __init__(self, suite: RunningSuite) -> None:
        self.suite = suite
        self.tokens = {role: suite.token(f"{role}_a") for role in ("editor", "reviewer", "disclosure_office")}
        self.answers: list[Answer] = []
        self.lock = threading.Lock()

    def call(self, role: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = self.suite.request(method, f"/api/interpret/manage/{path}", json_body=body, token=self.tokens[role])
        with self.lock:
            self.answers.append(answer)
        assert answer.status in (200, 201), f"{method} {path}: {answer.status} {answer.text[:300]}"
        result: dict[str, Any] = answer.json()
        return result

    def _publish(self, policy_id: int) -> None:
        self.call("editor", "POST", f"policies/{policy_id}/submit")
        self.call("reviewer", "POST", f"policies/{policy_id}/approve")
        self.call("disclosure_office", "POST", f"policies/{policy_id}/publish", {})

    def new_policy(self, number: int) -> int:
        policy = self.call("editor", "POST", "policies", {
            "title": f"关于第{number}批科技创新券申领的通知", "issuer": "科学技术厅", "level": "本级",
            "body": f"第{number}批科技创新券面向中小企业开放申领，申领材料和办理时限见附件。", "department": "KJTA",
        })
        self._publish(policy["id"])
        return int(policy["id"])

    def revise(self, policy_id: int, number: int) -> None:
        title = f"关于第{number}批科技创新券申领的通知（修订）"
        self.call("editor", "PATCH", f"policies/{policy_id}", {"title": title})
        self._publish(policy_id)

    def publish_many(self, numbers: range, revise: Sequence[tuple[int, int]] = ()) -> list[int]:
        """New policies ``numbers`` and revisions ``(policy_id, number)``, four at a time; the new ids."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            created = pool.map(self.new_policy, numbers)
            revised = pool.map(lambda item: self.revise(*item), revise)
            ids = list(created)
            list(revised)
        return ids

    def statuses(self) -> set[int]:
        return {answer.status for answer in self.answers}


def submit_consultations(suite: RunningSuite, first: int, count: int) -> list[Answer]:
    return [suite.post("/api/consult/consultations", {
        "title": f"咨询第{number}号：科技创新券何时到账", "question": f"第{number}批科技创新券申领后多久到账？",
        "name": f"市民{number}", "phone": f"139{number:08d}", "consent_to_publish": False,
    }) for number in range(first, first + count)]


# -- what should be in the index, and what is -----------------------------------------------------------


def published_versions(suite: RunningSuite) -> dict[str, int]:
    """What the services publish (what reconciliation compares with): doc id → newest version."""
    apps = worker_apps(suite.app)
    return {doc_id: version for source in SOURCES for doc_id, version in source.versions(apps).items()}


def indexed_versions(suite: RunningSuite) -> dict[str, int]:
    """Every live document in the index → its version; nothing when the alias is gone (the test must not
    recreate it: that is the product's job)."""
    engine = suite.search_engine()
    alias = suite.settings.search_alias
    try:
        engine.refresh(alias)
        versions = {}
        for doc_type in DOC_TYPES:
            for doc_id in index_ids(engine, alias, doc_type):
                document = engine.get_document(alias, doc_id)
                if document is not None:
                    versions[doc_id] = int(document["_version"])
        return versions
    except IndexNotFound:
        return {}
    finally:
        engine.close()


def index_agrees(suite: RunningSuite) -> bool:
    return indexed_versions(suite) == published_versions(suite)


def holds(suite: RunningSuite, versions: dict[str, int]) -> bool:
    """Whether the index holds each of ``versions`` (or newer)."""
    indexed = indexed_versions(suite)
    return all(indexed.get(doc_id, -1) >= version for doc_id, version in versions.items())


def pending_events(suite: RunningSuite) -> int:
    total = 0
    for service in SERVICES:
        database = get_database(service, suite.app)
        total += pending_count(database, database.outbox_model)
    return total


# -- what the public and the operators see ------------------------------------------------------------


def public_search(suite: RunningSuite, text: str = SEARCH_TEXT) -> Answer:
    return suite.get(f"/api/search?q={text}&per_page=50", timeout=30)


def found_titles(answer: Answer) -> set[str]:
    return {hit["title"] for hit in answer.json()["hits"]}


def assert_unavailable_answers(suite: RunningSuite) -> dict[str, float]:
    """Search and the public pages read from the index answer 503 with a readable Chinese message, at once
    (no hang until the 30 s client timeout); ``/readyz`` names the failing search check."""
    seconds = {}
    began = time.monotonic()
    api = public_search(suite)
    seconds["api"] = time.monotonic() - began
    assert api.status == 503, (api.status, api.error, api.text[:300])
    body = api.json()
    assert body["code"] == 503 and body["status"] == "Service Unavailable" and UNAVAILABLE in body["message"], body
    assert api.headers.get("Retry-After")

    began = time.monotonic()
    page = suite.get(f"/search/?q={SEARCH_TEXT}", headers={"Accept": "text/html"})
    seconds["page"] = time.monotonic() - began
    assert page.status == 503 and UNAVAILABLE in page.text and 'id="search-down"' in page.text, page.status

    listing = suite.get("/interpret/policies", headers={"Accept": "text/html"})
    assert listing.status == 503 and "暂时不可用" in listing.text, (listing.status, listing.text[:300])

    ready = suite.get("/readyz")
    assert ready.status == 503
    search_checks = ready.json()["services"]["search"]["checks"]
    assert search_checks["search"]["ok"] is False and search_checks["search"]["detail"], search_checks
    assert all(check["ok"] for name, check in search_checks.items() if name != "search"), search_checks
    return seconds


def run_reconcile(suite: RunningSuite) -> tuple[dict[str, dict[str, int]], str]:
    """``gongkai search reconcile`` as an operator runs it: the table it prints (type → counts) and its text."""
    done = subprocess.run([sys.executable, "-m", "services.cli", "search", "reconcile"], env=suite.env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(line.split() for line in lines if line.split()[:2] == ["type", "published"])
    table = {}
    for line in lines:
        parts = line.split()
        if parts and parts[0] in DOC_TYPES and len(parts) == len(header):
            table[parts[0]] = dict(zip(header[1:], map(int, parts[1:]), strict=True))
    assert set(table) == set(DOC_TYPES), done.stdout
    return table, done.stdout


def total(table: dict[str, dict[str, int]], count: str) -> int:
    return sum(row[count] for row in table.values())


def recorded_runs(suite: RunningSuite) -> list[dict[str, Any]]:
    answer = suite.get("/api/search/reconcile", token=suite.token("disclosure_office_a"))
    assert answer.status == 200, answer.text[:300]
    runs: list[dict[str, Any]] = answer.json()["runs"]
    return runs


def check_repaired_by_the_command(suite: RunningSuite, missing: dict[str, int]) -> tuple[int, int]:
    """Reconciliation reports exactly ``missing`` (doc id → version), repairs it, and a second run finds
    nothing; both runs are recorded for the admin page. Returns (missing reported, repaired)."""
    first, text = run_reconcile(suite)
    assert total(first, "missing") == len(missing) > 0, text
    assert total(first, "repaired") == len(missing), text
    assert total(first, "stale") == total(first, "extra") == total(first, "unrepaired") == 0, text
    assert "drift repaired" in text
    assert holds(suite, missing)
    # The second run in this process (what the command does, without starting Python again).
    _, second = reconcile_recorded(worker_apps(suite.app), trigger=COMMAND)
    assert second is not None and second.drift == 0, second.summary() if second else None
    runs = recorded_runs(suite)[:2]
    assert [(run["trigger"], run["state"], run["drift"]) for run in runs] == [
        ("command", "finished", 0), ("command", "finished", len(missing))]
    return total(first, "missing"), total(first, "repaired")


def newest_titles(suite: RunningSuite) -> dict[str, str]:
    """Doc id → title of every published document, as the services publish it now."""
    apps = worker_apps(suite.app)
    return {doc_id: str(document["title"]) for source in SOURCES for doc_id, document, _ in source.documents(apps)}


def check_searchable(suite: RunningSuite) -> None:
    """Public search finds every published policy under its newest title, and nothing else (every title
    holds the searched words): no document missing, none in an older version."""
    answer = public_search(suite)
    assert answer.status == 200, (answer.status, answer.text[:300])
    titles = newest_titles(suite)
    assert answer.json()["total"] == len(titles)
    assert found_titles(answer) == set(titles.values()), sorted(set(titles.values()) ^ found_titles(answer))[:5]


class Phases:
    """Seconds each phase of a scenario took, printed after its counts."""

    def __init__(self) -> None:
        self.mark = time.monotonic()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = now - self.mark
        self.mark = now

    def print(self, scenario: str) -> None:
        print(f"[fault] {scenario}: phases " + " ".join(f"{k}={v:.0f}s" for k, v in self.seconds.items()), flush=True)


def dump_logs(suite: RunningSuite) -> None:
    print("--- worker log ---\n" + suite.log("worker")[-5000:])
    print("--- web log ---\n" + suite.log("web")[-3000:])


# -- 1. Elasticsearch killed and started again, empty -------------------------------------------------


class Osmem:
    """An osmem-server on a fixed spare port, which the test SIGKILLs and starts again (empty) on that port."""

    def __init__(self) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.server: OsmemServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        self.server = OsmemServer.start(japanese=False, addr=self.address)

    def hang(self) -> None:
        """Stopped, not dead: connections are accepted and never answered."""
        assert self.server is not None
        os.kill(self.server.process.pid, signal.SIGSTOP)

    def kill(self) -> None:
        assert self.server is not None
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=30)
        self.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            if self.server.process.stdout is not None:
                self.server.process.stdout.close()
            self.server = None


@pytest.fixture
def osmem() -> Iterator[Osmem]:
    server = Osmem()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.timeout(600)
def test_elasticsearch_killed_and_restarted_empty(postgres_url: str, tmp_path: Path, osmem: Osmem) -> None:
    phases = Phases()
    with running_suite(tmp_path, database_url=postgres_url, search_url=osmem.url) as suite:
        try:
            phases.done("start")
            newsroom = Newsroom(suite)
            before = newsroom.publish_many(range(0, 12))
            wait_for(lambda: index_agrees(suite), 90, "the first publications to be indexed")
            suite.stop("beat")
            phases.done("publish")

            # Hung (SIGSTOP): a search waits for the client's request timeout (10 s), not for ever.
            osmem.hang()
            began = time.monotonic()
            hung = public_search(suite)
            hung_seconds = time.monotonic() - began
            assert hung.status == 503 and UNAVAILABLE in hung.json()["message"], (hung.status, hung.error)
            osmem.kill()
            calls_before = len(newsroom.answers)
            unavailable = assert_unavailable_answers(suite)
            # Publications, revisions and submissions go on while the engine is down.
            revised = [before[n] for n in range(0, 12, 3)]
            during = newsroom.publish_many(range(12, 32), revise=[(before[n], n) for n in range(0, 12, 3)])
            submitted = submit_consultations(suite, 1, 5)
            assert newsroom.statuses() <= {200, 201} and {a.status for a in submitted} == {201}
            writes_during_outage = len(newsroom.answers) - calls_before + len(submitted)
            assert_unavailable_answers(suite)
            wait_for(lambda: "Retry in" in suite.log("worker"), 60, "the index tasks to be retried")
            published = published_versions(suite)
            published_meanwhile = {f"policy-{policy_id}": published[f"policy-{policy_id}"]
                                   for policy_id in during + revised}

            phases.done("outage")
            osmem.start()  # same port, empty
            # The events queued while it was down reach the index: the first write finds the alias gone and
            # recreates it; the others follow.
            wait_for(lambda: holds(suite, published_meanwhile), CONVERGES_WITHIN,
                     "the events queued during the outage to be indexed")
            assert "was missing" in suite.log("worker")
            assert public_search(suite).status == 200
            phases.done("events_delivered")
            published = published_versions(suite)
            indexed = indexed_versions(suite)
            missing = {doc_id: version for doc_id, version in published.items() if doc_id not in indexed}
            # Lost with the old index: the first publications that were not revised meanwhile.
            assert set(missing) == {f"policy-{before[n]}" for n in range(12) if n % 3}

            reported, repaired = check_repaired_by_the_command(suite, missing)
            assert index_agrees(suite)
            check_searchable(suite)
            phases.done("reconcile")

            suite.start_beat()
            wait_for(lambda: pending_events(suite) == 0, 60, "every outbox to be empty")
            final = indexed_versions(suite)
            stale = sum(1 for doc_id, version in final.items() if version != published[doc_id])
            lost = len(set(published) - set(final))
            phases.print("search engine killed")
            print_counts("search engine (osmem) killed and restarted empty", published=len(published),
                         indexed_before_reconcile=len(indexed), missing_before=reported,
                         missing_after=len(set(published) - set(final)), repaired=repaired,
                         writes_during_outage=writes_during_outage,
                         answered_503_in_ms=round(1000 * max(unavailable.values())),
                         answered_503_when_hung_in_ms=round(1000 * hung_seconds), duplicates=stale, lost=lost)
            assert stale == 0 and lost == 0
        except BaseException:
            dump_logs(suite)
            raise


# -- 2. the embedded index file locked, then removed --------------------------------------------------


class FileLock:
    """Holds SQLite's write lock on the index file (``BEGIN EXCLUSIVE`` from a connection of its own)."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, timeout=60, isolation_level=None)

    def __enter__(self) -> FileLock:
        self.connection.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


def remove_index_file(path: Path) -> list[str]:
    removed = []
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        candidate = path.with_name(name)
        if candidate.exists():
            candidate.unlink()
            removed.append(name)
    return removed


@pytest.mark.timeout(600)
def test_embedded_index_file_locked_then_removed(postgres_url: str, tmp_path: Path) -> None:
    phases = Phases()
    with running_suite(tmp_path, database_url=postgres_url) as suite:
        index_file = suite.settings.data_dir / FTS_RELATIVE_PATH
        try:
            phases.done("start")
            newsroom = Newsroom(suite)
            first = newsroom.publish_many(range(0, 8))
            wait_for(lambda: index_agrees(suite), 90, "the first publications to be indexed")
            before_lock = found_titles(public_search(suite))
            assert len(before_lock) == 8
            suite.stop("beat")

            # (a) Locked: writes go on; search answers, at once, with what was indexed before the lock.
            with FileLock(index_file):
                during_lock = newsroom.publish_many(range(8, 16), revise=[(first[0], 0)])
                submitted = submit_consultations(suite, 100, 3)
                assert newsroom.statuses() <= {200, 201} and {a.status for a in submitted} == {201}
                wait_for(lambda: "database is locked" in suite.log("worker"), 60, "an index write to meet the lock")
                # WAL readers are not blocked by the writer's lock: every web process answers, at once, with the
                # documents indexed before the lock (the ones published meanwhile are not there yet).
                began = time.monotonic()
                searches = [public_search(suite) for _ in range(4)]
                searched_in = (time.monotonic() - began) / len(searches)
                for answer in searches:
                    assert answer.status == 200, (answer.status, answer.error, answer.text[:300])
                    assert found_titles(answer) == before_lock
                page = suite.get(f"/search/?q={SEARCH_TEXT}", headers={"Accept": "text/html"})
                assert page.status == 200 and "关于第7批" in page.text and "search-down" not in page.text
                assert suite.get("/readyz").status == 200  # reading works: the engine is usable
                assert not holds(suite, {f"policy-{policy_id}": 1 for policy_id in during_lock})
            phases.done("locked")
            caught_up = wait_for(lambda: index_agrees(suite), CONVERGES_WITHIN,
                                 "the index to catch up once the lock is gone")
            check_searchable(suite)
            phases.done("caught_up")
            print_counts("embedded index file locked", published=len(published_versions(suite)),
                         published_while_locked=len(during_lock) + 1,
                         answered_while_locked=sum(1 for a in searches if a.status == 200),
                         search_ms_while_locked=round(1000 * searched_in),
                         caught_up_s=round(caught_up), indexed=len(indexed_versions(suite)),
                         duplicates=0, lost=len(set(published_versions(suite)) - set(indexed_versions(suite))))

            # (b) Removed: a new, empty file is made and refilled by the events; search never fails with a 500.
            old_documents = set(published_versions(suite))
            assert remove_index_file(index_file) == [index_file.name, f"{index_file.name}-wal",
                                                     f"{index_file.name}-shm"]
            after_removal = public_search(suite)
            assert after_removal.status == 200, (after_removal.status, after_removal.text[:300])
            assert found_titles(after_removal) == set()  # empty, but a valid answer
            assert suite.get("/interpret/policies", headers={"Accept": "text/html"}).status == 200
            assert suite.get(f"/search/?q={SEARCH_TEXT}", headers={"Accept": "text/html"}).status == 200
            after = newsroom.publish_many(range(16, 22), revise=[(first[1], 1)])
            assert newsroom.statuses() <= {200, 201}
            refilled = {f"policy-{policy_id}": 1 for policy_id in after}
            wait_for(lambda: holds(suite, refilled), 90, "new publications to reach the new index file")
            assert index_file.exists()
            assert found_titles(public_search(suite)) >= {f"关于第{n}批科技创新券申领的通知" for n in range(16, 22)}
            assert suite.get("/readyz").status == 200
            published = published_versions(suite)
            indexed = indexed_versions(suite)
            missing = {doc_id: version for doc_id, version in published.items() if doc_id not in indexed}
            assert set(missing) == old_documents - {f"policy-{first[1]}"}

            phases.done("removed")
            reported, repaired = check_repaired_by_the_command(suite, missing)
            assert index_agrees(suite)
            check_searchable(suite)
            phases.done("reconcile")

            suite.start_beat()
            wait_for(lambda: pending_events(suite) == 0, 60, "every outbox to be empty")
            final = indexed_versions(suite)
            stale = sum(1 for doc_id, version in final.items() if version != published[doc_id])
            lost = len(set(published) - set(final))
            phases.print("embedded index")
            print_counts("embedded index file removed", published=len(published), indexed_before_reconcile=len(indexed),
                         missing_before=reported, missing_after=len(set(published) - set(final)),
                         repaired=repaired, duplicates=stale, lost=lost)
            assert stale == 0 and lost == 0
        except BaseException:
            dump_logs(suite)
            raise
