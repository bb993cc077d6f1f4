"""Freshness of the shared index (issue 6): a publication is searchable within 2 s at the 95th percentile.

The real path, end to end: a policy is published through the interpret workflow in this process
(``import_published_policy``: create, submit, approve, publish, one commit); the commit sends its outbox
event to a Redis broker (the after-commit send); a ``gongkai worker`` process (and ``gongkai beat``, as
the suite runs them) runs ``search.index_document`` into the embedded FTS5 index; a probe asks
``GET /api/search`` (the whole search service, in this process) every ``--poll`` seconds until the new
policy is among the hits. Freshness is the time from the start of the publishing transaction to the
first answer that shows the document.

Under normal load: the demo corpus is seeded first (through the same worker) so the index holds the
~2,900 demo documents, background threads send the public's queries to ``/api/search`` at ``--qps``
while the publications go out one every ``--interval`` seconds (each probed on its own thread).

    .venv/bin/python -m bench.freshness [--publications 50] [--database sqlite|postgres] [--qps 10]

Under the submission load (``--under-submissions``, what ``make bench`` runs: the issue's target is the p95
under that load): the production-like configuration of ``bench.submissions`` -- the consult service in its
own gunicorn (``deploy/gunicorn.conf.py``) on PostgreSQL and Redis, with a worker and beat -- gets wrk's
varied valid submissions (``bench.submissions``' request list, ``--connections``) for the whole run, while
the publications go out through the interpret workflow on the same databases, broker and worker; the
search probe reads the same index. The worker thus indexes publications while it delivers every
submission's outbox events. Results: ``bench/results/freshness_under_submissions.json``, with the
submissions accepted per second during the run.

    .venv/bin/python -m bench.freshness --under-submissions [--publications 50] [--connections 32]

The data dir is a temporary folder. With ``--database postgres`` the services use PostgreSQL
(``--database-url``, default the local ``test`` database) in schemas of their own, dropped afterwards.
Redis: a ``redis-server`` started here on a free port (or ``--redis-url``). Results go to
``bench/results/freshness[_postgres].json`` (or ``--results``), in the common shape (``bench.common``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row, judge, print_rows, write_result

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HANZI = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥春夏秋冬梅兰竹菊松柏桃李杏柳"
PUBLIC_QUERIES = (
    "公积金提取", "小区物业管理", "环境污染投诉", "小学入学", "医保报销", "户口迁移", "拖欠农民工工资",
    "房产证办不下来", "国务院关于提高煤炭价格的通知", "电力体制改革", "煤层气抽采利用", "停车", "公交",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_broker(url: str | None, folder: Path) -> Iterator[str]:
    """``url`` as given, else a throwaway redis-server on a free port (no persistence)."""
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH: install Redis or pass --redis-url")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def drop_schemas(database_url: str, prefix: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as connection:
        schemas = connection.scalars(
            text("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"),
            {"p": prefix.replace("_", r"\_") + "%"},
        ).all()
        for schema in schemas:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def start_process(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.cli", command], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


@dataclass
class Load:
    """Background queries from the public: counts and latencies."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if error:
                self.errors.append(error)


def background_queries(apps: dict[str, Any], load: Load, rate: float, seed: int) -> None:
    """One thread of public queries, ``rate`` a second, until told to stop."""
    from werkzeug.test import Client

    from services.suite import PathDispatcher

    client = Client(PathDispatcher(apps), use_cookies=False)
    chooser = random.Random(seed)
    pause = 1.0 / rate
    next_at = time.monotonic()
    while not load.stop.is_set():
        text = chooser.choice(PUBLIC_QUERIES)
        began = time.perf_counter()
        answer = client.get("/api/search", query_string={"q": text, "page": chooser.choice((1, 1, 1, 2))})
        error = None if answer.status_code == 200 else f"{answer.status_code} {answer.get_data(as_text=True)[:120]}"
        load.record(time.perf_counter() - began, error)
        next_at += pause
        load.stop.wait(max(0.0, next_at - time.monotonic()))


@dataclass
class Publication:
    number: int
    marker: str
    policy_id: int | None = None
    commit_seconds: float | None = None
    seconds: float | None = None
    """From the start of the publishing transaction to the first search answer showing it."""
    polls: int = 0
    error: str | None = None


def publish_and_probe(apps: dict[str, Any], item: Publication, poll: float, timeout: float) -> None:
    """Publish one policy through the interpret workflow, then poll /api/search until it is found."""
    from werkzeug.test import Client

    from interpret.workflow import PolicyFields, import_published_policy
    from services.db import get_database, utcnow
    from services.suite import PathDispatcher

    client = Client(PathDispatcher(apps), use_cookies=False)
    database = get_database("interpret", apps["interpret"])
    title = f"关于{item.marker}专项工作的通知"
    body = f"为做好{item.marker}专项工作，现就有关事项通知如下。各地区、各部门要认真贯彻执行。"
    began = time.perf_counter()
    try:
        with database.transaction() as session:
            policy = import_published_policy(session, PolicyFields(
                title=title, issuer="国务院办公厅", level="国家", body=body, department="ORG",
            ), utcnow())
            session.flush()
            item.policy_id = policy.id
        item.commit_seconds = time.perf_counter() - began
        wanted = (f"policy-{item.policy_id}", f"/interpret/policies/{item.policy_id}")
        while time.perf_counter() - began < timeout:
            item.polls += 1
            answer = client.get("/api/search", query_string={"q": item.marker})
            if answer.status_code == 200:
                hits = answer.get_json().get("hits", [])
                if any(hit.get("id") == wanted[0] or str(hit.get("url", "")).endswith(wanted[1]) for hit in hits):
                    item.seconds = time.perf_counter() - began
                    return
            time.sleep(poll)
        item.error = f"not searchable after {timeout:.0f}s"
    except Exception as error:  # a failed publication is a result of the benchmark, not a crash of it
        item.error = f"{type(error).__name__}: {error}"


def unique_markers(count: int, chooser: random.Random) -> list[str]:
    markers: set[str] = set()
    while len(markers) < count:
        markers.add("".join(chooser.choice(HANZI) for _ in range(6)))
    return sorted(markers, key=lambda _: chooser.random())


def wait_until_indexed(engine: Any, alias: str, expected: int, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if engine.count(alias) >= expected:
            return time.monotonic() - began
        time.sleep(0.5)
    raise SystemExit(f"the worker indexed {engine.count(alias)} of {expected} demo documents in {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--publications", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between publications")
    parser.add_argument("--qps", type=float, default=10.0, help="background public queries per second")
    parser.add_argument("--query-threads", type=int, default=4)
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between probe queries")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up on a publication after this")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    parser.add_argument("--no-seed", action="store_true", help="start from an empty index")
    parser.add_argument("--seed", type=int, default=0, help="random seed of markers and queries")
    parser.add_argument("--results", type=Path, default=None,
                        help="where to write the figures (default bench/results/freshness[_postgres].json)")
    parser.add_argument("--under-submissions", action="store_true",
                        help="publish under bench.submissions' load (production-like: PostgreSQL, Redis, gunicorn)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections of the submission load")
    args = parser.parse_args()
    if args.under_submissions:
        under_submissions(args)
        return

    from services.migrations import migrate_all
    from services.settings import load_settings

    chooser = random.Random(args.seed)
    prefix = f"bf_{uuid.uuid4().hex[:8]}_"
    with tempfile.TemporaryDirectory(prefix="gongkai-freshness-") as scratch, \
            redis_broker(args.redis_url, Path(scratch)) as redis_url:
        data_dir = Path(scratch) / "data"
        env = {
            "GONGKAI_DATA_DIR": str(data_dir), "GONGKAI_ENV": "test", "SECRET_KEY": secrets.token_hex(32),
            "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING", "OUTBOX_RELAY_INTERVAL": "1",
            "SEARCH_RATE_LIMIT": "1000000 per minute",
        }
        if args.database == "postgres":
            env.update(DATABASE_URL=args.database_url, DATABASE_SCHEMA_PREFIX=prefix)
        settings = load_settings(env)
        migrate_all(settings)
        child_env = {key: value for key, value in os.environ.items()
                     if not key.startswith(("GONGKAI_", "DATABASE_", "REDIS_", "SEARCH_"))}
        child_env.update(env)
        worker = start_process("worker", child_env, Path(scratch) / "worker.log")
        beat = start_process("beat", child_env, Path(scratch) / "beat.log")
        try:
            results = run(args, settings, chooser)
        finally:
            stop_process(beat)
            stop_process(worker)
            if args.database == "postgres":
                drop_schemas(args.database_url, prefix)
        log_tail = (Path(scratch) / "worker.log").read_text(errors="replace").strip().splitlines()[-5:]
    report(args, results, log_tail)


def run(args: argparse.Namespace, settings: Any, chooser: random.Random) -> dict[str, Any]:
    from services.demo.seed import seed_demo
    from services.suite import create_suite, create_worker_app
    from services.web import content_alias

    apps = create_suite(settings).apps
    engine, alias = content_alias(apps["search"])
    seeded: dict[str, Any] = {}
    if not args.no_seed:
        began = time.monotonic()
        report = seed_demo(create_worker_app(settings), progress=False)
        seeded_in = time.monotonic() - began
        expected = report.policies + report.answers
        indexed_in = wait_until_indexed(engine, alias, expected, timeout=900)
        seeded = {"documents": expected, "seed_seconds": round(seeded_in, 1),
                  "indexed_by_worker_after_seed_seconds": round(indexed_in, 1)}
        print(f"seeded {expected} demo documents in {seeded_in:.1f}s; the worker had indexed them all "
              f"{indexed_in:.1f}s later")
    load = Load()
    threads = [threading.Thread(target=background_queries, daemon=True,
                                args=(apps, load, args.qps / args.query_threads, chooser.randrange(2**32)))
               for _ in range(args.query_threads)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the load is running before the first publication
    items = publish_all(apps, args, chooser)
    load.stop.set()
    for thread in threads:
        thread.join()
    return {"items": items, "load": load, "seeded": seeded, "documents": engine.count(alias)}


def report(args: argparse.Namespace, results: dict[str, Any], worker_log: list[str]) -> None:
    items: list[Publication] = results["items"]
    load: Load = results["load"]
    found = [item.seconds for item in items if item.seconds is not None]
    failed = [item for item in items if item.seconds is None]
    within = sum(1 for seconds in found if seconds <= TARGET_SECONDS)
    print(f"\n{len(items)} publications, one every {args.interval}s, {args.database} + Redis + worker + FTS5 index "
          f"({results['documents']} documents at the end); background load {args.qps:g} queries/s")
    summary: dict[str, Any] = {"publications": len(items), "found": len(found), "failed": len(failed)}
    if found:
        summary.update({
            "p50_seconds": round(statistics.median(found), 3), "p95_seconds": round(percentile(found, 0.95), 3),
            "max_seconds": round(max(found), 3), "min_seconds": round(min(found), 3),
            "share_within_2s": round(within / len(items), 4),
            "commit_p50_seconds": round(statistics.median(i.commit_seconds for i in items if i.commit_seconds), 3),
        })
        print(f"searchable after: p50 {summary['p50_seconds']:.3f}s, p95 {summary['p95_seconds']:.3f}s, "
              f"max {summary['max_seconds']:.3f}s (min {summary['min_seconds']:.3f}s); "
              f"within {TARGET_SECONDS:g}s: {within}/{len(items)} = {within / len(items):.0%} "
              f"(target: 95th percentile <= {TARGET_SECONDS:g}s: "
              f"{'met' if percentile(found, 0.95) <= TARGET_SECONDS and not failed else 'NOT met'})")
        print(f"publishing transaction (commit + after-commit send): p50 {summary['commit_p50_seconds'] * 1000:.0f} ms")
    for item in failed:
        print(f"  publication {item.number} ({item.marker}): {item.error}")
    queries = sorted(load.latencies)
    if queries:
        summary["background"] = {
            "queries": len(queries), "errors": len(load.errors),
            "p50_ms": round(1000 * statistics.median(queries), 1), "p95_ms": round(1000 * percentile(queries, 0.95), 1),
        }
        print(f"background queries: {len(queries)}, errors {len(load.errors)}, "
              f"p50 {summary['background']['p50_ms']} ms, p95 {summary['background']['p95_ms']} ms")
        for error in load.errors[:5]:
            print(f"  {error}")
    if failed:
        print("worker log (last lines):\n  " + "\n  ".join(worker_log))
    rows = result_rows(items, load_name="background queries", failed=len(failed))
    extra = {
        "settings": {"publications": args.publications, "interval": args.interval, "qps": args.qps,
                     "poll": args.poll, "database": args.database, "seeded": not args.no_seed},
        "seed": results["seeded"], "summary": summary,
        "seconds": [None if item.seconds is None else round(item.seconds, 3) for item in items],
        **results.get("extra", {}),
    }
    suffix = "" if args.database == "sqlite" else f"_{args.database}"
    name = results.get("name") or f"freshness{suffix}"
    path = write_result(name, rows + results.get("rows", []), extra, path=args.results)
    print_rows(name, rows + results.get("rows", []))
    print(f"written {path}")


def result_rows(items: list[Publication], load_name: str, failed: int) -> list[Row]:
    """p95 (the target), p50 and the publications never found, as result rows."""
    found = [item.seconds for item in items if item.seconds is not None]
    p95 = percentile(found, 0.95) if found else None
    return [
        judge("publication -> searchable p95", None if failed else p95, "s", at_most=TARGET_SECONDS, digits=3),
        Row("publication -> searchable p50", round(statistics.median(found), 3) if found else None, "s", "info",
            True, ""),
        Row("publications not searchable in time", float(failed), "publications", "= 0 publications",
            failed == 0, "" if failed == 0 else f"{failed} of {len(items)} never found"),
    ]


def under_submissions(args: argparse.Namespace) -> None:
    """Publications through interpret while wrk posts submissions to the production-like consult service."""
    from bench.load import production_services, run_wrk
    from bench.submissions import submissions
    from services.suite import create_suite

    chooser = random.Random(args.seed)
    seconds = args.publications * args.interval + 10.0
    with tempfile.TemporaryDirectory(prefix="gongkai-freshness-load-") as scratch:
        folder = Path(scratch)
        with production_services(folder / "data", ["consult"], folder, database_url=args.database_url,
                                 redis_url=args.redis_url) as suite:
            apps = create_suite(suite.settings).apps
            # Warm-up (each gunicorn worker loads jieba and the router on its first submission), not counted.
            run_wrk(suite.url("consult"), submissions(400, seed=1), connections=4, seconds=5)
            outcome: dict[str, Any] = {}

            def submit() -> None:
                try:
                    outcome["load"] = run_wrk(suite.url("consult"), submissions(max(2000, int(seconds * 1500))),
                                              connections=args.connections, seconds=seconds)
                except BaseException as error:  # reported below, never a silent success
                    outcome["error"] = f"{type(error).__name__}: {error}"

            loader = threading.Thread(target=submit, daemon=True)
            loader.start()
            time.sleep(3.0)  # the load is running before the first publication
            items = publish_all(apps, args, chooser)
            loader.join()
            worker_log = (folder / "worker.log").read_text(errors="replace").strip().splitlines()[-5:]
    if "load" not in outcome:
        raise SystemExit(f"the submission load failed: {outcome.get('error')}")
    load = outcome["load"]
    accepted = load.count("201") / load.seconds if load.seconds else 0.0
    print(f"  submissions during the run: {load.line()}")
    rows = [
        Row("submissions accepted (201) per second during the run", round(accepted, 1), "/s", "info", True, ""),
        Row("submission p99 during the run", round(load.p99_ms, 1), "ms", "info", True, ""),
    ]
    args.database = "postgres"
    report(args, {"items": items, "load": Load(), "seeded": {}, "documents": None,
                  "name": "freshness_under_submissions", "rows": rows,
                  "extra": {"submission_load": load.as_dict()}}, worker_log)


def publish_all(apps: dict[str, Any], args: argparse.Namespace, chooser: random.Random) -> list[Publication]:
    """One publication every ``--interval`` seconds, each probed on its own thread, until all are found."""
    items = [Publication(number, marker) for number, marker in
             enumerate(unique_markers(args.publications, chooser))]
    probes = []
    began = time.monotonic()
    for item in items:
        wait = began + item.number * args.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        probe = threading.Thread(target=publish_and_probe, args=(apps, item, args.poll, args.timeout))
        probe.start()
        probes.append(probe)
    for probe in probes:
        probe.join()
    return items


if __name__ == "__main__":
    main()
