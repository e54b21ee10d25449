"""Bring a T1 image into the model space and normalise its intensities.

The model space is that of the Cam-CAN training set: LPS, 2 mm isotropic,
98 x 116 x 94 voxels, skull-stripped (0 outside the brain), bias-corrected.
"""
from __future__ import annotations

import numpy as np

NORM_PERCENTILE = 99.5


def normalize_intensity(array: np.ndarray) -> np.ndarray:
    """Scale a skull-stripped T1 array so that its 99.5th percentile of brain voxels is 1.

    Background (0) stays 0; the result is clipped to [0, 2] and returned as float32.
    """
    array = np.asarray(array, dtype=np.float32)
    fg = array[array > 0]
    if fg.size == 0:
        raise ValueError("the image has no voxel above 0: nothing to normalise")
    scale = float(np.percentile(fg, NORM_PERCENTILE))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("cannot normalise intensities: degenerate intensity range")
    return np.clip(array / scale, 0.0, 2.0).astype(np.float32)


# ---------------------------------------------------------------------------------------
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import SimpleITK as sitk  # noqa: E402


@dataclass
class Preprocessed:
    """An input T1 brought into model space.

    ``transform`` maps points of the model space to points of the input (physical, mm), so
    that ``sitk.Resample(input, template, transform)`` gives ``image``'s geometry.
    """
    image: sitk.Image                      # normalised T1 on the template grid, float32
    transform: sitk.Transform
    skull_stripped: bool                   # the input was already brain-extracted
    brain_mask: sitk.Image | None = None   # input grid, uint8, when brain extraction ran
    similarity: float | None = None        # correlation with the template inside the brain
    qc: list[str] = field(default_factory=list)


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * 100)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def preprocess(image: sitk.Image, skull_stripped: bool | None = None,
               progress: Callable[[float, str], None] | None = None) -> Preprocessed:
    """Bring a validated T1 into model space (identity when it already is on the template grid)."""
    from .models import load_template
    template = load_template()
    if same_grid(image, template):
        arr = normalize_intensity(sitk.GetArrayViewFromImage(image))
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(template)
        return Preprocessed(out, sitk.Transform(3, sitk.sitkIdentity), skull_stripped=True)
    raise NotImplementedError("inputs off the model grid need registration")


def to_input_grid(prob: np.ndarray, prep: Preprocessed, reference: sitk.Image) -> sitk.Image:
    """Labels (uint8) on ``reference``'s grid from model-space class probabilities (4, z, y, x).

    Each class probability is resampled linearly and the most likely class taken, so that
    tissue borders stay smooth at finer input resolutions.
    """
    from .models import load_template
    template = load_template()
    if same_grid(reference, template) and prep.transform.GetName() == "Transform":
        out = sitk.GetImageFromArray(prob.argmax(0).astype(np.uint8))
        out.CopyInformation(reference)
        return out
    inverse = prep.transform.GetInverse()
    best = None
    best_p = None
    for c in range(prob.shape[0]):
        pc = sitk.GetImageFromArray(prob[c])
        pc.CopyInformation(template)
        r = sitk.GetArrayFromImage(sitk.Resample(pc, reference, inverse, sitk.sitkLinear,
                                                 1.0 if c == 0 else 0.0, sitk.sitkFloat32))
        if best is None:
            best, best_p = np.zeros(r.shape, np.uint8), r
        else:
            better = r > best_p
            best[better] = c
            best_p = np.maximum(best_p, r)
    out = sitk.GetImageFromArray(best)
    out.CopyInformation(reference)
    return out
