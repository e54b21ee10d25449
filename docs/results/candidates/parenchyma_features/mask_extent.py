"""How far down, and how large, the brain masks of the two sites are in model space: age 40-60,
Cam-CAN reg_train against ixi120, from the cache's 4 mm CNN input (the T1 channel is 0 outside the
mask; 64 ul voxels): the mask's volume (ml), its lowest 4 mm level, and the share of the mask and
of the tissue maps in each of the lowest 13 levels (%).

    .venv/bin/python docs/results/candidates/parenchyma_features/mask_extent.py
"""
import numpy as np
f = np.load("runs/features/features.npz")
split = f["split"]; age = f["age"]
cnn = f["cnn"]
def prof(idx):
    out = []
    for i in idx:
        m = cnn[i, 0].astype(np.float32) > 0.01      # in the brain mask (image 0 outside)
        t = cnn[i, 1:4].astype(np.float32).sum(0)
        out.append((m.sum((1, 2)) / m.sum(), t.sum((1, 2)) / t.sum(), m.sum() * 64 / 1000))
    return out
for nm, idx in (("Cam-CAN 40-60", np.flatnonzero((split == "reg_train") & (age >= 40) & (age <= 60))),
                ("ixi120 40-60", np.flatnonzero((split == "ixi120") & (age >= 40) & (age <= 60)))):
    p = prof(idx)
    mk = np.mean([a for a, _, _ in p], 0); ts = np.mean([b for _, b, _ in p], 0)
    first = [np.flatnonzero(a > 0.001)[0] for a, _, _ in p]
    print(nm, len(idx), "mask ml %.0f" % np.mean([c for *_, c in p]), "lowest z level with mask (4 mm):", np.round(np.mean(first), 2), "±", np.round(np.std(first), 2))
    print("  mask share by z 0-12 (%):", np.round(100 * mk[:13], 2))
    print("  tissue share by z 0-12 (%):", np.round(100 * ts[:13], 2))
