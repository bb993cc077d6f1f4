"""Relevance of the shared search on the demo corpus (issue 6, must-show 1): nDCG@10 and MRR.

Seeds the demo corpus into a fresh suite in a temporary folder (migrate + seed_demo, then every outbox
event the search service subscribes to is delivered to ``search.tasks.index_document`` in this process),
runs the judged queries of ``search/relevance/queries.json`` and prints nDCG@10 and MRR@10 for

* the engine as the public search asks it (relevance order, 10 a page);
* baseline "engine, by date": the same matches with ranking turned off (newest first);
* baseline "LIKE, by date": what a plain CMS does (every space-separated part of the query somewhere in the
  title or body, newest first), computed over the same documents in Python.

Both baselines are measured in the same run, so the ratios compare like with like.

    .venv/bin/python -m bench.search_relevance [--engine fts|osmem] [--verbose] [--record]

``--engine osmem`` runs the Elasticsearch adapter against a local osmem-server (started here).
``--record`` writes the engine's figures into queries.json as the floors tests/search/test_relevance.py
holds the search to (do it when the judged set or the ranking changes on purpose). Results also go to
``bench/results/search_relevance[_osmem].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from search.relevance.evaluate import (
    QUERIES_FILE,
    Evaluation,
    RelevanceSet,
    build_demo_index,
    engine_ranker,
    evaluate,
    load_set,
    record_floors,
    substring_ranker,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
DEFAULT_TOLERANCE = 0.005


@contextmanager
def search_server(engine: str) -> Iterator[str | None]:
    """The search URL to index into: None for the embedded engine, a fresh osmem-server otherwise."""
    if engine == "fts":
        yield None
        return
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)
    try:
        yield str(server.url)
    finally:
        server.close()
        if server.process.stdout is not None:
            server.process.stdout.close()


def by_kind(evaluation: Evaluation) -> dict[str, tuple[int, float, float]]:
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for score in evaluation.scores:
        groups[score.query.kind].append((score.ndcg, score.rr))
    return {kind: (len(rows), sum(n for n, _ in rows) / len(rows), sum(r for _, r in rows) / len(rows))
            for kind, rows in sorted(groups.items())}


def print_summary(evaluations: list[Evaluation], relevance_set: RelevanceSet) -> None:
    engine, *baselines = evaluations
    header = f"{'ranking':<22} {'nDCG@10':>8} {'MRR':>7} {'ms/query':>9}"
    print(header)
    print("-" * len(header))
    for evaluation in evaluations:
        per_query = 1000 * evaluation.seconds / len(evaluation.scores)
        print(f"{evaluation.name:<22} {evaluation.ndcg_at_10:>8.4f} {evaluation.mrr:>7.4f} {per_query:>9.1f}")
    for baseline in baselines:
        print(f"engine / {baseline.name}: nDCG@10 x{ratio(engine.ndcg_at_10, baseline.ndcg_at_10)}, "
              f"MRR x{ratio(engine.mrr, baseline.mrr)}")
    print()
    print(f"{'kind':<8} {'queries':>7} " + " ".join(f"{e.name[:14]:>14}" for e in evaluations) + "   (nDCG@10 / MRR)")
    kinds = [by_kind(evaluation) for evaluation in evaluations]
    for kind, (count, _n, _r) in kinds[0].items():
        cells = " ".join(f"{k[kind][1]:>6.3f}/{k[kind][2]:<7.3f}" for k in kinds)
        print(f"{kind:<8} {count:>7} {cells}")
    floors = relevance_set.floors
    if floors:
        verdict = "ok" if engine.ndcg_at_10 >= floors.ndcg_at_10 - floors.tolerance and \
            engine.mrr >= floors.mrr - floors.tolerance else "BELOW THE FLOORS"
        print(f"\nrecorded floors ({floors.date}, {floors.engine}): nDCG@10 {floors.ndcg_at_10:.4f}, "
              f"MRR {floors.mrr:.4f}, tolerance {floors.tolerance}: {verdict}")


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "inf"


def print_per_query(evaluations: list[Evaluation]) -> None:
    engine, *baselines = evaluations
    print(f"\n{'id':<4} {'kind':<7} {'judged':>6} {'nDCG':>6} {'RR':>5} "
          + " ".join(f"{b.name[:12]:>12}" for b in baselines) + "  query / top 10 (grade of each hit)")
    for position, score in enumerate(engine.scores):
        others = " ".join(f"{b.scores[position].ndcg:>5.2f}/{b.scores[position].rr:<5.2f}"[:12].rjust(12)
                          for b in baselines)
        grades = score.query.grades
        top = "".join(str(grades.get(key, 0)) if not key.startswith("?") else "?" for key in score.ranked)
        print(f"{score.query.id:<4} {score.query.kind:<7} {len(grades):>6} {score.ndcg:>6.3f} {score.rr:>5.2f} "
              f"{others}  {score.query.text}  [{top}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engine", choices=("fts", "osmem"), default="fts",
                        help="fts: the embedded FTS5 engine (default); osmem: the Elasticsearch adapter on osmem")
    parser.add_argument("--verbose", action="store_true", help="per-query figures")
    parser.add_argument("--record", action="store_true",
                        help="write the engine's figures into queries.json as the floors the tests check")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="tolerance recorded with --record")
    parser.add_argument("--keep", type=Path, default=None, help="build the corpus in this folder and keep it")
    args = parser.parse_args()

    relevance_set = load_set()
    judged = sum(len(query.judgments) for query in relevance_set.queries)
    print(f"{len(relevance_set.queries)} judged queries, {judged} judged documents ({QUERIES_FILE.relative_to(REPO)})")
    with tempfile.TemporaryDirectory(prefix="gongkai-relevance-") as scratch, search_server(args.engine) as url:
        data_dir = args.keep or Path(scratch)
        started = time.perf_counter()
        demo = build_demo_index(data_dir, search_url=url, progress=sys.stderr.isatty())
        print(f"demo corpus: {len(demo.documents)} documents on {args.engine} "
              f"(seeded in {demo.seed_seconds:.1f}s, indexed in {demo.index_seconds:.1f}s)")
        problems = demo.check(relevance_set)
        if problems:
            raise SystemExit("the judged set does not match the demo corpus:\n  " + "\n  ".join(problems))
        evaluations = [
            evaluate("engine", engine_ranker(demo.engine, demo.alias), relevance_set, demo.keys),
            evaluate("engine, by date", engine_ranker(demo.engine, demo.alias, sort="date"), relevance_set, demo.keys),
            evaluate("LIKE, by date", substring_ranker(demo.documents), relevance_set, demo.keys),
        ]
        demo.close()
        total = time.perf_counter() - started
    print()
    print_summary(evaluations, relevance_set)
    if args.verbose:
        print_per_query(evaluations)
    today = datetime.now(UTC).date().isoformat()
    if args.record:
        record_floors(evaluations[0], args.engine, today, args.tolerance)
        print(f"\nrecorded in {QUERIES_FILE.relative_to(REPO)}: nDCG@10 {evaluations[0].ndcg_at_10:.4f}, "
              f"MRR {evaluations[0].mrr:.4f} ({today}, {args.engine}, tolerance {args.tolerance})")
    write_results(evaluations, args.engine, total)


def write_results(evaluations: list[Evaluation], engine: str, seconds: float) -> None:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"{platform.system()}",
        "engine": engine, "seconds": round(seconds, 1),
        "rankings": {
            evaluation.name: {
                "ndcg_at_10": round(evaluation.ndcg_at_10, 4), "mrr": round(evaluation.mrr, 4),
                "per_query": {score.query.id: {"ndcg": round(score.ndcg, 4), "rr": round(score.rr, 4)}
                              for score in evaluation.scores},
            }
            for evaluation in evaluations
        },
    }
    suffix = "" if engine == "fts" else f"_{engine}"
    path = RESULTS_DIR / f"search_relevance{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
