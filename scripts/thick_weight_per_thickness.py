"""Would A's thick-slice weight per slice thickness beat one weight per orientation? Both judged out
of fold (each subject's copies read with lines and weights fitted without it) on the committed
thick-slice measurement of the 52 unseen Cam-CAN subjects, against the shipped ensemble's clean
ages (mean |age change|, years). Lines as shipped (one per thickness); only the weight differs.

    .venv/bin/python scripts/thick_weight_per_thickness.py [docs/results/thick_slice_weights_fit.csv]
"""
from __future__ import annotations

import csv
import sys

import numpy as np

from BrainAgeLib.regression import thick_slice_age_array
from BrainAgeLib.training.thick_slices import WEIGHT_GRID, _fit_orientation


def _columns(rows, *names):
    return (np.array([float(r[k]) for r in rows]) for k in names)


def main(path: str) -> None:
    rows = list(csv.DictReader(open(path, newline="")))
    clean = {r["subject_id"]: r for r in rows if r["orientation"] == "clean"}
    print("| slices | thickness (mm) | one weight per orientation (shipped) | a weight per thickness |")
    print("| --- | --- | --- | --- |")
    for o in ("sagittal", "coronal", "axial"):
        sel = [r for r in rows if r["orientation"] == o]
        ids = np.array([r["subject_id"] for r in sel])
        a, b, mm = _columns(sel, "volumes", "cnn", "thickness_mm")
        ref = np.array([float(clean[r["subject_id"]]["ensemble"]) for r in sel])
        one, per = np.empty(len(sel)), np.empty(len(sel))
        for s in dict.fromkeys(ids):
            inner = [r for r, i in zip(sel, ids) if i != s]
            fit = _fit_orientation(inner, clean)
            ia, ib, imm = _columns(inner, "volumes", "cnn", "thickness_mm")
            iref = np.array([float(clean[r["subject_id"]]["ensemble"]) for r in inner])
            k = ids == s
            one[k] = thick_slice_age_array(a[k], b[k], mm[k], fit)
            for t in sorted(set(mm)):
                m = imm == t
                losses = [np.mean(np.abs(thick_slice_age_array(ia[m], ib[m], imm[m], {**fit, "weight_volumes": w})
                                         - iref[m])) for w in WEIGHT_GRID]
                kk = k & (mm == t)
                per[kk] = thick_slice_age_array(a[kk], b[kk], mm[kk],
                                                {**fit, "weight_volumes": WEIGHT_GRID[int(np.argmin(losses))]})
        for t in sorted(set(mm)):
            m = mm == t
            print(f"| {o} | {t:.0f} | {np.mean(np.abs(one[m] - ref[m])):.2f} | {np.mean(np.abs(per[m] - ref[m])):.2f} |")
        print(f"| {o} | all | **{np.mean(np.abs(one - ref)):.2f}** | **{np.mean(np.abs(per - ref)):.2f}** |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/thick_slice_weights_fit.csv")
