"""The shipped ensemble on the CNN's validation subjects, site by site, and on ixi10 (cached
features; bias-corrected ages; years). The validation subjects are never trained on, but they
fit the bias correction and the ensemble weight.

    .venv/bin/python scripts/validation_by_site.py [CNN_RUN_DIR] [IXI_MODEL_SPACE_NPZ]   # default runs/cnn-both

With ``IXI_MODEL_SPACE_NPZ`` (an ``ixi_model_space`` cache made another way, e.g. by
``scripts/registration_experiment.py build rigid``), the IXI rows' features are first recomputed
from its images (ResUNet, harmonisation and second pass, as the cache was built).
"""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np

from BrainAgeLib import models
from BrainAgeLib.regression import AgeBiasCorrection, VolumeAgeRegressor
from BrainAgeLib.training.age_model import cnn_predictions, feature_matrix
from BrainAgeLib.training.cnn import training_partition

CACHE = os.environ.get("BRAINAGE_FEATURE_CACHE", "runs/features/features.npz")   # another cache: a candidate


def _out_of_fold(table: str) -> dict[str, float]:
    """Subject -> the ensemble's out-of-sample age (years) in a train-age-model normative table."""
    with open(table, newline="") as fh:
        return {r["subject_id"]: float(r["predicted_age"]) for r in csv.DictReader(fh)
                if r["split"] == "train" and r["predicted_by"] == "ensemble"}


def main(cnn_dir: str, ixi_model_space: str | None = None,
         table: str = "docs/results/normative_table.csv") -> None:
    z = np.load(CACHE)
    f = {k: z[k] for k in ("site", "split", "age", "subject_id", "cnn", "regional_c4", "regional_c6", "global")}
    if ixi_model_space:
        from BrainAgeLib.training.features import rescan_rows
        rescan_rows(f, np.load(ixi_model_space), models.load_resunet())
    m = json.loads(models.verify("age_model.json").read_text())
    reg = VolumeAgeRegressor.from_dict(m["volumes"]["regressor"])
    _, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
    w = m["ensemble"]["weight_volumes"]
    oof = _out_of_fold(table)
    missing = [s for s in f["subject_id"][va] if str(s) not in oof]
    if missing:
        raise SystemExit(f"{table}: no out-of-fold ensemble age for {len(missing)} validation subjects "
                         f"(e.g. {missing[0]}): give the normative table of the shipped train-age-model run")
    for label, rows in (("ixi120 validation", va[f["site"][va] == "ixi"]),
                        ("Cam-CAN validation", va[f["site"][va] == "camcan"]),
                        ("validation, both sites", va),
                        ("ixi10", np.flatnonzero(f["split"] == "ixi10"))):
        if label == "ixi10":     # never trained on: the shipped models as they are
            a = reg.predict(feature_matrix(f, rows, f"c{reg.cell}"))
            b = cnn_predictions(f, rows, f"{cnn_dir}/age_cnn.safetensors", mirror=m["cnn"].get("mirror", False))
            pred = AgeBiasCorrection(**m["ensemble"]["bias"])(w * a + (1 - w) * b)
        else:
            pred = np.array([oof[str(s)] for s in f["subject_id"][rows]])
        gap = pred - f["age"][rows]
        young = f["age"][rows] < 40
        print(f"{label}: n {len(rows)}, ages {f['age'][rows].min():.0f}-{f['age'][rows].max():.0f}, "
              f"MAE {np.abs(gap).mean():.2f}, mean gap {gap.mean():+.2f}, "
              f"under 40: {young.sum()} with mean gap {gap[young].mean():+.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/cnn-both", sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None,
         sys.argv[3] if len(sys.argv) > 3 else "docs/results/normative_table.csv")
