"""Speed of the embedded search engine (SQLite FTS5) on a synthetic corpus, before and after
the ranking / highlight / facet / suggestion work of issue 6, measured in the same run.

"Before" is ``services/searchengine/fts.py`` as committed at ``--before-ref`` (default HEAD),
loaded from git into a module of its own; "after" is the working tree. The after engine
indexes the synthetic corpus; the before engine queries the same file (its tables are a
subset of the new layout), so both read identical data. Indexing speed is compared on the
first ``--index-sample`` documents, each engine writing its own file. Every figure is
printed with its ratio to the baseline (the before engine's plain text query), since
absolute times depend on the machine and on what else runs on it. Also measured: the
segmenter's first use in a fresh process, with the dictionary cache cold and warm. Results
go to ``bench/results/search_engine.json``.

    .venv/bin/python -m bench.search_engine [--docs 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.searchengine.fts import FtsSearchEngine
from services.searchengine.port import DOC_TYPES, SearchQuery

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "search_engine.json"
DATA = REPO / "services" / "text" / "data"
ALIAS = "bench"
DEPARTMENTS = [
    f"市{name}"
    for name in (
        "住建局",
        "人社局",
        "财政局",
        "教育局",
        "卫健委",
        "民政局",
        "交通局",
        "公安局",
        "发展改革委",
        "市场监管局",
        "生态环境局",
        "农业农村局",
        "商务局",
        "文旅局",
        "应急局",
        "税务局",
        "医保局",
        "自然资源局",
        "水务局",
        "统计局",
    )
]
VALIDITIES = ["有效"] * 7 + ["失效", "废止", "已修订"]
SUFFIXES = ("的通知", "的实施意见", "管理办法", "的咨询答复", "政策解读", "的回应", "工作方案")
FACETS = ("doc_type", "department", "validity")


def vocabulary() -> list[str]:
    """Words of the user dictionaries, most frequent first (THUOCL counts)."""
    weighted: list[tuple[int, str]] = []
    for name in ("lexicon_law.txt", "lexicon_finance.txt", "gov_terms.txt"):
        for line in (DATA / name).read_text(encoding="utf-8-sig").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                weighted.append((int(fields[1]), fields[0]))
    return [word for _, word in sorted(weighted, reverse=True)]


def corpus(count: int, words: list[str], seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    # Zipf-like: word i drawn with weight 1/(i+10), as real text repeats its common words.
    weights = [1 / (rank + 10) for rank in range(len(words))]
    start = datetime(2015, 1, 1, tzinfo=UTC)
    span = (datetime(2025, 12, 31, tzinfo=UTC) - start).total_seconds()
    documents = []
    for number in range(count):
        title_words = rng.choices(words, weights, k=rng.randint(2, 4))
        body_words = rng.choices(words, weights, k=rng.randint(40, 100))
        sentences = []
        for at in range(0, len(body_words), 8):
            sentences.append("，".join(["".join(body_words[at : at + 4]), "".join(body_words[at + 4 : at + 8])]))
        doc_type = rng.choice(DOC_TYPES)
        document = {
            "id": f"doc-{number}",
            "doc_type": doc_type,
            "title": "关于" + "".join(title_words) + rng.choice(SUFFIXES),
            "summary": "".join(body_words[:12]),
            "body": "。".join(sentences) + "。",
            "url": f"/docs/{number}",
            "published_at": (start + timedelta(seconds=rng.random() * span)).isoformat(),
            "department": rng.choice(DEPARTMENTS),
        }
        if doc_type == "policy":
            document["validity"] = rng.choice(VALIDITIES)
        documents.append(document)
    return documents


def queries(words: list[str], seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    frequent, middle = words[:60], words[200:2000]
    chosen = rng.sample(frequent, 6) + rng.sample(middle, 6)
    chosen += [f"{a} {b}" for a, b in zip(rng.sample(frequent, 4), rng.sample(middle, 4), strict=True)]
    chosen += [word[:2] for word in rng.sample([w for w in frequent if len(w) >= 3], 4)]  # 2-character substrings
    return chosen


def before_module(ref: str) -> types.ModuleType | None:
    """``services/searchengine/fts.py`` at ``ref``, as a module of its own; None without git."""
    try:
        source = subprocess.run(
            ["git", "show", f"{ref}:services/searchengine/fts.py"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"cannot read fts.py at {ref}: {error}")
        return None
    module = types.ModuleType("bench_fts_before")
    module.__file__ = f"{ref}:services/searchengine/fts.py"
    sys.modules[module.__name__] = module  # dataclasses and NamedTuple look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file from git
    return module


def index(engine: Any, documents: list[dict[str, Any]]) -> float:
    """Documents per second, one writer."""
    engine.ensure_alias(ALIAS)
    started = time.perf_counter()
    for document in documents:
        engine.index_document(ALIAS, document["id"], document, version=1)
    return len(documents) / (time.perf_counter() - started)


def index_alternately(engines: dict[str, Any], documents: list[dict[str, Any]], batch: int = 50) -> dict[str, float]:
    """Documents per second of each engine, one writer each, taking turns by batches (so that
    the machine's busy moments hit them alike)."""
    seconds = dict.fromkeys(engines, 0.0)
    for engine in engines.values():
        engine.ensure_alias(ALIAS)
    for start in range(0, len(documents), batch):
        for name, engine in engines.items():
            started = time.perf_counter()
            for document in documents[start : start + batch]:
                engine.index_document(ALIAS, document["id"], document, version=1)
            seconds[name] += time.perf_counter() - started
    return {name: len(documents) / spent for name, spent in seconds.items()}


def measure(variants: dict[str, Callable[[str], object]], texts: list[str], repeat: int) -> dict[str, list[float]]:
    """Milliseconds per call of each variant for each text, ``repeat`` times after a warm-up;
    the variants take turns, so that a busy moment of the machine hits them all alike."""
    for call in variants.values():
        for text in texts:
            call(text)  # warm-up: pages and statements cached
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for text in texts:
            for name, call in variants.items():
                started = time.perf_counter()
                call(text)
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


def segmenter_first_use(cache_dir: Path) -> float:
    """Seconds from a fresh interpreter's import to its first segmentation."""
    script = (
        "import time; started = time.perf_counter()\n"
        "from services.text.segment import segment_for_index\n"
        "segment_for_index('关于调整住房公积金提取政策的通知')\n"
        "print(time.perf_counter() - started)\n"
    )
    environment = {**os.environ, "GONGKAI_CACHE_DIR": str(cache_dir)}
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, check=True
    )
    return float(output.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query after a warm-up")
    parser.add_argument("--before-ref", default="HEAD")
    parser.add_argument("--index-sample", type=int, default=2_000, help="documents indexed by both engines")
    parser.add_argument("--index-file", type=Path, help="reuse (or keep) the after engine's file here")
    args = parser.parse_args()

    words = vocabulary()
    documents = corpus(args.docs, words)
    texts = queries(words)
    old = before_module(args.before_ref)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {__import__('sqlite3').sqlite_version}",
        "documents": args.docs,
        "queries": texts,
        "repeat": args.repeat,
        "figures": {},
    }
    figures: dict[str, dict[str, float]] = results["figures"]

    with tempfile.TemporaryDirectory() as directory:
        sample = documents[: args.index_sample]
        writers = {"index: after (docs/s)": FtsSearchEngine(Path(directory) / "after-sample.sqlite3")}
        if old is not None:
            writers["index: before (docs/s)"] = old.FtsSearchEngine(Path(directory) / "before-sample.sqlite3")
        for name, speed in index_alternately(writers, sample).items():
            figures[name] = {"value": round(speed, 1)}
        path = args.index_file or Path(directory) / "after.sqlite3"
        after = FtsSearchEngine(path)
        if after.current_index(ALIAS) is None or after.count(ALIAS) != len(documents):
            if after.current_index(ALIAS) is not None:
                raise SystemExit(f"{path} holds another corpus; remove it first")
            started = time.perf_counter()
            index(after, documents)
            print(f"indexed {len(documents)} documents in {time.perf_counter() - started:.0f} s")
        if old is not None:
            before = old.FtsSearchEngine(path)

        variants: dict[str, Callable[[str], object]] = {}
        if old is not None:
            variants["query: before, text only"] = lambda text: before.search(ALIAS, SearchQuery(text=text))
        variants["query: after, text only (ranked)"] = lambda text: after.search(ALIAS, SearchQuery(text=text))
        variants["query: after, + highlights + 3 facets"] = lambda text: after.search(
            ALIAS, SearchQuery(text=text, highlight=True, facets=FACETS)
        )
        variants["query: after, + highlights + facets + explain"] = lambda text: after.search(
            ALIAS, SearchQuery(text=text, highlight=True, facets=FACETS, explain=True)
        )
        variants["query: after, filtered by type + 3 facets"] = lambda text: after.search(
            ALIAS, SearchQuery(text=text, doc_types=("policy",), facets=FACETS)
        )
        if old is not None:
            variants["list by date: before (no text)"] = lambda text: before.search(ALIAS, SearchQuery())
        variants["list by date: after, + 3 facets (no text)"] = lambda text: after.search(
            ALIAS, SearchQuery(facets=FACETS)
        )
        variants["suggest: after, 1-character prefix"] = lambda text: after.suggest(ALIAS, text[:1])
        variants["suggest: after, 2-character prefix"] = lambda text: after.suggest(ALIAS, text.replace(" ", "")[:2])
        rng = random.Random(3)
        variants["related: after"] = lambda text: after.related(ALIAS, f"doc-{rng.randrange(args.docs)}")
        samples = measure(variants, texts, args.repeat)
        figures.update({name: percentiles(values) for name, values in samples.items()})
        matched = [after.search(ALIAS, SearchQuery(text=text)).total for text in texts]
        results["matches_per_query"] = {"min": min(matched), "median": statistics.median(matched), "max": max(matched)}
        after.close()

    with tempfile.TemporaryDirectory() as cache:
        cold = segmenter_first_use(Path(cache))
        warm = min(segmenter_first_use(Path(cache)) for _ in range(3))
    figures["segmenter first use: no cache (s)"] = {"value": round(cold, 3)}
    figures["segmenter first use: cached (s)"] = {"value": round(warm, 3)}

    baseline_name = "query: before, text only" if old is not None else "query: after, text only (ranked)"
    baseline = figures[baseline_name]["p50_ms"]
    print(
        f"{args.docs} synthetic documents, {len(texts)} queries × {args.repeat} runs; "
        f"matches per query: {results['matches_per_query']}"
    )
    print(f"{'measure':<48} {'p50 ms':>8} {'p95 ms':>8} {'p50 / baseline':>15}")
    for name, figure in figures.items():
        if "p50_ms" in figure:
            ratio = figure["p50_ms"] / baseline if baseline else float("nan")
            figure["p50_ratio"] = round(ratio, 2)
            print(f"{name:<48} {figure['p50_ms']:>8.2f} {figure['p95_ms']:>8.2f} {ratio:>14.2f}x")
    print(f"(baseline: {baseline_name}, p50 {baseline:.2f} ms)")
    if old is not None:
        speed = figures["index: after (docs/s)"]["value"] / figures["index: before (docs/s)"]["value"]
        print(
            f"indexing: before {figures['index: before (docs/s)']['value']:.0f} docs/s, "
            f"after {figures['index: after (docs/s)']['value']:.0f} docs/s ({speed:.2f}x)"
        )
    print(
        f"segmenter first use in a new process: {cold:.2f} s without the cache, {warm:.2f} s with it "
        f"({warm / cold:.2f}x)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
