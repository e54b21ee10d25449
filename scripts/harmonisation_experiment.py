"""Hypothesis: IXI's flatter GM/WM contrast (gm/wm 0.82-0.84 vs Cam-CAN 0.75-0.78, like a gamma
< 1) is part of the site offset; a power-law harmonisation (a * x**p through the GM and WM
landmarks) undoes a gamma exactly, the piecewise-linear one does not. LOSO Cam-CAN -> IXI with
the IXI features recomputed under each map (Cam-CAN-trained models never saw IXI).

Needs the caches of a training run (runs/features/features.npz, ixi_model_space.npz), runs/age
and runs/cnn-camcan; ~6 min on 2 cores. Output: docs/results/harmonisation_experiment.txt.

    python scripts/harmonisation_experiment.py
"""
import json, sys, time
import numpy as np
sys.path.insert(0, "BrainAge")
import torch
torch.set_num_threads(2)
from BrainAgeLib import pipeline, preprocessing
from BrainAgeLib.models import load_resunet
from BrainAgeLib.training.features import scan_features
from BrainAgeLib.site_evaluation import leave_one_site_out

L = preprocessing.TISSUE_LANDMARKS

def power_map(array, prob, landmarks=L, medians=None):
    gm, wm = medians if medians is not None else preprocessing.tissue_medians(array, prob)
    if not (np.isfinite(gm) and np.isfinite(wm) and 0 < gm < wm):
        return np.asarray(array, np.float32)
    g, w = landmarks["gm"], landmarks["wm"]
    p = np.log(g / w) / np.log(gm / wm)
    a = g / gm ** p
    x = np.clip(np.asarray(array, np.float64), 0, None)
    out = np.where(x <= wm, a * x ** p, w + a * p * wm ** (p - 1) * (x - wm))
    out[np.asarray(array) <= 0] = 0
    return np.clip(out, 0.0, 2.0).astype(np.float32)

t0 = time.time()
f = dict(np.load("runs/features/features.npz"))
ixi = dict(np.load("runs/features/ixi_model_space.npz"))
print("loaded", time.time() - t0, flush=True)
m = json.load(open("runs/age/age_model.json"))
name = m["volumes"]["selected"]; w = m["ensemble"]["weight_volumes"]
base = leave_one_site_out(f, name, {"camcan": "runs/cnn-camcan"}, w)
print("linear", json.dumps({k: {a: v for a, v in r.items() if not a.startswith("_")} for k, r in base.items()}), flush=True)
pipeline.harmonize_intensities = power_map
net = load_resunet()
rows = {str(s): i for i, s in enumerate(f["subject_id"])}
for j, sid in enumerate(ixi["subject_id"]):
    i = rows[str(sid)]
    feats = scan_features(net, ixi["image"][j].astype(np.float32), True)
    for k, v in feats.items():
        f[k][i] = v
    if (j + 1) % 20 == 0:
        print(j + 1, time.time() - t0, flush=True)
res = leave_one_site_out(f, name, {"camcan": "runs/cnn-camcan"}, w)
print("power", json.dumps({k: {a: v for a, v in r.items() if not a.startswith("_")} for k, r in res.items()}), flush=True)
