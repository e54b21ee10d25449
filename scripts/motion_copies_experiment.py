"""Experiment: does the contrast-consistency scheme also fix motion? (the measure step also
serves the combined run that trains on both kinds of copy)

1. ``build``: a motion copy of every cached subject (``training.features.motion_copies``:
   TorchIO ``RandomMotion``, 2 movements of up to 5 degrees and 5 mm, as
   ``brainage evaluate-robustness`` uses; seeded per subject) written beside the feature cache,
   ``runs/features/motion_copies.npz``; ``brainage train-cnn --contrast-consistency W --copies
   motion`` (or ``contrast,motion``) trains on it and builds it when missing.
2. ``measure CNN_SAFETENSORS ...``: each CNN's raw age change from the held-out scans (Cam-CAN
   ``test``, ``ixi10``) to their motion copies and to their contrast copies, and its ``test`` MAE
   with the bias correction fitted on its validation subjects. Years.
"""
from __future__ import annotations

import sys

import numpy as np

DATA = "../shared/data/camcan"
CACHE = "runs/features/features.npz"


def build() -> None:
    from BrainAgeLib.training.features import acquisition_copies
    acquisition_copies(DATA, dict(np.load(CACHE)), CACHE, "motion")


def measure(weights: list[str]) -> None:
    from BrainAgeLib.regression import AgeBiasCorrection
    from BrainAgeLib.training.age_model import cnn_predictions
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.features import COPY_SUFFIX, copies_path
    z = np.load(CACHE)
    f = {k: z[k] for k in ("cnn", "site", "split", "age", "subject_id")}
    copies = {k: np.load(copies_path(CACHE, k))["cnn" + COPY_SUFFIX[k]] for k in ("motion", "contrast")}
    _, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
    for w in weights:
        bias = AgeBiasCorrection().fit(cnn_predictions(f, va, w), f["age"][va])
        line = f"{w}:"
        for label, split in (("Cam-CAN test", "test"), ("ixi10", "ixi10")):
            rows = np.flatnonzero(f["split"] == split)
            clean = cnn_predictions(f, rows, w)
            if split == "test":
                line += f" test MAE {np.abs(bias(clean) - f['age'][rows]).mean():.2f};"
            for name, c in copies.items():
                d = cnn_predictions({"cnn": c}, rows, w) - clean
                line += f" {label} {name} copy {d.mean():+.2f} (|{np.abs(d).mean():.2f}|);"
        print(line, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build()
    else:
        measure(sys.argv[2:])
