"""The feature cache the age models learn from (segmented once per subject)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..preprocessing import normalize_intensity
from .augmentation import gaussian_blur
from .data import camcan_paths, read_camcan_subjects


REGIONAL_CELLS = (4, 6)   # cell sizes (2 mm voxels: 8 and 12 mm) compared for approach A


CACHE_BLUR_SIGMA = (0.3, 1.0)   # voxels (2 mm) of the blurred copy each subject gets in the cache


def model_space_features(data_dir, cache_path, log=print, splits=("reg_train", "test")) -> dict:
    """Segment every subject of ``splits`` with the shipped ResUNet and cache what the age
    models learn from: regional/global tissue fractions (approach A) and CNN inputs (B).

    The cache is an ``.npz`` keyed by subject; it is rebuilt when missing.
    """
    from ..cnn import cnn_input
    from ..models import load_resunet
    from ..segmentation import segment_array
    from ..volumes import global_fractions, regional_fractions
    cache_path = Path(cache_path)
    if cache_path.exists():
        cached = dict(np.load(cache_path))
        if all(f"regional_c{c}" in cached for c in REGIONAL_CELLS) and "global_blur" in cached:
            return cached
        log(f"{cache_path} predates the current feature set: rebuilding it")
    rows = [r for r in read_camcan_subjects(data_dir) if r["split"] in splits]
    net = load_resunet()
    blur_rng = np.random.default_rng(20261125)
    out = {k: [] for k in ("subject_id", "age", "split", "global", "global_blur", "cnn", "cnn_blur",
                           "blur_sigma")}
    out.update({f"regional_c{c}{v}": [] for c in REGIONAL_CELLS for v in ("", "_blur")})
    t0 = time.time()
    for i, r in enumerate(rows):
        img = sitk.ReadImage(str(camcan_paths(data_dir, r["subject_id"])["image"]))
        arr = normalize_intensity(sitk.GetArrayFromImage(img))
        prob = segment_array(net, arr)
        out["subject_id"].append(r["subject_id"])
        out["age"].append(r["age"])
        out["split"].append(r["split"])
        for c in REGIONAL_CELLS:
            out[f"regional_c{c}"].append(regional_fractions(prob, c))
        out["global"].append(global_fractions(prob))
        out["cnn"].append(cnn_input(arr, prob).astype(np.float16))
        # the same scan softer (as after interpolation or from another scanner), segmented again:
        # approach B learns that blur is not age
        sigma = float(blur_rng.uniform(*CACHE_BLUR_SIGMA))
        soft = gaussian_blur(torch.from_numpy(arr.astype(np.float32))[None, None], sigma)[0, 0].numpy()
        soft = soft * (arr > 0) if blur_rng.random() < 0.5 else soft
        prob_soft = segment_array(net, soft)
        out["cnn_blur"].append(cnn_input(soft, prob_soft).astype(np.float16))
        out["global_blur"].append(global_fractions(prob_soft))
        for c in REGIONAL_CELLS:
            out[f"regional_c{c}_blur"].append(regional_fractions(prob_soft, c))
        out["blur_sigma"].append(sigma)
        if (i + 1) % 50 == 0:
            log(f"segmented {i + 1}/{len(rows)} subjects ({time.time() - t0:.0f} s)")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **arrays)
    return arrays


