"""Full reindex of the generated corpus on the embedded engine (issue 8: >= 2,000 documents/s).

    .venv/bin/python -m bench.reindex [--data-dir DIR] [--scale 1.0] [--baseline-docs 5000]

Without ``--data-dir`` a corpus of 190,000 published documents (20,000 policies, 20,000
interpretations, 150,000 published answers: the issue's count) times ``--scale`` is generated into
a temporary directory first (``bench.generate``, without its own index build); with it, the
directory made by ``bench.generate`` is reindexed as it is.

Measured: the real rebuild (``search.reindex.reindex``, what ``gongkai search reindex`` runs: the
services' exports read in batches, each batch written with external versions in one engine call
(``index_documents``), the alias swapped), documents per second, twice: cold (the first rebuild of
the process: ``Segmenter``'s block cache empty) and warm (a second rebuild in the same process: every
text block segmented already). The share of text blocks the cold build found cached is shown too: the
generator recombines real sentences, so it is higher here than on a real office's texts. Baseline of
the same run: the engine's single-document writes (``index_document``: one transaction and one
segmentation each, as the rebuild wrote before batches) for a sample of the same documents, read into
memory first, into a scratch index, block cache emptied first.
Results: ``bench/results/reindex.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row, judge, print_rows, write_result
from bench.generate import DEFAULT_DATABASE_URL, Counts, GenerateError, build_index, generate, settings_for

TARGET_PER_SECOND = 2000.0
TARGET_DOCUMENTS = 190_000
SCRATCH_ALIAS = "benchscratch"


def corpus_counts(scale: float) -> Counts:
    answers = round(150_000 * scale)
    return Counts(consultations=answers, policies=round(20_000 * scale), interpretations=round(20_000 * scale),
                  answers=answers)


def sample_documents(apps: dict[str, Any], wanted: int, total: int) -> list[tuple[str, dict[str, Any], int]]:
    """Every k-th exported document (the same documents the rebuild writes), up to ``wanted``."""
    from search.documents import check_public
    from search.reindex import SOURCES

    step = max(1, total // max(1, wanted))
    sample: list[tuple[str, dict[str, Any], int]] = []
    position = 0
    for source in SOURCES:
        for doc_id, document, version in source.documents(apps):
            if position % step == 0 and len(sample) < wanted:
                sample.append((doc_id, check_public(dict(document)), version))
            position += 1
    return sample


def engine_write_rate(engine: Any, sample: list[tuple[str, dict[str, Any], int]]) -> float:
    """Documents/s of the engine's own single-document writes of ``sample`` (one transaction and one
    segmentation each, as the rebuild wrote before batches) into a scratch index (dropped afterwards)."""
    from tqdm import tqdm

    index = engine.create_index(SCRATCH_ALIAS)
    try:
        started = time.perf_counter()
        for doc_id, document, version in tqdm(sample, desc="baseline: engine writes", unit="doc", leave=False,
                                              disable=not sys.stderr.isatty()):
            engine.index_document(index, doc_id, document, version)
        seconds = time.perf_counter() - started
    finally:
        engine.drop_index(index)
    return len(sample) / seconds if seconds else float("nan")


def _block_counts() -> tuple[int, int]:
    from services.text.segment import get_segmenter

    segmenter = get_segmenter()
    return segmenter.block_hits, segmenter.block_misses


def _forget_blocks() -> None:
    from services.text.segment import get_segmenter

    get_segmenter()._blocks.clear()


def measure(data_dir: Path, database: str, database_url: str | None, prefix: str,
            baseline_docs: int, expected_documents: int = TARGET_DOCUMENTS, warm_rebuild: bool = True
            ) -> tuple[list[Row], dict[str, Any]]:
    """Cold: the first rebuild of this process (no segmented block cached yet: what ``gongkai search
    reindex`` does from the command line). Warm: a second rebuild in the same process (every block
    of text segmented already: a long-lived worker rebuilding again). Baseline: single-document
    writes of a sample, block cache emptied first."""
    from search.reindex import worker_apps
    from services.suite import create_worker_app
    from services.text.segment import segment_for_index
    from services.web import get_search_engine

    settings, _env = settings_for(data_dir, database, database_url, prefix)
    app = create_worker_app(settings)
    segment_for_index("预热分词词典")  # the dictionary loads once per process: not part of either figure
    with app.app_context():
        _forget_blocks()
        hits, misses = _block_counts()
        cold = build_index(app, quiet=not sys.stderr.isatty())
        cold_hits, cold_misses = _block_counts()
        hits, misses = cold_hits - hits, cold_misses - misses
        warm = build_index(app, quiet=not sys.stderr.isatty()) if warm_rebuild else {}
        documents = int(cold["documents"])
        cold_rate = float(cold["documents_per_second"] or 0.0)
        warm_rate = float(warm.get("documents_per_second") or 0.0)
        sample = sample_documents(worker_apps(app), baseline_docs, documents)
        _forget_blocks()
        baseline = engine_write_rate(get_search_engine(app), sample)
    ratio = cold_rate / baseline if baseline else float("nan")
    hit_ratio = hits / (hits + misses) if hits + misses else float("nan")
    rows = [
        judge("full reindex, documents/s (embedded FTS5), cold", cold_rate, "docs/s", at_least=TARGET_PER_SECOND,
              digits=1),
        *([judge("full reindex, documents/s (embedded FTS5), warm rebuild", warm_rate, "docs/s",
                 at_least=TARGET_PER_SECOND, digits=1)] if warm_rebuild else []),
        judge("documents reindexed", documents, "docs", at_least=expected_documents, digits=0),
        Row("cold rebuild / single-document engine writes (same run)", round(ratio, 3), "ratio", "baseline", True, ""),
        Row("single-document engine writes, cache emptied (baseline)", round(baseline, 1), "docs/s", "baseline", True,
            ""),
        Row("cold: text blocks found segmented already", round(hit_ratio, 3), "share", "info", True, ""),
    ]
    return rows, {"index": cold, "warm": warm, "blocks": {"hits": hits, "misses": misses},
                  "baseline": {"documents": len(sample), "documents_per_second": round(baseline, 1)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reindex", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="a directory made by bench.generate")
    parser.add_argument("--scale", type=float, default=1.0, help="of the 190,000-document corpus generated")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--schema-prefix", default="benchreindex_")
    parser.add_argument("--baseline-docs", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="keep the generated temporary directory")
    parser.add_argument("--no-warm", action="store_true", help="skip the second (warm) rebuild (make bench)")
    args = parser.parse_args(argv)
    temporary: Path | None = None
    data_dir: Path | None = args.data_dir
    generated: dict[str, Any] = {}
    try:
        if data_dir is None:
            temporary = data_dir = Path(tempfile.mkdtemp(prefix="gongkai-bench-reindex-"))
            counts = corpus_counts(args.scale)
            result = generate(data_dir, counts, database=args.database, database_url=args.database_url,
                              schema_prefix=args.schema_prefix, index=False, quiet=not sys.stderr.isatty())
            generated = {"counts": counts.as_dict(), "seconds": result.manifest["seconds"]}
        expected = corpus_counts(args.scale).documents if args.data_dir is None else TARGET_DOCUMENTS
        rows, extra = measure(data_dir, args.database, args.database_url, args.schema_prefix, args.baseline_docs,
                              expected, warm_rebuild=not args.no_warm)
    except GenerateError as error:
        print(f"bench.reindex: {error}", file=sys.stderr)
        return 1
    finally:
        if temporary is not None and not args.keep:
            shutil.rmtree(temporary, ignore_errors=True)
            if args.database == "postgres":
                from bench.freshness import drop_schemas

                drop_schemas(args.database_url or DEFAULT_DATABASE_URL, args.schema_prefix)
    extra.update({"settings": {"scale": args.scale, "database": args.database, "data_dir": str(args.data_dir or "")},
                  "generated": generated})
    path = write_result("reindex", rows, extra)
    print_rows("reindex", rows)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
