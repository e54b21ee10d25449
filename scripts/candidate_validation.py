"""B's age on the CNN's validation subjects (cached features; never trained on), site by site,
for several CNN runs, each with the bias correction of its own train-age-model run: how much
clean-scan accuracy a change of B's training costs, before any release step reads ``test``.

    PYTHONPATH=BrainAge .venv/bin/python scripts/candidate_validation.py NAME=CNN_DIR:AGE_MODEL_JSON ...

``CNN_DIR`` holds ``age_cnn.safetensors`` and its ``cnn_config.json``; ``shipped`` as a NAME alone
reads the shipped B (its config from the manifest). Feature cache: ``BRAINAGE_FEATURE_CACHE``
(default runs/features/features.npz). Prints MAE and mean gap (years), raw and bias-corrected.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from BrainAgeLib import models
from BrainAgeLib.regression import AgeBiasCorrection
from BrainAgeLib.training.age_model import cnn_predictions
from BrainAgeLib.training.cnn import training_partition

CACHE = os.environ.get("BRAINAGE_FEATURE_CACHE", "runs/features/features.npz")


def shipped_cnn_dir() -> tuple[str, str]:
    """A folder with the shipped B and its training config; the shipped age_model.json."""
    folder = Path(tempfile.mkdtemp())
    (folder / "age_cnn.safetensors").write_bytes(models.verify("age_cnn.safetensors").read_bytes())
    config = models.read_manifest()["files"]["age_cnn.safetensors"]["config"]
    (folder / "cnn_config.json").write_text(json.dumps(config))
    return str(folder), str(models.verify("age_model.json"))


def main(runs: list[str]) -> None:
    z = np.load(CACHE)
    f = {k: z[k] for k in ("site", "split", "age", "subject_id", "cnn")}
    for run in runs:
        name, _, where = run.partition("=")
        cnn_dir, age_json = shipped_cnn_dir() if name == "shipped" and not where else where.split(":")
        config = json.loads((Path(cnn_dir) / "cnn_config.json").read_text())
        _, va = training_partition(f, tuple(config["sites"]), config["n_val"], config["n_val_ixi"],
                                   config["split_seed"])
        m = json.loads(Path(age_json).read_text())
        raw = cnn_predictions(f, va, f"{cnn_dir}/age_cnn.safetensors", mirror=m["cnn"].get("mirror", False))
        corrected = AgeBiasCorrection(**m["cnn"]["bias"])(raw)
        for site in ("camcan", "ixi", "both"):
            sel = np.ones(len(va), bool) if site == "both" else f["site"][va] == site
            r, c = raw[sel] - f["age"][va][sel], corrected[sel] - f["age"][va][sel]
            print(f"{name} {site}: n {sel.sum()}, B raw MAE {np.abs(r).mean():.2f} (gap {r.mean():+.2f}), "
                  f"bias-corrected MAE {np.abs(c).mean():.2f} (gap {c.mean():+.2f})")


if __name__ == "__main__":
    main(sys.argv[1:])
