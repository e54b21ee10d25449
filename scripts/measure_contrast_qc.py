"""Measure the tissue-contrast ratios that a contrast (gamma) change moves, on clean healthy
scans and the same scans with gamma 0.7 and 1.4 (``degrade.gamma``): the GM/WM and CSF/GM ratios
of the tissue medians under the first-pass segmentation, in model space before harmonisation
(what ``pipeline.segment_image`` sees). Scans: the 60 Cam-CAN ``reg_train`` scans left out of the
atlas (``qc.atlas_held_out``) and ixi10 + the first 20 ixi120 whole heads (raw path). Writes one
row per scan and condition.

    python scripts/measure_contrast_qc.py [--data ../shared/data] [--out docs/results/contrast_qc.csv]
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


def ratios(array: np.ndarray, prob: np.ndarray) -> dict:
    lab = prob.argmax(0)
    med = [float(np.median(array[lab == c])) for c in (1, 2, 3)]
    return {"csf": med[0], "gm": med[1], "wm": med[2], "gm_wm": med[1] / med[2], "csf_gm": med[0] / med[1]}


def main() -> None:
    from BrainAgeLib import degrade as dg
    from BrainAgeLib import models, qc
    from BrainAgeLib.preprocessing import preprocess
    from BrainAgeLib.segmentation import segment_array
    from BrainAgeLib.training.data import camcan_paths
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "contrast_qc.csv"))
    ap.add_argument("--n-ixi120", type=int, default=20)
    args = ap.parse_args()
    data = Path(args.data)
    net = models.load_resunet()
    scans = [("camcan", s, camcan_paths(data / "camcan", s)["image"]) for s in qc.atlas_held_out(data / "camcan")]
    scans += [("ixi10", p.name, p) for p in sorted((data / "ixi10" / "t1").glob("*_T1.nii.gz"))]
    scans += [("ixi120", p.name, p) for p in sorted((data / "ixi120" / "t1").glob("*_T1.nii.gz"))[:args.n_ixi120]]
    rows = []
    with open(args.out, "w", newline="") as f:
        w = None
        for i, (site, sid, path) in enumerate(scans):
            image = sitk.ReadImage(str(path), sitk.sitkFloat32)
            for cond, img in (("clean", image), ("gamma_0.7", dg.gamma(image, 0.7)), ("gamma_1.4", dg.gamma(image, 1.4))):
                prep = preprocess(img, skull_stripped=True if site == "camcan" else None)
                x = sitk.GetArrayFromImage(prep.image)
                row = {"site": site, "scan": sid, "condition": cond, **{k: round(v, 4) for k, v in
                                                                         ratios(x, segment_array(net, x)).items()}}
                rows.append(row)
                if w is None:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    w.writeheader()
                w.writerow(row)
                f.flush()
            print(f"{i + 1}/{len(scans)} {site} {sid}: " + ", ".join(
                f"{r['condition']} gm/wm {r['gm_wm']:.3f} csf/gm {r['csf_gm']:.3f}" for r in rows[-3:]), flush=True)


if __name__ == "__main__":
    main()
