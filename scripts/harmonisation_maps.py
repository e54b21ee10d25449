"""Which intensity map makes the two sites' tissue fractions agree? Age-matched pairs (ixi120 and
the nearest-aged Cam-CAN reg_train subject, as in site_evaluation.site_distance; every other pair
by age), each segmented by the shipped ResUNet, then its intensities mapped by each candidate
and segmented again; Cohen's d (IXI - Cam-CAN) of the global CSF/GM/WM fractions per map.

Candidates (all but the first applied to both sites):
  release5  piecewise-linear through the GM/WM medians, IXI (registered) only
  linear    the same map on every scan
  power     a * x**p through the GM/WM medians (undoes a gamma exactly)
  log3      piecewise-linear in log-log through the CSF, GM and WM medians (undoes a gamma
            exactly and also pins the CSF median)
The last two were then trained and evaluated end to end (docs/generalisation.md;
docs/results/candidates/); neither shipped. Needs runs/features/ixi_model_space.npz; ~6 min on
2 cores. Output: docs/results/harmonisation_maps.json

    python scripts/harmonisation_maps.py
"""
import json, sys, time
import numpy as np
import SimpleITK as sitk
sys.path.insert(0, "BrainAge")
import torch
torch.set_num_threads(2)
from BrainAgeLib import preprocessing as pp
from BrainAgeLib.models import load_resunet
from BrainAgeLib.segmentation import segment_array
from BrainAgeLib.volumes import global_fractions
from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects

L = pp.TISSUE_LANDMARKS


def medians3(array, prob):
    lab = prob.argmax(0)
    return [float(np.median(array[lab == c])) for c in (1, 2, 3)]


def linear(array, m, lm):
    """Release 5's map (the shipped one), through the GM and WM medians of ``m``."""
    return pp.harmonize_intensities(array, None, medians=(m[1], m[2]))


def power(array, m, lm):
    c, gm, wm = m
    g, w = lm[1], lm[2]
    p = np.log(g / w) / np.log(gm / wm)
    a = w / wm ** p
    x = np.clip(array, 0, None).astype(np.float64)
    out = np.where(x <= wm, a * x ** p, w + a * p * wm ** (p - 1) * (x - wm))
    out[array <= 0] = 0
    return out


def log3(array, m, lm):
    src, dst = np.log(m), np.log(lm)
    x = np.clip(array, 1e-6, None).astype(np.float64)
    lx = np.log(x)
    p_lo = (dst[1] - dst[0]) / (src[1] - src[0])            # below the CSF median: first segment's power
    ly = np.interp(lx, src, dst)
    ly = np.where(lx < src[0], dst[0] + p_lo * (lx - src[0]), ly)
    out = np.exp(ly)
    p_hi = (dst[2] - dst[1]) / (src[2] - src[1])            # above the WM median: the last segment's
                                                            # power law's tangent line
    slope = p_hi * np.exp(dst[2]) / np.exp(src[2])
    out = np.where(x > np.exp(src[2]), np.exp(dst[2]) + slope * (x - np.exp(src[2])), out)
    out[array <= 0] = 0
    return out


t0 = time.time()
net = load_resunet()
ixi = dict(np.load("runs/features/ixi_model_space.npz"))
sel = np.flatnonzero(ixi["set"] == "ixi120")
cam = [r for r in read_camcan_subjects("../shared/data/camcan") if r["split"] == "reg_train"]
partners = []
pairs = []
for j in sel[np.argsort(ixi["age"][sel])]:
    k = min((c for c in cam if c["subject_id"] not in partners), key=lambda c: abs(c["age"] - ixi["age"][j]))
    partners.append(k["subject_id"])
    pairs.append((j, k))
pairs = pairs[::2]
first = []
for j, k in pairs:
    cam_arr = pp.normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths("../shared/data/camcan", k["subject_id"])["image"]))))
    for site, arr in (("camcan", cam_arr), ("ixi", ixi["image"][j].astype(np.float32))):
        prob = segment_array(net, arr)
        first.append((site, arr, medians3(arr, prob)))
print(f"first pass {len(first)} scans ({time.time() - t0:.0f} s)", flush=True)
cam_m = np.array([m for s, a, m in first if s == "camcan"])
lm3 = np.median(cam_m, axis=0)          # Cam-CAN's own CSF/GM/WM medians (reg_train partners)
lm = [float(lm3[0]), L["gm"], L["wm"]]
print("Cam-CAN medians CSF/GM/WM", np.round(lm3, 3).tolist(), "IXI", np.round(np.median([m for s, a, m in first if s == "ixi"], axis=0), 3).tolist())
maps = {"release5": lambda s, a, m: linear(a, m, lm) if s == "ixi" else a,
        "linear": lambda s, a, m: linear(a, m, lm),
        "power": lambda s, a, m: power(a, m, lm),
        "log3": lambda s, a, m: log3(a, m, lm)}
result = {"n_pairs": len(pairs), "landmarks_csf_gm_wm": lm}
for name, f in maps.items():
    g = {"camcan": [], "ixi": []}
    for site, arr, m in first:
        h = np.clip(f(site, arr, m), 0, 2).astype(np.float32)
        g[site].append(global_fractions(segment_array(net, h)))
    a, b = np.array(g["camcan"]), np.array(g["ixi"])
    d = {t: round(float((b[:, i].mean() - a[:, i].mean()) / np.sqrt((a[:, i].var(ddof=1) + b[:, i].var(ddof=1)) / 2)), 2)
         for i, t in enumerate(("csf", "gm", "wm"))}
    ages = np.array([k["age"] for j, k in pairs])
    r_age = {t: round(float(np.corrcoef(ages, a[:, i])[0, 1]), 2) for i, t in enumerate(("csf", "gm", "wm"))}
    result[name] = {"cohens_d_ixi_minus_camcan": d, "camcan_r_with_age": r_age}
    print(name, result[name], f"({time.time() - t0:.0f} s)", flush=True)
json.dump(result, open("docs/results/harmonisation_maps.json", "w"), indent=1)
