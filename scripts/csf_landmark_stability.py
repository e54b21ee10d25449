"""Would a CSF landmark free of partial volume make a log-space harmonisation safe? (issue 11)

For the 12 scans of ``evaluate-robustness`` (6 Cam-CAN test, 6 ixi10 heads) and 8 acquisitions
(+ the IXI head resampled to 1 mm), measures three CSF intensity landmarks on the first
segmentation (median of all CSF voxels; the eroded CSF core with p > 0.9; CSF p > 0.95), the
GM and WM medians, and the global tissue fractions after a second pass under each map (none,
release 5's GM/WM linear map, and the log-space CSF/GM/WM map pinned at each CSF landmark).
Writes ``docs/results/candidates/csf_core/fractions.csv``; the printed lines are the landmarks.
Run from the repository root: ``python scripts/csf_landmark_stability.py > log``.
The run behind the README figures was stopped after 5 Cam-CAN and 2 IXI subjects, once the IXI
heads showed every CSF landmark moving with motion as much as with a gamma of 0.7. It ran on
release 5 (commit 409c7f3: no N4 on template-grid inputs); check that commit out to repeat it.
"""
import sys, csv, zlib, json
from pathlib import Path
import numpy as np, SimpleITK as sitk
from scipy import ndimage
from BrainAgeLib.evaluation_robustness import _subjects, _labels
from BrainAgeLib import degrade, models
from BrainAgeLib.io import read_image
from BrainAgeLib.preprocessing import preprocess, TISSUE_LANDMARKS
from BrainAgeLib.segmentation import segment_array
from BrainAgeLib.volumes import global_fractions
data = Path('../shared/data')
subs = _subjects(data, 6, 6, 20261123)
conds = degrade.conditions()
names = ['gamma_0.7', 'gamma_1.4', 'motion', 'ghosting', 'bias_field', 'noise_snr20', 'thick5mm_coronal', 'thick3mm_axial']
net = models.load_resunet()
L = {"csf": 0.2863, "gm": 0.7074, "wm": 0.9103}

def landmarks(arr, prob):
    lab = prob.argmax(0)
    med = lambda m: float(np.median(arr[m])) if m.sum() > 20 else float('nan')
    out = {c: med(lab == i) for c, i in (('csf', 1), ('gm', 2), ('wm', 3))}
    for c, i in (('csf', 1), ('gm', 2), ('wm', 3)):
        core = ndimage.binary_erosion((lab == i) & (arr > 0.02), iterations=1) & (prob[i] > 0.9)
        out[c + '_core'] = med(core)
        out[c + '_p95'] = med((prob[i] > 0.95) & (arr > 0.02))
    return out

def map_linear(arr, lm):
    gm, wm = lm['gm'], lm['wm']; g, w = L['gm'], L['wm']
    slope = (w - g) / (wm - gm)
    out = np.interp(arr, [0.0, gm, wm, 2.0], [0.0, g, w, w + slope * (2.0 - wm)]); out[arr <= 0] = 0
    return np.clip(out, 0, 2).astype(np.float32)

def map_log3(arr, csf, gm, wm):
    c, g, w = L['csf'], L['gm'], L['wm']
    if not (np.isfinite(csf) and 0 < csf < gm): csf = gm * c / g
    src = np.log([csf, gm, wm]); dst = np.log([c, g, w])
    p = np.clip(np.diff(dst) / np.diff(src), 0.25, 4)
    x = np.clip(arr.astype(np.float64), 1e-6, None); lx = np.log(x)
    ly = np.where(lx < src[1], dst[1] + p[0] * (lx - src[1]), dst[1] + p[1] * (lx - src[1]))
    out = np.exp(ly); top = float(np.exp(dst[1] + p[1] * (src[2] - src[1])))
    out = np.where(x > wm, top + p[1] * top / wm * (x - wm), out); out[arr <= 0] = 0
    return np.clip(out, 0, 2).astype(np.float32)

rows = []
fout = open('docs/results/candidates/csf_core/fractions.csv', 'w', newline='')
w = csv.writer(fout)
hdr = None
for s in subs:
    img = read_image(s['image']); labs = _labels(s, data, img)
    items = [('clean', img)]
    for n in names:
        draw = int(np.random.SeedSequence([20261123, zlib.crc32(s['subject_id'].encode()), zlib.crc32(n.encode())]).generate_state(1)[0])
        d = conds[n](img, labs, draw)
        if s['skull_stripped'] and d.GetSize() == img.GetSize(): d = degrade.keep_zero_background(d, img)
        items.append((n, d))
    if s['set'] == 'ixi10':
        items.append(('iso1mm', sitk.Resample(img, [int(round(sz * sp)) for sz, sp in zip(img.GetSize(), img.GetSpacing())], sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), [1.0]*3, img.GetDirection(), 0.0, sitk.sitkFloat32)))
    for n, im in items:
        prep = preprocess(im, skull_stripped=s['skull_stripped'] if n == 'clean' or im.GetSize() == img.GetSize() else s['skull_stripped'])
        arr = sitk.GetArrayFromImage(prep.image).astype(np.float32)
        p1 = segment_array(net, arr)
        lm = landmarks(arr, p1)
        res = {'set': s['set'], 'sid': s['subject_id'], 'cond': n, **{k: round(v, 4) for k, v in lm.items()}}
        variants = {'none': arr, 'linear': map_linear(arr, lm),
                    'log3': map_log3(arr, lm['csf'], lm['gm'], lm['wm']),
                    'log3core': map_log3(arr, lm['csf_core'], lm['gm'], lm['wm']),
                    'log3p95': map_log3(arr, lm['csf_p95'], lm['gm'], lm['wm'])}
        for v, a in variants.items():
            p2 = segment_array(net, a)
            fr = global_fractions(p2)
            for k, x in zip(('csf', 'gm', 'wm'), fr): res[f'{v}_{k}'] = round(float(x) * 100, 3)
        if hdr is None:
            hdr = list(res); w.writerow(hdr)
        w.writerow([res[k] for k in hdr]); fout.flush()
        print(s['subject_id'], n, {k: res[k] for k in ('csf', 'csf_core', 'csf_p95', 'gm', 'wm')}, flush=True)
