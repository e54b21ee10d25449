"""Experiment: does averaging two CNNs trained by the same recipe with other seeds (same
validation draw, ``train-cnn --seed``) make approach B hold better on another site?

B alone, read with its mirror, bias correction fitted on the validation subjects, each run alone
and the mean of the runs' raw ages (years):

    .venv/bin/python scripts/cnn_seed_ensemble.py camcan RUN RUN [RUN ...]   # Cam-CAN-only runs -> IXI
    .venv/bin/python scripts/cnn_seed_ensemble.py both RUN RUN [RUN ...]     # two-site runs -> Cam-CAN test
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from BrainAgeLib.regression import AgeBiasCorrection
from BrainAgeLib.training.age_model import cnn_predictions
from BrainAgeLib.training.cnn import training_partition

CACHE = "runs/features/features.npz"


def main(which: str, runs: list[str]) -> None:
    z = np.load(CACHE)
    f = {k: z[k] for k in ("cnn", "site", "split", "age", "subject_id")}
    sites = ("camcan",) if which == "camcan" else ("camcan", "ixi")
    rows = np.flatnonzero(f["site"] == "ixi") if which == "camcan" else np.flatnonzero(f["split"] == "test")
    _, va = training_partition(f, sites, 60, 20, 20261123)
    val = {r: cnn_predictions(f, va, Path(r) / "age_cnn.safetensors") for r in runs}
    out = {r: cnn_predictions(f, rows, Path(r) / "age_cnn.safetensors") for r in runs}
    y = f["age"][rows]

    def report(label, pv, pt):
        gap = AgeBiasCorrection().fit(pv, f["age"][va])(pt) - y
        print(f"{label}: MAE {np.abs(gap).mean():.2f}, mean gap {gap.mean():+.2f}, "
              f"r(gap, age) {np.corrcoef(gap, y)[0, 1]:+.2f}", flush=True)
    for r in runs:
        report(r, val[r], out[r])
    report(f"mean of {len(runs)}", np.mean([val[r] for r in runs], 0), np.mean([out[r] for r in runs], 0))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
