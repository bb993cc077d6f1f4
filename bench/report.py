"""One table of every benchmark: each ``bench/results/*.json`` in the common shape (``bench.common``).

    .venv/bin/python -m bench.report

Prints scenario, figure, value, target, met? and by how much it misses; writes
``bench/results/summary.json`` (the same rows) and ``bench/results/summary.png`` (each figure as a share
of its target: bars past the line miss). Files without the common shape (older results) are listed as
skipped, never fatal; ``bench.search_relevance``'s own file is read as rows against the floors recorded in
``search/relevance/queries.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS_DIR, judge, machine_info

SUMMARY = "summary"
ROW_KEYS = {"name", "value", "unit", "target", "met", "miss"}


def load_results(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The result documents in the common shape, and the names of the files skipped."""
    documents, skipped = [], []
    for path in sorted(folder.glob("*.json")):
        if path.stem == SUMMARY:
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            skipped.append(path.name)
            continue
        if isinstance(document, dict) and "rows" not in document and path.stem == "search_relevance":
            document = relevance_document(document)
        rows = document.get("rows") if isinstance(document, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and r.keys() >= ROW_KEYS for r in rows):
            skipped.append(path.name)
            continue
        documents.append({"file": path.name, **document})
    return documents, skipped


def relevance_document(document: dict[str, Any]) -> dict[str, Any]:
    """``bench.search_relevance``'s own file as rows: nDCG@10 and MRR against the floors recorded in
    ``search/relevance/queries.json`` (less the tolerance), and the gain over the newest-first baseline."""
    try:
        recorded = json.loads((REPO / "search" / "relevance" / "queries.json").read_text(encoding="utf-8"))["recorded"]
        engine = document["rankings"]["engine"]
    except (OSError, ValueError, KeyError, TypeError):
        return document
    tolerance = float(recorded.get("tolerance", 0.0))
    rows = [judge(f"{label} ({document.get('engine', 'fts')}, floor recorded {recorded.get('date')})",
                  engine.get(key), "", at_least=float(recorded[key]) - tolerance, digits=4).as_dict()
            for label, key in (("nDCG@10", "ndcg_at_10"), ("MRR", "mrr"))]
    for name, ranking in document["rankings"].items():
        if name != "engine" and ranking.get("ndcg_at_10"):
            rows.append({"name": f"nDCG@10 over the {name} baseline (same run)",
                         "value": round(engine["ndcg_at_10"] / ranking["ndcg_at_10"], 3), "unit": "x",
                         "target": "baseline", "met": True, "miss": ""})
    return {"scenario": "search_relevance", "measured_at": document.get("date"), "rows": rows}


def table_rows(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"scenario": document.get("scenario", document["file"]), "measured_at": document.get("measured_at"),
             **{key: row[key] for key in ("name", "value", "unit", "target", "met", "miss")}}
            for document in documents for row in document["rows"]]


def render(rows: list[dict[str, Any]]) -> str:
    headers = ("scenario", "figure", "value", "target", "met?", "miss")
    lines = [[row["scenario"], row["name"], "—" if row["value"] is None else f"{row['value']:g} {row['unit']}",
              row["target"], "yes" if row["met"] else "NO", row["miss"] or ""] for row in rows]
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def share_of_target(row: dict[str, Any]) -> float | None:
    """The value over its bound (``<= 100 ms`` -> value/100; ``>= 300 /s`` -> 300/value): above 1 misses."""
    match = re.match(r"\s*(<=|>=)\s*([-0-9.]+)", str(row["target"]))
    value = row["value"]
    if not match or value is None:
        return None
    bound = float(match.group(2))
    if match.group(1) == "<=":
        return value / bound if bound else (0.0 if value <= 0 else 2.0)
    return bound / value if value else (0.0 if bound <= 0 else 2.0)


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(f"{row['scenario']}: {row['name']}", share_of_target(row), row["met"]) for row in rows]
    shown = [item for item in shown if item[1] is not None]
    height = max(2.5, 0.28 * len(shown) + 1)
    figure, axes = plt.subplots(figsize=(11, height))
    labels = [label[:70] for label, _, _ in shown]
    values = [min(float(value or 0), 3.0) for _, value, _ in shown]
    axes.barh(range(len(shown)), values, color=["#3a7d44" if met else "#c0392b" for _, _, met in shown])
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks(range(len(shown)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("figure / target (<= 1 meets it; capped at 3)")
    axes.set_title("Gongkai benchmarks")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()
    documents, skipped = load_results(args.results_dir)
    rows = table_rows(documents)
    print(render(rows))
    met = sum(1 for row in rows if row["met"])
    print(f"\n{met} of {len(rows)} targets met in {len(documents)} scenarios"
          + (f"; skipped (not in the common shape): {', '.join(skipped)}" if skipped else ""))
    summary = {"rows": rows, "met": met, "total": len(rows), "skipped": skipped, "machine": machine_info(),
               "scenarios": {d.get("scenario", d["file"]): d.get("measured_at") for d in documents}}
    path = args.results_dir / f"{SUMMARY}.json"
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"written {path}")
    if not args.no_chart and rows:
        chart(rows, args.results_dir / f"{SUMMARY}.png")
        print(f"written {args.results_dir / f'{SUMMARY}.png'}")


if __name__ == "__main__":
    main()
