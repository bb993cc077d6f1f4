"""Routing quality and speed of the consultation router (issue 5, must-show 3).

Cross-validated macro-F1 and accuracy on both labelled files of ``../shared/data``, the share of
messages auto-assigned at the default confidence threshold with the accuracy of those, and
classification throughput on one core. Prints a table and writes ``bench/results/router.json``.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.router [--folds 5] [--data-dir ../shared/data]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/scipy load: throughput is per core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import platform
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from consult.routing import DEFAULT_CONFIDENCE_THRESHOLD, read_labelled_csv, train_router

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
FILES = ("messages_labeled_raw.csv", "messages_labeled_segmented.csv")
RESULTS = REPO / "bench" / "results" / "router.json"
THROUGHPUT_MESSAGES = 300


def throughput(router: object, texts: list[str]) -> float:
    """Messages per second, one request at a time (segmentation included), on one core."""
    classify = router.classify  # type: ignore[attr-defined]
    classify(texts[0])  # warm-up: dictionaries
    started = time.perf_counter()
    for text in texts:
        classify(text)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)

    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, {platform.system()}".replace("  ", " "),
        "threshold": DEFAULT_CONFIDENCE_THRESHOLD, "folds": args.folds, "datasets": {},
    }
    raw_texts: list[str] = []
    rows_out = []
    for name in FILES:
        rows, _columns = read_labelled_csv(args.data_dir / name)
        started = time.perf_counter()
        router, report = train_router(rows, folds=args.folds, seed=0, threshold=DEFAULT_CONFIDENCE_THRESHOLD)
        seconds = time.perf_counter() - started
        if name == FILES[0]:
            raw_texts = [str(text) for text, _label in rows[:THROUGHPUT_MESSAGES]]
        speed = throughput(router, raw_texts)
        entry = {
            "rows": report.rows, "model": report.model, "candidates": report.candidates,
            "macro_f1": round(report.macro_f1, 4), "accuracy": round(report.accuracy, 4),
            "auto_share": round(report.auto_share, 4),
            "auto_accuracy": None if report.auto_accuracy is None else round(report.auto_accuracy, 4),
            "train_and_evaluate_seconds": round(seconds, 1), "messages_per_second_one_core": round(speed, 1),
            "per_class_f1": {c.label: round(c.f1, 4) for c in report.per_class},
        }
        results["datasets"][name] = entry  # type: ignore[index]
        rows_out.append((name, entry))

    header = (f"{'dataset':<32} {'rows':>5} {'model':>6} {'macro-F1':>8} {'acc':>6} "
              f"{'auto@' + str(DEFAULT_CONFIDENCE_THRESHOLD):>8} {'acc auto':>8} {'train s':>7} {'msg/s':>6}")
    print(header)
    print("-" * len(header))
    for name, e in rows_out:
        auto_acc = "n/a" if e["auto_accuracy"] is None else f"{e['auto_accuracy']:.3f}"
        print(f"{name:<32} {e['rows']:>5} {e['model']:>6} {e['macro_f1']:>8.3f} {e['accuracy']:>6.3f} "
              f"{e['auto_share']:>8.1%} {auto_acc:>8} {e['train_and_evaluate_seconds']:>7} "
              f"{e['messages_per_second_one_core']:>6}")
    print(f"({args.folds}-fold stratified CV; candidates' macro-F1: "
          + "; ".join(f"{n}: {e['candidates']}" for n, e in rows_out) + ")")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
