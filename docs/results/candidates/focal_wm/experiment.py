"""Experiment (measured, not shipped): a focal check that also sees lesions the ResUNet reads as
grey matter or that touch the ventricles. The shipped check counts CSF where the old rarely have
CSF and nearly all have tissue; a CSF-intensity lesion deep in white matter is read mostly as GM,
and its CSF part merges with the ventricles (``scripts/lesion_raw_path.py``). Candidate measure:
the largest connected region (26-neighbour, ml) the network calls CSF or GM where at least ``T``
of the atlas subjects have **white matter** (a new share map from the same Cam-CAN reference
labels as the shipped atlas, smoothed 1 voxel). Read on: the 60 held-out Cam-CAN ``reg_train``
scans clean and with a 45 ml lesion (as ``measure_image_qc.py``), the 130 IXI heads of the cache
clean and with a lesion placed in model space (as ``measure_ixi_qc.py --lesion``), the Cam-CAN
``test`` scans clean (false alarms), and the robustness run's six ixi10 lesion copies end to end.

    PYTHONPATH=BrainAge .venv/bin/python docs/results/candidates/focal_wm/experiment.py > docs/results/candidates/focal_wm/experiment.txt
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter, label

DATA = Path("../shared/data")
SHARES = (0.8, 0.9, 0.95)


def wm_share(camcan: Path) -> np.ndarray:
    """Per model-space voxel the share of the shipped atlas's subjects with WM there (smoothed)."""
    from BrainAgeLib import qc
    from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects
    held = set(qc.atlas_held_out(camcan))
    ids = [r["subject_id"] for r in read_camcan_subjects(camcan)
           if r["split"] in ("seg_train", "reg_train") and r["subject_id"] not in held]
    acc = None
    for sid in ids:
        a = sitk.GetArrayViewFromImage(sitk.ReadImage(str(camcan_paths(camcan, sid)["seg"]))) == 3
        acc = a.astype(np.float64) if acc is None else acc + a
    return gaussian_filter(acc / len(ids), 1.0)


def measure(prob: np.ndarray, share: np.ndarray) -> list[float]:
    """The largest non-WM region (ml) inside the white matter of nearly everyone, per ``SHARES``."""
    lab = prob.argmax(0)
    from BrainAgeLib.qc import MODEL_VOXEL_ML
    out = []
    for t in SHARES:
        odd = ((lab == 1) | (lab == 2)) & (share >= t)
        if not odd.any():
            out.append(0.0)
            continue
        comp, _ = label(odd, structure=np.ones((3, 3, 3), bool))
        out.append(float(np.bincount(comp.ravel())[1:].max()) * MODEL_VOXEL_ML)
    return out


def main() -> None:
    from BrainAgeLib import degrade as dg
    from BrainAgeLib import models, qc
    from BrainAgeLib.evaluation_robustness import _labels, _subjects, condition_draw
    from BrainAgeLib.io import read_image
    from BrainAgeLib.pipeline import predict, read_registered
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.segmentation import segment_array
    from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects
    camcan = DATA / "camcan"
    share = wm_share(camcan)
    net, template = models.load_resunet(), models.load_template()
    sets: dict[str, list[list[float]]] = {}

    def add(name, prob):
        sets.setdefault(name, []).append(measure(prob, share))

    for i, sid in enumerate(qc.atlas_held_out(camcan)):          # as measure_image_qc.py
        x = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths(camcan, sid)["image"]),
                                                                      sitk.sitkFloat32)))
        prob = segment_array(net, x)
        ref = sitk.GetImageFromArray(x)
        ref.CopyInformation(template)
        lab = sitk.GetImageFromArray(prob.argmax(0).astype(np.uint8))
        lab.CopyInformation(template)
        add("Cam-CAN held out, clean", prob)
        add("Cam-CAN held out, lesion", segment_array(net, normalize_intensity(
            sitk.GetArrayFromImage(dg.lesion(ref, lab, 45.0, seed=i)))))
    for sid in [r["subject_id"] for r in read_camcan_subjects(camcan) if r["split"] == "test"]:
        x = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths(camcan, sid)["image"]),
                                                                      sitk.sitkFloat32)))
        add("Cam-CAN test, clean", segment_array(net, x))
    space = np.load("runs/features/ixi_model_space.npz")
    for k, (sid, image, which) in enumerate(zip(space["subject_id"], space["image"], space["set"])):
        arr = image.astype(np.float32)
        arr, prob, _ = read_registered(net, arr, segment_array(net, arr))
        add(f"{which} (cache), clean", prob)
        im = sitk.GetImageFromArray(arr)
        im.CopyInformation(template)
        lab = sitk.GetImageFromArray(prob.argmax(0).astype(np.uint8))
        lab.CopyInformation(im)
        les = sitk.GetArrayFromImage(dg.lesion(im, lab, seed=k + 1))
        add(f"{which} (cache), lesion in model space", read_registered(net, les, segment_array(net, les))[1])
    for s in _subjects(DATA, 0, 6, 20261123):                     # the robustness run's lesion copies
        image = read_image(s["image"])
        draw = condition_draw(20261123, s["subject_id"], "lesion_45ml")
        les = predict(dg.lesion(image, _labels(s, DATA, image), 45.0, draw), device="cpu")
        add("ixi10 robustness lesion, end to end", les.model_space_probabilities)
        print(s["subject_id"], "end to end:", [round(v, 2) for v in sets["ixi10 robustness lesion, end to end"][-1]],
              "shipped focal", round(les.qc_measures["unexpected_csf_ml"], 2), flush=True)
    print(f"\nlargest CSF-or-GM region (ml) where >= T of the atlas subjects have WM; T = {SHARES}\n")
    for name, rows in sets.items():
        v = np.array(rows)
        print(f"{name} (n {len(v)}):")
        for j, t in enumerate(SHARES):
            x = v[:, j]
            print(f"  T {t}: median {np.median(x):.2f}, 95th pct {np.percentile(x, 95):.2f}, max {x.max():.2f}; "
                  f"above 2 / 4 / 6 / 8 ml: {(x > 2).sum()} / {(x > 4).sum()} / {(x > 6).sum()} / {(x > 8).sum()}")


if __name__ == "__main__":
    main()
