"""ComBat inside training (issue 11: "handle the site as a nuisance"): approach A fitted on
Cam-CAN plus IXI features harmonised to Cam-CAN, against the shipped recipe on the features as
they are. Reads the feature cache; writes nothing but its printout.

    .venv/bin/python scripts/combat_training_experiment.py [CNN_RUN_DIR]   # default runs/cnn-both

The harmonisation is the one ``brainage calibrate-site`` fits
(:meth:`~BrainAgeLib.calibration.SiteCalibration.fit_features`: per-feature location and scale
against Cam-CAN's age norms, empirical-Bayes shrinkage across features), fitted on the IXI
*training* subjects at their true ages and applied to their scans, degraded copies and
acquisition copies. Both variants use the shipped recipe otherwise (ridge on 12 mm regions,
alpha 3e-1, invariance 0.3 to the contrast and motion copies, degraded copies as extra rows).

Held-out IXI scans (the 20 ``ixi120`` validation subjects, ``ixi10``) are read two ways:
*unknown site* (features as they are: what a scan from a scanner nobody calibrated meets) and
*IXI calibrated* (the training harmonisation applied with the age predicted after the location
shift, two passes, as ``predict(..., site_calibration=...)`` does). The ensemble adds the
shipped CNN (B) with A's weight and the bias corrections refitted on the 80 validation subjects
(A's ages there out of fold), as ``train-age-model`` does.
"""
from __future__ import annotations

import sys

import numpy as np
from sklearn.model_selection import KFold

from BrainAgeLib.calibration import FeatureReference, SiteCalibration
from BrainAgeLib.regression import AgeBiasCorrection, best_ensemble_weight
from BrainAgeLib.training.age_model import (age_metrics, candidate_regressors, cnn_predictions, feature_matrix,
                                            fit_regressor)
from BrainAgeLib.training.cnn import training_partition
from BrainAgeLib.training.features import COPY_SUFFIX, acquisition_copies, model_space_features
from BrainAgeLib.site_evaluation import site_distance

CACHE = "runs/features/features.npz"
NAME = "ridge on regional 12 mm, sqrt, alpha 3e-1"
SEED = 20261123


def summary(pred, age) -> str:
    m = age_metrics(pred, age)
    return f"MAE {m['mae']:.2f}, gap {np.mean(pred - age):+.2f}, r(gap, age) {m['r_gap_age']:+.2f}"


def main(cnn_dir: str) -> None:
    f = model_space_features(None, CACHE)
    copies = {k: acquisition_copies(None, f, CACHE, k) for k in ("contrast", "motion")}
    tr, va = training_partition(f, ("camcan", "ixi"), 60, 20, SEED)
    pool = np.sort(np.concatenate([tr, va]))
    y = f["age"][pool].astype(float)
    ixi_tr = tr[f["site"][tr] == "ixi"]
    feats = "c6"
    cam_pool = pool[f["site"][pool] == "camcan"]
    reference = FeatureReference(cell=6).fit(feature_matrix(f, cam_pool, feats), f["age"][cam_pool])
    site = SiteCalibration().fit_features(feature_matrix(f, ixi_tr, feats), f["age"][ixi_tr], reference)
    print(f"IXI harmonisation from {len(ixi_tr)} training subjects: |shift| / reference SD median "
          f"{np.median(np.abs(site.shift) / np.maximum(reference.sd, 1e-9)):.2f}, scale median {np.median(site.scale):.2f}")

    def matrices(rows, harmonise: bool):
        """Design matrices of ``rows``: as acquired, degraded copies, contrast and motion copies;
        IXI rows harmonised at their true ages when ``harmonise``."""
        out = [feature_matrix(f, rows, feats), feature_matrix(f, rows, feats, degraded=True)]
        out += [feature_matrix(c, rows, feats, suffix=COPY_SUFFIX[k]) for k, c in copies.items()]
        if harmonise:
            ixi = f["site"][rows] == "ixi"
            for X in out:
                X[ixi] = site.harmonize(X[ixi], f["age"][rows][ixi], reference)
        return out

    b_val = cnn_predictions(f, va, f"{cnn_dir}/age_cnn.safetensors")
    y_val = f["age"][va].astype(float)
    held = {"Cam-CAN test": np.flatnonzero(f["split"] == "test"),
            "ixi120 validation": va[f["site"][va] == "ixi"],
            "ixi10": np.flatnonzero(f["split"] == "ixi10")}
    b_held = {k: cnn_predictions(f, rows, f"{cnn_dir}/age_cnn.safetensors") for k, rows in held.items()}
    est, _ = candidate_regressors(SEED, 0.3)[NAME]
    pos = {int(j): k for k, j in enumerate(pool)}
    va_pos = np.array([pos[int(j)] for j in va])
    for harmonise in (False, True):
        X, Xd, *Xc = matrices(pool, harmonise)
        oof = np.zeros_like(y)
        for a, b in KFold(5, shuffle=True, random_state=SEED).split(X):
            oof[b] = fit_regressor(est, X[a], y[a], Xd[a], [c[a] for c in Xc]).predict(X[b])
        model = fit_regressor(est, X, y, Xd, Xc)
        bias_a = AgeBiasCorrection().fit(oof, y)
        pa_val = oof[va_pos]
        w = best_ensemble_weight(pa_val, b_val, y_val)
        bias_e = AgeBiasCorrection().fit(w * pa_val + (1 - w) * b_val, y_val)
        print(f"\n== A on {'IXI harmonised to Cam-CAN (ComBat in training)' if harmonise else 'features as they are (shipped recipe)'}:"
              f" CV MAE {age_metrics(bias_a(oof), y)['mae']:.2f} (pool {len(pool)}), A's ensemble weight {w:.2f}")
        for label, rows in held.items():
            age = f["age"][rows].astype(float)
            Xh = feature_matrix(f, rows, feats)
            modes = [("as they are", Xh)]
            if harmonise and label != "Cam-CAN test":
                first = bias_a(model.predict(site.harmonize(Xh)))            # location shift alone
                modes.append(("IXI calibrated", site.harmonize(Xh, first, reference)))
            for mode, Xm in modes:
                pa = model.predict(Xm)
                pe = bias_e(w * pa + (1 - w) * b_held[label])
                print(f"  {label} ({len(rows)}), {mode}: A {summary(bias_a(pa), age)}; ensemble {summary(pe, age)}")
        if harmonise:
            g = dict(f, regional_c6=f["regional_c6"].astype(np.float64), **{"global": f["global"].astype(np.float64)})
            n_reg = g["regional_c6"].shape[1]
            for sp in ("ixi120", "ixi10"):
                rows = np.flatnonzero(f["split"] == sp)
                Xr = site.harmonize(feature_matrix(f, rows, feats), f["age"][rows], reference)
                g["regional_c6"][rows], g["global"][rows] = Xr[:, :n_reg], Xr[:, n_reg:]
            print("  site distance, age-matched ixi120 vs Cam-CAN reg_train, IXI harmonised at true ages "
                  "(the 100 training subjects among them fitted it):", site_distance(g))
        else:
            print("  site distance, age-matched ixi120 vs Cam-CAN reg_train:", site_distance(f))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/cnn-both")
