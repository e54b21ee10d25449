"""Dice of the shipped ResUNet on Cam-CAN ``test`` with its probabilities averaged over the scan
and its left-right mirror (test-time augmentation), against the usual single pass. Prints running
means (CSF, GM, WM) every 10 subjects and the final ones. ~10 min on 2 cores.

    .venv/bin/python scripts/segmentation_mirror_experiment.py
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import pipeline
from BrainAgeLib import segmentation as seg
from BrainAgeLib.io import read_image
from BrainAgeLib.training.data import camcan_paths, dice_scores, read_camcan_subjects

DATA = "../shared/data/camcan"
single_pass = seg.segment_array
MIRROR = {"on": False}


def segment_array(net, array, device="cpu"):
    """The usual probabilities, or (``MIRROR["on"]``) their mean with the mirrored scan's, mirrored back."""
    p = single_pass(net, array, device)
    if not MIRROR["on"]:
        return p
    q = single_pass(net, np.ascontiguousarray(array[:, :, ::-1]), device)[:, :, :, ::-1]
    return (0.5 * (p + q)).astype(np.float32)


def main() -> None:
    pipeline.segment_array = segment_array
    subjects = [r for r in read_camcan_subjects(DATA) if r["split"] == "test"]
    res = {False: [], True: []}
    for i, r in enumerate(subjects):
        p = camcan_paths(DATA, r["subject_id"])
        img = read_image(p["image"])
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"])))
        for on in (False, True):
            MIRROR["on"] = on
            _, _, labels = pipeline.segment_image(img)
            res[on].append(dice_scores(sitk.GetArrayFromImage(labels), ref))
        if (i + 1) % 10 == 0:
            print(i + 1, {("mirror" if k else "single"): np.round(np.mean(v, 0), 4).tolist() for k, v in res.items()},
                  flush=True)
    for k, v in res.items():
        print("scan + mirror" if k else "single pass", "Dice CSF / GM / WM", np.round(np.mean(v, 0), 4).tolist())


if __name__ == "__main__":
    main()
