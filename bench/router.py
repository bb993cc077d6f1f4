"""Routing quality and speed of the consultation router (issue 5 must-show 3, issue 8 "router classification").

Cross-validated macro-F1 and accuracy on both labelled files of ``../shared/data``, the share of messages
auto-assigned at the default confidence threshold with the accuracy of those, and classification
throughput on one core, one message at a time. The model is trained with the default feature set
(``chars``); with ``--baseline`` (the default) the old pipeline (``words+chars``: jieba segmentation,
scikit-learn's ``predict_proba`` per message) is trained and timed in the same run, and the figures are
judged against it: macro-F1 and accuracy within 0.01 of the baseline's, throughput as a ratio to it.
Prints a table and writes ``bench/results/router.json`` in the common shape (bench/common.py).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.router [--folds 5] [--no-baseline] [--messages 300]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/scipy load: throughput is per core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.common import Row, judge, print_rows, result_path, write_result
from consult.routing import (
    CHARS,
    DEFAULT_CONFIDENCE_THRESHOLD,
    WORDS_AND_CHARS,
    Router,
    RouterReport,
    read_labelled_csv,
    tokens_of,
    train_router,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
FILES = {"raw": "messages_labeled_raw.csv", "segmented": "messages_labeled_segmented.csv"}
SCENARIO = "router"
TARGET_MESSAGES_PER_SECOND = 1000.0
"""Issue 8: classification on one core, segmentation (if any) included."""
RECORDED_OLD_MESSAGES_PER_SECOND = 75.0
"""The old pipeline when the target was set (bench/README.md): the ratio target is 1000 / 75."""
QUALITY_TOLERANCE = 0.01
"""macro-F1 and accuracy may be this much below the baseline's (issue 8 helper brief)."""
AUTO_SHARE_TOLERANCE = 0.02
"""The share of messages assigned without the dispatcher may drop this much."""
RECORDED_BASELINE = {  # bench/README.md, 2026-11-26: used when --no-baseline
    "raw": {"macro_f1": 0.8884, "accuracy": 0.8974, "auto_share": 0.8483},
    "segmented": {"macro_f1": 0.9199, "accuracy": 0.9243, "auto_share": 0.9045},
}


def old_classify(router: Router) -> Callable[[str], tuple[str, float]]:
    """The classification path before issue 8: jieba words, then the scikit-learn pipeline per message."""
    pipeline = router.pipeline
    classes = list(pipeline.classes_)

    def classify(text: str) -> tuple[str, float]:
        row = pipeline.predict_proba([" ".join(tokens_of(text))])[0]
        best = int(row.argmax())
        return str(classes[best]), float(row[best])

    return classify


def rate(classify: Callable[[str], Any], texts: Sequence[str]) -> float:
    """Messages per second, one call per message."""
    started = time.perf_counter()
    for text in texts:
        classify(text)
    return len(texts) / (time.perf_counter() - started)


def throughputs(paths: dict[str, Callable[[str], Any]], texts: Sequence[str], rounds: int,
                progress: Any) -> dict[str, float]:
    """The best of ``rounds`` rates of each path on the same messages, the paths interleaved so that a
    busy moment of this shared machine weighs on all of them."""
    for classify in paths.values():
        classify(texts[0])  # warm-up: dictionaries, the compiled form
    best = dict.fromkeys(paths, 0.0)
    for _ in range(rounds):
        for name, classify in paths.items():
            best[name] = max(best[name], rate(classify, texts))
            progress.update(1)
    return best


def quality(report: RouterReport) -> dict[str, Any]:
    return {
        "rows": report.rows, "features": report.features, "model": report.model, "candidates": report.candidates,
        "macro_f1": round(report.macro_f1, 4), "accuracy": round(report.accuracy, 4),
        "auto_share": round(report.auto_share, 4),
        "auto_accuracy": None if report.auto_accuracy is None else round(report.auto_accuracy, 4),
        "train_and_evaluate_seconds": report.seconds,
        "per_class_f1": {c.label: round(c.f1, 4) for c in report.per_class},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also train and time the old words+chars pipeline (default: yes)")
    parser.add_argument("--messages", type=int, default=300, help="raw messages classified per round")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; the best counts")
    parser.add_argument("--results", type=Path, default=result_path(SCENARIO))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)

    feature_sets = [CHARS, WORDS_AND_CHARS] if args.baseline else [CHARS]
    data = {name: read_labelled_csv(args.data_dir / file)[0] for name, file in FILES.items()}
    texts = [str(text) for text, _label in data["raw"][: args.messages]]
    trained: dict[tuple[str, str], tuple[Router, RouterReport]] = {}
    for features in tqdm(feature_sets, desc="train + cross-validate", unit="feature set"):
        for name, labelled in data.items():
            trained[features, name] = train_router(labelled, folds=args.folds, seed=0,
                                                   threshold=DEFAULT_CONFIDENCE_THRESHOLD, features=features)

    paths: dict[str, Callable[[str], Any]] = {}
    for name in data:
        paths[f"{CHARS} {name}"] = trained[CHARS, name][0].classify
        if args.baseline:
            old = trained[WORDS_AND_CHARS, name][0]
            paths[f"old {name}"] = old_classify(old)
            paths[f"{WORDS_AND_CHARS} compiled {name}"] = old.classify
    with tqdm(total=args.rounds * len(paths), desc="classify, one core", unit="round") as progress:
        speed = throughputs(paths, texts, args.rounds, progress)

    rows: list[Row] = []
    datasets: dict[str, Any] = {}
    for name in data:
        report = trained[CHARS, name][1]
        entry = quality(report) | {"messages_per_second_one_core": round(speed[f"{CHARS} {name}"], 1)}
        baseline: dict[str, Any] = dict(RECORDED_BASELINE[name])
        if args.baseline:
            baseline = quality(trained[WORDS_AND_CHARS, name][1]) | {
                "messages_per_second_one_core": round(speed[f"old {name}"], 1),
                "messages_per_second_compiled": round(speed[f"{WORDS_AND_CHARS} compiled {name}"], 1),
            }
            entry["speed_ratio_to_old"] = round(speed[f"{CHARS} {name}"] / speed[f"old {name}"], 2)
        entry["baseline"] = baseline
        datasets[FILES[name]] = entry
        against = "same-run" if args.baseline else "recorded"
        rows += [
            judge(f"macro-F1, {name} (>= {against} baseline - {QUALITY_TOLERANCE:g})", report.macro_f1, "",
                  at_least=baseline["macro_f1"] - QUALITY_TOLERANCE),
            judge(f"accuracy, {name} (>= baseline - {QUALITY_TOLERANCE:g})", report.accuracy, "",
                  at_least=baseline["accuracy"] - QUALITY_TOLERANCE),
            judge(f"auto-assigned at {DEFAULT_CONFIDENCE_THRESHOLD:g}, {name} (>= baseline - {AUTO_SHARE_TOLERANCE:g})",
                  report.auto_share, "share",
                  at_least=baseline["auto_share"] - AUTO_SHARE_TOLERANCE),
            judge(f"classify, one core, {name} model", speed[f"{CHARS} {name}"], "msg/s",
                  at_least=TARGET_MESSAGES_PER_SECOND, digits=1),
        ]
        if args.baseline:
            rows.append(judge(f"classify vs old pipeline, same run, {name} model", entry["speed_ratio_to_old"], "x",
                              at_least=round(TARGET_MESSAGES_PER_SECOND / RECORDED_OLD_MESSAGES_PER_SECOND, 1),
                              digits=2))

    print_rows(SCENARIO, rows)
    for file, entry in datasets.items():
        old = entry["baseline"]
        print(f"  {file}: {entry['model']} {entry['features']} F1 {entry['macro_f1']:.3f} "
              f"(candidates {entry['candidates']}), {entry['messages_per_second_one_core']} msg/s"
              + (f"; old {old['model']} F1 {old['macro_f1']:.3f}, {old['messages_per_second_one_core']} msg/s, "
                 f"compiled {old['messages_per_second_compiled']} msg/s" if args.baseline else ""))
    path = write_result(SCENARIO, rows, {
        "threshold": DEFAULT_CONFIDENCE_THRESHOLD, "folds": args.folds, "throughput_messages": len(texts),
        "throughput_rounds": args.rounds, "baseline_in_run": args.baseline, "datasets": datasets,
    }, path=args.results)
    print(f"written {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
