"""Experiment: how should approach B read a scan? (cached features; years)

``views CAMCAN_RUN TWO_SITE_RUN IXI_RUN``: B alone, bias correction refitted on each run's
validation subjects, read four ways: once; averaged with the left-right mirror (what ships);
with the mirror and 4 one-voxel shifts; with the mirror and a gamma of the T1 channel (0.85, 1,
1.18). Cam-CAN-only run -> IXI (``ixi120`` + ``ixi10``), two-site run -> Cam-CAN ``test``, IXI-only
run -> Cam-CAN ``test``.

``agreement RUN``: the difference between the two passes (scan, mirror) on clean held-out scans
and on their contrast and motion copies, and whether it flags the copies whose age moved > 5 y.

    .venv/bin/python scripts/cnn_reading_experiment.py views runs/cnn-camcan runs/cnn-both runs/cnn-ixi
    .venv/bin/python scripts/cnn_reading_experiment.py agreement runs/cnn-both
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from BrainAgeLib.cnn import expected_age
from BrainAgeLib.regression import AgeBiasCorrection
from BrainAgeLib.training.age_model import load_run_cnn
from BrainAgeLib.training.cnn import training_partition
from BrainAgeLib.training.features import COPY_SUFFIX, copies_path

CACHE = "runs/features/features.npz"
SHIFTS = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0))


def _net(run: str):
    return load_run_cnn(Path(run) / "age_cnn.safetensors")


def _views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    if mode == "once":
        return [x]
    views = [x, x.flip(-1)]
    if mode == "mirror+shifts":
        views += [torch.roll(x, shifts=s, dims=(2, 3, 4)) for s in SHIFTS]
    if mode == "mirror+gamma":
        for g in (0.85, 1.18):
            for v in (x, x.flip(-1)):
                v = v.clone()
                v[:, :1] = v[:, :1].clamp(min=0) ** g
                views.append(v)
    return views


def _ages(net, X: np.ndarray, rows, mode: str) -> np.ndarray:
    """(n, views) raw ages of the cache rows."""
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), 32):
            x = torch.from_numpy(X[rows[i:i + 32]].astype(np.float32))
            out.append(torch.stack([expected_age(net(v)) for v in _views(x, mode)], 1))
    return torch.cat(out).numpy().astype(float)


def views(runs: list[str], f: dict) -> None:
    ixi, test = np.flatnonzero(f["site"] == "ixi"), np.flatnonzero(f["split"] == "test")
    for run, sites, rows, label in zip(runs, (("camcan",), ("camcan", "ixi"), ("ixi",)), (ixi, test, test),
                                       ("Cam-CAN -> IXI", "two-site, Cam-CAN test", "IXI -> Cam-CAN test")):
        net = _net(run)
        _, va = training_partition(f, sites, 60, 20, 20261123)
        y = f["age"][rows]
        for mode in ("once", "mirror", "mirror+shifts", "mirror+gamma"):
            bias = AgeBiasCorrection().fit(_ages(net, f["cnn"], va, mode).mean(1), f["age"][va])
            gap = bias(_ages(net, f["cnn"], rows, mode).mean(1)) - y
            print(f"{label}, {mode}: MAE {np.abs(gap).mean():.2f}, mean gap {gap.mean():+.2f}, "
                  f"r(gap, age) {np.corrcoef(gap, y)[0, 1]:+.2f}", flush=True)


def agreement(run: str, f: dict) -> None:
    net = _net(run)
    copies = {k: np.load(copies_path(CACHE, k))["cnn" + COPY_SUFFIX[k]] for k in ("contrast", "motion")}
    _, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
    for label, rows in (("validation", va), ("Cam-CAN test", np.flatnonzero(f["split"] == "test")),
                        ("ixi10", np.flatnonzero(f["split"] == "ixi10"))):
        clean = _ages(net, f["cnn"], rows, "mirror")
        d = np.abs(clean[:, 0] - clean[:, 1])
        print(f"{label}, clean: |scan - mirror| median {np.median(d):.2f}, 95th pct {np.percentile(d, 95):.2f}")
        for kind, X in copies.items():
            c = _ages(net, X, rows, "mirror")
            dc, change = np.abs(c[:, 0] - c[:, 1]), np.abs(c.mean(1) - clean.mean(1))
            big = change > 5
            print(f"  {kind} copies: |scan - mirror| median {np.median(dc):.2f}; {big.sum()} moved > 5 y, "
                  f"their |scan - mirror| {np.round(dc[big], 1).tolist()}; "
                  f"correlation with the change {np.corrcoef(dc, change)[0, 1]:.2f}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    z = np.load(CACHE)
    feats = {k: z[k] for k in ("cnn", "site", "split", "age", "subject_id")}
    if sys.argv[1] == "views":
        views(sys.argv[2:5], feats)
    else:
        agreement(sys.argv[2], feats)
