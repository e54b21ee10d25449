"""Can the air around a whole head tell motion and ghosting? Per head: the head (Otsu on the
image smoothed by 2 mm, largest component, closed, holes filled), the air beyond 10 mm from it,
and the share of air voxels above t x the head's median intensity (t = 0.05, 0.1, 0.2), raw and after a
1-voxel opening. `clean`: the 130 IXI heads (ixi10 + ixi120) as stored; `degraded`: the 10 ixi10
heads under the robustness run's motion, ghosting, gamma, noise and bias conditions (same seeds).
Results: docs/results/candidates/air_qc/ (not kept as a QC: no threshold separates them).

    .venv/bin/python scripts/air_qc_experiment.py clean|degraded
"""
import csv, sys, zlib, numpy as np, SimpleITK as sitk
from pathlib import Path
from BrainAgeLib import degrade
from BrainAgeLib.io import read_image

def head_mask(img):
    sm = sitk.SmoothingRecursiveGaussian(sitk.Cast(img, sitk.sitkFloat32), 2.0)
    otsu = sitk.OtsuThreshold(sm, 0, 1)
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(otsu), sortByObjectSize=True) == 1
    cc = sitk.BinaryMorphologicalClosing(cc, [3]*3)
    cc = sitk.BinaryFillhole(cc)
    return cc

def metrics(img):
    arr = sitk.GetArrayFromImage(sitk.Cast(img, sitk.sitkFloat32))
    head = head_mask(img)
    r = [max(1, int(round(10 / s))) for s in img.GetSpacing()]
    dil = sitk.GetArrayFromImage(sitk.BinaryDilate(head, r)) > 0
    hm = sitk.GetArrayFromImage(head) > 0
    fg = float(np.median(arr[hm]))
    bg = ~dil
    out = {"head_frac": hm.mean(), "bg_frac": bg.mean(), "zero_share": float((arr[bg] == 0).mean())}
    for t in (0.05, 0.1, 0.2):
        art = bg & (arr > t * fg)
        a = sitk.GetArrayFromImage(sitk.BinaryMorphologicalOpening(sitk.GetImageFromArray(art.astype(np.uint8)), [1]*3)) > 0
        out[f"art_{t:g}"] = a.sum() / max(1, bg.sum())
        out[f"raw_{t:g}"] = art.sum() / max(1, bg.sum())
    return out

data = Path("../shared/data")
rows = []
which = sys.argv[1]
if which == "clean":
    for s in ("ixi10", "ixi120"):
        for r in csv.DictReader(open(data / s / "subjects.csv")):
            img = read_image(data / s / "t1" / f"{r['subject_id']}_T1.nii.gz")
            m = metrics(img); m.update(set=s, id=r["subject_id"], cond="clean"); rows.append(m)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}, flush=True)
else:
    conds = degrade.conditions()
    seed = 20261123
    for r in csv.DictReader(open(data / "ixi10" / "subjects.csv")):
        sid = r["subject_id"]
        img = read_image(data / "ixi10" / "t1" / f"{sid}_T1.nii.gz")
        for name in ("motion", "ghosting", "gamma_1.4", "gamma_0.7", "noise_snr20", "bias_field"):
            draw = int(np.random.SeedSequence([seed, zlib.crc32(sid.encode()), zlib.crc32(name.encode())]).generate_state(1)[0])
            d = conds[name](img, None, draw)
            m = metrics(d); m.update(set="ixi10", id=sid, cond=name); rows.append(m)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}, flush=True)
import json
json.dump(rows, open(f"runs/air_qc_{which}.json", "w"), default=float)
