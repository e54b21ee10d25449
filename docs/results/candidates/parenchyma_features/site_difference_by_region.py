"""How the two sites differ among age-matched people, per brain region: the summed CSF, GM and WM
fractions (of TIV) of boxes of release 18's 12 mm cells, Cam-CAN reg_train against IXI ixi120,
as Cohen's d of the Cam-CAN residuals from IXI's line on age (d > 0: more in Cam-CAN), and the
total tissue per inferior 12 mm slab.

    .venv/bin/python docs/results/candidates/parenchyma_features/site_difference_by_region.py
"""
import numpy as np
f = np.load("runs/features/features.npz", mmap_mode="r")
site = f["site"]; split = f["split"]; age = f["age"].astype(float)
R = np.asarray(f["regional_c6"], dtype=np.float64).reshape(len(age), 3, 15, 19, 16)
cam = np.flatnonzero(split == "reg_train"); ixi = np.flatnonzero(split == "ixi120")
boxes = {"inferior posterior (z<5, y>=10)": (slice(0, 5), slice(10, 19), slice(None)),
         "inferior anterior (z<5, y<10)": (slice(0, 5), slice(0, 10), slice(None)),
         "middle (5<=z<9)": (slice(5, 9), slice(None), slice(None)),
         "superior (z>=9)": (slice(9, 15), slice(None), slice(None)),
         "whole": (slice(None),) * 3}
for nm, b in boxes.items():
    out = []
    for t, tn in enumerate(["CSF", "GM", "WM"]):
        v = R[:, t][(slice(None),) + b].sum((1, 2, 3))
        A = np.c_[np.ones(len(ixi)), age[ixi]]
        beta = np.linalg.lstsq(A, v[ixi], rcond=None)[0]
        res_i = v[ixi] - A @ beta
        res_c = v[cam] - np.c_[np.ones(len(cam)), age[cam]] @ beta
        out.append(f"{tn} {v[ixi].mean()*100:.1f}% d={res_c.mean()/res_i.std():+.2f}")
    print(nm, " | ".join(out))
print("z-slab profile of total tissue fraction (% of TIV), age-adjusted d Cam-CAN vs IXI")
T = R.sum(1)  # n, z, y, x
for z in range(0, 8):
    v = T[:, z].sum((1, 2))
    A = np.c_[np.ones(len(ixi)), age[ixi]]
    beta = np.linalg.lstsq(A, v[ixi], rcond=None)[0]
    res_i = v[ixi] - A @ beta; res_c = v[cam] - np.c_[np.ones(len(cam)), age[cam]] @ beta
    print(z, f"IXI {v[ixi].mean()*100:.2f}% CamCAN {v[cam].mean()*100:.2f}% d={res_c.mean()/res_i.std():+.2f}")
