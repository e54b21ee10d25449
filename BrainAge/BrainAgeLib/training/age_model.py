"""Approach A by cross-validation, bias correction and the ensemble (``brainage train-age-model``)."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from .cnn import CNNConfig, split_reg_train
from .features import REGIONAL_CELLS, model_space_features


def candidate_regressors(seed: int) -> dict:
    """The regressors compared by cross-validation for approach A:
    name -> (estimator, features), features "global" or "c<cell>" (regional + global)."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    from sklearn.svm import SVR
    from ..regression import VolumeAgeRegressor, VolumeFeatureTransform
    out = {
        "polynomial (deg 3) on global fractions [seed]":
            (make_pipeline(PolynomialFeatures(3), LinearRegression()), "global"),
        "ridge on global fractions": (VolumeAgeRegressor(alpha=1e-3, power=1.0), "global"),
        "gradient boosting on PCA(30) of regional 8 mm": (make_pipeline(
            VolumeFeatureTransform(), StandardScaler(), PCA(30, random_state=seed),
            HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed)), "c4"),
        "linear SVR on regional 8 mm": (make_pipeline(VolumeFeatureTransform(), StandardScaler(),
                                                      SVR(kernel="linear", C=1e-3, epsilon=1.0)), "c4"),
        "ridge on regional 8 mm, no transform, alpha 1e-2":
            (VolumeAgeRegressor(alpha=1e-2, power=1.0, cell=4), "c4"),
    }
    for cell in REGIONAL_CELLS:
        for alpha in ("1e-2", "3e-2", "1e-1"):
            out[f"ridge on regional {2 * cell} mm, sqrt, alpha {alpha}"] = (
                VolumeAgeRegressor(alpha=float(alpha), cell=cell), f"c{cell}")
    return out


def age_metrics(pred, age) -> dict:
    """MAE, RMSE (years), R², Pearson r, and r between the gap and age."""
    pred, age = np.asarray(pred, float), np.asarray(age, float)
    err = pred - age
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "r2": float(1 - (err ** 2).sum() / ((age - age.mean()) ** 2).sum()),
            "r": float(np.corrcoef(pred, age)[0, 1]), "r_gap_age": float(np.corrcoef(err, age)[0, 1])}


def fit_age_model(data_dir, out_dir, cache_path, cnn_weights=None, seed: int = 20261123,
                  blur_augment: bool = True, log=print) -> Path:
    """Select and fit approach A on reg_train (5-fold shuffled CV), calibrate it, and, when CNN
    weights are given, calibrate B and the ensemble on the CNN's validation subjects.
    ``blur_augment``: A also learns from each subject's blurred copy (same age).

    Writes ``age_model.json`` and ``regressor_comparison.csv`` into ``out_dir``.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold
    from ..regression import AgeBiasCorrection, best_ensemble_weight, conformal_halfwidth
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = model_space_features(data_dir, cache_path, log=log)
    tr = f["split"] == "reg_train"
    X_glob = f["global"][tr].astype(np.float64)
    X_cells = {f"c{c}": np.concatenate([f[f"regional_c{c}"][tr], X_glob], axis=1).astype(np.float64)
               for c in REGIONAL_CELLS}
    y = f["age"][tr].astype(np.float64)
    ids = list(f["subject_id"][tr])
    cv = KFold(5, shuffle=True, random_state=seed)
    # each subject's blurred, re-segmented copy (the feature cache's): with ``blur_augment`` the
    # regressors also learn from it (same age), and the CV reports how far blur moves the age
    X_glob_blur = f["global_blur"][tr].astype(np.float64)
    X_blur = {"global": X_glob_blur}
    X_blur.update({f"c{c}": np.concatenate([f[f"regional_c{c}_blur"][tr], X_glob_blur], axis=1).astype(np.float64)
                   for c in REGIONAL_CELLS})

    def fit(est, X, X_soft, y):
        """A fresh ``est`` fitted on ``X`` (and, with ``blur_augment``, the blurred copies too)."""
        if blur_augment:
            X, y = np.concatenate([X, X_soft]), np.concatenate([y, y])
        return clone(est).fit(X, y)

    rows, oof = [], {}
    for name, (est, feats) in candidate_regressors(seed).items():
        t0 = time.time()
        X = X_glob if feats == "global" else X_cells[feats]
        p, p_blur = np.zeros_like(y), np.zeros_like(y)
        for fit_idx, val_idx in cv.split(X):
            m_ = fit(est, X[fit_idx], X_blur[feats][fit_idx], y[fit_idx])
            p[val_idx] = m_.predict(X[val_idx])
            p_blur[val_idx] = m_.predict(X_blur[feats][val_idx])
        oof[name] = p
        m = age_metrics(p, y)
        rows.append({"regressor": name, "features": feats, **{k: round(v, 3) for k, v in m.items()},
                     "blur_shift": round(float(np.mean(p_blur - p)), 2), "seconds": round(time.time() - t0, 1)})
        log(f"  {name}: CV MAE {m['mae']:.2f} R2 {m['r2']:.3f}, blurred copy {np.mean(p_blur - p):+.2f} y "
            f"({time.time() - t0:.0f} s)")
    with open(out / "regressor_comparison.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ridge_rows = [r for r in rows if r["regressor"].startswith("ridge on regional")]
    best = min(ridge_rows, key=lambda r: r["mae"])   # the JSON-exportable family
    est, feats = candidate_regressors(seed)[best["regressor"]]
    log(f"approach A: {best['regressor']} (CV MAE {best['mae']})")
    final = fit(est, X_cells[feats], X_blur[feats], y)
    p_oof = oof[best["regressor"]]
    bias_a = AgeBiasCorrection().fit(p_oof, y)
    model = {"created": time.strftime("%Y-%m-%d"), "seed": seed,
             "training": {"data": "camcan reg_train", "n": int(tr.sum()), "blur_augment": blur_augment},
             "volumes": {"regressor": final.to_dict(), "selected": best["regressor"],
                         "cv": {k: best[k] for k in ("mae", "rmse", "r2", "r")},
                         "bias": bias_a.to_dict(),
                         "interval_halfwidth": conformal_halfwidth(bias_a(p_oof) - y)}}
    if cnn_weights is not None:
        import torch
        from safetensors.torch import load_file
        from ..cnn import AgeCNN, expected_age
        cfg = CNNConfig(**json.loads((Path(cnn_weights).parent / "cnn_config.json").read_text()))
        net = AgeCNN(widths=tuple(cfg.widths))
        net.load_state_dict(load_file(str(cnn_weights)))
        net.eval()
        _, val_ids = split_reg_train(ids, cfg.n_val, cfg.seed)
        index = {s: i for i, s in enumerate(ids)}
        va = np.array([index[s] for s in val_ids])
        xv = torch.from_numpy(f["cnn"][tr][va].astype(np.float32))
        with torch.no_grad():
            pb = expected_age(net(xv)).numpy().astype(np.float64)
        pa, yv = p_oof[va], y[va]
        bias_b = AgeBiasCorrection().fit(pb, yv)
        wgt = best_ensemble_weight(pa, pb, yv)
        pe = wgt * pa + (1 - wgt) * pb
        bias_e = AgeBiasCorrection().fit(pe, yv)
        model["cnn"] = {"bias": bias_b.to_dict(), "validation_n": len(va),
                        "validation": age_metrics(pb, yv),
                        "interval_halfwidth": conformal_halfwidth(bias_b(pb) - yv)}
        model["ensemble"] = {"weight_volumes": wgt, "bias": bias_e.to_dict(), "validation_n": len(va),
                             "validation": age_metrics(pe, yv),
                             "interval_halfwidth": conformal_halfwidth(bias_e(pe) - yv)}
        log(f"ensemble weight of A {wgt:.2f}; validation MAE A {age_metrics(pa, yv)['mae']:.2f} "
            f"B {age_metrics(pb, yv)['mae']:.2f} ensemble {age_metrics(pe, yv)['mae']:.2f}")
    path = out / "age_model.json"
    path.write_text(json.dumps(model))
    return path


