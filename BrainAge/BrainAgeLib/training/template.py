"""The registration template and the tissue intensity landmarks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..preprocessing import normalize_intensity
from .data import camcan_paths, read_camcan_subjects


def build_template(data_dir, out_path, splits=("seg_train", "reg_train")) -> Path:
    """Mean normalised T1 of the training subjects: the registration template (model space)."""
    rows = [r for r in read_camcan_subjects(data_dir) if r["split"] in splits]
    acc = None
    ref = None
    for r in rows:
        img = sitk.ReadImage(str(camcan_paths(data_dir, r["subject_id"])["image"]))
        arr = normalize_intensity(sitk.GetArrayFromImage(img)).astype(np.float64)
        acc = arr if acc is None else acc + arr
        ref = ref or img
    mean = sitk.GetImageFromArray((acc / len(rows)).astype(np.float32))
    mean.CopyInformation(ref)
    sitk.WriteImage(mean, str(out_path), useCompression=True)
    return Path(out_path)



def tissue_intensity_landmarks(data_dir, split: str = "seg_train") -> dict[str, float]:
    """Mean over ``split`` of the median normalised GM and WM intensity under the shipped
    ResUNet's labels: the targets of :func:`~BrainAgeLib.preprocessing.harmonize_intensities`
    (``preprocessing.TISSUE_LANDMARKS``)."""
    from ..models import load_resunet
    from ..segmentation import segment_array
    net = load_resunet()
    meds = []
    for r in read_camcan_subjects(data_dir):
        if r["split"] != split:
            continue
        arr = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths(data_dir, r["subject_id"])["image"]))))
        lab = segment_array(net, arr).argmax(0)
        meds.append([float(np.median(arr[lab == c])) for c in (2, 3)])
    gm, wm = np.mean(meds, axis=0)
    return {"gm": round(float(gm), 4), "wm": round(float(wm), 4)}


