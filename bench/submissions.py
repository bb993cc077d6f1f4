"""Public consultation submissions under load, and the loss check (issue 8).

The production-like configuration: the consult service in its own gunicorn (``deploy/gunicorn.conf.py``)
on PostgreSQL (schemas of its own, dropped afterwards) and Redis, with a worker and beat. wrk posts valid,
varied submissions to ``POST /api/consult/consultations`` for ``--seconds`` (the public's real messages
from ``../shared/data/messages_labeled_raw.csv``, cut to a title and a question, with varied names,
phones and consent); the bare Flask app's POST endpoint gets the same load under the same gunicorn
settings in the same run. The submit rate limit is raised for the run (CONSULT_SUBMIT_RATE_LIMIT).

Afterwards the LOSS CHECK, part of the result rows: expected (201 answers counted by wrk), stored
(consultations in the consult database), delivered (their ``consult.consultation.received`` outbox rows
sent by the outbox: the after-commit send or the relay; the check waits, at most ``--drain-timeout`` seconds,
until no event of the run is left unsent) and in the staff inbox (the ``total`` the real staff API,
``GET /api/consult/manage/consultations``, lists to a reader of every department a case can be routed to,
less what it listed before the load). Stored, delivered and in the inbox must each be at least the expected
count (a request wrk gave up on at the end of the load may still have been stored: more is not a loss).

Targets: at least 300 accepted submissions/s, p99 at most 200 ms, no loss.

    .venv/bin/python -m bench.submissions [--seconds 30] [--connections 32] [--database-url URL]

Results: ``bench/results/submissions.json``.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from bench.common import Row, judge, print_rows, write_result
from bench.load import (
    DEFAULT_DATABASE_URL,
    Request,
    bare_flask,
    failures_row,
    none_row,
    production_services,
    run_wrk,
    share_of_bare,
)

REPO = Path(__file__).resolve().parents[1]
DATA_FILE = REPO.parent / "shared" / "data" / "messages_labeled_raw.csv"
MIN_PER_SECOND = 300.0
P99_MS = 200.0
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚"
FALLBACK_TEXTS = (
    "小区物业费上涨问题咨询。我们小区物业今年突然上涨物业费，请问物业费调整需要经过哪些程序？",
    "公积金提取咨询。请问租房提取住房公积金需要准备哪些材料，多久可以到账？",
    "孩子入学问题。我们是外来务工人员，孩子今年上小学，请问需要办理哪些手续？",
)


def messages(limit: int = 5000) -> list[str]:
    """The public's real messages (at most ``limit``), else a few built-in ones."""
    if not DATA_FILE.exists():
        return list(FALLBACK_TEXTS)
    with DATA_FILE.open(encoding="utf-8") as handle:
        texts = [row["text"].strip() for row in csv.DictReader(handle) if row.get("text", "").strip()]
    return texts[:limit] or list(FALLBACK_TEXTS)


def submissions(count: int, seed: int = 0) -> list[Request]:
    """``count`` distinct valid submissions (no two from the same contact with the same question)."""
    chooser = random.Random(seed)
    texts = messages()
    load = []
    for number in range(count):
        text = chooser.choice(texts)
        cut = max(8, min(40, text.find("。") if text.find("。") > 0 else 30))
        title = text[:cut][:60]
        question = f"{text[:1500]}（编号{number}）"
        body: dict[str, Any] = {
            "title": title, "question": question,
            "name": chooser.choice(SURNAMES) + "".join(chooser.choice(GIVEN) for _ in range(chooser.choice((1, 2)))),
            "consent_to_publish": chooser.random() < 0.6,
        }
        if chooser.random() < 0.8:
            body["phone"] = f"1{chooser.choice('3578')}{chooser.randrange(10**9):09d}"
        else:
            body["email"] = f"user{number}@example.cn"
        load.append(Request("POST", "/api/consult/consultations", body))
    return load


def staff_token(settings: Any) -> str:
    """A bearer token of a reader of every department a submission can be routed to (the intake queue and
    each department of the category table), signed as the identity service signs one."""
    from consult.routing import load_departments
    from services.auth import StaffIdentity, issue_token
    from services.permissions import Grant, Role

    intake = settings.consult_intake_department
    departments = sorted({intake, *(d.code for d in load_departments(settings.router_departments_file).values())})
    identity = StaffIdentity(0, "bench_loss_check", "压测核对", (Grant(Role.DISPATCHER, intake, tuple(departments)),),
                             "bench-loss-check", "api")
    return issue_token(settings, identity)


def inbox_total(base_url: str, token: str) -> int:
    """The open cases the staff inbox lists to that reader: ``total`` of ``GET /api/consult/manage/consultations``."""
    response = requests.get(f"{base_url}/api/consult/manage/consultations", params={"per_page": 1},
                            headers={"Authorization": f"Bearer {token}"}, timeout=60)
    if response.status_code != 200:
        raise SystemExit(f"the staff inbox answered {response.status_code}: {response.text[:200]}")
    return int(response.json()["total"])


def settle(database: Any, timeout: float = 60.0) -> int:
    """Wait until no consultation has been stored for a second (requests wrk gave up on are still answered
    after it stops), at most ``timeout`` seconds; the number of consultations stored."""
    from sqlalchemy import func, select

    from consult.models import Consultation

    deadline = time.monotonic() + timeout
    last = -1
    while True:
        with database.transaction() as session:
            stored = session.scalar(select(func.count()).select_from(Consultation)) or 0
        if stored == last or time.monotonic() > deadline:
            return int(stored)
        last = stored
        time.sleep(1)


def loss_check(database: Any, base_url: str, token: str, started_at: Any, inbox_before: int,
               timeout: float) -> dict[str, Any]:
    """Counts of consultations received since ``started_at``: stored, delivered (their ``received`` event sent by
    the outbox), and in the staff inbox (the real staff API's total, less the cases it listed before the load).

    Waits until the last answered request's consultation is stored, then, at most ``timeout`` seconds, until
    every outbox event written since ``started_at`` has been sent. The database counts come from one snapshot."""
    from sqlalchemy import String, cast, func, select

    from consult.models import Consultation, OutboxEvent

    settle(database)
    began = time.monotonic()
    counts: dict[str, Any] = {}
    with tqdm(desc="outbox delivered", unit="event") as bar:
        while True:
            with database.transaction() as session:
                if not database.is_sqlite:
                    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                received = select(Consultation.id).where(Consultation.received_at >= started_at)
                counts["stored"] = session.scalar(select(func.count()).select_from(received.subquery())) or 0
                events = select(OutboxEvent).where(
                    OutboxEvent.topic == "consult.consultation.received",
                    OutboxEvent.aggregate_id.in_(select(cast(Consultation.id, String)).where(
                        Consultation.received_at >= started_at)))
                counts["outbox_rows"] = session.scalar(select(func.count()).select_from(events.subquery())) or 0
                counts["delivered"] = session.scalar(select(func.count()).select_from(
                    events.where(OutboxEvent.sent_at.is_not(None)).subquery())) or 0
                counts["unsent_events"] = session.scalar(select(func.count()).select_from(OutboxEvent).where(
                    OutboxEvent.created_at >= started_at, OutboxEvent.sent_at.is_(None))) or 0
            counts["in_staff_inbox"] = inbox_total(base_url, token) - inbox_before
            counts["waited_seconds"] = round(time.monotonic() - began, 1)
            bar.total = counts["outbox_rows"]
            bar.n = counts["delivered"]
            bar.refresh()
            drained = counts["unsent_events"] == 0 and counts["delivered"] >= counts["outbox_rows"]
            if drained or time.monotonic() - began > timeout:
                counts["drained"] = drained
                return counts
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of a throwaway redis-server")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the outbox")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()

    from services.db import get_database, utcnow
    from services.suite import create_worker_app

    load = submissions(max(2000, int(args.seconds * 1500)))
    with tempfile.TemporaryDirectory(prefix="gongkai-bench-submit-") as scratch:
        folder = Path(scratch)
        with production_services(folder / "data", ["consult"], folder, database_url=args.database_url,
                                 redis_url=args.redis_url) as suite:
            # Warm-up (each gunicorn worker loads jieba and the router on its first submission), not counted.
            run_wrk(suite.url("consult"), submissions(400, seed=1), connections=4, seconds=min(10.0, args.seconds))
            app = create_worker_app(suite.settings)
            database = get_database("consult", app)
            token = staff_token(suite.settings)
            settle(database)  # the warm-up's last cases stored before the inbox is counted
            inbox_before = inbox_total(suite.url("consult"), token)
            started_at = utcnow()
            result = run_wrk(suite.url("consult"), load, connections=args.connections, seconds=args.seconds)
            print(f"  {'submissions':<12} {result.line()}")
            counts = loss_check(database, suite.url("consult"), token, started_at, inbox_before, args.drain_timeout)
            database.dispose()
            print(f"  loss check: {counts}")
        with bare_flask("production", folder) as bare_url:
            bare = run_wrk(bare_url, [Request("POST", "/api", {"title": "标题"})], connections=args.connections,
                           seconds=args.seconds)
            print(f"  {'bare Flask':<12} {bare.line()}")

    expected = result.count("201")
    accepted_per_second = expected / result.seconds if result.seconds else 0.0
    rows: list[Row] = [
        judge("submissions: accepted (201) per second", accepted_per_second, "/s", at_least=MIN_PER_SECOND, digits=1),
        judge("submissions: p99 latency", result.p99_ms, "ms", at_most=P99_MS, digits=1),
        share_of_bare("submissions", result, bare, 0.0),
        failures_row("submissions", result),
        none_row("submissions: answers other than 201", result.answered - expected),
        judge("loss check: expected (201s counted by wrk)", float(expected), "submissions", at_least=1, digits=0),
    ]
    for key, label in (("stored", "stored in the consult database"), ("delivered", "outbox delivered"),
                       ("in_staff_inbox", "in the staff inbox")):
        rows.append(judge(f"loss check: {label}", float(counts[key]), "submissions", at_least=expected, digits=0))
    print_rows("submissions", rows)
    path = write_result("submissions", rows, {
        "settings": {"connections": args.connections, "seconds": args.seconds,
                     "target": "production-like: consult gunicorn (deploy/gunicorn.conf.py) + PostgreSQL + Redis"
                               " + worker + beat"},
        "loss_check": {"expected": expected, **counts}, "load": result.as_dict(), "bare_flask": bare.as_dict(),
    }, path=args.results)
    print(f"written {path}")


if __name__ == "__main__":
    main()
