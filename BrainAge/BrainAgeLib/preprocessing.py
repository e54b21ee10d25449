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


# Median normalised intensity of GM and WM (as the ResUNet labels them) over the 47 Cam-CAN
# seg_train subjects: BrainAgeLib.training.tissue_intensity_landmarks reproduces them.
TISSUE_LANDMARKS = {"gm": 0.7077, "wm": 0.9098}


def tissue_medians(array: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """Median intensity of GM and WM under the labels of ``prob`` (4, z, y, x); NaN if absent."""
    lab = prob.argmax(0)
    return tuple(float(np.median(array[lab == c])) if (lab == c).any() else float("nan")
                 for c in (2, 3))


def harmonize_intensities(array: np.ndarray, prob: np.ndarray,
                          landmarks: dict[str, float] = TISSUE_LANDMARKS,
                          medians: tuple[float, float] | None = None) -> np.ndarray:
    """Map a normalised T1 piecewise-linearly so that its GM and WM medians (under the labels of
    ``prob``, (4, z, y, x); or ``medians`` when already computed by :func:`tissue_medians`)
    take the training data's values (``landmarks``).

    Scanners differ in grey/white contrast; the networks learned Cam-CAN's. Tissue medians,
    unlike histogram percentiles, do not move with atrophy, so the age signal is kept.
    Background (0) stays 0; the result is float32 clipped to [0, 2].
    """
    gm, wm = medians if medians is not None else tissue_medians(array, prob)
    if not (np.isfinite(gm) and np.isfinite(wm) and 0 < gm < wm):
        return np.asarray(array, np.float32)          # no T1 contrast: left to the contrast QC
    g, w = landmarks["gm"], landmarks["wm"]
    slope = (w - g) / (wm - gm)
    out = np.interp(array, [0.0, gm, wm, 2.0], [0.0, g, w, w + slope * (2.0 - wm)])
    out[array <= 0] = 0
    return np.clip(out, 0.0, 2.0).astype(np.float32)


# ---------------------------------------------------------------------------------------
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import SimpleITK as sitk  # noqa: E402

from .brain_extraction import extract_brain, sitk_to_nibabel  # noqa: E402,F401 (re-exported)
from .input_checks import check_t1_like, to_nonnegative  # noqa: E402


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
    registered: bool = True                # False for inputs already on the template grid
    sharpness: float | None = None         # edge_sharpness, set once segmented
    measures: dict = field(default_factory=dict)   # image QC measures (BrainAgeLib.qc)


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * 100)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


WORK_SPACING_MM = 2.0          # brain extraction, N4 and registration run at (at most) this spacing
SKULL_STRIPPED_MAX_ML = 2500.0  # a non-zero volume below this is a brain, not a head
SKULL_STRIPPED_MIN_ZERO = 0.3   # ... and at least this fraction of the voxels is exactly 0
# correlation with the template below which registration is suspect. The rigid registration keeps
# each brain's size, so brains larger or smaller than the template's correlate less than after an
# affine fit: on the 130 clean IXI heads, similarity median 0.84, 5th percentile 0.76, minimum 0.60
MIN_SIMILARITY = 0.70
BET_ERODE_VOXELS = 1           # erosion of deepbet's mask on the working grid (see preprocess)
MIN_BRAIN_ML = 500.0           # brain extraction finding less than this is a failure
N4_FIT_SPACING_MM = 8.0        # N4 fits its bias field on a copy this coarse (the field is smooth)
N4_ITERATIONS = (30, 30, 30, 30)  # per fitting level (4 levels: control points every ~25 mm at the end)
# Scans already on the template grid: N4 is fitted inside their non-zero voxels and applied only
# when the fitted field's SD (log units, within the brain eroded by 4 mm) exceeds this: twice the
# largest of the 60 held-out clean Cam-CAN reg_train scans (0.053; scripts/template_grid_n4.py)
BIAS_FIELD_MAX_SD = 0.10


def smooth_to_spacing(image: sitk.Image, spacing: tuple[float, ...]) -> sitk.Image:
    """``image`` smoothed so that no detail finer than ``spacing`` (mm, per axis) is left: a
    Gaussian of FWHM sqrt(target² - voxel²) along each axis whose voxels are finer than the
    target, nothing along the others (an anisotropic or thick-slice input keeps its thick axis
    as it is). Returns ``image`` itself when no axis needs smoothing."""
    out = image
    for axis, (s, t) in enumerate(zip(image.GetSpacing(), spacing)):
        sigma = max(0.0, t ** 2 - s ** 2) ** 0.5 / 2.355
        if sigma > 0.1 * s:                   # below a tenth of a voxel a Gaussian is a no-op
            out = sitk.RecursiveGaussian(out, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder,
                                         axis)
    return out


def _resample_isotropic(image: sitk.Image, spacing: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """``image`` on an isotropic grid of ``spacing`` mm (same origin and direction, same extent).

    Any voxel shape works (e.g. 0.5 x 0.5 x 6 mm slices): axes finer than ``spacing`` are
    smoothed first (:func:`smooth_to_spacing`) so that no aliasing reaches the coarser grid,
    coarser axes are interpolated. Returns ``image`` itself when it already has that spacing.
    """
    if all(abs(s - spacing) < 1e-3 for s in image.GetSpacing()):
        return image
    size = [max(1, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    # keep the physical centre: the first voxel centre moves by half the change of voxel size
    direction = np.array(image.GetDirection()).reshape(3, 3)
    shift = [(spacing - s) / 2 for s in image.GetSpacing()]
    origin = tuple(np.array(image.GetOrigin()) + direction @ np.array(shift))
    src = image
    if interpolator != sitk.sitkNearestNeighbor:
        src = smooth_to_spacing(image, (spacing,) * 3)
    return sitk.Resample(src, size, sitk.Transform(), interpolator, origin,
                         (spacing,) * 3, image.GetDirection(), 0.0, image.GetPixelID())


def looks_skull_stripped(image: sitk.Image) -> bool:
    """True when the non-zero part of ``image`` is brain-sized and the rest is exactly 0.

    A whole-head scan has noise (never exactly 0) around the head and a non-zero volume of
    3-6 litres; a brain-extracted one keeps about 1-1.8 litres and zeros elsewhere.
    """
    arr = sitk.GetArrayViewFromImage(image)
    nonzero_ml = float(np.count_nonzero(arr)) * float(np.prod(image.GetSpacing())) / 1000
    return nonzero_ml < SKULL_STRIPPED_MAX_ML and (arr == 0).mean() > SKULL_STRIPPED_MIN_ZERO


def n4_bias_correct(image: sitk.Image, mask: sitk.Image | None = None,
                    fit_spacing: float = N4_FIT_SPACING_MM,
                    iterations: tuple[int, ...] = N4_ITERATIONS) -> sitk.Image:
    """N4 bias-field correction (float32, same grid).

    The field is fitted on a copy shrunk to about ``fit_spacing`` mm, inside ``mask`` (the brain;
    default: voxels above the 20th percentile of the non-zero ones), and applied at full
    resolution through ``GetLogBiasFieldAsImage``: the field is smooth, so little is lost.
    """
    img = sitk.Cast(image, sitk.sitkFloat32)
    if mask is None:
        arr = sitk.GetArrayViewFromImage(img)
        thr = float(np.percentile(arr[arr > 0], 20)) if (arr > 0).any() else 0.0
        mask = sitk.BinaryThreshold(img, thr, 1e30, 1, 0)
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    shrink = [max(1, int(round(fit_spacing / s))) for s in img.GetSpacing()]
    small = sitk.Shrink(img, shrink)
    small_mask = sitk.Shrink(mask, shrink)
    if not sitk.GetArrayViewFromImage(small_mask).any():
        return img
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations))
    n4.SetConvergenceThreshold(1e-4)
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(img)
    return sitk.Cast(img / sitk.Exp(log_field), sitk.sitkFloat32)


def bias_field_sd(image: sitk.Image, corrected: sitk.Image, mask: sitk.Image) -> float:
    """SD of the log bias field (log ``image`` − log ``corrected``) inside ``mask`` eroded by two
    voxels (the brain's edge, half background, says little about the field). 0.05 is about 5 %
    intensity variation across the brain."""
    inner = sitk.GetArrayViewFromImage(sitk.BinaryErode(mask, [2] * 3)) > 0
    a = sitk.GetArrayViewFromImage(image)[inner]
    c = sitk.GetArrayViewFromImage(corrected)[inner]
    ok = (a > 0) & (c > 0)
    return float(np.std(np.log(a[ok]) - np.log(c[ok]))) if ok.sum() > 100 else 0.0


def template_grid_array(image: sitk.Image) -> tuple[np.ndarray, float]:
    """A brain-extracted scan already on the template grid (Cam-CAN-like) as the networks read
    it, float32 (z, y, x), and the SD of its bias field (:func:`bias_field_sd`).

    N4 is fitted inside its non-zero voxels; the correction is applied only when the field's SD
    exceeds ``BIAS_FIELD_MAX_SD``, i.e. when the scan is less homogeneous than any training scan
    (the training scans were bias-corrected before release and are read as they are). Without
    this, a bias field moved such a scan's age by up to 6.7 years, unflagged. Applying N4 to
    every scan was tried and measured (docs/generalisation.md): it made the ages of
    moved (motion-corrupted) scans move twice as much. Then :func:`normalize_intensity`."""
    nonzero = sitk.Cast(image > 0, sitk.sitkUInt8)
    corrected = n4_bias_correct(image, nonzero)
    sd = bias_field_sd(sitk.Cast(image, sitk.sitkFloat32), corrected, nonzero)
    if sd > BIAS_FIELD_MAX_SD:
        image = sitk.Mask(corrected, nonzero)
    return normalize_intensity(sitk.GetArrayViewFromImage(image)), sd


REGISTRATION = "rigid"         # the raw-scan path's registration: rigid (6 dof) or affine (12; release <= 8)
_TRANSFORMS = {"rigid": sitk.Euler3DTransform, "affine": lambda: sitk.AffineTransform(3)}


def register_to_template(moving: sitk.Image, template: sitk.Image,
                         transform: sitk.Transform | None = None) -> sitk.AffineTransform:
    """Rigid transform mapping template (model-space) points to points of ``moving``.

    Both images are skull-stripped and normalised; moments initialisation, then a 3-level
    registration maximising the correlation of intensities. ``transform``: the kind of
    transform optimised (default: :data:`REGISTRATION`'s, rigid: ``sitk.Euler3DTransform()``, 6
    degrees of freedom; ``sitk.AffineTransform(3)`` for 12), returned as an affine transform
    either way.

    Rigid because the brain must keep its size: an affine fit to the mean template rescaled
    already-aligned Cam-CAN brains to 0.78-1.12 of their volume and moved their age with the scale
    (r = +0.72), making old brains younger; leave-one-site-out (Cam-CAN -> IXI) ensemble MAE
    7.37 years affine, 5.85 rigid (``scripts/registration_experiment.py``).
    """
    fixed = sitk.Cast(template, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    tx = sitk.CenteredTransformInitializer(fixed, moving, transform or _TRANSFORMS[REGISTRATION](),
                                           sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                 numberOfIterations=100, relaxationFactor=0.6,
                                                 gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    out = sitk.AffineTransform(3)
    out.SetCenter(tx.GetCenter())
    out.SetMatrix(tx.GetMatrix())
    out.SetTranslation(tx.GetTranslation())
    return out


def template_similarity(image: sitk.Image, template: sitk.Image) -> float:
    """Pearson correlation with the template inside the template's brain."""
    a = sitk.GetArrayViewFromImage(image)
    t = sitk.GetArrayViewFromImage(template)
    m = t > 0.05
    if a[m].std() == 0:
        return 0.0
    return float(np.corrcoef(a[m], t[m])[0, 1])


_INNER_BRAIN: tuple | None = None    # (template, erode_voxels, mask) of the last call


def _inner_brain(template: sitk.Image, erode_voxels: int) -> np.ndarray:
    """The template's brain (> 0.05) eroded by ``erode_voxels``, bool (z, y, x); computed once for
    the shipped template, which is loaded once (``models.load_template``)."""
    global _INNER_BRAIN
    if _INNER_BRAIN is None or _INNER_BRAIN[0] is not template or _INNER_BRAIN[1] != erode_voxels:
        inner = sitk.BinaryErode(sitk.Cast(template > 0.05, sitk.sitkUInt8), [erode_voxels] * 3)
        _INNER_BRAIN = (template, erode_voxels, sitk.GetArrayFromImage(inner) > 0)
    return _INNER_BRAIN[2]


def tissue_contrast_similarity(image: sitk.Image, template: sitk.Image, erode_voxels: int = 3) -> float:
    """Pearson correlation with the template inside the brain eroded by ``erode_voxels``.

    Away from the brain's edge the template's contrast is that of tissues (WM bright, CSF dark),
    so a T2-like or inverted image correlates negatively here even when the brain outline
    registers well (:func:`template_similarity` stays positive for them).
    """
    m = _inner_brain(template, erode_voxels)
    a = sitk.GetArrayViewFromImage(image)[m]
    t = sitk.GetArrayViewFromImage(template)[m]
    if a.size < 2 or a.std() == 0:
        return 0.0
    return float(np.corrcoef(a, t)[0, 1])


def _box_on_grid(reference: sitk.Image, corners, margin: int = 1):
    """The part of ``reference``'s grid that holds the physical points ``corners`` (n, 3, mm; the
    corners of a box, whose every point then lies in their bounding box), widened by ``margin``
    voxels and clipped to the grid: ``(size, origin, slices)``, the sub-grid's size (x, y, z) and
    origin (mm) and its place in ``reference``'s (z, y, x) array; None when it is empty."""
    idx = np.array([reference.TransformPhysicalPointToContinuousIndex([float(v) for v in c]) for c in corners])
    lo = np.maximum(np.floor(idx.min(0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(idx.max(0)).astype(int) + margin + 1, np.array(reference.GetSize()))
    if (hi <= lo).any():
        return None
    origin = reference.TransformIndexToPhysicalPoint([int(v) for v in lo])
    return [int(v) for v in hi - lo], origin, tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1]))


def _index_box_corners(image: sitk.Image, where: np.ndarray, widen: int = 1) -> np.ndarray | None:
    """Physical corners (8, 3, mm) of the index box of ``where`` (bool, z, y, x, on ``image``'s
    grid) widened by ``widen`` voxels: every point whose linear interpolation reads a voxel of
    ``where`` lies inside them. None when ``where`` is empty."""
    nz = np.nonzero(where)
    if nz[0].size == 0:
        return None
    lo = np.array([a.min() for a in nz][::-1], float) - widen        # (x, y, z)
    hi = np.array([a.max() for a in nz][::-1], float) + widen
    return np.array([image.TransformContinuousIndexToPhysicalPoint([float(v) for v in
                     np.where([i & 1, i & 2, i & 4], hi, lo)]) for i in range(8)])


def _mask_to_grid(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A binary mask on another grid: linear interpolation then 0.5 threshold (smooth edges
    on finer grids), nearest neighbour when the grids are the same. Only the part of the grid
    around the mask is interpolated (the rest is 0 either way)."""
    if same_grid(mask, reference):
        out = sitk.Cast(mask, sitk.sitkUInt8)
        out.CopyInformation(reference)
        return out
    arr = np.zeros(reference.GetSize()[::-1], np.uint8)
    corners = _index_box_corners(mask, sitk.GetArrayViewFromImage(mask) > 0)
    box = None if corners is None else _box_on_grid(reference, corners)
    if box is not None:
        size, origin, where = box
        r = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), size, sitk.Transform(), sitk.sitkLinear, origin,
                          reference.GetSpacing(), reference.GetDirection(), 0.0, sitk.sitkFloat32)
        arr[where] = sitk.GetArrayViewFromImage(r) >= 0.5
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(reference)
    return out


def preprocess(image: sitk.Image, skull_stripped: bool | None = None,
               progress: Callable[[float, str], None] | None = None) -> Preprocessed:
    """Bring a validated T1 into model space (``image`` is never modified).

    Inputs already on the template grid (Cam-CAN-like) keep their grid (identity transform):
    bias-corrected only when their bias field exceeds the training scans'
    (:func:`template_grid_array`), and normalised. Others, in any orientation and spacing:
    resampled to a working copy of at most 2 mm, brain-extracted (deepbet) unless already
    skull-stripped, bias-corrected (N4, fitted inside the brain), rigidly registered to the
    template (:func:`register_to_template`), resampled onto its grid (B-spline) and normalised.
    ``skull_stripped``: True skips brain extraction, False forces it, None detects it
    (:func:`looks_skull_stripped`).

    Raises :class:`~BrainAgeLib.io.InputError` for label maps, CT-like ranges and failed brain
    extraction; doubtful contrast or registration become warnings in ``qc``.
    """
    from .io import InputError
    from .models import load_template
    report = progress or (lambda f, m: None)
    template = load_template()
    check_t1_like(image)
    from .qc import geometry_qc, wraparound_qc
    early_qc = geometry_qc(image) + wraparound_qc(image)   # on the input as stored
    image, _ = to_nonnegative(image)     # a new image when shifted or clamped; the input is kept
    if same_grid(image, template):
        arr, field_sd = template_grid_array(image)
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(template)
        return Preprocessed(out, sitk.Transform(3, sitk.sitkIdentity), skull_stripped=True, registered=False,
                            similarity=template_similarity(out, template), qc=early_qc,
                            measures={"bias_field_sd": round(field_sd, 4)})
    qc: list[str] = list(early_qc)
    report(0.05, "reorienting and resampling to the working grid")
    # reorient first (axes permuted/flipped to LPS, no interpolation): the same scan stored in
    # another axis order then gives the very same working copy, hence the same result
    oriented = sitk.DICOMOrient(image, "LPS")
    work = sitk.Cast(_resample_isotropic(oriented, max(WORK_SPACING_MM, min(oriented.GetSpacing()))),
                     sitk.sitkFloat32)
    # detect on the input itself: the smoothing of a finer input leaves no exact 0 in ``work``
    stripped = looks_skull_stripped(image) if skull_stripped is None else bool(skull_stripped)
    mask = None
    if stripped:
        brain_mask = _mask_to_grid(sitk.Cast(image != 0, sitk.sitkUInt8), work)
    else:
        report(0.15, "brain extraction")
        # deepbet's brain reaches the dura; the training data's masks stop about one 2 mm voxel
        # inside it (their reference CSF layer lies outside the mask): erode to match them
        brain_mask = sitk.BinaryErode(extract_brain(work), [BET_ERODE_VOXELS] * 3)
        mask = brain_mask
    brain_ml = float(sitk.GetArrayViewFromImage(brain_mask).sum()) * float(np.prod(work.GetSpacing())) / 1000
    if brain_ml < MIN_BRAIN_ML:
        raise InputError(f"brain extraction found only {brain_ml:.0f} ml of brain: is this a head MRI?"
                         if not stripped else
                         f"the skull-stripped input holds only {brain_ml:.0f} ml of non-zero voxels")
    report(0.45, "bias correction (N4)")
    brain = sitk.Mask(n4_bias_correct(work, brain_mask), brain_mask)
    report(0.65, "registration to the template")
    b = sitk.GetArrayViewFromImage(brain)
    scale = float(np.percentile(b[b > 0], NORM_PERCENTILE))
    moving = sitk.Clamp(brain / scale, sitk.sitkFloat32, 0.0, 2.0)
    transform = register_to_template(moving, template)
    report(0.9, "resampling to model space")
    # cubic B-spline, not linear: the training images were never re-interpolated, and the blur of
    # linear interpolation made brains look older (ixi10 age MAE 9.0 -> 4.6 years)
    resampled = sitk.Resample(brain, template, transform, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
    out = sitk.GetImageFromArray(normalize_intensity(sitk.GetArrayViewFromImage(resampled)))
    out.CopyInformation(template)
    sim = template_similarity(out, template)
    contrast = tissue_contrast_similarity(out, template)
    if contrast < 0:
        qc.append(f"not a T1: inverted contrast (CSF brighter than WM r={contrast:.2f})")
    elif sim < MIN_SIMILARITY:
        qc.append(f"registration: low similarity to template (r={sim:.2f})")
    if mask is not None:
        mask = _mask_to_grid(mask, image)
    report(1.0, "preprocessing done")
    return Preprocessed(out, transform, skull_stripped=stripped, brain_mask=mask, similarity=sim, qc=qc)


def _on_model_grid(reference: sitk.Image, prep: Preprocessed) -> bool:
    """True when ``reference`` is the template's grid and ``prep`` did not move the scan (identity
    transform): model-space arrays are then already on ``reference``'s grid."""
    from .models import load_template
    return same_grid(reference, load_template()) and prep.transform.GetName() == "Transform"


def _channels_on_grid(prob: np.ndarray, prep: Preprocessed, reference: sitk.Image, box=None):
    """Each class probability of ``prob`` (4, z, y, x, model space) on ``reference``'s grid,
    one float32 (z, y, x) array at a time (linear interpolation; outside the model space:
    background). ``box``: only that part of the grid (:func:`_box_on_grid`'s size and origin)."""
    from .models import load_template
    template = load_template()
    if box is None and _on_model_grid(reference, prep):
        yield from (np.asarray(p, np.float32) for p in prob)
        return
    size, origin = (reference.GetSize(), reference.GetOrigin()) if box is None else box[:2]
    inverse = prep.transform.GetInverse()
    for c in range(prob.shape[0]):
        pc = sitk.GetImageFromArray(np.ascontiguousarray(prob[c]))
        pc.CopyInformation(template)
        yield sitk.GetArrayFromImage(sitk.Resample(pc, size, inverse, sitk.sitkLinear, origin,
                                                   reference.GetSpacing(), reference.GetDirection(),
                                                   1.0 if c == 0 else 0.0, sitk.sitkFloat32))


def to_input_grid(prob: np.ndarray, prep: Preprocessed, reference: sitk.Image) -> sitk.Image:
    """Labels (uint8) on ``reference``'s grid from model-space class probabilities (4, z, y, x).

    Each class probability is resampled linearly and the most likely class taken, so that
    tissue borders stay smooth at finer input resolutions; one channel is held at a time. Only
    the part of the grid that the tissue (voxels whose most likely class is not background)
    maps onto is resampled: elsewhere every interpolated voxel mixes background voxels, so it is
    background (a whole head at 1 mm: 40 % of the grid is left out).
    """
    from .models import load_template
    best = np.zeros(reference.GetSize()[::-1], np.uint8)
    box = None
    if not _on_model_grid(reference, prep):
        corners = _index_box_corners(load_template(), np.asarray(prob).argmax(0) > 0)
        if corners is not None:
            box = _box_on_grid(reference, [prep.transform.TransformPoint([float(v) for v in c]) for c in corners])
        if box is None:                    # no tissue, or none of it on this grid
            out = sitk.GetImageFromArray(best)
            out.CopyInformation(reference)
            return out
    where = box[2] if box is not None else (slice(None),) * 3
    best_p = None
    for c, r in enumerate(_channels_on_grid(prob, prep, reference, box)):
        if best_p is None:
            best_p = r
        else:
            better = r > best_p
            best[where][better] = c
            best_p = np.maximum(best_p, r)
    out = sitk.GetImageFromArray(best)
    out.CopyInformation(reference)
    return out


def input_grid_probabilities(prob: np.ndarray, prep: Preprocessed, reference: sitk.Image) -> sitk.Image:
    """Class probabilities on ``reference``'s grid: a float32 vector image of 4 components
    (background, CSF, GM, WM) whose arg-max is :func:`to_input_grid`'s labels."""
    arr = np.stack(list(_channels_on_grid(prob, prep, reference)), axis=-1)
    out = sitk.GetImageFromArray(arr, isVector=True)
    out.CopyInformation(reference)
    return out
