"""Experiment: is the brain mask's edge part of the site effect?

Cam-CAN's images came skull-stripped by another pipeline; every IXI head (and every user's raw
scan) goes through deepbet, whose mask the pipeline erodes by ``BET_ERODE_VOXELS`` (1) to match
the Cam-CAN masks. The mean tissue maps of age-matched people still show Cam-CAN's brains and
CSF reaching one 4 mm voxel further out than IXI's. Here the IXI heads are brought into model
space again with another erosion (0 by default), read by the shipped ResUNet
(:func:`~BrainAgeLib.training.features.rescan_rows`), and approach A (shipped regressor, no
degraded copies or invariance pairs: the copies were made with the shipped erosion) is fitted
leave-one-site-out with the IXI rows as they were and as re-read. Years.

    .venv/bin/python docs/results/candidates/bet_erosion/reread_ixi.py OUT_DIR [ERODE]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

SEED = 20261123


def loso_a(f, name="ridge on regional 12 mm, sqrt, alpha 3e-1"):
    from BrainAgeLib.site_evaluation import _fit_a, _summary
    from BrainAgeLib.training.age_model import feature_matrix
    from BrainAgeLib.training.cnn import training_partition
    out = []
    for site, rows in (("camcan", np.flatnonzero(f["site"] == "ixi")), ("ixi", np.flatnonzero(f["split"] == "test"))):
        tr, va = training_partition(f, (site,), 60, 20, SEED)
        model, bias, feats, _ = _fit_a(f, np.sort(np.concatenate([tr, va])), name, SEED, degraded=False)
        s = _summary(bias(model.predict(feature_matrix(f, rows, feats))), f["age"][rows].astype(float))
        out.append(f"{s['mae']:.2f}, {s['mean_gap']:+.2f}, {s['r_gap_age']:+.2f}")
    return " | ".join(out)


def main() -> None:
    from BrainAgeLib import preprocessing
    from BrainAgeLib.models import load_resunet
    from BrainAgeLib.training.features import ixi_model_space, model_space_features, rescan_rows
    out = Path(sys.argv[1])
    erode = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    out.mkdir(parents=True, exist_ok=True)
    f = model_space_features(None, "runs/features/features.npz")
    print("A alone, no copies | Cam-CAN -> IXI: MAE, gap, r | IXI -> Cam-CAN: MAE, gap, r", flush=True)
    print(f"IXI as cached (erosion {preprocessing.BET_ERODE_VOXELS}) | {loso_a(f)}", flush=True)
    preprocessing.BET_ERODE_VOXELS = erode
    t0 = time.time()
    ms = ixi_model_space("../shared/data", out / "ixi_model_space.npz",
                         log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    print(f"model space in {time.time() - t0:.0f} s", flush=True)
    g = {k: (np.array(v, copy=True) if k in ("regional_c4", "regional_c6", "global", "cnn") else v) for k, v in f.items()}
    rescan_rows(g, ms, load_resunet())
    np.savez(out / "ixi_rows.npz", **{k: g[k][f["site"] == "ixi"] for k in ("regional_c6", "global", "cnn")},
             subject_id=g["subject_id"][f["site"] == "ixi"])
    print(f"IXI re-read (erosion {erode}) | {loso_a(g)}", flush=True)
    ixi, cam = np.flatnonzero(f["site"] == "ixi"), np.flatnonzero(f["split"] == "reg_train")
    for nm, h in (("cached", f), ("re-read", g)):
        print(f"global CSF/GM/WM fractions, IXI {nm}:", np.round(h["global"][ixi].mean(0), 4),
              "Cam-CAN reg_train:", np.round(h["global"][cam].mean(0), 4), flush=True)


if __name__ == "__main__":
    main()
