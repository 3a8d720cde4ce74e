"""What every benchmark shares: percentiles and where results are kept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def save_results(stem: str, markdown: str, payload: Any) -> Path:
    """Keep a run's table as ``results/<stem>.md`` and its raw numbers as ``<stem>.json``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{stem}.md").write_text(markdown.rstrip("\n") + "\n")
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    return RESULTS_DIR / stem
