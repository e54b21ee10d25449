"""The segmentation's mirror disagreement (:func:`BrainAgeLib.qc.mirror_disagreement`) on clean
healthy scans: where :data:`BrainAgeLib.qc.MIRROR_LINE` and :data:`BrainAgeLib.qc.MAX_MIRROR_EXCESS`
come from, and the false alarms on scans held out from that choice.

- set on: Cam-CAN ``seg_train`` + ``seg_val`` (52; no age model trained on them) and the 120
  ``ixi120`` heads (the ResUNet never trained on IXI): the disagreement grows with the CSF
  fraction (atrophy: more tissue borders), so a least-squares line on the CSF fraction, and the
  threshold the 99th percentile of the excess over it (the convention of the A/B disagreement QC);
- held out: Cam-CAN ``test`` (100) and ``ixi10`` (10).

Each scan goes through :func:`~BrainAgeLib.preprocessing.preprocess` and the ResUNet twice (as
it is and mirrored), as :func:`~BrainAgeLib.pipeline.predict` does.

    PYTHONPATH=BrainAge .venv/bin/python scripts/measure_mirror_qc.py [--data ../shared/data] \
        [--out docs/results/mirror_qc.csv]

Rows already in ``--out`` are kept (the run resumes); ~20 min for all 282 scans on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import models
from BrainAgeLib.io import read_image
from BrainAgeLib.preprocessing import preprocess
from BrainAgeLib.qc import MAX_MIRROR_EXCESS, MIRROR_LINE, mirror_disagreement, mirror_excess
from BrainAgeLib.volumes import global_fractions
from BrainAgeLib.segmentation import segment_array, segment_mirrored
from BrainAgeLib.training import camcan_paths, read_camcan_subjects

COLUMNS = ["set", "subject_id", "age", "role", "mirror_disagreement", "csf_fraction"]


def scans(data: Path) -> list[dict]:
    cam = read_camcan_subjects(data / "camcan")
    out = [{"set": "camcan", "subject_id": r["subject_id"], "age": r["age"], "role": "threshold",
            "path": camcan_paths(data / "camcan", r["subject_id"])["image"]}
           for r in cam if r["split"] in ("seg_train", "seg_val")]
    with open(data / "ixi120" / "subjects.csv", newline="") as f:
        out += [{"set": "ixi120", "subject_id": r["subject_id"], "age": r["age"], "role": "threshold",
                 "path": data / "ixi120" / "t1" / f"{r['subject_id']}_T1.nii.gz"} for r in csv.DictReader(f)]
    out += [{"set": "camcan", "subject_id": r["subject_id"], "age": r["age"], "role": "held_out",
             "path": camcan_paths(data / "camcan", r["subject_id"])["image"]} for r in cam if r["split"] == "test"]
    with open(data / "ixi10" / "subjects.csv", newline="") as f:
        out += [{"set": "ixi10", "subject_id": r["subject_id"], "age": r["age"], "role": "held_out",
                 "path": data / "ixi10" / "t1" / f"{r['subject_id']}_T1.nii.gz"} for r in csv.DictReader(f)]
    return out


def measure(net, path) -> tuple[float, float]:
    """The mirror disagreement and the CSF fraction of TIV of one scan."""
    arr = sitk.GetArrayFromImage(preprocess(read_image(path)).image)
    prob = segment_array(net, arr)
    mirrored = segment_mirrored(net, arr)
    return mirror_disagreement(prob, mirrored), float(global_fractions(prob)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("docs/results/mirror_qc.csv"))
    args = ap.parse_args()
    done = {}
    if args.out.exists():
        with open(args.out, newline="") as f:
            done = {(r["set"], r["subject_id"]): r for r in csv.DictReader(f)}
    net = models.load_resunet()
    rows = []
    for s in scans(args.data):
        row = done.get((s["set"], s["subject_id"]))
        if row is None:
            row = {k: s[k] for k in COLUMNS[:4]}
            value, csf = measure(net, s["path"])
            row["mirror_disagreement"], row["csf_fraction"] = round(value, 5), round(csf, 5)
            print(row, flush=True)
        rows.append(row)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    fit = [r for r in rows if r["role"] == "threshold"]
    x, y = (np.array([float(r[k]) for r in fit]) for k in ("csf_fraction", "mirror_disagreement"))
    slope, intercept = np.polyfit(x, y, 1)
    threshold = float(np.percentile(y - (intercept + slope * x), 99))
    print(f"line on {len(fit)} clean scans: {intercept:.4f} + {slope:.4f} x CSF fraction; 99th percentile of the "
          f"excess {threshold:.4f} (shipped: MIRROR_LINE {MIRROR_LINE}, MAX_MIRROR_EXCESS {MAX_MIRROR_EXCESS})\n")
    print("| clean scans | n | excess: median | 95th percentile | max | above the shipped threshold |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, role) in (("camcan", "threshold"), ("ixi120", "threshold"), ("camcan", "held_out"), ("ixi10", "held_out")):
        v = np.array([mirror_excess(float(r["mirror_disagreement"]), float(r["csf_fraction"]))
                      for r in rows if r["set"] == name and r["role"] == role])
        print(f"| {name} ({role}) | {v.size} | {np.median(v):+.4f} | {np.percentile(v, 95):+.4f} | {v.max():+.4f} "
              f"| {int((v > MAX_MIRROR_EXCESS).sum())} |")


if __name__ == "__main__":
    main()
