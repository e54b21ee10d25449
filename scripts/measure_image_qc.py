"""Re-measure the image-QC thresholds with the shipped ResUNet on the 60 Cam-CAN ``reg_train``
scans left out of the normative atlas (``qc.atlas_held_out``; never ``test``): per scan the
white-matter SNR, the grey/white edge sharpness and the focal-abnormality volume (ml) of the
clean scan, and of the same scan with a 45 ml lesion (``degrade.lesion``) and with Rician noise
of SNR 20. Prints the ranges that ``FOCAL_MAX_ML``, ``MIN_WM_SNR`` and ``MIN_EDGE_SHARPNESS``
are set from, and writes one CSV row per scan.

    python scripts/measure_image_qc.py [--data ../shared/data] [--out docs/results/image_qc_thresholds.csv]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "BrainAge"))


def main() -> None:
    from BrainAgeLib import degrade as dg
    from BrainAgeLib import models, qc
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.segmentation import segment_array
    from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "image_qc_thresholds.csv"))
    args = ap.parse_args()
    camcan = Path(args.data) / "camcan"
    ages = {r["subject_id"]: r["age"] for r in read_camcan_subjects(camcan)}
    net = models.load_resunet()
    template = models.load_template()
    rows = []
    for i, sid in enumerate(qc.atlas_held_out(camcan)):
        img = sitk.ReadImage(str(camcan_paths(camcan, sid)["image"]), sitk.sitkFloat32)
        x = normalize_intensity(sitk.GetArrayFromImage(img))
        prob = segment_array(net, x)
        ref = sitk.GetImageFromArray(x)
        ref.CopyInformation(template)
        lab = sitk.GetImageFromArray(prob.argmax(0).astype(np.uint8))
        lab.CopyInformation(template)
        hurt = normalize_intensity(sitk.GetArrayFromImage(dg.lesion(ref, lab, 45.0, seed=i)))
        noisy = normalize_intensity(sitk.GetArrayFromImage(
            dg.keep_zero_background(dg.rician_noise(ref, 20, seed=i), ref)))
        row = {"subject_id": sid, "age": ages[sid], "wm_snr": qc.wm_snr(x, prob),
               "edge_sharpness": qc.edge_sharpness(x, prob), "focal_ml": qc.unexpected_csf_ml(prob),
               "lesion45_focal_ml": qc.unexpected_csf_ml(segment_array(net, hurt)),
               "snr20_wm_snr": qc.wm_snr(noisy, segment_array(net, noisy))}
        rows.append(row)
        print(f"{i + 1}/60 {sid} age {row['age']:.0f}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in row.items() if k not in ("subject_id", "age")), flush=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    for k in ("wm_snr", "snr20_wm_snr", "edge_sharpness", "focal_ml", "lesion45_focal_ml"):
        v = np.array([r[k] for r in rows])
        print(f"{k:<18} min {v.min():7.2f}  5% {np.percentile(v, 5):7.2f}  median {np.median(v):7.2f}  "
              f"95% {np.percentile(v, 95):7.2f}  max {v.max():7.2f}")
    print(f"thresholds now: FOCAL_MAX_ML {qc.FOCAL_MAX_ML}, MIN_WM_SNR {qc.MIN_WM_SNR}, "
          f"MIN_EDGE_SHARPNESS {qc.MIN_EDGE_SHARPNESS}; wrote {args.out}")


if __name__ == "__main__":
    main()
