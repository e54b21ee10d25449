"""Experiment: does a bias correction fitted on the validation subjects *and their acquisition
copies* hold r(gap, age) on an unseen site?

On a scanner it never saw, the ensemble's age signal is weaker than on its training sites, so
the regression-to-the-mean correction fitted on validation subjects under-corrects (Cam-CAN -> IXI
r(gap, age) -0.25). Acquisition copies weaken the signal in a similar way. Here the ensemble's
correction (leave-one-site-out, release 18's runs, A's weight 0.15) is fitted on: the clean
validation subjects (shipped); plus their degraded copies; plus degraded, contrast and motion
copies. A's ages of the copies are out-of-fold like its clean ones. Years.

    .venv/bin/python docs/results/candidates/copy_bias_correction/loso.py [RUN_DIR]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SEED = 20261123


def main() -> None:
    from sklearn.model_selection import KFold
    from BrainAgeLib.regression import AgeBiasCorrection
    from BrainAgeLib.site_evaluation import _summary
    from BrainAgeLib.training.age_model import (candidate_regressors, cnn_predictions, copy_matrices,
                                                feature_matrix, fit_regressor)
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.features import COPY_SUFFIX, acquisition_copies, model_space_features
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/release18")
    cache = run / "features" / "features.npz"
    f = model_space_features(None, cache)
    m = json.loads(Path("BrainAge/Resources/Models/age_model.json").read_text())
    name, w = m["volumes"]["selected"], m["ensemble"]["weight_volumes"]
    copies = {k: acquisition_copies(None, f, cache, k) for k in ("contrast", "motion")}
    est, feats = candidate_regressors(SEED, 0.3)[name]
    print("correction fitted on | Cam-CAN -> IXI: MAE, gap, r(gap,age) | IXI -> Cam-CAN (3 seeds): MAE, gap, r")
    results = {}
    for train_site, test_rows, cnns in (("camcan", np.flatnonzero(f["site"] == "ixi"), ["cnn-camcan"]),
                                        ("ixi", np.flatnonzero(f["split"] == "test"),
                                         ["cnn-ixi", "cnn-ixi-seed2", "cnn-ixi-seed3"])):
        tr, va = training_partition(f, (train_site,), 60, 20, SEED)
        pool = np.sort(np.concatenate([tr, va]))
        X, Xd = feature_matrix(f, pool, feats), feature_matrix(f, pool, feats, True)
        Xc = copy_matrices(copies, pool, feats)
        y = f["age"][pool].astype(float)
        versions = {"clean": X, "degraded": Xd, "contrast": Xc[0], "motion": Xc[1]}
        oof = {k: np.zeros(len(y)) for k in versions}
        for a, b in KFold(5, shuffle=True, random_state=SEED).split(X):
            mod = fit_regressor(est, X[a], y[a], Xd[a], [c[a] for c in Xc])
            for k, V in versions.items():
                oof[k][b] = mod.predict(V[b])
        model = fit_regressor(est, X, y, Xd, Xc)
        raw_a = model.predict(feature_matrix(f, test_rows, feats))
        pos = np.searchsorted(pool, va)
        yv, yt = f["age"][va].astype(float), f["age"][test_rows].astype(float)
        for cnn in cnns:
            wt = run / cnn / "age_cnn.safetensors"
            pb = {"clean": cnn_predictions(f, va, wt), "degraded": cnn_predictions(f, va, wt, degraded=True),
                  "contrast": cnn_predictions({"cnn": copies["contrast"]["cnn" + COPY_SUFFIX["contrast"]]}, va, wt),
                  "motion": cnn_predictions({"cnn": copies["motion"]["cnn" + COPY_SUFFIX["motion"]]}, va, wt)}
            raw = w * raw_a + (1 - w) * cnn_predictions(f, test_rows, wt)
            for label, kinds in (("clean (shipped)", ["clean"]), ("clean + degraded", ["clean", "degraded"]),
                                 ("clean + degraded + contrast + motion", ["clean", "degraded", "contrast", "motion"])):
                pv = np.concatenate([w * oof[k][pos] + (1 - w) * pb[k] for k in kinds])
                bias = AgeBiasCorrection().fit(pv, np.tile(yv, len(kinds)))
                s = _summary(bias(raw), yt)
                results.setdefault(label, []).append(f"{s['mae']:.2f}, {s['mean_gap']:+.2f}, {s['r_gap_age']:+.2f} "
                                                     f"(slope {bias.slope:.3f})")
    for label, r in results.items():
        print(label, "|", " | ".join(r), flush=True)


if __name__ == "__main__":
    main()
