"""Approach A by cross-validation, bias correction and the ensemble (``brainage train-age-model``)."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from ..qc import disagreement_limit
from .cnn import CNNConfig, training_partition
from .features import REGIONAL_CELLS, model_space_features


RIDGE_ALPHAS = ("1e-2", "3e-2", "1e-1", "3e-1", "1e0", "3e0", "1e1")   # the regional ridges' penalties
SELECTIONS = ("cv", "cv+sites")     # approach A's selection rules (fit_age_model)


def candidate_regressors(seed: int, invariance: float = 0.0) -> dict:
    """The regressors compared by cross-validation for approach A:
    name -> (estimator, features), features "global" or "c<cell>" (regional + global).
    ``invariance``: the regional ridges' penalty on paired scans (:class:`~BrainAgeLib.regression.VolumeAgeRegressor`)."""
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
        for alpha in RIDGE_ALPHAS:
            out[f"ridge on regional {2 * cell} mm, sqrt, alpha {alpha}"] = (
                VolumeAgeRegressor(alpha=float(alpha), cell=cell, invariance=invariance), f"c{cell}")
    return out


def select_regressor(rows: list[dict], rule: str = "cv") -> dict:
    """The row of ``rows`` (``regressor_comparison.csv``) that approach A ships: among the
    regional ridges (the JSON-exportable family), the lowest CV ``mae`` (``"cv"``), or the lowest
    mean of ``mae`` and ``site_transfer_mae`` (``"cv+sites"``). Years."""
    if rule not in SELECTIONS:
        raise ValueError(f"selection: expected one of {', '.join(SELECTIONS)}, got {rule!r}")
    ridges = [r for r in rows if r["regressor"].startswith("ridge on regional")]
    if not ridges:
        raise ValueError("no regional ridge among the candidates")
    if rule == "cv":
        return min(ridges, key=lambda r: r["mae"])
    return min(ridges, key=lambda r: 0.5 * (r["mae"] + r["site_transfer_mae"]))


def age_metrics(pred, age) -> dict:
    """MAE, RMSE (years), R², Pearson r, and r between the gap and age."""
    pred, age = np.asarray(pred, float), np.asarray(age, float)
    err = pred - age
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "r2": float(1 - (err ** 2).sum() / ((age - age.mean()) ** 2).sum()),
            "r": float(np.corrcoef(pred, age)[0, 1]), "r_gap_age": float(np.corrcoef(err, age)[0, 1])}


def feature_matrix(f: dict, idx, feats: str, degraded: bool = False, suffix: str | None = None) -> np.ndarray:
    """Approach A's design matrix for the cache rows ``idx``: ``"global"`` fractions, or
    ``"c<cell>"`` regional fractions followed by the global ones (float64). ``degraded``: of
    the degraded copies; ``suffix``: of the copies whose keys end so (``"_gam"``: contrast copies)."""
    sfx = suffix if suffix is not None else ("_deg" if degraded else "")
    g = f["global" + sfx][idx].astype(np.float64)
    if feats == "global":
        return g
    return np.concatenate([f[f"regional_{feats}{sfx}"][idx].astype(np.float64), g], axis=1)


MODEL_SHAPE = (94, 116, 98)   # model space as a numpy array (z, y, x), 2 mm voxels


def coarse_cells(f: dict, idx, shape=MODEL_SHAPE) -> np.ndarray:
    """24 mm regional fractions (:data:`~BrainAgeLib.qc.OOD_CELL`) of the cache rows ``idx``,
    summed from the cached 12 mm cells (the same numbers as ``regional_fractions(prob, 12)``)."""
    g6 = [s // 6 for s in shape]
    g12 = [s // 12 for s in shape]
    c6 = f["regional_c6"][idx].astype(np.float64).reshape(len(idx), 3, *g6)
    c6 = c6[:, :, :2 * g12[0], :2 * g12[1], :2 * g12[2]]
    c6 = c6.reshape(len(idx), 3, g12[0], 2, g12[1], 2, g12[2], 2)
    return c6.sum(axis=(3, 5, 7)).reshape(len(idx), -1)


def load_run_cnn(cnn_weights):
    """The CNN of a ``brainage train-cnn`` run (eval mode, CPU): its weights, and the widths from
    the ``cnn_config.json`` beside them."""
    from safetensors.torch import load_file
    from ..cnn import AgeCNN
    cfg = json.loads((Path(cnn_weights).parent / "cnn_config.json").read_text())
    net = AgeCNN(widths=tuple(cfg["widths"]))
    net.load_state_dict(load_file(str(cnn_weights)))
    return net.eval()


def cnn_predictions(f: dict, idx, cnn_weights, degraded: bool = False, mirror: bool = True) -> np.ndarray:
    """Raw (uncorrected) ages of approach B for the cache rows ``idx``, each the mean over the
    scan and its left-right mirror unless ``mirror`` is False (:func:`~BrainAgeLib.cnn.predict_age`)."""
    import torch
    from ..cnn import predict_age
    net = load_run_cnn(cnn_weights)
    key = "cnn_deg" if degraded else "cnn"
    out = []
    with torch.no_grad():
        for i in range(0, len(idx), 32):
            out.append(predict_age(net, torch.from_numpy(f[key][idx[i:i + 32]].astype(np.float32)), mirror))
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def fit_regressor(est, X, y, X_deg=None, copies=()):
    """A fresh ``est`` fitted on ``X`` and ages ``y`` (years); with ``X_deg`` (each subject's
    degraded copy) those rows too, at the same age. Regressors with an invariance penalty
    (:class:`~BrainAgeLib.regression.VolumeAgeRegressor`) also get the pairs (``X``, ``X_deg``)
    and (``X``, each design matrix of ``copies``, the acquisition copies)."""
    from sklearn.base import clone
    from ..regression import VolumeAgeRegressor
    m = clone(est)
    Xa, ya = (np.concatenate([X, X_deg]), np.concatenate([y, y])) if X_deg is not None else (X, y)
    if isinstance(m, VolumeAgeRegressor) and m.invariance > 0:
        return m.fit(Xa, ya, pairs=[(X, c) for c in (X_deg, *copies) if c is not None])
    return m.fit(Xa, ya)


def copy_matrices(copies: dict, idx, feats: str) -> list[np.ndarray]:
    """Approach A's design matrices (:func:`feature_matrix`) of the rows ``idx`` of each
    acquisition copy in ``copies`` (kind -> :func:`~.features.acquisition_copies`)."""
    from .features import COPY_SUFFIX
    return [feature_matrix(c, idx, feats, suffix=COPY_SUFFIX[k]) for k, c in copies.items()]


def fit_age_model(data_dir, out_dir, cache_path, cnn_weights=None, seed: int = 20261123,
                  degraded_augment: bool = True, sites=("camcan", "ixi"), invariance: float = 0.0,
                  copies=("contrast",), selection: str = "cv", ensemble_weight: float | None = None,
                  weight_rule: str = "validation", log=print) -> Path:
    """Select and fit approach A on the training subjects of ``sites`` (Cam-CAN ``reg_train``,
    ``ixi120``; 5-fold shuffled CV), calibrate it, and, when CNN weights are given, calibrate B
    and the ensemble on the CNN's validation subjects (:func:`~.cnn.training_partition`).
    ``degraded_augment``: A also learns from each subject's degraded copy (same age).
    ``invariance`` > 0: A's ridges are also penalised for the age difference between each subject
    and its degraded copy and its acquisition ``copies`` (kinds of :func:`~.features.acquisition_copies`,
    built when missing).
    ``selection``: the ridge with the lowest ``"cv"`` MAE, or (``"cv+sites"``, with two sites)
    the lowest mean of the CV MAE and the site-transfer MAE: each site's training subjects
    predicted by the regressor fitted on the other site's alone (training subjects only; never
    ``test`` or ``ixi10``). Pooled CV rewards what tells people apart within the sites it mixes;
    the transfer rewards what holds on a scanner the fit never saw.
    ``ensemble_weight``: A's weight in the ensemble (0-1), chosen elsewhere and named by
    ``weight_rule`` (e.g. site-level cross-validation,
    :func:`~BrainAgeLib.site_evaluation.site_cv_weight`); None: the weight with the lowest
    validation MAE. The ensemble's bias correction and interval are fitted on validation either way.

    Writes ``age_model.json``, ``regressor_comparison.csv`` and ``normative_table.csv`` (every
    training subject's out-of-sample age and tissue fractions, and the Cam-CAN ``test`` subjects')
    into ``out_dir``.
    """
    from sklearn.model_selection import KFold
    from ..regression import AgeBiasCorrection, best_ensemble_weight, conformal_halfwidth
    if ensemble_weight is not None and not 0.0 <= float(ensemble_weight) <= 1.0:
        raise ValueError(f"ensemble weight of A must lie in [0, 1], got {ensemble_weight}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = model_space_features(data_dir, cache_path, log=log, ixi_root=Path(data_dir).parent)
    cnn_cfg = (CNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in
                            json.loads((Path(cnn_weights).parent / "cnn_config.json").read_text()).items()})
               if cnn_weights is not None else CNNConfig(sites=tuple(sites)))
    tr_cnn, va_cnn = training_partition(f, sites, cnn_cfg.n_val, cnn_cfg.n_val_ixi, cnn_cfg.split_seed)
    pool = np.sort(np.concatenate([tr_cnn, va_cnn]))
    y = f["age"][pool].astype(np.float64)
    cv = KFold(5, shuffle=True, random_state=seed)
    g = {}
    if invariance > 0:
        from .features import acquisition_copies
        g = {k: acquisition_copies(data_dir, f, cache_path, k, log=log) for k in copies}

    def design(feats):
        """The pool's design matrices: as acquired, degraded copies, acquisition copies (a list)."""
        return (feature_matrix(f, pool, feats), feature_matrix(f, pool, feats, degraded=True),
                copy_matrices(g, pool, feats))

    def fit(est, X, X_deg, X_cp, rows):
        """:func:`fit_regressor` on the pool's ``rows``, with the copies this fit uses."""
        return fit_regressor(est, X[rows], y[rows], X_deg[rows] if degraded_augment else None,
                             [c[rows] for c in X_cp])

    if selection not in SELECTIONS:
        raise ValueError(f"selection: expected one of {', '.join(SELECTIONS)}, got {selection!r}")
    site_of = f["site"][pool]
    two_sites = len(set(site_of)) == 2
    rows, oof = [], {}
    for name, (est, feats) in candidate_regressors(seed, invariance).items():
        t0 = time.time()
        X, X_deg, X_cp = design(feats)
        p, p_deg = np.zeros_like(y), np.zeros_like(y)
        p_cp = [np.zeros_like(y) for _ in X_cp]
        for fit_idx, val_idx in cv.split(X):
            m_ = fit(est, X, X_deg, X_cp, fit_idx)
            p[val_idx] = m_.predict(X[val_idx])
            p_deg[val_idx] = m_.predict(X_deg[val_idx])
            for pc, c in zip(p_cp, X_cp):
                pc[val_idx] = m_.predict(c[val_idx])
        oof[name] = p
        transfer = {}
        if two_sites:       # each site predicted by the fit on the other site alone (raw ages)
            for src in sorted(set(site_of)):
                fit_rows, val_rows = np.flatnonzero(site_of == src), np.flatnonzero(site_of != src)
                pt = fit(est, X, X_deg, X_cp, fit_rows).predict(X[val_rows])
                transfer[f"transfer_from_{src}_mae"] = round(float(np.abs(pt - y[val_rows]).mean()), 3)
            transfer["site_transfer_mae"] = round(float(np.mean(list(transfer.values()))), 3)
        m = age_metrics(p, y)
        change = {f"{k}_abs_change": round(float(np.mean(np.abs(pc - p))), 2) for k, pc in zip(g, p_cp)}
        rows.append({"regressor": name, "features": feats, **{k: round(v, 3) for k, v in m.items()},
                     "degraded_shift": round(float(np.mean(p_deg - p)), 2),
                     "degraded_abs_change": round(float(np.mean(np.abs(p_deg - p))), 2),
                     **change, **transfer, "seconds": round(time.time() - t0, 1)})
        log(f"  {name}: CV MAE {m['mae']:.2f} R2 {m['r2']:.3f}, degraded copy {np.mean(p_deg - p):+.2f} y "
            f"(|change| {np.mean(np.abs(p_deg - p)):.2f}"
            + "".join(f"; {k.replace('_abs_change', '')} copy |change| {v:.2f}" for k, v in change.items())
            + (f"; site transfer MAE {transfer['site_transfer_mae']:.2f}" if transfer else "")
            + f"; {time.time() - t0:.0f} s)")
    with open(out / "regressor_comparison.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rule = selection if two_sites else "cv"
    best = select_regressor(rows, rule)
    est, feats = candidate_regressors(seed, invariance)[best["regressor"]]
    log(f"approach A: {best['regressor']} (CV MAE {best['mae']}"
        + (f", site transfer MAE {best['site_transfer_mae']}" if "site_transfer_mae" in best else "")
        + f"; selected by {rule})")
    final = fit(est, *design(feats), np.arange(len(pool)))
    p_oof = oof[best["regressor"]]
    bias_a = AgeBiasCorrection().fit(p_oof, y)
    n_site = {s: int((f["site"][pool] == s).sum()) for s in sites}
    model = {"created": time.strftime("%Y-%m-%d"), "seed": seed,
             "training": {"data": " + ".join(f"{s} ({n})" for s, n in n_site.items()),
                          "sites": list(sites), "n": int(len(pool)), "n_per_site": n_site,
                          "age_range": [float(y.min()), float(y.max())],
                          "degraded_augment": degraded_augment, "invariance": invariance,
                          "invariance_copies": list(g)},
             "volumes": {"regressor": final.to_dict(), "selected": best["regressor"],
                         "cv": {k: best[k] for k in ("mae", "rmse", "r2", "r")}, "selection": rule,
                         **({"site_transfer_mae": best["site_transfer_mae"]} if "site_transfer_mae" in best else {}),
                         "bias": bias_a.to_dict(),
                         "interval_halfwidth": conformal_halfwidth(bias_a(p_oof) - y)}}
    pos = {int(j): k for k, j in enumerate(pool)}
    va = np.array([pos[int(j)] for j in va_cnn])
    oos = bias_a(p_oof)                  # out-of-sample corrected ages of every training subject
    used = np.array(["volumes"] * len(pool), dtype=object)
    test = np.flatnonzero(f["split"] == "test")
    test_ages = bias_a(final.predict(feature_matrix(f, test, feats)))
    if cnn_weights is not None:
        pb = cnn_predictions(f, va_cnn, cnn_weights)
        pa, yv = p_oof[va], y[va]
        bias_b = AgeBiasCorrection().fit(pb, yv)
        wgt_val = best_ensemble_weight(pa, pb, yv)
        if ensemble_weight is None:
            wgt, weight_rule = wgt_val, "validation"
        else:
            wgt = float(ensemble_weight)
        pe = wgt * pa + (1 - wgt) * pb
        bias_e = AgeBiasCorrection().fit(pe, yv)
        model["cnn"] = {"bias": bias_b.to_dict(), "mirror": True, "validation_n": len(va),
                        "validation": age_metrics(pb, yv),
                        "interval_halfwidth": conformal_halfwidth(bias_b(pb) - yv)}
        model["ensemble"] = {"weight_volumes": wgt, "weight_rule": weight_rule,
                             "weight_by_validation": wgt_val, "bias": bias_e.to_dict(), "validation_n": len(va),
                             "validation": age_metrics(pe, yv),
                             "interval_halfwidth": conformal_halfwidth(bias_e(pe) - yv)}
        # disagreement between A and B on healthy validation subjects (QC reference)
        gap_ab = bias_a(pa) - bias_b(pb)
        model["qc"] = {"ab_disagreement_limit": disagreement_limit(gap_ab),
                       "ab_disagreement_p99": float(np.percentile(np.abs(gap_ab), 99)),
                       "ab_disagreement_max": float(np.abs(gap_ab).max())}
        oos[va] = bias_e(pe)
        used[va] = "ensemble"
        pt = wgt * final.predict(feature_matrix(f, test, feats)) + (1 - wgt) * cnn_predictions(f, test, cnn_weights)
        test_ages = bias_e(pt)
        log(f"ensemble weight of A {wgt:.2f} ({weight_rule}; validation's choice {wgt_val:.2f}); validation MAE A {age_metrics(pa, yv)['mae']:.2f} "
            f"B {age_metrics(pb, yv)['mae']:.2f} ensemble {age_metrics(pe, yv)['mae']:.2f}")
    # references for calibration and QC: per-feature age norms, out-of-distribution score, ranges
    from ..calibration import FeatureReference
    from ..qc import OutOfDistribution
    cell = int(feats[1:])
    X_pool = feature_matrix(f, pool, feats)
    reference = {"reference": FeatureReference(cell=cell).fit(X_pool, y).to_dict(),
                 "ood": OutOfDistribution().fit(coarse_cells(f, pool), seed=seed).to_dict()}
    (out / "feature_reference.json").write_text(json.dumps(reference))
    frac = f["global"][pool]
    model.setdefault("qc", {})
    model["qc"]["age_range"] = [float(y.min()), float(y.max())]
    model["qc"]["fraction_percentiles"] = {
        t: [float(np.percentile(frac[:, i], q)) for q in (0.1, 1, 99, 99.9)]
        for i, t in enumerate(("csf", "gm", "wm"))}
    log(f"tissue fractions (0.1/1/99/99.9th percentiles): {model['qc']['fraction_percentiles']}")
    path = out / "age_model.json"
    path.write_text(json.dumps(model))
    write_normative_table(out / "normative_table.csv", f, pool, oos, used, test, test_ages)
    return path


def write_normative_table(path, f: dict, pool, predicted, predicted_by, test, test_predicted) -> None:
    """The healthy cohort as the normative model (``brainage train-normative``) reads it: one row
    per subject with its out-of-sample bias-corrected age and global tissue fractions of TIV."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "site", "sex", "age", "split", "predicted_age", "predicted_by",
                    "csf_frac", "gm_frac", "wm_frac"])
        for rows, split, pred, by in ((pool, "train", predicted, predicted_by),
                                      (test, "test", test_predicted, ["ensemble"] * len(test))):
            for j, p, b in zip(rows, pred, by):
                g = f["global"][j]
                w.writerow([f["subject_id"][j], f["site"][j], f["sex"][j], f"{f['age'][j]:.2f}", split,
                            f"{p:.3f}", b, f"{g[0]:.5f}", f"{g[1]:.5f}", f"{g[2]:.5f}"])
