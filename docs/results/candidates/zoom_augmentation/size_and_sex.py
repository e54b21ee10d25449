"""Does the shipped B's gap follow brain size and sex? The shipped CNN's corrected ages (its own
bias line) of subjects it never trained on: IXI (the 20 ixi120 validation heads and ixi10) and
Cam-CAN `test`; brain-mask volume in model space (ml, the cache's 4 mm T1 channel above 0);
r(gap, volume), raw and with the gap's age trend removed; mean gap of women and men. Years.

    .venv/bin/python docs/results/candidates/zoom_augmentation/size_and_sex.py
"""
import json, numpy as np, torch
from safetensors.torch import load_file
from BrainAgeLib import models
from BrainAgeLib.cnn import AgeCNN, predict_age
from BrainAgeLib.training.cnn import training_partition
f = np.load("runs/features/features.npz")
tr, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
ixi_val = va[f["site"][va] == "ixi"]
i10 = np.flatnonzero(f["split"] == "ixi10"); test = np.flatnonzero(f["split"] == "test")
m = json.loads((models.models_dir() / "age_model.json").read_text()); b = m["cnn"]["bias"]
net = AgeCNN(); net.load_state_dict(load_file(str(models.models_dir() / "age_cnn.safetensors"))); net.eval()
for nm, idx in (("IXI unseen by B (20 val + 10 ixi10)", np.concatenate([ixi_val, i10])), ("Cam-CAN test", test)):
    x = torch.from_numpy(f["cnn"][idx].astype(np.float32))
    with torch.no_grad():
        raw = predict_age(net, x, True).numpy()
    age = f["age"][idx].astype(float)
    gap = (raw - b["intercept"]) / b["slope"] - age
    vol = (f["cnn"][idx, 0].astype(np.float32) > 0.01).sum((1, 2, 3)) * 0.064
    res = gap - np.polyval(np.polyfit(age, gap, 1), age)     # gap with its age trend removed
    sex = f["sex"][idx]
    print(nm, f"n {len(idx)} mask volume {vol.mean():.0f} ± {vol.std():.0f} ml; r(gap, volume) {np.corrcoef(gap, vol)[0,1]:+.2f}, "
          f"r(age-detrended gap, volume) {np.corrcoef(res, vol)[0,1]:+.2f}; gap F {gap[sex=='F'].mean():+.2f} M {gap[sex=='M'].mean():+.2f}")
