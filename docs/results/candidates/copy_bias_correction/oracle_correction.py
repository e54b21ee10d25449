"""Diagnostic: how much of IXI -> Cam-CAN's error is the bias correction's? The ensemble of the
IXI-trained A and each of release 18's three IXI-only CNNs, corrected (a) as shipped, from the 20
IXI validation subjects; (b) from those and the 10 ixi10 heads (also unseen by these models);
(c) by an oracle line fitted on the Cam-CAN `test` scans themselves (never a method: the floor
that any linear correction could reach). Years.

    .venv/bin/python docs/results/candidates/copy_bias_correction/oracle_correction.py
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
m = json.loads(Path("BrainAge/Resources/Models/age_model.json").read_text())
name, w = m["volumes"]["selected"], m["ensemble"]["weight_volumes"]
recipe = {"invariance": 0.3, "copies": {k: acquisition_copies(None, f, cache, k) for k in ("contrast", "motion")}}
tr, va = training_partition(f, ("ixi",), 60, 20, 20261123)
pool = np.sort(np.concatenate([tr, va]))
model, bias_a, feats, oof = _fit_a(f, pool, name, 20261123, **recipe)
test = np.flatnonzero(f["split"] == "test"); yt = f["age"][test].astype(float); yv = f["age"][va].astype(float)
i10 = np.flatnonzero(f["split"] == "ixi10"); y10 = f["age"][i10].astype(float)
pa_val = oof[np.searchsorted(pool, va)]
ra = model.predict(feature_matrix(f, test, feats)); ra10 = model.predict(feature_matrix(f, i10, feats))
raws, vals, v10 = [], [], []
for d in ("cnn-ixi", "cnn-ixi-seed2", "cnn-ixi-seed3"):
    wt = run / d / "age_cnn.safetensors"
    vals.append(w * pa_val + (1 - w) * cnn_predictions(f, va, wt))
    raws.append(w * ra + (1 - w) * cnn_predictions(f, test, wt))
    v10.append(w * ra10 + (1 - w) * cnn_predictions(f, i10, wt))
for k in range(3):
    own = AgeBiasCorrection().fit(vals[k], yv)
    s_own = _summary(own(raws[k]), yt)
    both = AgeBiasCorrection().fit(np.concatenate([vals[k], v10[k]]), np.concatenate([yv, y10]))
    s_b = _summary(both(raws[k]), yt)
    # raw ensemble vs age on the test site: the slope/intercept that would have been right there
    true = AgeBiasCorrection().fit(raws[k], yt)
    s_t = _summary(true(raws[k]), yt)
    print(f"seed {k+1}: own 20-val slope {own.slope:.3f} int {own.intercept:.1f} -> {s_own['mae']:.2f} gap {s_own['mean_gap']:+.2f} | "
          f"20 val + 10 ixi10 slope {both.slope:.3f} -> {s_b['mae']:.2f} gap {s_b['mean_gap']:+.2f} | "
          f"oracle (fitted on test) slope {true.slope:.3f} -> {s_t['mae']:.2f} | raw MAE {np.mean(np.abs(raws[k]-yt)):.2f} r {np.corrcoef(raws[k], yt)[0,1]:.3f}")
