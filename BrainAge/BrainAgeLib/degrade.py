"""A T1 as other acquisitions would give it: the degradations that ``brainage evaluate-robustness``
applies to clean scans. Each takes a SimpleITK image and returns a new one (the input is never
modified); random ones take a ``seed`` so that a run can be repeated.

TorchIO (the library made for acquisition-realistic artefacts) models the bias field, the
contrast change (gamma), motion and ghosting. Noise is Rician, as in magnitude MRI (TorchIO's
``RandomNoise`` is additive Gaussian, which would make the background negative). Thick slices are
a real new grid, smoothed by the slice profile and stored with the slice spacing, as a clinical
scanner writes them (TorchIO's ``RandomAnisotropy`` resamples back to the input grid). The lesion,
the int16 wrap-around and the offset are written here: no library models them.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import SimpleITK as sitk

from .qc import SLICE_ORIENTATIONS

ORIENTATIONS = {o: i for i, o in enumerate(SLICE_ORIENTATIONS)}   # thick axis: L-R, A-P, S-I (LPS x, y, z)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(reference)
    return out


def foreground_level(image: sitk.Image) -> float:
    """Mean intensity of the foreground (voxels above Otsu's threshold): the signal of the SNR."""
    arr = sitk.GetArrayViewFromImage(image)
    thr = sitk.OtsuThresholdImageFilter()
    thr.Execute(sitk.Cast(image, sitk.sitkFloat32))
    return float(arr[arr > thr.GetThreshold()].mean())


def rician_noise(image: sitk.Image, snr: float, seed: int = 0) -> sitk.Image:
    """Rician noise (the magnitude of complex Gaussian noise) of standard deviation
    ``foreground_level / snr`` in each channel: SNR 40 mild, 20 noticeable, 10 poor. float32."""
    rng = np.random.default_rng(seed)
    x = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
    sigma = foreground_level(image) / snr
    re = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    im = rng.normal(0, sigma, x.shape).astype(np.float32)
    return _like(np.sqrt(re * re + im * im), image)


def _torchio(image: sitk.Image, transform, seed: int) -> sitk.Image:
    """``transform`` (a TorchIO random transform) applied to ``image`` with a seeded draw."""
    import torch
    import torchio as tio
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = transform(tio.ScalarImage.from_sitk(sitk.Cast(image, sitk.sitkFloat32)))
    result = out.as_sitk()
    result.CopyInformation(image)
    return sitk.Cast(result, sitk.sitkFloat32)


def bias_field(image: sitk.Image, seed: int = 0, coefficients: float = 0.5) -> sitk.Image:
    """A smooth multiplicative bias field (TorchIO ``RandomBiasField``, polynomial of order 3,
    coefficients up to ``coefficients``: intensities vary by up to about a factor 2-3 across
    the head)."""
    import torchio as tio
    return _torchio(image, tio.RandomBiasField(coefficients=coefficients, order=3), seed)


def gamma(image: sitk.Image, value: float) -> sitk.Image:
    """Contrast change ``x ** value`` (TorchIO ``RandomGamma`` with a fixed gamma): 0.7 flattens
    the grey/white contrast, 1.4 stretches it."""
    import torchio as tio
    g = math.log(value)
    return _torchio(image, tio.RandomGamma(log_gamma=(g, g)), 0)


def motion_transform():
    """The head motion this project simulates (TorchIO ``RandomMotion``: 2 movements of up to 5
    degrees and 5 mm, mixed in k-space): :func:`motion`, and the motion copies the age models
    learn from (:func:`~BrainAgeLib.training.features.motion_copies`)."""
    import torchio as tio
    return tio.RandomMotion(degrees=5, translation=5, num_transforms=2)


def motion(image: sitk.Image, seed: int = 0) -> sitk.Image:
    """Head motion during the acquisition (:func:`motion_transform`)."""
    return _torchio(image, motion_transform(), seed)


def ghosting(image: sitk.Image, seed: int = 0) -> sitk.Image:
    """Ghosting along a phase-encoding axis (TorchIO ``RandomGhosting``: 4-10 ghosts of 50-100 %
    intensity, TorchIO's defaults)."""
    import torchio as tio
    return _torchio(image, tio.RandomGhosting(num_ghosts=(4, 10), intensity=(0.5, 1.0)), seed)


def image_axis(image: sitk.Image, orientation: str) -> int:
    """Index of the image axis closest to the anatomical axis through ``orientation``'s slices
    (sagittal: L-R, coronal: A-P, axial: S-I), whatever the stored axis order."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {tuple(ORIENTATIONS)}, not {orientation!r}")
    direction = np.abs(np.array(image.GetDirection()).reshape(3, 3))   # columns: image axes
    return int(direction[ORIENTATIONS[orientation]].argmax())


def thick_slices(image: sitk.Image, thickness_mm: float, orientation: str = "axial") -> sitk.Image:
    """The scan as stored with ``thickness_mm`` slices in ``orientation``: smoothed along the
    slice axis by the slice profile (Gaussian of FWHM sqrt(thickness² - spacing²)), then
    resampled (linear) to a new grid with that spacing along the axis, the same spacing in the
    others, over the same field of view (same centre, direction and physical extent). float32."""
    axis = image_axis(image, orientation)
    spacing = list(image.GetSpacing())
    s = spacing[axis]
    src = sitk.Cast(image, sitk.sitkFloat32)
    if thickness_mm > s:
        sigma = math.sqrt(thickness_mm ** 2 - s ** 2) / 2.355
        src = sitk.RecursiveGaussian(src, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
    size = list(image.GetSize())
    size[axis] = max(2, int(round(size[axis] * s / thickness_mm)))
    spacing[axis] = thickness_mm
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(centre) - direction @ ((np.array(size) - 1) / 2 * np.array(spacing))
    return sitk.Resample(src, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), tuple(spacing),
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def lesion(image: sitk.Image, labels: sitk.Image, volume_ml: float = 45.0, seed: int = 0) -> sitk.Image:
    """A CSF-like region of about ``volume_ml`` ml (a ball, 1 mm soft edge, clipped to the brain)
    centred in tissue: ``labels`` (same grid; 0 background, 1 CSF, 2 GM, 3 WM) place it where
    GM and WM lie at least 0.6 radius deep, and give its intensities, drawn from the scan's own
    CSF voxels (so noise and contrast are the scan's). float32."""
    from scipy.ndimage import distance_transform_edt
    rng = np.random.default_rng(seed)
    x = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
    lab = sitk.GetArrayViewFromImage(labels)
    if lab.shape != x.shape:
        raise ValueError("labels must lie on the image's grid")
    radius = (3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3)          # mm
    spacing_zyx = image.GetSpacing()[::-1]
    depth = distance_transform_edt((lab == 2) | (lab == 3), sampling=spacing_zyx)
    candidates = np.argwhere(depth >= min(0.6 * radius, depth.max()))
    centre = candidates[rng.integers(len(candidates))]
    grids = np.ogrid[tuple(slice(0, n) for n in x.shape)]
    dist = np.sqrt(sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, centre, spacing_zyx)))
    weight = np.clip(radius + 0.5 - dist, 0.0, 1.0) * (lab > 0)
    csf = x[lab == 1]
    if csf.size == 0:
        raise ValueError("labels hold no CSF to take the lesion's intensities from")
    fill = rng.choice(csf, size=x.shape).astype(np.float32)
    return _like(((1 - weight) * x + weight * fill).astype(np.float32), image)


def wraparound(image: sitk.Image, share: float = 0.003) -> sitk.Image:
    """The scan stored as int16 with a scale that makes its brightest ``share`` of foreground
    (Otsu) voxels overflow: they wrap to large negative values, as a careless export does. int16."""
    x = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)).astype(np.float64)
    thr = sitk.OtsuThresholdImageFilter()
    thr.Execute(sitk.Cast(image, sitk.sitkFloat32))
    fg = x[x > thr.GetThreshold()]
    scale = 32767.0 / float(np.quantile(fg, 1 - share))
    v = np.round(x * scale).astype(np.int64)
    v = (v + 32768) % 65536 - 32768                     # two's-complement wrap of int16
    return _like(v.astype(np.int16), image)


def offset(image: sitk.Image, value: float = -1024.0) -> sitk.Image:
    """The scan stored with ``value`` added (a signed export whose background sits at -1024). float32."""
    return sitk.Cast(image, sitk.sitkFloat32) + float(value)


def keep_zero_background(degraded: sitk.Image, clean: sitk.Image) -> sitk.Image:
    """``degraded`` with 0 wherever ``clean`` is exactly 0 (same grid): for skull-stripped inputs,
    whose artefacts were acquired before the brain was extracted."""
    mask = sitk.Cast(sitk.NotEqual(clean, 0), degraded.GetPixelID())
    return degraded * mask


Degradation = Callable[[sitk.Image, "sitk.Image | None", int], sitk.Image]


def conditions(thicknesses=(3, 4, 5, 6)) -> dict[str, Degradation]:
    """Every condition of ``evaluate-robustness`` by name: ``f(image, labels, seed) -> image``
    (``labels`` only used by the lesion)."""
    out: dict[str, Degradation] = {
        f"noise_snr{s}": (lambda s: lambda im, lab, seed: rician_noise(im, s, seed))(s) for s in (40, 20, 10)}
    out["bias_field"] = lambda im, lab, seed: bias_field(im, seed)
    out["gamma_0.7"] = lambda im, lab, seed: gamma(im, 0.7)
    out["gamma_1.4"] = lambda im, lab, seed: gamma(im, 1.4)
    out["motion"] = lambda im, lab, seed: motion(im, seed)
    out["ghosting"] = lambda im, lab, seed: ghosting(im, seed)
    for orient in ORIENTATIONS:
        for t in thicknesses:
            out[f"thick{t}mm_{orient}"] = (lambda t, o: lambda im, lab, seed: thick_slices(im, t, o))(t, orient)
    out["lesion_45ml"] = lambda im, lab, seed: lesion(im, lab, 45.0, seed)
    out["wraparound_int16"] = lambda im, lab, seed: wraparound(im, 0.003)
    out["offset_-1024"] = lambda im, lab, seed: offset(im, -1024.0)
    return out
