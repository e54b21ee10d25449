"""Two thick-slice measurements (``train-thick-slice-weights``' ``thick_slices.csv``, e.g. the
shipped models' and a candidate's) on the subjects both hold: per orientation and slice
thickness, the ensemble's mean |age change| against the clean scan (years) with lines and weight
fitted leave-one-subject-out (:func:`~BrainAgeLib.training.thick_slices.out_of_fold_ages`, as the
shipped fit reports them), and the usual ensemble without lines. A partial measurement (one
that ``--resume`` will complete) is compared on its finished subjects.

    .venv/bin/python scripts/thick_lines_compare.py docs/results/thick_slice_weights_fit.csv \\
        docs/results/candidates/thick_partners/thick_slices/thick_slices.csv
"""
from __future__ import annotations

import csv
import sys

import numpy as np

from BrainAgeLib.training.thick_slices import (ORIENTATIONS, THICKNESSES_MM, bootstrap_ci95, complete_subjects,
                                               out_of_fold_ages)


def complete_rows(path: str) -> dict[str, list[dict]]:
    """Rows of the subjects measured with every acquisition, by ``set:subject_id``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    done = complete_subjects(rows)
    per: dict[str, list[dict]] = {}
    for r in rows:
        if (r["set"], r["subject_id"]) in done:
            per.setdefault(f"{r['set']}:{r['subject_id']}", []).append(r)
    return per


def changes(rows: list[dict]) -> tuple[dict, dict]:
    """(orientation, mm) -> (mean |change| out of fold, usual ensemble's mean |change|), years;
    and orientation -> each subject's mean |change| out of fold over the thicknesses."""
    clean = {r["subject_id"]: r for r in rows if r["orientation"] == "clean"}
    out, per_subject = {}, {}
    for o in ORIENTATIONS:
        sel = [r for r in rows if r["orientation"] == o]
        ref = np.array([float(clean[r["subject_id"]]["ensemble"]) for r in sel])
        oof = np.abs(out_of_fold_ages(sel, clean) - ref)
        usual = np.abs(np.array([float(r["ensemble"]) for r in sel]) - ref)
        mm = np.array([float(r["thickness_mm"]) for r in sel])
        for t in THICKNESSES_MM:
            out[(o, t)] = (float(oof[mm == t].mean()), float(usual[mm == t].mean()))
        ids = np.array([r["subject_id"] for r in sel])
        per_subject[o] = np.array([oof[ids == s].mean() for s in sorted(set(ids))])
    return out, per_subject


def main(argv: list[str]) -> int:
    first, second = (complete_rows(p) for p in argv[:2])
    both = [k for k in first if k in second]
    if len(both) < 3:
        raise SystemExit(f"only {len(both)} subjects in both measurements: too few for leave-one-out lines")
    a, per_a = changes([r for k in both for r in first[k]])
    b, per_b = changes([r for k in both for r in second[k]])
    print(f"{len(both)} subjects in both ({', '.join(sorted({k.split(':')[0] for k in both}))}); "
          f"mean |age change| against the clean scan, years: lines out of fold (usual ensemble)")
    print(f"| orientation, mm | {argv[0]} | {argv[1]} |\n| --- | --- | --- |")
    for o in ORIENTATIONS:
        for t in THICKNESSES_MM:
            print(f"| {o} {t:g} | {a[(o, t)][0]:.2f} ({a[(o, t)][1]:.2f}) | {b[(o, t)][0]:.2f} ({b[(o, t)][1]:.2f}) |")
    rng = np.random.default_rng(0)
    print("second minus first, out of fold, mean over thicknesses and subjects (95 % bootstrap over subjects):")
    for o in ORIENTATIONS:
        d = per_b[o] - per_a[o]
        lo, hi = bootstrap_ci95(d, 5000, rng)
        print(f"  {o}: {d.mean():+.2f} ({lo:+.2f} to {hi:+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
