"""Should a scanner's offset be shrunk toward 0 by its sampling error? Measured on the 30 IXI heads
that B never trained on (``ixi120``'s validation part, 20, and ``ixi10``, 10; A's final ridge did
train on the 20, so with a share of A their residuals are somewhat small): draw ``k``
of them as controls, fit the offset (median gap), correct the others; 500 draws per ``k``. Methods:
none; offset (``brainage site-offset``); shrunk offset, ``offset * max(0, 1 - SE² / offset²)`` with
SE the median's standard error (1.2533 * 1.4826 * MAD / sqrt(k)). The IXI scanner is one the models
trained on, so its true offset is near 0; a site offset of +3 or +6 years is then added to every
prediction (real residuals, simulated offset) to see what shrinking costs when there is one.

    .venv/bin/python scripts/offset_shrinkage.py [--predictions docs/results/candidates/offset_shrinkage/heldout_ixi.csv]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def predict_heldout(path: Path, data: Path) -> None:
    from BrainAgeLib import pipeline
    from BrainAgeLib.training.cnn import CNNConfig
    from BrainAgeLib.training.features import split_validation
    cfg = CNNConfig()
    rows120 = list(csv.DictReader(open(data / "ixi120" / "subjects.csv")))
    val = set(split_validation([r["subject_id"] for r in rows120], cfg.n_val_ixi, cfg.split_seed)[1])
    subjects = [("ixi120", r) for r in rows120 if r["subject_id"] in val]
    subjects += [("ixi10", r) for r in csv.DictReader(open(data / "ixi10" / "subjects.csv"))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "subject_id", "age", "ensemble", "volumes", "cnn", "qc"])
        for s, r in subjects:
            res = pipeline.predict(data / s / "t1" / f"{r['subject_id']}_T1.nii.gz", device="cpu")
            w.writerow([s, r["subject_id"], r["age"], round(res.predicted_age, 3),
                        round(res.predicted_age_volumes, 3), round(res.predicted_age_cnn, 3), res.qc_text])


def median_se(g: np.ndarray) -> float:
    from BrainAgeLib.calibration import median_standard_error
    return median_standard_error(float(np.median(np.abs(g - np.median(g)))), len(g))


def shrink(offset: float, se: float) -> float:
    return 0.0 if offset == 0 else offset * max(0.0, 1 - se ** 2 / offset ** 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", default="docs/results/candidates/offset_shrinkage/heldout_ixi.csv")
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    path = Path(args.predictions)
    if not path.exists():
        predict_heldout(path, Path(args.data))
    rows = list(csv.DictReader(open(path)))
    p = np.array([float(r["ensemble"]) for r in rows])
    a = np.array([float(r["age"]) for r in rows])
    rng = np.random.default_rng(0)
    print(f"{len(p)} held-out IXI heads, uncalibrated MAE {np.abs(p - a).mean():.2f}, mean gap {np.mean(p - a):+.2f}\n")
    print("| site offset added | k controls | none | offset | shrunk offset |")
    print("| --- | --- | --- | --- | --- |")
    for shift in (0.0, 3.0, 6.0):
        for k in (5, 10, 20):
            res = {m: [] for m in ("none", "offset", "shrunk")}
            for _ in range(500):
                idx = rng.permutation(len(p))
                c, t = idx[:k], idx[k:]
                g = p[c] + shift - a[c]
                o = float(np.median(g))
                e = p[t] + shift - a[t]
                res["none"].append(np.abs(e).mean())
                res["offset"].append(np.abs(e - o).mean())
                res["shrunk"].append(np.abs(e - shrink(o, median_se(g))).mean())
            print(f"| {shift:+.0f} | {k} | " + " | ".join(f"{np.mean(v):.2f}" for v in res.values()) + " |")


if __name__ == "__main__":
    main()
