"""Approach A's invariance weight, swept: 5-fold CV on the two-site training pool (bias-corrected
MAE; mean |age change| from each validation subject to its contrast copy and to its degraded
copy), Cam-CAN ``test`` MAE, and leave-one-site-out (trained on one site's pool, tested on the
other site). Years.

    python scripts/invariance_sweep.py ALPHAS WEIGHTS [IXI_REPEATS]   # e.g. 1e-1,3e-1 0,0.1,0.3,1,10

``IXI_REPEATS`` (default 0): the IXI pairs counted that many extra times in the penalty.
Reads ``runs/features/features.npz`` and ``runs/features/contrast_copies.npz`` (built by
``brainage train-age-model --invariance W``).
"""
from __future__ import annotations

import sys

import numpy as np
from sklearn.model_selection import KFold

from BrainAgeLib.regression import AgeBiasCorrection, VolumeAgeRegressor
from BrainAgeLib.training.age_model import age_metrics, feature_matrix
from BrainAgeLib.training.cnn import training_partition

SEED = 20261123


def load() -> tuple[dict, dict]:
    z = np.load("runs/features/features.npz")
    f = {k: z[k] for k in ("subject_id", "site", "split", "age", "regional_c6", "global",
                            "regional_c6_deg", "global_deg")}
    g = dict(np.load("runs/features/contrast_copies.npz"))
    assert list(g["subject_id"]) == list(f["subject_id"]), "contrast copies do not match the cache"
    return f, g


def fit(f, g, rows, alpha: float, weight: float, ixi_repeats: int) -> VolumeAgeRegressor:
    X, Xd, Xg = feature_matrix(f, rows, "c6"), feature_matrix(f, rows, "c6", True), feature_matrix(g, rows, "c6", suffix="_gam")
    y = f["age"][rows].astype(float)
    ixi = f["site"][rows] == "ixi"
    pairs = [(X, Xd), (X, Xg)] + [(X[ixi], Xd[ixi]), (X[ixi], Xg[ixi])] * ixi_repeats
    return VolumeAgeRegressor(alpha=alpha, cell=6, invariance=weight).fit(
        np.concatenate([X, Xd]), np.concatenate([y, y]), pairs=pairs)


def cross_validate(f, g, sites, alpha, weight, ixi_repeats):
    """Out-of-fold raw ages of the pool (as acquired, contrast copy), its bias correction and
    the model fitted on the whole pool."""
    tr, va = training_partition(f, sites, 60, 20, SEED)
    pool = np.sort(np.concatenate([tr, va]))
    oof, oof_gam, oof_deg = (np.zeros(len(pool)) for _ in range(3))
    for a, b in KFold(5, shuffle=True, random_state=SEED).split(pool):
        m = fit(f, g, pool[a], alpha, weight, ixi_repeats)
        oof[b] = m.predict(feature_matrix(f, pool[b], "c6"))
        oof_gam[b] = m.predict(feature_matrix(g, pool[b], "c6", suffix="_gam"))
        oof_deg[b] = m.predict(feature_matrix(f, pool[b], "c6", True))
    bias = AgeBiasCorrection().fit(oof, f["age"][pool])
    return pool, oof, oof_gam, oof_deg, bias, fit(f, g, pool, alpha, weight, ixi_repeats)


def main(argv: list[str]) -> None:
    f, g = load()
    alphas = [float(a) for a in argv[0].split(",")]
    weights = [float(w) for w in argv[1].split(",")]
    ixi_repeats = int(argv[2]) if len(argv) > 2 else 0
    test = np.flatnonzero(f["split"] == "test")
    for alpha in alphas:
        for weight in weights:
            pool, oof, oof_gam, oof_deg, bias, m = cross_validate(f, g, ("camcan", "ixi"), alpha, weight, ixi_repeats)
            y = f["age"][pool]
            d_gam = np.abs(bias(oof_gam) - bias(oof))
            ixi = f["site"][pool] == "ixi"
            pt = bias(m.predict(feature_matrix(f, test, "c6")))
            line = (f"alpha {alpha} weight {weight}: CV MAE {np.abs(bias(oof) - y).mean():.2f} "
                    f"|change| contrast copy {d_gam.mean():.2f} (Cam-CAN {d_gam[~ixi].mean():.2f}, IXI "
                    f"{d_gam[ixi].mean():.2f}), degraded copy {np.abs(bias(oof_deg) - bias(oof)).mean():.2f}; "
                    f"test MAE {np.abs(pt - f['age'][test]).mean():.2f}")
            for site, rows in (("camcan", np.flatnonzero(f["site"] == "ixi")), ("ixi", test)):
                _, _, _, _, b, m1 = cross_validate(f, g, (site,), alpha, weight, ixi_repeats)
                pred = b(m1.predict(feature_matrix(f, rows, "c6")))
                met = age_metrics(pred, f["age"][rows])
                line += f" | {site} ->: MAE {met['mae']:.2f} gap {np.mean(pred - f['age'][rows]):+.2f} r {met['r_gap_age']:+.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
