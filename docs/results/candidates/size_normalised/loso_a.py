"""Experiment: is approach A's site effect the brains' size and shape in model space?

Cam-CAN's images came affinely aligned (another pipeline); IXI heads are registered rigidly by
ours, as every user's scan is. In release 18's cache the tissue of Cam-CAN brains spreads 2-5 %
further from its centroid than IXI's (RMS extent, z/y/x), and A's ridge trained on IXI reads
Cam-CAN 8 years young mostly from the inferior 12 mm slabs. Here the ResUNet's maps (the cache's
4 mm CNN input channels, for the scans and their degraded, contrast and motion copies) are
scaled about their centroid to the reference extent before A's 12 mm regional fractions are
taken: ``none`` (as they are), ``iso`` (one scale factor), ``axes`` (one per axis), each
optionally also moved to the reference centroid (``+shift``). Reference: mean of the training
site's subjects. A is fitted by the shipped recipe (sqrt, alpha 0.3, degraded copies,
invariance 0.3 with contrast and motion copies) on one site and tested on the other. Years.

    .venv/bin/python docs/results/candidates/size_normalised/loso_a.py [CACHE_DIR]
"""
from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage

D = sys.argv[1] if len(sys.argv) > 1 else "runs/features"
SEED = 20261123
CELL = 3           # 4 mm voxels per 12 mm cell


def moments(m: np.ndarray):
    """Centroid and RMS extent per axis (voxels) of tissue maps (3, z, y, x)."""
    w = m.sum(0)
    tot = w.sum()
    grids = np.indices(w.shape)
    c = np.array([(g * w).sum() / tot for g in grids])
    s = np.array([np.sqrt((((g - ci) ** 2) * w).sum() / tot) for g, ci in zip(grids, c)])
    return c, s


def normalise(m: np.ndarray, c, s, ref_c, ref_s, mode: str) -> np.ndarray:
    """``m`` (3, z, y, x) scaled about its centroid ``c`` to extent ``ref_s`` (``mode``)."""
    if mode.startswith("none"):
        return m
    k = ref_s / s if mode.startswith("axes") else np.full(3, np.exp(np.mean(np.log(ref_s / s))))
    target_c = ref_c if mode.endswith("+shift") else c
    # output voxel o samples input at c + (o - target_c) / k
    matrix = 1.0 / k
    offset = c - target_c / k
    out = np.stack([ndimage.affine_transform(ch, matrix, offset, order=1, mode="constant") for ch in m])
    return out


def features(m: np.ndarray) -> np.ndarray:
    z, y, x = (n - n % CELL for n in m.shape[1:])
    t = m[:, :z, :y, :x].reshape(3, z // CELL, CELL, y // CELL, CELL, x // CELL, CELL).sum((2, 4, 6))
    tiv = m.sum()
    return np.concatenate([t.ravel() / tiv, m.sum((1, 2, 3)) / tiv])


def main() -> None:
    from BrainAgeLib.regression import VolumeAgeRegressor
    from BrainAgeLib.site_evaluation import _summary, fit_a_matrices
    from BrainAgeLib.training.cnn import training_partition
    f = dict(np.load(f"{D}/features.npz", mmap_mode="r"))
    maps = {"": f["cnn"], "_deg": f["cnn_deg"],
            "_gam": np.load(f"{D}/contrast_copies.npz", mmap_mode="r")["cnn_gam"],
            "_mot": np.load(f"{D}/motion_copies.npz", mmap_mode="r")["cnn_mot"]}
    n = len(f["age"])
    mom = {k: [moments(np.asarray(v[i, 1:4], np.float32)) for i in range(n)] for k, v in maps.items()}
    print("RMS extent (4 mm voxels z, y, x): Cam-CAN reg_train",
          np.round(np.mean([mom[""][i][1] for i in np.flatnonzero(f["split"] == "reg_train")], 0), 3),
          "ixi120", np.round(np.mean([mom[""][i][1] for i in np.flatnonzero(f["split"] == "ixi120")], 0), 3), flush=True)
    print("mode | Cam-CAN -> IXI: MAE, gap, r(gap,age) | IXI -> Cam-CAN: MAE, gap, r(gap,age)")
    for mode in sys.argv[2].split(",") if len(sys.argv) > 2 else ("none", "iso", "axes", "iso+shift", "axes+shift"):
        line = mode
        for site, rows in (("camcan", np.flatnonzero(f["site"] == "ixi")),
                           ("ixi", np.flatnonzero(f["split"] == "test"))):
            tr, va = training_partition(f, (site,), 60, 20, SEED)
            idx = np.sort(np.concatenate([tr, va]))
            ref_c = np.mean([mom[""][i][0] for i in idx], 0)
            ref_s = np.mean([mom[""][i][1] for i in idx], 0)

            def mat(key, rr):
                return np.stack([features(normalise(np.asarray(maps[key][i, 1:4], np.float32), *mom[key][i],
                                                    ref_c, ref_s, mode)) for i in rr])
            X, Xd = mat("", idx), mat("_deg", idx)
            Xc = [mat("_gam", idx), mat("_mot", idx)]
            y = f["age"][idx].astype(float)
            model, bias, _ = fit_a_matrices(VolumeAgeRegressor(alpha=0.3, invariance=0.3), X, y, Xd, Xc, SEED)
            s = _summary(bias(model.predict(mat("", rows))), f["age"][rows].astype(float))
            line += f" | {s['mae']:.2f}, {s['mean_gap']:+.2f}, {s['r_gap_age']:+.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
