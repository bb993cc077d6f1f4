"""Public pages under load (issue 8): the answer page, the interpretation page and the policy page.

Each page kind gets ``--connections`` (64) connections for ``--seconds`` from wrk on loopback, walking
through many different documents of that kind, against the suite as ``make run`` starts it (``gongkai
up``: one gunicorn, SQLite, the embedded FTS5 index); in the same run the bare Flask app
(``bench.bare_app``) gets the same load under the same gunicorn settings. Targets: requests/s at least
30 % of the bare app's, p99 at most 100 ms, no failed request.

Content: the data generator (``bench.generate``) at ``--scale`` (default 0.1: 2,000 policies, 2,000
interpretations, 5,000 published answers), written and indexed before the suite starts; ``--generated DIR``
keeps the generated directory for the next run. Each kind is loaded on up to 500 of its documents.

    .venv/bin/python -m bench.http_pages [--seconds 30] [--connections 64] [--scale 0.1] [--generated DIR]

Results: ``bench/results/http_pages.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from bench.common import Row, judge, print_rows, write_result
from bench.load import (
    LoadResult,
    Request,
    Suite,
    bare_flask,
    embedded_suite,
    failures_row,
    run_wrk,
    share_of_bare,
    suite_settings_env,
)
from services.settings import Settings

PAGES = (("answer", "public answer page"), ("interpretation", "interpretation page"), ("policy", "policy page"))
MIN_SHARE = 0.30
P99_MS = 100.0
DEFAULT_SCALE = 0.1
"""bench.generate at 0.1: 2,000 policies, 2,000 interpretations, 5,000 answers (9,000 documents)."""


def prepare_content(data_dir: Path, scale: float, *, generated: Path | None = None,
                    answers: int | None = None) -> dict[str, Any]:
    """Fill ``data_dir`` before the suite starts: ``bench.generate`` at ``scale`` (policies, interpretations and
    published answers, indexed by the real rebuild). With ``generated``, the content is generated there once
    (the generator leaves a directory with the same counts as it is) and copied into ``data_dir``, so repeated
    runs skip the generation. Returns what was loaded."""
    from bench.generate import DEFAULTS, generate, plan_counts

    began = time.monotonic()
    counts = plan_counts(DEFAULTS["consultations"], DEFAULTS["policies"], DEFAULTS["interpretations"],
                         DEFAULTS["answers"] if answers is None else answers, scale)
    target = generated.expanduser().resolve() if generated else data_dir
    report = generate(target, counts, quiet=False)
    if generated:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.copytree(target, data_dir)
    index = report.manifest.get("index") or {}
    return {"source": f"bench.generate at scale {scale}" + (" (already generated)" if report.already else ""),
            "documents": int(index.get("documents") or 0), "seconds": round(time.monotonic() - began, 1),
            **counts.as_dict()}


def cache_env(off: bool) -> dict[str, str]:
    """The shared cache of hot public reads as production runs it (``services.web``: pages 2 s, search answers
    0.5 s; the bench's test environment would turn it off), or off."""
    if off:
        return {"PUBLIC_CACHE_SECONDS": "0", "SEARCH_CACHE_SECONDS": "0"}
    return {"PUBLIC_CACHE_SECONDS": str(Settings.public_cache_seconds),
            "SEARCH_CACHE_SECONDS": str(Settings.search_cache_seconds)}


def collect_documents(base_url: str, kind: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` hits of ``kind`` from the public search API (newest first)."""
    hits: list[dict[str, Any]] = []
    page = 1
    while len(hits) < limit:
        params: dict[str, str | int] = {"type": kind, "sort": "date", "per_page": 50, "page": page}
        answer = requests.get(f"{base_url}/api/search", params=params, timeout=30)
        answer.raise_for_status()
        found = answer.json().get("hits", [])
        if not found:
            break
        hits.extend(found)
        page += 1
        if page * 50 > 1000:
            break
    return hits[:limit]


def page_requests(suite: Suite, kind: str, limit: int = 500) -> list[Request]:
    return [Request("GET", str(hit["url"])) for hit in collect_documents(suite.url("search"), kind, limit)
            if hit.get("url")]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help=f"bench.generate scale (default {DEFAULT_SCALE}: 9,000 documents)")
    parser.add_argument("--generated", type=Path, default=None,
                        help="generate the content in this directory once and copy it for each run")
    parser.add_argument("--no-cache", action="store_true", help="without the shared cache of hot public reads")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gongkai-bench-pages-") as scratch:
        folder = Path(scratch)
        content = prepare_content(folder / "data", args.scale, generated=args.generated)
        print(f"content: {content}")
        env = suite_settings_env(folder / "data", extra=cache_env(args.no_cache))
        with embedded_suite(folder / "data", env, folder) as suite:
            loads = {kind: page_requests(suite, kind) for kind, _ in PAGES}
            results: dict[str, LoadResult] = {}
            for kind, label in tqdm(PAGES, desc="page loads", unit="scenario"):
                if not loads[kind]:
                    continue
                results[kind] = run_wrk(suite.url(kind), loads[kind], connections=args.connections,
                                        seconds=args.seconds)
                print(f"  {label:<22} {results[kind].line()}")
        with bare_flask("embedded", folder) as bare_url:
            bare = run_wrk(bare_url, [Request("GET", "/")], connections=args.connections, seconds=args.seconds)
            print(f"  {'bare Flask':<22} {bare.line()}")

    rows: list[Row] = []
    for kind, label in PAGES:
        result = results.get(kind)
        if result is None:
            rows.append(Row(f"{label}: requests/s as % of bare Flask", None, "%", f">= {MIN_SHARE:.0%}", False,
                            f"no {kind} documents in the corpus"))
            continue
        rows.append(share_of_bare(label, result, bare, MIN_SHARE))
        rows.append(judge(f"{label}: p99 latency", result.p99_ms, "ms", at_most=P99_MS, digits=1))
        rows.append(failures_row(label, result))
    print_rows("http_pages", rows)
    path = write_result("http_pages", rows, {
        "settings": {"connections": args.connections, "seconds": args.seconds, "target": "embedded (gongkai up)",
                     "shared_cache": not args.no_cache,
                     "documents_per_page_kind": {kind: len(items) for kind, items in loads.items()}},
        "content": content, "loads": {kind: result.as_dict() for kind, result in results.items()},
        "bare_flask": bare.as_dict(),
    }, path=args.results)
    print(f"written {path}")


if __name__ == "__main__":
    main()
