"""What every benchmark scenario shares: the result file, the machine it ran on, percentiles.

Every scenario writes ``bench/results/<name>.json`` in one shape so that an aggregator can print a
single table::

    {"scenario": "staff_inbox",
     "rows": [{"name": ..., "value": ..., "unit": ..., "target": ..., "met": true, "miss": ""}],
     "machine": {...}, "measured_at": "2026-11-28T10:00:00+00:00", ...extra}

``target`` is a readable statement (``"<= 100 ms"``); ``met`` is decided by the scenario from the
figure and the bound (:func:`judge`); ``miss`` says by how much a target is missed ("" when met).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"


@dataclass(frozen=True)
class Row:
    """One figure of a scenario against its target."""

    name: str
    value: float | None
    unit: str
    target: str
    met: bool
    miss: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(name: str, value: float | None, unit: str, *, at_most: float | None = None,
          at_least: float | None = None, digits: int = 3) -> Row:
    """A row whose ``met``/``miss`` follow from ``value`` and one bound (``at_most`` or ``at_least``).

    A missing value (the scenario could not measure it) is never met.
    """
    if (at_most is None) == (at_least is None):
        raise ValueError("give exactly one of at_most / at_least")
    bound = at_most if at_most is not None else at_least
    assert bound is not None
    target = f"{'<=' if at_most is not None else '>='} {_number(bound, digits)} {unit}".rstrip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Row(name, None, unit, target, False, "not measured")
    shown = round(float(value), digits)
    if at_most is not None:
        met = value <= at_most
        miss = "" if met else f"{_number(value - at_most, digits)} {unit} over ({value / at_most:.2f}x the bound)"
    else:
        met = value >= bound
        miss = "" if met else (f"{_number(bound - value, digits)} {unit} short "
                               f"({value / bound:.0%} of the target)" if bound else "below target")
    return Row(name, shown, unit, target, met, miss.replace("  ", " "))


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def machine_info() -> dict[str, Any]:
    """The machine a figure came from: CPU, cores, memory, Python, OS."""
    model = platform.processor() or platform.machine()
    memory_gb: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    load: list[float] | None = None
    with contextlib.suppress(OSError):
        load = [round(figure, 2) for figure in os.getloadavg()]
    return {
        "cpu": model,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": load,
        "summary": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"{platform.system()}",
    }


def percentile(values: Iterable[float], p: float) -> float:
    """The nearest-rank percentile; ``p`` in 0..100 (``percentile(latencies, 95)``).

    An empty input is ``nan`` so that a row built from it reads "not measured" rather than crashing.
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(0, min(len(ordered) - 1, rank - 1))]


def result_path(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def write_result(name: str, rows: Sequence[Row | Mapping[str, Any]], extra: Mapping[str, Any] | None = None,
                 *, path: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (or ``path``) in the common shape and return its path."""
    shaped = [row.as_dict() if isinstance(row, Row) else dict(row) for row in rows]
    for row in shaped:
        missing = {"name", "value", "unit", "target", "met", "miss"} - row.keys()
        if missing:
            raise ValueError(f"row {row.get('name')!r} lacks {sorted(missing)}")
    document: dict[str, Any] = {
        "scenario": name,
        "rows": shaped,
        "machine": machine_info(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in (extra or {}).items():
        if key in document:
            raise ValueError(f"extra key {key!r} would overwrite the common shape")
        document[key] = value
    target = path or result_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return target


def print_rows(scenario: str, rows: Sequence[Row], stream: Any = None) -> None:
    """A plain table of a scenario's rows, for its own run."""
    out = stream or sys.stdout
    print(f"\n{scenario}", file=out)
    for row in rows:
        value = "—" if row.value is None else f"{row.value:g}"
        verdict = "met" if row.met else f"MISSED: {row.miss}"
        print(f"  {row.name:<48} {value:>12} {row.unit:<10} target {row.target:<16} {verdict}", file=out)
