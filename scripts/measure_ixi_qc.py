"""False alarms of the image QC on clean heads from another scanner: the 130 IXI whole heads
(``ixi120`` + ``ixi10``) as the training cache brought them into model space through the raw-scan
path (``runs/features/ixi_model_space.npz``, the pipeline's rigid registration). Per head, the
measures ``pipeline.predict`` checks after registration: template similarity, white-matter SNR
(before harmonisation), grey/white edge sharpness (on the GM/WM-mapped intensities, as its
threshold was set) and the focal-abnormality volume (after the second pass when
``pipeline.HARMONIZE_RAW_SCANS``; off since release 12). Prints each measure's range and how many heads its
threshold flags, and writes one CSV row per head. With ``--lesion`` each head is also read with a
45 ml lesion (``degrade.lesion``, placed by the network's own tissue labels of the clean head,
seeded per head): the focal check's hits on another scanner, ``lesion45_unexpected_csf_ml``.

    python scripts/measure_ixi_qc.py [--cache runs/features/ixi_model_space.npz] [--out docs/results/ixi_qc_false_alarms.csv] [--lesion]
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
    ap.add_argument("--lesion", action="store_true", help="also read each head with a 45 ml lesion")
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
        if args.lesion:
            rows[-1]["lesion45_unexpected_csf_ml"] = round(_lesion_ml(net, arr, prob, seed=len(rows)), 2)
        print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if args.lesion:
        which = dict(zip(np.asarray(space["subject_id"]).astype(str), np.asarray(space["set"]).astype(str)))
        for name in ("ixi120", "ixi10"):
            part = [r for r in rows if which[r["subject_id"]] == name]
            clean = np.array([r["unexpected_csf_ml"] for r in part])
            hit = np.array([r["lesion45_unexpected_csf_ml"] for r in part])
            print(f"{name} ({len(part)} heads), focal volume (ml) clean / with a 45 ml lesion, "
                  f"flagged above each threshold:")
            for t in (2.0, 2.5, 3.0, 3.5, 4.0):
                print(f"  > {t:g} ml: clean {(clean > t).sum()}, lesion {(hit > t).sum()}")
            print(f"  lesion: median {np.median(hit):.2f}, 10th-90th pct {np.percentile(hit, 10):.2f}-"
                  f"{np.percentile(hit, 90):.2f}")
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


def _lesion_ml(net, arr: np.ndarray, prob: np.ndarray, seed: int) -> float:
    """The focal volume (ml) of a registered head with a 45 ml lesion, placed in the tissue of
    the network's labels of the clean head (model space, 2 mm)."""
    import SimpleITK as sitk
    from BrainAgeLib import degrade, models, qc
    from BrainAgeLib.pipeline import read_registered
    from BrainAgeLib.segmentation import segment_array
    image = sitk.GetImageFromArray(arr.astype(np.float32))
    image.CopyInformation(models.load_template())       # the cache's heads lie on the template grid
    labels = sitk.GetImageFromArray(np.argmax(prob, axis=0).astype(np.uint8))
    labels.CopyInformation(image)
    lesioned = sitk.GetArrayFromImage(degrade.lesion(image, labels, seed=seed))
    lp = segment_array(net, lesioned)
    _, lp, _ = read_registered(net, lesioned, lp)
    return qc.unexpected_csf_ml(lp)


if __name__ == "__main__":
    main()
