"""The public search API under load (issue 8): 40 realistic queries with filters on a large index.

wrk sends the 40 queries of :data:`QUERIES` (what the public asks, with type, department, level,
validity, date and sort filters, several pages) to ``GET /api/search`` of the suite as ``make run``
starts it (embedded FTS5 index) for ``--seconds`` on ``--connections`` connections; the bare Flask app's
JSON endpoint gets the same load under the same gunicorn settings in the same run. Targets: p95 at most
50 ms, requests/s at least 15 % of the bare app's, no failed request. The issue's corpus is 100,000
indexed documents: ``bench.generate`` at ``--scale 1`` (the default when the generator is there).

    .venv/bin/python -m bench.search_api [--seconds 30] [--connections 16] [--scale 0.1] [--generated DIR]

Results: ``bench/results/search_api.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from bench.common import judge, print_rows, write_result
from bench.http_pages import cache_env, prepare_content
from bench.load import (
    Request,
    bare_flask,
    embedded_suite,
    failures_row,
    none_row,
    run_wrk,
    share_of_bare,
    suite_settings_env,
)

MIN_SHARE = 0.15
P95_MS = 50.0

_TEXTS = (
    "公积金提取", "小区物业管理", "环境污染投诉", "小学入学", "医保报销", "户口迁移", "拖欠农民工工资", "房产证",
    "电力体制改革", "煤层气抽采", "停车收费", "公交线路", "养老保险", "低保申请", "营业执照", "社保卡",
    "高考加分", "廉租房", "征地补偿", "噪音扰民",
)
_FILTERS: tuple[dict[str, str], ...] = (
    {}, {"type": "answer"}, {"type": "policy"}, {"type": "interpretation"},
    {"type": "policy", "level": "国家"}, {"type": "policy", "validity": "有效"}, {"sort": "date"},
    {"type": "answer", "page": "2"}, {"date_from": "2015-01-01", "date_to": "2026-12-31"},
    {"type": "policy", "sort": "date", "page": "3"},
)
QUERIES: tuple[dict[str, str], ...] = tuple(
    {"q": _TEXTS[number % len(_TEXTS)], **_FILTERS[number % len(_FILTERS)]} for number in range(40)
)
"""The 40 queries: 20 texts, each with two of the 10 filter sets."""


SEARCH_ANSWERS = 60_000


def search_requests() -> list[Request]:
    return [Request("GET", "/api/search?" + urlencode(query)) for query in QUERIES]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.0, help="bench.generate scale (1: 100,000 documents)")
    parser.add_argument("--generated", type=Path, default=None,
                        help="generate the content in this directory once and copy it for each run")
    parser.add_argument("--no-cache", action="store_true", help="without the shared cache of hot public reads")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gongkai-bench-search-") as scratch:
        folder = Path(scratch)
        # 20,000 policies + 20,000 interpretations + 60,000 published answers: the 100,000 documents.
        content = prepare_content(folder / "data", args.scale, generated=args.generated, answers=SEARCH_ANSWERS)
        print(f"content: {content}")
        env = suite_settings_env(folder / "data", extra=cache_env(args.no_cache))
        with embedded_suite(folder / "data", env, folder) as suite:
            result = run_wrk(suite.url("search"), search_requests(), connections=args.connections,
                             seconds=args.seconds)
            print(f"  {'search API':<12} {result.line()}")
        with bare_flask("embedded", folder) as bare_url:
            bare = run_wrk(bare_url, [Request("GET", "/api")], connections=args.connections, seconds=args.seconds)
            print(f"  {'bare Flask':<12} {bare.line()}")

    label = f"search API ({content['documents']} docs)"
    rows = [
        judge(f"{label}: p95 latency", result.p95_ms, "ms", at_most=P95_MS, digits=1),
        share_of_bare(label, result, bare, MIN_SHARE),
        failures_row(label, result),
        none_row(f"{label}: answers that are not 200", result.answered - result.count("200")),
    ]
    print_rows("search_api", rows)
    path = write_result("search_api", rows, {
        "settings": {"connections": args.connections, "seconds": args.seconds, "target": "embedded (gongkai up)",
                     "shared_cache": not args.no_cache,
                     "queries": list(QUERIES)},
        "content": content, "load": result.as_dict(), "bare_flask": bare.as_dict(),
    }, path=args.results)
    print(f"written {path}")


if __name__ == "__main__":
    main()
