"""Where A's site gap comes from: A's ridge fitted on IXI (shipped recipe, 12 mm cells) and read on
Cam-CAN subjects (SPLIT, default reg_train: training subjects, never ``test``); each kept
feature's contribution to the mean gap = coefficient x the age-adjusted site difference of the
standardised feature (IXI's line on age evaluated at the Cam-CAN ages). Summed per tissue, per
12 mm slab along each axis (LPS: z up = superior, y up = posterior, x up = left) and per quartile
of the cells' mean tissue fraction. Years.

    .venv/bin/python docs/results/candidates/parenchyma_features/gap_contributions.py [SPLIT]
"""
import numpy as np
from sklearn.model_selection import KFold
from BrainAgeLib.regression import AgeBiasCorrection, VolumeAgeRegressor
from BrainAgeLib.training.age_model import copy_matrices, feature_matrix, fit_regressor
from BrainAgeLib.training.cnn import training_partition
from BrainAgeLib.training.features import acquisition_copies, model_space_features
CACHE="runs/features/features.npz"; SEED=20261123
f = model_space_features(None, CACHE)
copies = {k: acquisition_copies(None, f, CACHE, k) for k in ("contrast", "motion")}
tr, va = training_partition(f, ("ixi",), 60, 20, SEED)
idx = np.sort(np.concatenate([tr, va]))
import sys
rows = np.flatnonzero(f["split"] == sys.argv[1]) if len(sys.argv) > 1 else np.flatnonzero(f["split"] == "test")
print("rows", len(rows), sorted(set(str(s) for s in f["site"][rows])))
X, Xd = feature_matrix(f, idx, "c6"), feature_matrix(f, idx, "c6", True)
Xc = copy_matrices(copies, idx, "c6")
y = f["age"][idx].astype(float)
m = fit_regressor(VolumeAgeRegressor(alpha=0.3, cell=6, invariance=0.3), X, y, Xd, Xc)
Xt = feature_matrix(f, rows, "c6"); yt = f["age"][rows].astype(float)
Zi = (m.features_.transform(X) - m.mean_) / m.scale_
Zt = (m.features_.transform(Xt) - m.mean_) / m.scale_
# age-adjust: contribution of each feature to the gap: coef * (mean_t - predicted mean of ixi at test ages)
# fit per-feature linear on age within ixi, evaluate at test ages
A = np.c_[np.ones_like(y), y]
B = np.linalg.lstsq(A, Zi, rcond=None)[0]
exp_t = np.c_[np.ones_like(yt), yt] @ B
diff = (Zt - exp_t).mean(0)        # age-adjusted site difference per kept feature (sd units of ixi)
contrib = m.coef_ * diff
print("raw gap", (m.predict(Xt) - yt).mean(), "sum contrib", contrib.sum())
keep = m.features_.keep_
n = 4560
g = (15, 19, 16)
tissue = np.where(keep < 3 * n, keep // n, 3)
cell = np.where(keep < 3 * n, keep % n, -1)
for t, nm in enumerate(["CSF", "GM", "WM", "global"]):
    print(nm, "contrib %.2f" % contrib[tissue == t].sum(), "mean |d| %.2f" % np.abs(diff[tissue == t]).mean())
zz = np.where(cell >= 0, cell // (19 * 16), -1)
yy = np.where(cell >= 0, (cell // 16) % 19, -1)
xx = np.where(cell >= 0, cell % 16, -1)
print("by z (array axis 0):", [round(contrib[zz == k].sum(), 1) for k in range(15)])
print("by y:", [round(contrib[yy == k].sum(), 1) for k in range(19)])
print("by x:", [round(contrib[xx == k].sum(), 1) for k in range(16)])
# edge: cells with mean tissue fraction small
mean_frac = m.features_.transform(X).mean(0) ** 2
q = np.quantile(mean_frac[cell >= 0], [0.25, 0.5, 0.75])
bins = np.digitize(mean_frac, q)
for b in range(4):
    s = (cell >= 0) & (bins == b)
    print("occupancy quartile", b, "n", s.sum(), "contrib %.2f" % contrib[s].sum(), "mean|d| %.2f" % np.abs(diff[s]).mean())
occ = np.zeros(4560); 
Xi = m.features_.transform(X) ** 2
for j, k in enumerate(keep):
    if k < 3 * n: occ[k % n] += Xi[:, j].mean()
occ = occ.reshape(g)
print("occupancy by z:", np.round(occ.sum((1, 2)), 3))
print("occupancy by y:", np.round(occ.sum((0, 2)), 3))
print("occupancy by x:", np.round(occ.sum((0, 1)), 3))
