"""Experiment (not shipped): does the contrast-consistency scheme also fix motion?

1. ``build``: a motion copy of every cached subject (TorchIO ``RandomMotion``, 2 movements of up
   to 5 degrees and 5 mm, as ``brainage evaluate-robustness`` uses; seeded per subject), applied
   to the model-space array before normalisation and, for IXI heads, before harmonisation, and
   segmented again by the shipped ResUNet. Written in the contrast copies' format (keys
   ``*_gam``) to ``runs/motion/contrast_copies.npz``, beside a link to the feature cache, so that
   ``brainage train-cnn --cache runs/motion/features.npz --contrast-consistency W`` trains on it.
2. ``measure CNN_SAFETENSORS ...``: each CNN's raw age change from the held-out scans (Cam-CAN
   ``test``, ``ixi10``) to their motion copies and to their contrast copies, and its ``test`` MAE
   with the bias correction fitted on its validation subjects. Years.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

DATA = Path("../shared/data/camcan")
OUT = Path("runs/motion")


def build() -> None:
    import torch
    import torchio as tio
    from BrainAgeLib.models import load_resunet
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.training.features import CONTRAST_VERSION, ixi_model_space, scan_features, subject_array
    z = np.load("runs/features/features.npz")
    ids, sites = [str(s) for s in z["subject_id"]], [str(s) for s in z["site"]]
    ixi = ixi_model_space(DATA.parent, "runs/features/ixi_model_space.npz")
    ixi_images = dict(zip((str(s) for s in ixi["subject_id"]), ixi["image"]))
    net = load_resunet()
    motion = tio.RandomMotion(degrees=5, translation=5, num_transforms=2)
    out: dict[str, list] = {}
    t0 = time.time()
    for n, (sid, site) in enumerate(zip(ids, sites)):
        arr, registered = subject_array(DATA, sid, ixi_images if site == "ixi" else None)
        with torch.random.fork_rng():
            torch.manual_seed(n)
            moved = motion(tio.ScalarImage(tensor=torch.from_numpy(arr)[None])).data[0].numpy()
        moved = normalize_intensity(np.clip(moved, 0, None) * (arr > 0))   # skull-stripped: background 0
        for k, v in scan_features(net, moved, registered).items():
            out.setdefault(f"{k}_gam", []).append(v)
        if (n + 1) % 100 == 0:
            print(f"motion copies: {n + 1}/{len(ids)} ({time.time() - t0:.0f} s)", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    link = OUT / "features.npz"
    if not link.exists():
        link.symlink_to(Path("../features/features.npz"))
    if not (OUT / "ixi_model_space.npz").exists():
        (OUT / "ixi_model_space.npz").symlink_to(Path("../features/ixi_model_space.npz"))
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays.update(subject_id=np.asarray(ids), gamma=np.ones(len(ids)), version=np.asarray(CONTRAST_VERSION))
    np.savez(OUT / "contrast_copies.npz", **arrays)


def measure(weights: list[str]) -> None:
    from BrainAgeLib.regression import AgeBiasCorrection
    from BrainAgeLib.training.age_model import cnn_predictions
    from BrainAgeLib.training.cnn import training_partition
    z = np.load("runs/features/features.npz")
    f = {k: z[k] for k in ("cnn", "site", "split", "age", "subject_id")}
    copies = {"motion": np.load(OUT / "contrast_copies.npz")["cnn_gam"],
              "contrast": np.load("runs/features/contrast_copies.npz")["cnn_gam"]}
    _, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
    for w in weights:
        bias = AgeBiasCorrection().fit(cnn_predictions(f, va, w), f["age"][va])
        line = f"{w}:"
        for label, split in (("Cam-CAN test", "test"), ("ixi10", "ixi10")):
            rows = np.flatnonzero(f["split"] == split)
            clean = cnn_predictions(f, rows, w)
            if split == "test":
                line += f" test MAE {np.abs(bias(clean) - f['age'][rows]).mean():.2f};"
            for name, c in copies.items():
                d = cnn_predictions({"cnn": c}, rows, w) - clean
                line += f" {label} {name} copy {d.mean():+.2f} (|{np.abs(d).mean():.2f}|);"
        print(line, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build()
    else:
        measure(sys.argv[2:])
