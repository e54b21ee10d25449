"""Is this a T1-weighted MRI? Checks that run before any work: a label map or a CT is refused
(told from the histogram's shape, not its minimum), and a signed storage is brought to
magnitudes (>= 0)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

# CT detection from the histogram's shape (Hounsfield units): air near -1000 HU, and the head's
# non-air voxels gathered in the narrow soft-tissue window (brain 0-80 HU, scalp, muscle) with the
# mode there. An MRI stored with an offset of -1024 also has its background near -1000, but its
# tissues spread over hundreds of units (ixi10 offset by -1024: 26-30 % of the non-air voxels in
# the window, modes -235..+105), a head CT keeps most of them there (brain + scalp ~70-85 %).
CT_AIR_HU = -900.0             # voxels below this are air (or the scanner's padding)
CT_MIN_AIR_SHARE = 0.05        # ... and a head CT has at least this share of them
CT_SOFT_WINDOW_HU = (-100.0, 150.0)   # soft tissue (fat to blood)
CT_MODE_WINDOW_HU = (-30.0, 100.0)    # where a head CT's most common non-air value lies
CT_MIN_SOFT_SHARE = 0.5        # share of the non-air (> -500 HU) voxels in the soft-tissue window


def ct_likeness(array: np.ndarray) -> dict[str, float]:
    """Histogram-shape measures that tell a CT from an MRI (see :func:`check_t1_like`):
    ``air_share`` (voxels below -900), ``mode`` (most common value of the voxels above -500, in
    10-unit bins), ``soft_share`` (share of those in -100..150) and ``bone_share`` (above 300)."""
    a = np.asarray(array, np.float32).ravel()
    nonair = a[a > -500]
    out = {"air_share": float((a < CT_AIR_HU).mean()), "mode": float("nan"),
           "soft_share": 0.0, "bone_share": 0.0}
    if nonair.size:
        top = min(float(nonair.max()), 4000.0)
        h, edges = np.histogram(nonair, bins=np.arange(-500.0, top + 20.0, 10.0))
        out["mode"] = float(edges[h.argmax()] + 5.0)
        lo, hi = CT_SOFT_WINDOW_HU
        out["soft_share"] = float(((nonair > lo) & (nonair < hi)).mean())
        out["bone_share"] = float((nonair > 300).mean())
    return out


def looks_like_ct(array: np.ndarray) -> bool:
    """True for a Hounsfield-unit histogram: air near -1000 and the rest a soft-tissue peak."""
    m = ct_likeness(array)
    return (m["air_share"] >= CT_MIN_AIR_SHARE and CT_MODE_WINDOW_HU[0] <= m["mode"] <= CT_MODE_WINDOW_HU[1]
            and m["soft_share"] >= CT_MIN_SOFT_SHARE)


def check_t1_like(image: sitk.Image, name: str = "image") -> list[str]:
    """Reject label maps and CT scans before any work is done.

    Raises :class:`~BrainAgeLib.io.InputError` for a label map (a few integer values) or a
    CT, told from the shape of its histogram (:func:`looks_like_ct`), not its minimum: an MRI
    stored with a negative offset (e.g. -1024) is accepted and shifted by :func:`to_nonnegative`.
    Returns QC warnings (none at present).
    """
    from .io import InputError
    arr = sitk.GetArrayViewFromImage(image)
    sample = arr[::2, ::2, ::2]
    values = np.unique(sample)
    if len(values) <= 16 and np.allclose(values, np.round(values)):
        raise InputError(f"{name}: holds only {len(values)} distinct integer values: this looks like "
                         "a label map or mask, not a T1-weighted MRI")
    if looks_like_ct(sample):
        m = ct_likeness(sample)
        raise InputError(f"{name}: looks like a CT (Hounsfield units: {100 * m['air_share']:.0f} % air "
                         f"near -1000, {100 * m['soft_share']:.0f} % of the head in the soft-tissue "
                         f"window, peak at {m['mode']:.0f}); BrainAge needs a T1-weighted MRI")
    return []


def to_nonnegative(image: sitk.Image) -> tuple[sitk.Image, float]:
    """``image`` as MRI magnitudes (>= 0) and the offset added to it.

    A signed storage (e.g. background at -1024) is shifted so that its 1st percentile, the
    background, becomes 0; then everything is clamped at 0 (a magnitude is never negative: the
    voxels left below are noise or int16 wrap-around, which :func:`~BrainAgeLib.qc.wraparound_qc`
    looks for first). Returns ``(image, 0.0)`` itself when no voxel is negative.
    """
    arr = sitk.GetArrayViewFromImage(image)
    if float(arr.min()) >= 0:
        return image, 0.0
    p1 = float(np.percentile(arr[::2, ::2, ::2], 1))
    offset = -p1 if p1 < 0 else 0.0
    img = sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Clamp(img + offset if offset else img, sitk.sitkFloat32, 0.0), offset
