"""False alarms of the image QC on clean heads from another scanner: the 130 IXI whole heads
(``ixi120`` + ``ixi10``) as the training cache brought them into model space through the raw-scan
path (``runs/features/ixi_model_space.npz``, the pipeline's rigid registration). Per head, the
measures ``pipeline.predict`` checks after registration: template similarity, white-matter SNR
(before harmonisation), grey/white edge sharpness (on the GM/WM-mapped intensities, as its
threshold was set) and the focal-abnormality volume (after the second pass when
``pipeline.HARMONIZE_RAW_SCANS``; off since release 12). Prints each measure's range and how many heads its
threshold flags, and writes one CSV row per head.

    python scripts/measure_ixi_qc.py [--cache runs/features/ixi_model_space.npz] [--out docs/results/ixi_qc_false_alarms.csv]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    from BrainAgeLib import models, qc
    from BrainAgeLib.pipeline import read_registered, sharpness_of_registered
    from BrainAgeLib.preprocessing import MIN_SIMILARITY
    from BrainAgeLib.segmentation import segment_array
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="runs/features/ixi_model_space.npz")
    ap.add_argument("--out", default="docs/results/ixi_qc_false_alarms.csv")
    args = ap.parse_args()
    space = np.load(args.cache)
    print(f"{args.cache}: registration {space['registration'] if 'registration' in space else 'affine'}")
    net = models.load_resunet()
    rows = []
    for sid, image, sim in zip(space["subject_id"], space["image"], space["similarity"]):
        arr = image.astype(np.float32)
        prob = segment_array(net, arr)
        snr = qc.wm_snr(arr, prob)
        arr, prob, medians = read_registered(net, arr, prob)
        rows.append({"subject_id": str(sid), "similarity": round(float(sim), 4), "wm_snr": round(snr, 1),
                     "edge_sharpness": round(sharpness_of_registered(arr, prob, medians), 3),
                     "unexpected_csf_ml": round(qc.unexpected_csf_ml(prob), 2)})
        print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    checks = (("similarity", MIN_SIMILARITY, "below"), ("wm_snr", qc.MIN_WM_SNR, "below"),
              ("edge_sharpness", qc.MIN_EDGE_SHARPNESS, "below"), ("unexpected_csf_ml", qc.FOCAL_MAX_ML, "above"))
    print(f"\n{len(rows)} clean IXI heads:\n")
    print("| measure | min | 5th pct | median | 95th pct | max | threshold | heads flagged |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, threshold, side in checks:
        x = np.array([r[key] for r in rows], float)
        flagged = int((x < threshold).sum() if side == "below" else (x > threshold).sum())
        p5, p50, p95 = np.percentile(x, [5, 50, 95])
        print(f"| {key} | {x.min():.2f} | {p5:.2f} | {p50:.2f} | {p95:.2f} | {x.max():.2f} | "
              f"{side} {threshold:g} | {flagged} ({100 * flagged / len(x):.1f} %) |")


if __name__ == "__main__":
    main()
