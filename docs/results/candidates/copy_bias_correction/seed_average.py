"""Diagnostic: would averaging B over seeds help IXI -> Cam-CAN? The three IXI-only CNNs of release
18 alone and averaged (raw ages), each corrected on the 20 IXI validation subjects, alone (B) and
in the ensemble with the IXI-trained A (weight 0.15); Cam-CAN `test`. Years.

    .venv/bin/python docs/results/candidates/copy_bias_correction/seed_average.py
"""
import json, numpy as np
from pathlib import Path
from BrainAgeLib.regression import AgeBiasCorrection
from BrainAgeLib.site_evaluation import _fit_a, _summary
from BrainAgeLib.training.age_model import cnn_predictions, feature_matrix
from BrainAgeLib.training.cnn import training_partition
from BrainAgeLib.training.features import acquisition_copies, model_space_features
run = Path("runs/release18"); cache = run / "features/features.npz"
f = model_space_features(None, cache)
w = 0.15
recipe = {"invariance": 0.3, "copies": {k: acquisition_copies(None, f, cache, k) for k in ("contrast", "motion")}}
tr, va = training_partition(f, ("ixi",), 60, 20, 20261123)
pool = np.sort(np.concatenate([tr, va]))
model, bias_a, feats, oof = _fit_a(f, pool, "ridge on regional 12 mm, sqrt, alpha 3e-1", 20261123, **recipe)
test = np.flatnonzero(f["split"] == "test"); yt = f["age"][test].astype(float); yv = f["age"][va].astype(float)
pa_val = oof[np.searchsorted(pool, va)]; ra = model.predict(feature_matrix(f, test, feats))
pbv, pbt = [], []
for d in ("cnn-ixi", "cnn-ixi-seed2", "cnn-ixi-seed3"):
    wt = run / d / "age_cnn.safetensors"
    pbv.append(cnn_predictions(f, va, wt)); pbt.append(cnn_predictions(f, test, wt))
for label, v, t in [(f"seed {k+1}", pbv[k], pbt[k]) for k in range(3)] + [("mean of 3 seeds", np.mean(pbv, 0), np.mean(pbt, 0))]:
    bb = AgeBiasCorrection().fit(v, yv); sb = _summary(bb(t), yt)
    be = AgeBiasCorrection().fit(w * pa_val + (1 - w) * v, yv); se = _summary(be(w * ra + (1 - w) * t), yt)
    print(f"{label}: B {sb['mae']:.2f} ({sb['mean_gap']:+.2f}) ensemble {se['mae']:.2f} ({se['mean_gap']:+.2f}, r {se['r_gap_age']:+.2f}) raw B r {np.corrcoef(t, yt)[0,1]:.3f}")
