"""Write the Slicer chart's reference cohort (``BrainAge/Resources/Reference/heldout_test_predictions.csv``,
read by ``BrainAgeLib.chart.reference_cohort``) from an ``evaluate-age`` predictions CSV: age and the
ensemble's, A's and B's ages (years, 2 decimals) of each held-out ``test`` subject.

    .venv/bin/python scripts/chart_reference_cohort.py docs/results/age_test_predictions.csv
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "BrainAge" / "Resources" / "Reference" / "heldout_test_predictions.csv"


def main(predictions: str) -> None:
    with open(predictions, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(OUT, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "ensemble", "volumes", "cnn"])
        for r in rows:
            w.writerow([r["age"]] + [f"{float(r[k]):.2f}" for k in ("ensemble", "volumes", "cnn")])


if __name__ == "__main__":
    main(sys.argv[1])
