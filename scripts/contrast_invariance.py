"""How much a contrast change (a gamma) and head motion move approaches A, B and the ensemble,
measured on held-out scans: each Cam-CAN ``test`` and ``ixi10`` subject of the feature cache
against its contrast copy (``training.features.contrast_copies``: the same scan with a gamma
drawn from 0.6-1.6, segmented again) and, when ``runs/features/motion_copies.npz`` exists, its
motion copy (``training.features.motion_copies``) and, when ``thick_copies.npz`` exists, its
thick-slice copy (``training.features.thick_copies``, by slice orientation). Ages are the
models' bias-corrected ones; years.

    python scripts/contrast_invariance.py NAME AGE_MODEL_JSON CNN_SAFETENSORS [NAME ...]

The CNN's ``cnn_config.json`` must lie beside its weights (as in a ``brainage train-cnn`` run).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from BrainAgeLib.regression import AgeBiasCorrection, VolumeAgeRegressor
from BrainAgeLib.training.age_model import cnn_predictions, feature_matrix
from BrainAgeLib.training.features import COPY_SUFFIX, copies_path


SETS = (("Cam-CAN test", "test"), ("ixi10", "ixi10"))
CACHE = os.environ.get("BRAINAGE_FEATURE_CACHE", "runs/features/features.npz")   # another cache: a candidate


def ages(f: dict, rows, model: dict, cnn, suffix: str = "") -> dict:
    """Bias-corrected ages (A, B, ensemble) of the cache rows ``rows`` (keys ending in ``suffix``)."""
    reg = VolumeAgeRegressor.from_dict(model["volumes"]["regressor"])
    a = reg.predict(feature_matrix(f, rows, f"c{reg.cell}", suffix=suffix))
    b = cnn_predictions({"cnn": f["cnn" + suffix]}, rows, cnn, mirror=model["cnn"].get("mirror", False))
    w = model["ensemble"]["weight_volumes"]
    corr = {k: AgeBiasCorrection(**model[k]["bias"]) for k in ("volumes", "cnn", "ensemble")}
    return {"A": corr["volumes"](a), "B": corr["cnn"](b), "ensemble": corr["ensemble"](w * a + (1 - w) * b)}


def main(argv: list[str]) -> None:
    z = np.load(CACHE)
    f = {k: z[k] for k in ("site", "split", "age", "subject_id", "cnn", "regional_c4", "regional_c6", "global")}
    for kind, sfx in COPY_SUFFIX.items():       # each kind of copy beside the cache (motion: when built)
        path = copies_path(CACHE, kind)
        if kind == "contrast" or path.exists():
            c = np.load(path)
            assert list(c["subject_id"]) == list(f["subject_id"])
            f.update({k + sfx: c[k + sfx] for k in ("cnn", "regional_c4", "regional_c6", "global")})
            if kind == "contrast":
                gamma = c["gamma"]
            if kind == "thick":
                orientation = c["orientation"]
    motion_rows, thick_rows = [], []
    print("| models | held-out scans | gamma | n | A | B | ensemble |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i in range(0, len(argv), 3):
        name, model_path, cnn = argv[i:i + 3]
        model = json.loads(open(model_path).read())
        for label, split in SETS:
            rows = np.flatnonzero(f["split"] == split)
            clean, copy = ages(f, rows, model, cnn), ages(f, rows, model, cnn, "_gam")
            for band, sel in (("< 0.8", gamma[rows] < 0.8), ("0.8-1.25", (gamma[rows] >= 0.8) & (gamma[rows] <= 1.25)),
                              ("> 1.25", gamma[rows] > 1.25)):
                cells = [f"{np.mean(copy[k][sel] - clean[k][sel]):+.1f} ({np.mean(np.abs(copy[k][sel] - clean[k][sel])):.1f})"
                         for k in ("A", "B", "ensemble")]
                print(f"| {name} | {label} | {band} | {int(sel.sum())} | " + " | ".join(cells) + " |")
            if "cnn_mot" in f:
                moved = ages(f, rows, model, cnn, "_mot")
                cells = [f"{np.mean(moved[k] - clean[k]):+.1f} ({np.mean(np.abs(moved[k] - clean[k])):.1f})"
                         for k in ("A", "B", "ensemble")]
                motion_rows.append(f"| {name} | {label} | {len(rows)} | " + " | ".join(cells) + " |")
            if "cnn_thk" in f:
                thick = ages(f, rows, model, cnn, "_thk")
                for o in ("sagittal", "coronal", "axial"):
                    sel = orientation[rows] == o
                    cells = [f"{np.mean(thick[k][sel] - clean[k][sel]):+.1f} ({np.mean(np.abs(thick[k][sel] - clean[k][sel])):.1f})"
                             for k in ("A", "B", "ensemble")]
                    thick_rows.append(f"| {name} | {label} | {o} | {int(sel.sum())} | " + " | ".join(cells) + " |")
    if motion_rows:
        print("\nMotion copies (TorchIO RandomMotion in model space):\n")
        print("| models | held-out scans | n | A | B | ensemble |")
        print("| --- | --- | --- | --- | --- | --- |")
        print("\n".join(motion_rows))
    if thick_rows:
        print("\nThick-slice copies (3-6 mm slices in model space):\n")
        print("| models | held-out scans | slices | n | A | B | ensemble |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        print("\n".join(thick_rows))


if __name__ == "__main__":
    main(sys.argv[1:])
