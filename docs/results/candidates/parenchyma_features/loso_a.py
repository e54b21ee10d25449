"""Experiment: does approach A transfer between sites when it reads brain tissue (GM + WM) and
CSF per region instead of GM and WM apart?

The GM/WM boundary is what scanner contrast moves most (release 18's cache: Cohen's d of
age-matched WM fractions 0.86 between the sites, CSF -0.14), while atrophy shows as tissue
turning into CSF. Each variant is fitted by the shipped recipe (12 mm cells, sqrt, degraded
copies, invariance 0.3 with contrast and motion copies; ``site_evaluation._fit_a``'s steps) on
one site and tested on the other, as ``scripts/regressor_loso.py``. Years.

    .venv/bin/python docs/results/candidates/parenchyma_features/loso_a.py [CACHE]
"""
from __future__ import annotations

import sys

import numpy as np

CACHE = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else "runs/features/features.npz"
SEED = 20261123


def variant(X: np.ndarray, kind: str, n_cells: int) -> np.ndarray:
    """Regional (CSF, GM, WM) x cells then global (CSF, GM, WM) -> the variant's columns."""
    r = X[:, :3 * n_cells].reshape(len(X), 3, n_cells)
    g = X[:, 3 * n_cells:]
    csf, gm, wm = r[:, 0], r[:, 1], r[:, 2]
    if kind == "tissues":                       # shipped: CSF, GM, WM per cell + globals
        return X
    if kind == "parenchyma":                    # CSF, GM + WM per cell; global CSF, GM + WM
        return np.concatenate([csf, gm + wm, g[:, :1], g[:, 1:2] + g[:, 2:3]], axis=1)
    if kind == "parenchyma+global":             # ... plus the global GM and WM fractions
        return np.concatenate([csf, gm + wm, g], axis=1)
    if kind.startswith("z>="):                  # cells from the ``k``-th 12 mm slab up (LPS: z up = superior)
        k = int(kind.split(">=")[1].split()[0])
        z = np.arange(n_cells) // (19 * 16)
        keep = np.flatnonzero(z >= k)
        return np.concatenate([r[:, :, keep].reshape(len(X), -1), g], axis=1)
    if kind == "no cerebellum box":             # without the inferior posterior cells (z < 5, y >= 10)
        c = np.arange(n_cells)
        keep = np.flatnonzero(~((c // (19 * 16) < 5) & ((c // 16) % 19 >= 10)))
        return np.concatenate([r[:, :, keep].reshape(len(X), -1), g], axis=1)
    if kind in ("24 mm cells", "36 mm cells"):   # cells of 2 or 3 x 12 mm per axis (tissue, z, y, x)
        m = 2 if kind.startswith("24") else 3
        c = r.reshape(len(X), 3, 15, 19, 16)[:, :, :15 - 15 % m, :19 - 19 % m, :16 - 16 % m]
        a, b, d = (s // m for s in c.shape[2:])
        c = c.reshape(len(X), 3, a, m, b, m, d, m).sum(axis=(3, 5, 7))
        return np.concatenate([c.reshape(len(X), -1), g], axis=1)
    if kind == "csf":                           # CSF per cell only
        return np.concatenate([csf, g[:, :1]], axis=1)
    raise ValueError(kind)


def main() -> None:
    from BrainAgeLib.regression import VolumeAgeRegressor
    from BrainAgeLib.site_evaluation import _summary, fit_a_matrices
    from BrainAgeLib.training.age_model import copy_matrices, feature_matrix
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.features import acquisition_copies, model_space_features
    f = model_space_features(None, CACHE)
    copies = {k: acquisition_copies(None, f, CACHE, k) for k in ("contrast", "motion")}
    feats = "c6"
    n_cells = (f[f"regional_{feats}"].shape[1]) // 3
    print(f"cache {CACHE}; {n_cells} cells of 12 mm")
    print("variant, alpha | Cam-CAN -> IXI: MAE, gap, r(gap,age) | IXI -> Cam-CAN: MAE, gap, r(gap,age)")
    kinds = sys.argv[2].split(",") if len(sys.argv) > 2 else ["tissues", "parenchyma", "parenchyma+global", "csf"]
    for kind in kinds:
        for alpha in (0.1, 0.3, 1.0):
            line = f"{kind}, alpha {alpha}"
            for site, rows in (("camcan", np.flatnonzero(f["site"] == "ixi")),
                               ("ixi", np.flatnonzero(f["split"] == "test"))):
                tr, va = training_partition(f, (site,), 60, 20, SEED)
                idx = np.sort(np.concatenate([tr, va]))
                tf = lambda M: variant(M, kind, n_cells)  # noqa: E731
                X, Xd = tf(feature_matrix(f, idx, feats)), tf(feature_matrix(f, idx, feats, True))
                Xc = [tf(c) for c in copy_matrices(copies, idx, feats)]
                y = f["age"][idx].astype(float)
                model, bias, _ = fit_a_matrices(VolumeAgeRegressor(alpha=alpha, cell=6, invariance=0.3),
                                                X, y, Xd, Xc, SEED)
                pred = bias(model.predict(tf(feature_matrix(f, rows, feats))))
                s = _summary(pred, f["age"][rows].astype(float))
                line += f" | {s['mae']:.2f}, {s['mean_gap']:+.2f}, {s['r_gap_age']:+.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
