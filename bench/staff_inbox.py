"""The staff inbox at 100,000 consultations (issue 8: p95 <= 100 ms).

    .venv/bin/python -m bench.staff_inbox [--data-dir DIR] [--scale 1.0] [--database sqlite|postgres]
        [--repeat 10] [--profile]

Without ``--data-dir`` 100,000 consultations (times ``--scale``: 50 % published, the others in an
office's mix of states, see ``bench.generate``) are generated into a temporary directory first;
with it, a directory made by ``bench.generate`` is used as it is.

The real consult app (its Flask test client: the whole request path, routing, sign-in check, query,
template or JSON, no network) signed in as ``bench_dispatcher`` (a dispatcher of the top department,
so every department's cases are in view) with a real token (API: ``Authorization: Bearer``; console
page: the signed session cookie). Each filter combination -- open cases, one state, one department,
one category, overdue, due soon, flagged, combinations of them, pages 1 to 5 -- is asked ``--repeat``
times, one request at a time, after one warm-up request. Figures: p50/p95/p99 of all the requests of
the API (``GET /api/consult/manage/consultations``) and of the console page (``GET /consult/staff/``),
and the slowest combination. ``--profile`` prints where the slowest combination spends its time.
Results: ``bench/results/staff_inbox.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import Row, judge, percentile, print_rows, write_result
from bench.generate import DEFAULT_DATABASE_URL, Counts, GenerateError, generate, settings_for

TARGET_P95_MS = 100.0
API = "/api/consult/manage/consultations"
PAGE = "/consult/staff/"
USER = "bench_dispatcher"


def combinations(departments: list[str], categories: list[str]) -> list[dict[str, str]]:
    """The filter combinations asked, each a query string's parameters."""
    department, other = departments[0], departments[len(departments) // 2]
    category = categories[0]
    combos: list[dict[str, str]] = [{}, {"page": "2"}, {"page": "3"}, {"page": "4"}, {"page": "5"}]
    combos += [{"state": "drafting"}, {"state": "submitted"}, {"state": "awaiting_info"}, {"state": "in_review"},
               {"department": department}, {"department": other, "page": "2"}, {"category": category},
               {"due": "overdue"}, {"due": "due_soon"}, {"flagged": "1"},
               {"department": department, "state": "drafting"}, {"category": category, "due": "overdue"},
               {"department": other, "due": "overdue", "page": "2"}]
    return combos


def api_args(combo: dict[str, str]) -> dict[str, str]:
    args = dict(combo)
    if args.get("flagged"):
        args["flagged"] = "true"
    args.setdefault("per_page", "20")
    return args


def identities(app: Any, settings: Any) -> tuple[str, str]:
    """(API token, console session token) of the bench dispatcher, as signing in issues them."""
    from sqlalchemy import select

    from services.auth import issue_token
    from services.db import get_database
    from services.identity.accounts import build_identity
    from services.identity.models import User

    with get_database("identity", app).transaction() as session:
        user = session.scalar(select(User).where(User.username == USER))
        if user is None:
            raise GenerateError(f"no {USER} account: the directory was not made by bench.generate")
        api = issue_token(settings, build_identity(session, user, "api"))
        console = issue_token(settings, build_identity(session, user, "session"))
    return api, console


def _choices(app: Any) -> tuple[list[str], list[str]]:
    from sqlalchemy import func, select

    from consult.models import Consultation
    from services.db import get_database

    with get_database("consult", app).transaction() as session:
        rows = session.execute(select(Consultation.department, Consultation.category, func.count())
                               .group_by(Consultation.department, Consultation.category)
                               .order_by(func.count().desc())).all()
    departments = list(dict.fromkeys(str(row[0]) for row in rows if row[0] and row[0] != "ORG"))
    categories = list(dict.fromkeys(str(row[1]) for row in rows if row[1]))
    return departments, categories


def vacuum(app: Any) -> None:
    """VACUUM ANALYZE the consultations, as autovacuum does some time after a bulk load: until then the
    visibility map is empty and PostgreSQL reads the table for what its indexes already hold."""
    from services.db import get_database

    database = get_database("consult", app)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f'VACUUM ANALYZE "{database.schema}".consultation')


def measure(data_dir: Path, database: str, database_url: str | None, prefix: str, repeat: int,
            profile: bool) -> tuple[list[Row], dict[str, Any]]:
    from services.auth import LAST_SEEN_KEY, SESSION_KEY
    from services.suite import create_app_for, create_worker_app

    settings, _env = settings_for(data_dir, database, database_url, prefix)
    app = create_app_for("consult", settings)
    if database == "postgres":
        vacuum(app)
    api_token, console_token = identities(create_worker_app(settings), settings)
    with app.app_context():
        departments, categories = _choices(app)
    combos = combinations(departments, categories)
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie[SESSION_KEY] = console_token
        cookie[LAST_SEEN_KEY] = int(time.time())
    headers = {"Authorization": f"Bearer {api_token}"}
    timings: dict[str, list[float]] = {"api": [], "page": []}
    per_combo: list[dict[str, Any]] = []
    from tqdm import tqdm

    total = len(combos) * 2 * (repeat + 1)
    with tqdm(total=total, desc="inbox requests", unit="req", disable=not sys.stderr.isatty(), leave=False) as bar:
        for combo in combos:
            for kind in ("api", "page"):
                url = f"{API}?{urlencode(api_args(combo))}" if kind == "api" else f"{PAGE}?{urlencode(combo)}"
                seconds: list[float] = []
                for attempt in range(repeat + 1):
                    started = time.perf_counter()
                    answer = client.get(url, headers=headers if kind == "api" else {})
                    elapsed = time.perf_counter() - started
                    if answer.status_code != 200:
                        raise RuntimeError(f"GET {url} answered {answer.status_code}: {answer.get_data(True)[:300]}")
                    if attempt:  # the first request of each is the warm-up
                        seconds.append(elapsed)
                    bar.update(1)
                total_rows = answer.get_json()["total"] if kind == "api" else None
                timings[kind].extend(seconds)
                per_combo.append({"kind": kind, "url": url, "total": total_rows,
                                  "p50_ms": round(1000 * statistics.median(seconds), 1),
                                  "p95_ms": round(1000 * percentile(seconds, 95), 1)})
    slowest = max(per_combo, key=lambda item: item["p95_ms"])
    profile_text = None
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(max(3, repeat)):
            client.get(slowest["url"], headers=headers if slowest["kind"] == "api" else {})
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(25)
        profile_text = stream.getvalue()
        print(profile_text)
    rows: list[Row] = []
    for kind, label in (("api", "inbox API"), ("page", "inbox console page")):
        values = [1000 * s for s in timings[kind]]
        rows.append(judge(f"{label} p95 (all filter combinations)", percentile(values, 95), "ms",
                          at_most=TARGET_P95_MS, digits=1))
        rows.append(Row(f"{label} p50", round(statistics.median(values), 1), "ms", "info", True, ""))
    rows.append(judge(f"slowest combination p95 ({slowest['kind']} {slowest['url']})", slowest["p95_ms"], "ms",
                      at_most=TARGET_P95_MS, digits=1))
    with app.app_context():
        from sqlalchemy import func, select

        from consult.models import Consultation
        from services.db import get_database

        with get_database("consult", app).transaction() as session:
            consultations = int(session.scalar(select(func.count()).select_from(Consultation)) or 0)
    return rows, {"consultations": consultations, "requests_per_combination": repeat, "combinations": per_combo,
                  "profile": profile_text}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.staff_inbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="a directory made by bench.generate")
    parser.add_argument("--scale", type=float, default=1.0, help="of the 100,000 consultations generated")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--schema-prefix", default="benchinbox_")
    parser.add_argument("--repeat", type=int, default=10, help="requests per filter combination and kind")
    parser.add_argument("--profile", action="store_true", help="profile the slowest combination")
    parser.add_argument("--keep", action="store_true", help="keep the generated temporary directory")
    args = parser.parse_args(argv)
    temporary: Path | None = None
    data_dir: Path | None = args.data_dir
    try:
        if data_dir is None:
            temporary = data_dir = Path(tempfile.mkdtemp(prefix="gongkai-bench-inbox-"))
            counts = Counts(consultations=round(100_000 * args.scale), policies=0, interpretations=0,
                            answers=round(50_000 * args.scale))
            generate(data_dir, counts, database=args.database, database_url=args.database_url,
                     schema_prefix=args.schema_prefix, index=False, quiet=not sys.stderr.isatty())
        rows, extra = measure(data_dir, args.database, args.database_url, args.schema_prefix, args.repeat,
                              args.profile)
    except GenerateError as error:
        print(f"bench.staff_inbox: {error}", file=sys.stderr)
        return 1
    finally:
        if temporary is not None and not args.keep:
            shutil.rmtree(temporary, ignore_errors=True)
            if args.database == "postgres":
                from bench.freshness import drop_schemas

                drop_schemas(args.database_url or DEFAULT_DATABASE_URL, args.schema_prefix)
    extra["settings"] = {"scale": args.scale, "database": args.database, "data_dir": str(args.data_dir or "")}
    path = write_result("staff_inbox", rows, extra)
    print_rows("staff_inbox", rows)
    for item in sorted(extra["combinations"], key=lambda entry: -entry["p95_ms"])[:5]:
        print(f"  slow: {item['kind']:<4} {item['url']:<70} p95 {item['p95_ms']} ms (total {item['total']})")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
