"""Generalisation across sites, judged only on sites a model never saw.

``brainage evaluate-sites`` reads the feature cache (:mod:`BrainAgeLib.training.features`) and
the age models' training runs, and reports:

- **leave-one-site-out**: approach A, B and their ensemble trained on Cam-CAN, tested on IXI
  (``ixi120`` and ``ixi10``); and trained on IXI (``ixi120``), tested on Cam-CAN ``test``;
- **calibration to a new site**: each site held out in turn, the other site's models calibrated
  on ``k`` of its controls (offset only; age layer; features + age,
  :class:`~BrainAgeLib.calibration.SiteCalibration`) and tested on its other subjects, over
  repeated random draws of the controls;
- **site distance of the features**: how well a classifier tells Cam-CAN from IXI among
  age-matched people from approach A's features (cross-validated AUC; 0.5 = indistinguishable).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .training.age_model import (age_metrics, candidate_regressors, cnn_predictions, copy_matrices, feature_matrix,
                                 fit_regressor)
from .training.cnn import training_partition
from .training.features import scan_features


def _fit_a(f, idx, name: str, seed: int, degraded: bool = True, invariance: float = 0.0, copies=None):
    """Approach A (the regressor ``name``) fitted on the cache rows ``idx`` with out-of-fold
    bias correction, by the shipped recipe (degraded copies; ``invariance`` penalty with the
    acquisition ``copies``, kind -> cache); returns ``(model, bias, feats, out-of-fold raw ages of idx)``."""
    est, feats = candidate_regressors(seed, invariance)[name]
    X, Xd, y = feature_matrix(f, idx, feats), feature_matrix(f, idx, feats, True), f["age"][idx].astype(float)
    model, bias, oof = fit_a_matrices(est, X, y, Xd if degraded else None, copy_matrices(copies or {}, idx, feats), seed)
    return model, bias, feats, oof


def fit_a_matrices(est, X, y, X_deg=None, copies=(), seed: int = 20261123):
    """``est`` fitted on the design matrix ``X`` and ages ``y`` (years) with each row's degraded
    copy ``X_deg`` and acquisition ``copies`` (:func:`~.training.age_model.fit_regressor`), and its
    bias correction fitted on 5-fold shuffled out-of-fold ages; returns ``(model, bias, oof)``."""
    from sklearn.model_selection import KFold
    from .regression import AgeBiasCorrection

    def fit(rows):
        return fit_regressor(est, X[rows], y[rows], None if X_deg is None else X_deg[rows], [c[rows] for c in copies])
    oof = np.zeros_like(y)
    for a, b in KFold(5, shuffle=True, random_state=seed).split(X):
        oof[b] = fit(a).predict(X[b])
    return fit(np.arange(len(y))), AgeBiasCorrection().fit(oof, y), oof


def _summary(pred, age) -> dict:
    m = age_metrics(pred, age)
    return {"n": int(len(age)), "mae": round(m["mae"], 2), "mean_gap": round(float(np.mean(np.asarray(pred) - age)), 2),
            "r": round(m["r"], 3), "r_gap_age": round(m["r_gap_age"], 3)}


WEIGHT_SWEEP = tuple(round(0.05 * i, 2) for i in range(11))   # A's ensemble weights compared leave-one-site-out (0-0.5)


def site_cv_weight(by_weight: dict) -> float:
    """A's ensemble weight chosen by site-level cross-validation: the weight whose ensemble has the
    lowest MAE (years) on the unseen site, averaged over both directions of
    :func:`leave_one_site_out` (``sites_summary.json``'s ``leave_one_site_out_by_weight``: per
    direction, per weight, a summary with ``mae``). Ties go to the smaller weight. Validation
    subjects of the sites a model trained on reward what tells people apart there; this rewards
    the mix that holds on a scanner the models never saw."""
    directions = [d for d in by_weight.values() if d]
    if len(directions) < 2:
        raise ValueError("site-level cross-validation needs both directions of the leave-one-site-out "
                         f"sweep, got {len(directions)}")
    weights = sorted(set.intersection(*(set(d) for d in directions)), key=float)
    if not weights:
        raise ValueError("the leave-one-site-out directions share no weight")
    mean_mae = [float(np.mean([d[w]["mae"] for d in directions])) for w in weights]
    return float(weights[int(np.argmin(mean_mae))])


def leave_one_site_out(f, name: str, cnn_dirs: dict, weight_a: float, seed: int = 20261123,
                       recipe: dict | None = None, reread: dict | None = None) -> dict:
    """LOSO figures. ``cnn_dirs``: {"camcan": run folder of the Cam-CAN-only CNN, "ixi": of the
    IXI-only CNN} (with ``age_cnn.safetensors`` and ``cnn_config.json``); missing ones are skipped.
    B's and the ensemble's bias corrections are fitted on the training site's validation part.
    ``reread``: the features of the same cache rows as another ResUNet reads them (same keys);
    the unseen site's scans are then read from it, the models still trained on ``f``: what
    shipping that ResUNet with models trained on the old maps gives."""
    t = f if reread is None else reread
    from .regression import AgeBiasCorrection
    out = {}
    for train_site, test_rows in (("camcan", np.flatnonzero(f["site"] == "ixi")),
                                  ("ixi", np.flatnonzero(f["split"] == "test"))):
        tr, va = training_partition(f, (train_site,), 60, 20, seed)
        pool = np.sort(np.concatenate([tr, va]))
        model, bias, feats, oof = _fit_a(f, pool, name, seed, **(recipe or {}))
        pos = {int(j): k for k, j in enumerate(pool)}
        y = f["age"][test_rows].astype(float)
        raw_a = model.predict(feature_matrix(t, test_rows, feats))
        ages_a = bias(raw_a)
        res = {"A": _summary(ages_a, y), "_A_ages": ages_a}
        d = cnn_dirs.get(train_site)
        if d is not None and (Path(d) / "age_cnn.safetensors").exists():
            w = Path(d) / "age_cnn.safetensors"
            pb_val = cnn_predictions(f, va, w)
            yv = f["age"][va].astype(float)
            try:
                bias_b = AgeBiasCorrection().fit(pb_val, yv)
            except ValueError as e:          # a CNN that did not learn (near-constant output)
                res["B"] = {"error": str(e)}
                out[f"train {train_site} -> test {'ixi' if train_site == 'camcan' else 'camcan'}"] = res
                continue
            raw_b = cnn_predictions(t, test_rows, w)
            ages_b = bias_b(raw_b)
            res["B"], res["_B_ages"] = _summary(ages_b, y), ages_b
            pa_val = oof[[pos[int(j)] for j in va]]      # A's out-of-fold ages, as in training
            bias_e = AgeBiasCorrection().fit(weight_a * pa_val + (1 - weight_a) * pb_val, yv)
            res["ensemble"] = _summary(bias_e(weight_a * raw_a + (1 - weight_a) * raw_b), y)
            res["_ensemble_ages"] = bias_e(weight_a * raw_a + (1 - weight_a) * raw_b)
            sweep = {}
            for wa in WEIGHT_SWEEP:      # what A's weight would do on the unseen site
                be = AgeBiasCorrection().fit(wa * pa_val + (1 - wa) * pb_val, yv)
                sweep[f"{wa:.2f}"] = _summary(be(wa * raw_a + (1 - wa) * raw_b), y)
            res["_by_weight"] = sweep
        res["_test_rows"] = test_rows
        out[f"train {train_site} -> test {'ixi' if train_site == 'camcan' else 'camcan'}"] = res
    return out


CALIBRATION_SIDES = {   # held-out site -> (training site, its controls' split, its test rows' split)
    "ixi": ("camcan", "ixi120", None),          # controls from ixi120, tested on the rest + ixi10
    "camcan": ("ixi", "reg_train", "test"),     # controls from reg_train, tested on ``test``
}


def calibration_experiment(f, name: str, cnn_dir, weight_a: float, ks=(5, 10, 20, 40),
                           draws: int = 20, seed: int = 20261123, recipe: dict | None = None,
                           held_out: str = "ixi") -> list[dict]:
    """One site held out (``"ixi"`` or ``"camcan"``, :data:`CALIBRATION_SIDES`): A trained on the
    other site (and B from ``cnn_dir``, a CNN trained there) calibrated on ``k`` controls of the
    held-out site and tested on its other subjects, ``draws`` times per ``k``: IXI held out,
    controls from ``ixi120``, tested on the rest of ``ixi120`` and ``ixi10``; Cam-CAN held out,
    controls from ``reg_train``, tested on ``test``. Methods: none; offset (:class:`~BrainAgeLib.regression.SiteOffset`); age
    (offset + shrunk slope); features + age (ComBat-style
    :class:`~BrainAgeLib.calibration.SiteCalibration`). MAE in years."""
    from .calibration import FeatureReference, SiteCalibration
    from .regression import AgeBiasCorrection, SiteOffset
    if held_out not in CALIBRATION_SIDES:
        raise ValueError(f"held_out: expected one of {', '.join(CALIBRATION_SIDES)}, got {held_out!r}")
    train_site, control_split, test_split = CALIBRATION_SIDES[held_out]
    tr, va = training_partition(f, (train_site,), 60, 20, seed)
    pool = np.sort(np.concatenate([tr, va]))
    model, bias_a, feats, oof = _fit_a(f, pool, name, seed, **(recipe or {}))
    pos = {int(j): k for k, j in enumerate(pool)}
    reference = FeatureReference(cell=int(feats[1:])).fit(feature_matrix(f, pool, feats), f["age"][pool])
    site = np.flatnonzero(f["site"] == held_out)
    X_site = feature_matrix(f, site, feats)
    y_site = f["age"][site].astype(float)
    use_b = cnn_dir is not None and (Path(cnn_dir) / "age_cnn.safetensors").exists()
    if use_b:
        w = Path(cnn_dir) / "age_cnn.safetensors"
        yv = f["age"][va].astype(float)
        pb_val = cnn_predictions(f, va, w)
        pa_val = oof[[pos[int(j)] for j in va]]
        bias = AgeBiasCorrection().fit(weight_a * pa_val + (1 - weight_a) * pb_val, yv)
        raw_b = cnn_predictions(f, site, w)
    else:
        bias, raw_b = bias_a, None

    def ages(X):
        raw = model.predict(X)
        return bias(raw if raw_b is None else weight_a * raw + (1 - weight_a) * raw_b)
    base = ages(X_site)
    rng = np.random.default_rng(seed)
    pool_site = np.flatnonzero(f["split"][site] == control_split)
    tested = None if test_split is None else np.flatnonzero(f["split"][site] == test_split)
    rows = []
    for k in ks:
        res = {m: [] for m in ("none", "offset", "age", "features+age")}
        r_gap = {m: [] for m in res}
        for _ in range(draws):
            ctrl = rng.choice(pool_site, size=k, replace=False)
            rest = np.setdiff1d(np.arange(len(site)), ctrl) if tested is None else tested
            yc, yr = y_site[ctrl], y_site[rest]
            preds = {"none": base[rest],
                     "offset": np.array([SiteOffset().fit(base[ctrl], yc).offset_age(p) for p in base[rest]]),
                     "age": np.array([SiteCalibration().fit_ages(base[ctrl], yc).correct_age(p) for p in base[rest]])}
            cal = SiteCalibration().fit_features(X_site[ctrl], yc, reference)
            first = ages(cal.harmonize(X_site))
            harmonised = ages(cal.harmonize(X_site, first, reference))
            cal.fit_ages(harmonised[ctrl], yc)
            preds["features+age"] = np.array([cal.correct_age(p) for p in harmonised[rest]])
            for m, p in preds.items():
                res[m].append(np.mean(np.abs(p - yr)))
                r_gap[m].append(np.corrcoef(p - yr, yr)[0, 1])
        for m in res:
            rows.append({"held_out": held_out, "k": k, "method": m, "mae": round(float(np.mean(res[m])), 2),
                         "mae_sd": round(float(np.std(res[m])), 2),
                         "r_gap_age": round(float(np.mean(r_gap[m])), 3), "draws": draws,
                         "approach": "ensemble" if use_b else "A"})
    return rows


def site_distance(f, feats: str = "c6", seed: int = 20261123) -> dict:
    """How distinguishable the sites are among age-matched people: each ixi120 subject paired
    with the Cam-CAN reg_train subject nearest in age (without replacement); a cross-validated
    logistic regression on approach A's features tells the site (AUC, 0.5 = indistinguishable);
    and the standardised mean difference of the global CSF/GM/WM fractions (Cohen's d)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from .regression import VolumeFeatureTransform
    ixi = np.flatnonzero(f["split"] == "ixi120")
    cam = list(np.flatnonzero(f["split"] == "reg_train"))
    pairs = []
    for j in ixi[np.argsort(f["age"][ixi])]:
        k = min(cam, key=lambda c: abs(f["age"][c] - f["age"][j]))
        cam.remove(k)
        pairs.append(k)
    cam = np.array(pairs)
    idx = np.concatenate([cam, ixi])
    site = np.r_[np.zeros(len(cam)), np.ones(len(ixi))]
    clf = make_pipeline(VolumeFeatureTransform(), StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    auc = cross_val_score(clf, feature_matrix(f, idx, feats), site, cv=5, scoring="roc_auc").mean()
    g = f["global"]
    d = {}
    for i, t in enumerate(("csf", "gm", "wm")):
        a, b = g[cam, i].astype(float), g[ixi, i].astype(float)
        d[t] = round(float((b.mean() - a.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)), 2)
    return {"n_pairs": int(len(ixi)), "age_diff_mean": round(float(np.mean(f["age"][ixi] - f["age"][cam])), 2),
            "site_auc": round(float(auc), 3), "cohens_d_ixi_minus_camcan": d}


READ_KEYS = ("regional_c4", "regional_c6", "global", "cnn")   # what scan_features gives the age models


def reread_unseen(f: dict, cache_path, camcan_dir, resunet_path, log=print) -> dict:
    """The feature cache ``f`` with the rows that :func:`leave_one_site_out` tests on (every IXI
    head; Cam-CAN ``test``) read again by the ResUNet ``resunet_path`` from their model-space T1s
    (IXI: the cache's ``ixi_model_space.npz``; Cam-CAN: the images), the other rows as they are."""
    from .resunet import load_resunet_weights
    from .training.data import read_camcan_image
    net = load_resunet_weights(resunet_path)
    out = {k: (np.array(v, copy=True) if k in READ_KEYS else v) for k, v in f.items()}
    ixi = np.load(Path(cache_path).with_name("ixi_model_space.npz"))
    ixi_rows = {str(s): i for i, s in enumerate(ixi["subject_id"])}
    rows = np.flatnonzero((f["site"] == "ixi") | (f["split"] == "test"))
    for n, i in enumerate(rows):
        sid = str(f["subject_id"][i])
        if f["site"][i] == "ixi":
            feats = scan_features(net, ixi["image"][ixi_rows[sid]].astype(np.float32), True)
        else:
            feats = scan_features(net, read_camcan_image(camcan_dir, sid), False)
        for k in READ_KEYS:
            out[k][i] = feats[k]
        if (n + 1) % 50 == 0:
            log(f"  {n + 1}/{len(rows)} unseen-site scans read again")
    return out


def a_recipe(age_model: dict, f: dict, cache_path) -> dict:
    """How ``age_model`` (``age_model.json``, read) trained A, for :func:`leave_one_site_out`:
    its invariance weight and, when it has one, the cache's acquisition copies it used."""
    from .training.features import acquisition_copies, copies_path
    recipe = {"invariance": float(age_model["training"].get("invariance", 0.0))}
    if recipe["invariance"] > 0:         # A's invariance penalty uses the acquisition copies
        kinds = age_model["training"].get("invariance_copies", ["contrast"])
        for k in kinds:
            if not copies_path(cache_path, k).exists():
                raise FileNotFoundError(f"{copies_path(cache_path, k)}: no {k} copies; run brainage "
                                        "train-age-model first (it builds them)")
        recipe["copies"] = {k: acquisition_copies(None, f, cache_path, k) for k in kinds}
    return recipe


def evaluate_sites(cache_path, out_dir, age_model_dir, cnn_dirs: dict, log=print,
                   reread_resunet=None, camcan_dir=None) -> dict:
    """Run the three analyses above and write ``sites_summary.json`` and ``calibration.csv``.
    ``reread_resunet`` (with ``camcan_dir``): the unseen site's scans read by this ResUNet
    (:func:`reread_unseen`), the models trained on the cache as it is, for a new ResUNet shipped
    with age models trained on the old one's maps; the site distance stays the cache's."""
    import csv
    from .training.features import model_space_features
    if not Path(cache_path).exists():
        raise FileNotFoundError(f"{cache_path}: no feature cache; run brainage train-cnn first (it builds it)")
    f = model_space_features(None, cache_path)
    m = json.loads((Path(age_model_dir) / "age_model.json").read_text())
    name = m["volumes"]["selected"]
    w = m.get("ensemble", {}).get("weight_volumes", 0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"regressor": name, "weight_volumes": w}
    recipe = a_recipe(m, f, cache_path)
    if recipe["invariance"] > 0:
        summary["invariance"] = recipe["invariance"]
        summary["invariance_copies"] = list(recipe["copies"])
    log("site distance of the features (age-matched Cam-CAN vs ixi120)")
    summary["site_distance"] = site_distance(f)
    log(json.dumps(summary["site_distance"]))
    reread = None
    if reread_resunet is not None:
        log(f"the unseen site's scans read again by {reread_resunet}")
        reread = reread_unseen(f, cache_path, camcan_dir, reread_resunet, log=log)
        summary["reread_resunet"] = str(reread_resunet)
    loso = leave_one_site_out(f, name, cnn_dirs, w, recipe=recipe, reread=reread)
    summary["leave_one_site_out"] = {k: {a: v for a, v in r.items() if not a.startswith("_")}
                                     for k, r in loso.items()}
    summary["leave_one_site_out_by_weight"] = {k: r["_by_weight"] for k, r in loso.items() if "_by_weight" in r}
    if len(summary["leave_one_site_out_by_weight"]) == 2:
        summary["site_cv_weight"] = site_cv_weight(summary["leave_one_site_out_by_weight"])
        log(f"A's weight by site-level cross-validation: {summary['site_cv_weight']:.2f} "
            f"(the models' own: {w:.2f})")
    log(json.dumps(summary["leave_one_site_out"], indent=1))
    # each site held out in turn: the other site's models calibrated on its controls (IXI as
    # ``reread`` holds it; Cam-CAN, which ``reread`` does not re-read, from the cache)
    rows = calibration_experiment(f if reread is None else reread, name, cnn_dirs.get("camcan"), w, recipe=recipe)
    if cnn_dirs.get("ixi") is not None and reread is None:
        rows += calibration_experiment(f, name, cnn_dirs["ixi"], w, recipe=recipe, held_out="camcan")
    with open(out / "calibration.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    for r in rows:
        log(f"  {r['held_out']:>6} held out, k={r['k']:>2} {r['method']:<13} MAE {r['mae']:.2f} ± {r['mae_sd']:.2f}  r(gap, age) {r['r_gap_age']:+.2f}")
    summary["calibration"] = rows
    (out / "sites_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


ACQUISITIONS = {          # model-space simulations (TorchIO), one fixed draw each
    "thick slices 5 mm (z)": ("RandomAnisotropy", {"axes": (0,), "downsampling": (2.5, 2.5)}),
    "thick slices 5 mm (y)": ("RandomAnisotropy", {"axes": (1,), "downsampling": (2.5, 2.5)}),
    "thick slices 5 mm (x)": ("RandomAnisotropy", {"axes": (2,), "downsampling": (2.5, 2.5)}),
    "noise (SD 5 % of WM)": ("RandomNoise", {"std": (0.045, 0.045)}),
    "bias field": ("RandomBiasField", {"coefficients": (0.4, 0.4)}),
    "gamma 0.7": ("RandomGamma", {"log_gamma": (np.log(0.7), np.log(0.7))}),
    "gamma 1.4": ("RandomGamma", {"log_gamma": (np.log(1.4), np.log(1.4))}),
    "blur 2 mm": ("RandomBlur", {"std": (1.0, 1.0)}),
    "motion": ("RandomMotion", {"degrees": 4, "translation": 4, "num_transforms": 2}),
    "ghosting": ("RandomGhosting", {"num_ghosts": 4, "intensity": (0.5, 0.5)}),
}


def feature_invariance(data_dir, resunet_path, age_model_path, n: int = 8, seed: int = 20261123) -> list[dict]:
    """The same Cam-CAN ``test`` subjects under each simulated acquisition (:data:`ACQUISITIONS`,
    in model space): the change of the global CSF/GM/WM fractions (percentage points of TIV) and
    of approach A's age (years, with the age model ``age_model_path`` that goes with the
    ResUNet ``resunet_path``), mean |change| over ``n`` subjects."""
    import torch
    import torchio as tio
    from .regression import AgeBiasCorrection, VolumeAgeRegressor
    from .resunet import load_resunet_weights
    from .training.data import read_camcan_image, read_camcan_subjects
    net = load_resunet_weights(resunet_path)
    m = json.loads(Path(age_model_path).read_text())
    reg = VolumeAgeRegressor.from_dict(m["volumes"]["regressor"])
    bias = AgeBiasCorrection(**m["volumes"]["bias"])
    ids = [r["subject_id"] for r in read_camcan_subjects(data_dir) if r["split"] == "test"]
    ids = sorted(np.random.default_rng(seed).choice(ids, n, replace=False))

    def measure(arr):
        f = scan_features(net, arr, False)
        x = np.concatenate([f[f"regional_c{reg.cell}"], f["global"]])[None]
        return f["global"], float(bias(reg.predict(x))[0])
    rows = []
    clean = {}
    for sid in ids:
        arr = read_camcan_image(data_dir, sid)
        clean[sid] = (arr, *measure(arr))
    for name, (cls, kw) in ACQUISITIONS.items():
        torch.manual_seed(seed)
        d_frac, d_age = [], []
        for sid in ids:
            arr, g0, a0 = clean[sid]
            x = torch.from_numpy(arr)[None]
            out = getattr(tio, cls)(**kw)(tio.ScalarImage(tensor=x)).data[0].clamp(0, 2).numpy()
            out = out * (arr > 0)
            g, a = measure(out)
            d_frac.append(np.abs(g - g0) * 100)
            d_age.append(a - a0)
        d_frac = np.mean(d_frac, axis=0)
        rows.append({"acquisition": name, "csf_pp": round(float(d_frac[0]), 2), "gm_pp": round(float(d_frac[1]), 2),
                     "wm_pp": round(float(d_frac[2]), 2), "age_change_mean": round(float(np.mean(d_age)), 2),
                     "age_change_abs": round(float(np.mean(np.abs(d_age))), 2), "n": n})
    return rows


def site_distance_for(data_root, ixi_cache, resunet_path, seed: int = 20261123) -> dict:
    """:func:`site_distance` for a given ResUNet (weights ``resunet_path``), on ixi120 and their
    age-matched Cam-CAN ``reg_train`` partners only (one pass each, no degraded copies)."""
    from .resunet import load_resunet_weights
    from .training.data import read_camcan_image, read_camcan_subjects
    net = load_resunet_weights(resunet_path)
    ixi = dict(np.load(ixi_cache))
    sel = np.flatnonzero(ixi["set"] == "ixi120")
    cam = [r for r in read_camcan_subjects(Path(data_root) / "camcan") if r["split"] == "reg_train"]
    f = {k: [] for k in ("split", "age", "global", "regional_c6")}
    partners = []
    for j in sel[np.argsort(ixi["age"][sel])]:
        k = min((c for c in cam if c["subject_id"] not in partners), key=lambda c: abs(c["age"] - ixi["age"][j]))
        partners.append(k["subject_id"])
        for split, age, arr, reg in (("ixi120", ixi["age"][j], ixi["image"][j].astype(np.float32), True),
                                     ("reg_train", k["age"], read_camcan_image(Path(data_root) / "camcan", k["subject_id"]), False)):
            feats = scan_features(net, arr, reg)
            f["split"].append(split)
            f["age"].append(float(age))
            f["global"].append(feats["global"])
            f["regional_c6"].append(feats["regional_c6"])
    return site_distance({k: np.asarray(v) for k, v in f.items()}, seed=seed)
