"""Probe: does B read brain size in model space as age? Release 18's three IXI-only CNNs (IXI heads
are registered rigidly and keep their size) read the Cam-CAN `test` scans (affinely normalised by
their own pipeline, 2-5 % larger per axis) as they are, and zoomed about their centroid to the
IXI training subjects' mean RMS extent (one factor, ``iso``; one per axis, ``axes``); corrections
from the 20 IXI validation subjects. Years: MAE (mean gap, r(gap, age)).

    .venv/bin/python docs/results/candidates/zoom_augmentation/zoom_probe.py
"""
import sys
from pathlib import Path

import numpy as np

from scipy import ndimage
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "size_normalised"))
from loso_a import moments
from BrainAgeLib.regression import AgeBiasCorrection
from BrainAgeLib.site_evaluation import _summary
from BrainAgeLib.training.age_model import cnn_predictions
from BrainAgeLib.training.cnn import training_partition
f = dict(np.load("runs/features/features.npz"))
tr, va = training_partition(f, ("ixi",), 60, 20, 20261123)
pool = np.sort(np.concatenate([tr, va]))
test = np.flatnonzero(f["split"] == "test"); yt = f["age"][test].astype(float); yv = f["age"][va].astype(float)
mom = {i: moments(f["cnn"][i, 1:4].astype(np.float32)) for i in np.concatenate([pool, test])}
ref_s = np.mean([mom[i][1] for i in pool], 0)
print("extent IXI pool", np.round(ref_s, 3), "Cam-CAN test", np.round(np.mean([mom[i][1] for i in test], 0), 3))
def scaled(i, mode):
    c, s = mom[i]
    k = np.full(3, np.exp(np.mean(np.log(ref_s / s)))) if mode == "iso" else ref_s / s
    x = f["cnn"][i].astype(np.float32)
    return np.stack([ndimage.affine_transform(ch, 1.0 / k, c - c / k, order=1) for ch in x]).astype(np.float16)
for mode in ("none", "iso", "axes"):
    g = {"cnn": f["cnn"].copy()}
    if mode != "none":
        for i in test:
            g["cnn"][i] = scaled(i, mode)
    out = []
    for d in ("cnn-ixi", "cnn-ixi-seed2", "cnn-ixi-seed3"):
        wt = Path("runs/release18") / d / "age_cnn.safetensors"
        b = AgeBiasCorrection().fit(cnn_predictions(f, va, wt), yv)
        s = _summary(b(cnn_predictions(g, test, wt)), yt)
        out.append(f"{s['mae']:.2f} ({s['mean_gap']:+.2f}, r {s['r_gap_age']:+.2f})")
    print(f"B IXI-only on Cam-CAN test, inputs {mode}: " + " | ".join(out), flush=True)
