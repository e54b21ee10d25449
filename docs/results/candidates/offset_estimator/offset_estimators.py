"""Experiment: which estimate of a site's offset from k controls serves best?

``SiteOffset`` keeps the median gap (robust, but for normal gaps its standard error is 1.25x the
mean's). Each site held out in turn as in ``brainage evaluate-sites``' calibration (IXI: the
Cam-CAN-trained ensemble, controls from ixi120, tested on the other IXI heads; Cam-CAN: the
IXI-trained ensemble with each of the three IXI-only CNNs of release 18, controls from reg_train,
tested on test), 200 draws of k controls; the other rows corrected by the controls' offset, as
median, mean, Hodges-Lehmann (median of the Walsh averages), Huber (c = 1.345 x MAD-scale),
20 % trimmed mean. MAE in years (mean over draws), and the offset's spread over draws.

    .venv/bin/python docs/results/candidates/offset_estimator/offset_estimators.py RUN_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats

SEED = 20261123


def hodges_lehmann(g):
    i, j = np.triu_indices(len(g))
    return float(np.median((g[i] + g[j]) / 2))


def huber(g, c=1.345, iters=50):
    mu = float(np.median(g))
    s = 1.4826 * float(np.median(np.abs(g - mu))) or 1.0
    for _ in range(iters):
        r = (g - mu) / s
        w = np.minimum(1.0, c / np.maximum(np.abs(r), 1e-12))
        mu = float((w * g).sum() / w.sum())
    return mu


ESTIMATORS = {"median": np.median, "mean": np.mean, "Hodges-Lehmann": hodges_lehmann, "Huber": huber,
              "trimmed 20 %": lambda g: stats.trim_mean(g, 0.2)}


def base_ages(f, name, recipe, w, cnn_dir, held_out):
    from BrainAgeLib.regression import AgeBiasCorrection
    from BrainAgeLib.site_evaluation import CALIBRATION_SIDES, _fit_a
    from BrainAgeLib.training.age_model import cnn_predictions, feature_matrix
    from BrainAgeLib.training.cnn import training_partition
    train_site, control_split, test_split = CALIBRATION_SIDES[held_out]
    tr, va = training_partition(f, (train_site,), 60, 20, SEED)
    pool = np.sort(np.concatenate([tr, va]))
    model, _, feats, oof = _fit_a(f, pool, name, SEED, **recipe)
    pos = {int(j): k for k, j in enumerate(pool)}
    site = np.flatnonzero(f["site"] == held_out)
    wt = Path(cnn_dir) / "age_cnn.safetensors"
    pb_val = cnn_predictions(f, va, wt)
    pa_val = oof[[pos[int(j)] for j in va]]
    bias = AgeBiasCorrection().fit(w * pa_val + (1 - w) * pb_val, f["age"][va].astype(float))
    base = bias(w * model.predict(feature_matrix(f, site, feats)) + (1 - w) * cnn_predictions(f, site, wt))
    ctrl_pool = np.flatnonzero(f["split"][site] == control_split)
    tested = None if test_split is None else np.flatnonzero(f["split"][site] == test_split)
    return base, f["age"][site].astype(float), ctrl_pool, tested


def main() -> None:
    import json
    from BrainAgeLib.training.features import acquisition_copies, model_space_features
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/release18")
    cache = run / "features" / "features.npz"
    f = model_space_features(None, cache)
    m = json.loads(Path("BrainAge/Resources/Models/age_model.json").read_text())
    name, w = m["volumes"]["selected"], m["ensemble"]["weight_volumes"]
    recipe = {"invariance": float(m["training"]["invariance"]),
              "copies": {k: acquisition_copies(None, f, cache, k) for k in m["training"]["invariance_copies"]}}
    sides = [("ixi", run / "cnn-camcan")] + [("camcan", run / d) for d in ("cnn-ixi", "cnn-ixi-seed2", "cnn-ixi-seed3")]
    print("held out (CNN) | k | none | " + " | ".join(ESTIMATORS) + " | offset SD over draws (median, mean, HL)")
    for held_out, cnn_dir in sides:
        base, y, ctrl_pool, tested = base_ages(f, name, recipe, w, cnn_dir, held_out)
        rng = np.random.default_rng(SEED)
        for k in (10, 20, 40):
            maes = {e: [] for e in ESTIMATORS}
            none, offs = [], {e: [] for e in ESTIMATORS}
            for _ in range(200):
                ctrl = rng.choice(ctrl_pool, size=k, replace=False)
                rest = np.setdiff1d(np.arange(len(y)), ctrl) if tested is None else tested
                g = base[ctrl] - y[ctrl]
                none.append(np.mean(np.abs(base[rest] - y[rest])))
                for e, fn in ESTIMATORS.items():
                    o = fn(g)
                    offs[e].append(o)
                    maes[e].append(np.mean(np.abs(base[rest] - o - y[rest])))
            print(f"{held_out} ({cnn_dir.name}) | {k} | {np.mean(none):.2f} | "
                  + " | ".join(f"{np.mean(v):.2f}" for v in maes.values())
                  + f" | {np.std(offs['median']):.2f}, {np.std(offs['mean']):.2f}, {np.std(offs['Hodges-Lehmann']):.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
