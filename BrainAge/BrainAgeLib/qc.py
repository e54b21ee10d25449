"""Image-level quality checks: measures of a T1 that tell when the age models cannot be trusted
with it, each turned into a warning past a threshold measured on healthy training scans.

- contrast: tissue means not ordered WM > GM > CSF (not a T1), GM/WM ratio off the training's;
- sharpness: grey/white border softer than anything the models were checked on;
- noise: signal-to-noise ratio of the white matter in model space (Rician-aware);
- intensity wrap-around: dark voxels inside bright tissue (int16/uint16 overflow, sign flips);
- focal abnormality: a large CSF-like region where healthy people have tissue, against a
  normative atlas of the Cam-CAN training subjects (``normative_tissue_atlas.nii.gz``);
- model level: approaches A and B disagreeing beyond what healthy training subjects show,
  features far from the training cohort (an out-of-distribution score), ages outside the
  training range; thresholds ship in ``age_model.json`` (``qc``) and ``feature_reference.json``.

Each measure is a function of arrays; each ``*_qc`` function returns a list of warnings (empty
when the check passes). Model-space arrays are (z, y, x), 2 mm voxels; ``prob`` is the ResUNet's
class probabilities (4, z, y, x: background, CSF, GM, WM).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .preprocessing import TISSUE_LANDMARKS, tissue_medians

MODEL_VOXEL_ML = 0.008        # one 2 mm model-space voxel


# ---- contrast --------------------------------------------------------------------------------
CONTRAST_TOLERANCE = 0.15     # relative departure of the GM/WM intensity ratio that gets a warning


def contrast_qc(prob: np.ndarray, image: np.ndarray) -> list[str]:
    """A warning unless mean intensities order as on a T1: WM > GM > CSF."""
    lab = prob.argmax(0)
    means = [float(image[lab == c].mean()) if (lab == c).any() else float("nan") for c in (1, 2, 3)]
    if not (means[2] > means[1] > means[0]):
        return ["not a T1: tissue contrast WM > GM > CSF not found"]
    return []


def grey_white_contrast_qc(gm: float, wm: float, landmarks: dict[str, float] = TISSUE_LANDMARKS) -> list[str]:
    """A warning when the GM/WM intensity ratio departs from the training data's by more than
    ``CONTRAST_TOLERANCE`` (another sequence or a strongly different scanner)."""
    if not (np.isfinite(gm) and np.isfinite(wm) and wm > 0):
        return []
    ratio, ref = gm / wm, landmarks["gm"] / landmarks["wm"]
    if abs(ratio / ref - 1) > CONTRAST_TOLERANCE:
        return [f"unusual grey/white contrast (GM/WM intensity {ratio:.2f}, training {ref:.2f}): "
                "check the sequence; volumes and ages are less reliable"]
    return []


# ---- sharpness -------------------------------------------------------------------------------
# GM/WM edge sharpness (edge_sharpness) of the training scans: 0.53-0.85 on 60 Cam-CAN reg_train
# subjects (it rises with age, r = 0.76), 0.51-0.68 on 10 young test subjects, which fall to
# 0.46-0.59 / 0.39-0.49 when blurred by a Gaussian of 1 / 1.6 mm; ixi10 through the raw path:
# 0.61-0.67. The networks were trained to shrug off such blur (ages move by < 2 years up to
# 1.6 mm, evaluate-roundtrip); below this, an image is softer than anything verified.
# This release's domain-randomised ResUNet reads an IXI head blurred by 3 mm at 0.46 (sharp: 0.66):
# the threshold rose to 0.48; with this ResUNet the 60 held-out reg_train scans read 0.52-0.87
# (scripts/measure_image_qc.py), so no false alarm there. Release 9's rigid registration keeps the
# head's size, and that head blurred by 2 / 3 mm reads 0.49 / 0.48 (sharp 0.66, 1.6 mm 0.51): 0.50.
MIN_EDGE_SHARPNESS = 0.50


def edge_sharpness(array: np.ndarray, prob: np.ndarray, medians: tuple[float, float] | None = None) -> float:
    """How sharp the grey/white border of a model-space T1 is: the median gradient magnitude
    (per 2 mm voxel, Gaussian derivative of 0.5 voxel) on the GM side of the GM/WM border,
    divided by the WM - GM median intensity contrast. Dimensionless; NaN without GM and WM."""
    from scipy.ndimage import binary_dilation, gaussian_gradient_magnitude
    gm, wm = medians if medians is not None else tissue_medians(array, prob)
    lab = prob.argmax(0)
    border = (lab == 2) & binary_dilation(lab == 3)
    if not (np.isfinite(gm) and np.isfinite(wm) and wm > gm and border.any()):
        return float("nan")
    grad = gaussian_gradient_magnitude(np.asarray(array, np.float32), 0.5)
    return float(np.median(grad[border]) / (wm - gm))


def sharpness_qc(sharpness: float, minimum: float = MIN_EDGE_SHARPNESS) -> list[str]:
    """A warning when the grey/white border is softer than anything the age models were checked
    on: heavily blurred or interpolated images, which make brains look older."""
    if np.isfinite(sharpness) and sharpness < minimum:
        return [f"image much softer than the training scans (grey/white edge sharpness {sharpness:.2f} "
                f"< {minimum:.2f}): volumes and ages are less reliable"]
    return []


# ---- geometry ----------------------------------------------------------------------------------
MAX_SLICE_MM = 2.5            # thicker voxels than this get a warning (see README "Robustness")
# evaluate-robustness with this release's models (12 scans): 3 mm slices already move the age by
# 3.5 (axial) to 7.3 (coronal) years on average, so 3 mm is warned about (it was 3.0, exclusive).


SLICE_ORIENTATIONS = ("sagittal", "coronal", "axial")   # slices across L-R, A-P, S-I (LPS x, y, z)


def slice_geometry(image: sitk.Image, maximum: float = MAX_SLICE_MM) -> tuple[str, float] | None:
    """``(orientation, thickness_mm)`` of a thick-slice input: the orientation of the slices
    across its thickest voxel side (the anatomical axis closest to that image axis) and that
    side in mm; None when no side exceeds ``maximum`` mm."""
    spacing = np.array(image.GetSpacing())
    axis = int(spacing.argmax())
    if spacing[axis] <= maximum + 1e-3:
        return None
    direction = np.abs(np.array(image.GetDirection()).reshape(3, 3))   # columns: image axes
    return SLICE_ORIENTATIONS[int(direction[:, axis].argmax())], float(spacing[axis])


def geometry_qc(image: sitk.Image, maximum: float = MAX_SLICE_MM) -> list[str]:
    """A warning when the input's thickest voxel side exceeds ``maximum`` mm: thick slices lose
    the cortex's shape along one axis, which moves the ages more than anything else measured."""
    thick = max(image.GetSpacing())
    if thick > maximum + 1e-3:
        return [f"thick slices ({thick:.1f} mm > {maximum:g} mm): volumes and ages are less reliable"]
    return []


# ---- noise -----------------------------------------------------------------------------------
# White-matter SNR in model space (wm_snr) on the 60 Cam-CAN reg_train scans left out of the atlas
# (qc.atlas_held_out): 29-64, falling with age (r = -0.71: old WM has texture of its own); the
# same Cam-CAN scans with Rician noise of SNR 40 / 20 / 10 read 35-38 / 23 / 13, an ixi120 whole
# head 64 clean and 50 / 35 / 21 (2 mm inputs gain SNR from the resampling into model space).
# Re-measured with this release's ResUNet (scripts/measure_image_qc.py): clean 30.2-64.9, the
# same 60 scans with SNR 20 noise 19.9-23.3: 0 false alarms, 60 of 60 flagged.
MIN_WM_SNR = 25.0


def wm_snr(array: np.ndarray, prob: np.ndarray) -> float:
    """Signal-to-noise ratio of the white matter of a normalised model-space T1 (dimensionless).

    Noise: the robust spread (1.4826 MAD) of each core-WM voxel minus the mean of its six
    neighbours, divided by sqrt(7/6) (what that difference does to white noise); the high-pass
    leaves bias fields and the slow WM texture out. Signal: the median core-WM intensity,
    corrected for the Rician bias of magnitude images (median ~ sqrt(A² + σ²)). Core WM: WM
    probability > 0.9 with its six neighbours WM too. NaN when fewer than 500 such voxels.
    This is the SNR the networks see: a finer input, averaged into 2 mm voxels, gains SNR.
    """
    from scipy.ndimage import binary_erosion, convolve
    x = np.asarray(array, np.float32)
    cross = np.zeros((3, 3, 3), bool)
    cross[1, 1, :] = cross[1, :, 1] = cross[:, 1, 1] = True
    core = binary_erosion(prob[3] > 0.9, structure=cross)
    if core.sum() < 500:
        return float("nan")
    kernel = cross.astype(np.float32)
    kernel[1, 1, 1] = 0
    resid = (x - convolve(x, kernel / 6.0, mode="nearest"))[core]
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) / np.sqrt(7 / 6)
    signal = float(np.median(x[core]))
    if sigma <= 0:
        return float("inf")
    return float(np.sqrt(max(signal ** 2 - sigma ** 2, 0.0)) / sigma)


def noise_qc(snr: float, minimum: float = MIN_WM_SNR) -> list[str]:
    """A warning when the white matter is noisier than anything the age models were checked on."""
    if np.isfinite(snr) and snr < minimum:
        return [f"noisy image (white-matter SNR {snr:.1f} < {minimum:.0f} in 2 mm model space): "
                "volumes and ages are less reliable"]
    return []


# ---- intensity wrap-around ---------------------------------------------------------------------
# On 10 ixi10, 6 ixi120 whole heads and 9 Cam-CAN scans: clean ones have no sign flip and at most
# 2 holes; the same scans with 0.3 % of the foreground wrapped (int16) have 363-1388 sign flips
# and 17-276 holes, with uint16 overflow 17-337 holes (degrade.wraparound and its uint16 twin).
WRAP_FLIP = 0.5              # a sign flip: below -WRAP_FLIP x the bright level after the offset
WRAP_DARK = 0.1              # a hole: darker than this share of the bright level ...
WRAP_NEIGHBOURHOOD = 0.75    # ... with a 3x3x3 mean above this share of it
WRAP_MIN_FLIPS = 20          # warn from this many sign flips ...
WRAP_MIN_HOLES = 10          # ... or this many holes


def wraparound_voxels(image: sitk.Image) -> tuple[int, int]:
    """Voxels that look like integer overflow in a T1 as stored (before any shift or clamp):
    ``(sign_flips, holes)``. The bright level is the 99th percentile of the positive voxels
    once a signed storage's background (1st percentile, when negative) is moved to 0.
    Sign flips: voxels below -``WRAP_FLIP`` x bright (int16 wrap-around turns the brightest
    voxels into large negatives; a magnitude image has none). Holes: voxels darker than
    ``WRAP_DARK`` x bright whose 3x3x3 mean (clipped at bright) exceeds ``WRAP_NEIGHBOURHOOD``
    x bright: black dots in the brightest tissue, which no anatomy makes (uint16 overflow)."""
    from scipy.ndimage import uniform_filter
    x = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
    p1 = float(np.percentile(x[::2, ::2, ::2], 1))
    if p1 < 0:
        x -= p1
    pos = x[::2, ::2, ::2]
    pos = pos[pos > 0]
    if pos.size == 0:
        return 0, 0
    bright = float(np.percentile(pos, 99))
    flips = int((x < -WRAP_FLIP * bright).sum())
    np.clip(x, 0.0, bright, out=x)       # one hot spot must not make its neighbours "bright"
    context = uniform_filter(x, 3, mode="nearest") > WRAP_NEIGHBOURHOOD * bright
    holes = int((context & (x < WRAP_DARK * bright)).sum())
    return flips, holes


def wraparound_qc(image: sitk.Image) -> list[str]:
    """A warning when :func:`wraparound_voxels` finds integer overflow in the stored intensities."""
    flips, holes = wraparound_voxels(image)
    if flips >= WRAP_MIN_FLIPS or holes >= WRAP_MIN_HOLES:
        return [f"intensity wrap-around: {flips} voxels with flipped sign, {holes} black voxels "
                "inside bright tissue (integer overflow in the file?): volumes and ages are less reliable"]
    return []


# ---- focal abnormality -----------------------------------------------------------------------
ATLAS_FILE = "normative_tissue_atlas.nii.gz"
ATLAS_SCALE = 20.0            # shares stored as uint8 0..20 (steps of 5 %: 155 kB)
FOCAL_ATLAS_CSF_MAX = 0.05    # a voxel where at most 5 % of healthy subjects have CSF ...
FOCAL_ATLAS_TISSUE_MIN = 0.9  # ... and at least 90 % have GM or WM
FOCAL_MAX_ML = 4.0            # largest connected CSF region there (ml) before a warning
# unexpected_csf_ml with this release's ResUNet (scripts/measure_image_qc.py,
# docs/results/image_qc_thresholds.csv) on the 60 Cam-CAN reg_train scans left out of the atlas:
# median 0.18 ml, 95th percentile 2.6, 2 of 60 above 4 ml (8.7 and 4.3: 3 % false alarms); the
# same scans with a 45 ml lesion (degrade.lesion): median 7.9 ml, 58 of 60 above 4 ml. This
# network calls much of a CSF-intensity lesion GM at its rim, so it reads smaller than with the
# previous ResUNet (15.6-20.7 ml, threshold 12).


@lru_cache(maxsize=2)
def _load_atlas(folder: str) -> np.ndarray:
    from . import models
    img = sitk.ReadImage(str(models.verify(ATLAS_FILE, folder)))
    return sitk.GetArrayFromImage(img).astype(np.float32) / ATLAS_SCALE    # (z, y, x, 2)


def load_normative_atlas() -> np.ndarray:
    """The normative tissue atlas in model space, (z, y, x, 2) float32: per voxel, the share of
    the Cam-CAN training subjects aged 70+ with CSF there, and of all with GM or WM there (smoothed, 0..1 in steps
    of 1 / ``ATLAS_SCALE``)."""
    from . import models
    return _load_atlas(str(models.models_dir()))


def unexpected_csf_ml(prob: np.ndarray, atlas: np.ndarray | None = None) -> float:
    """Volume (ml) of the largest connected (26-neighbour) region that the segmentation calls CSF
    (probability > 0.5) where healthy people have tissue (atlas CSF share <=
    ``FOCAL_ATLAS_CSF_MAX``, tissue share >= ``FOCAL_ATLAS_TISSUE_MIN``): a lesion, a resection
    cavity, a cyst, or a failed registration."""
    from scipy.ndimage import label
    atlas = load_normative_atlas() if atlas is None else atlas
    odd = ((prob[1] > 0.5) & (atlas[..., 0] <= FOCAL_ATLAS_CSF_MAX + 1e-3)
           & (atlas[..., 1] >= FOCAL_ATLAS_TISSUE_MIN - 1e-3))
    if not odd.any():
        return 0.0
    lab, n = label(odd, structure=np.ones((3, 3, 3), bool))
    return float(np.bincount(lab.ravel())[1:].max()) * MODEL_VOXEL_ML


def focal_qc(ml: float, maximum: float = FOCAL_MAX_ML) -> list[str]:
    """A warning for a large CSF-like region where healthy brains have tissue."""
    if np.isfinite(ml) and ml > maximum:
        return [f"focal abnormality: a CSF-like region of {ml:.0f} ml where healthy brains have tissue "
                "(lesion, cavity or cyst?): tissue volumes and ages do not describe a healthy brain"]
    return []


def image_qc(array: np.ndarray, prob: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """The model-space checks of this module that need the segmentation, in one call:
    ``({"wm_snr": ..., "unexpected_csf_ml": ...}, warnings)``. ``array`` is the normalised
    model-space T1 before intensity harmonisation."""
    measures = {"wm_snr": wm_snr(array, prob), "unexpected_csf_ml": unexpected_csf_ml(prob)}
    return measures, noise_qc(measures["wm_snr"]) + focal_qc(measures["unexpected_csf_ml"])


# ---- the segmentation's own consistency: a scan and its mirror ----------------------------------
# The ResUNet learned from left-right flipped crops, so it reads a brain and its mirror image alike;
# motion and ghosting artefacts break that agreement. The disagreement also grows with atrophy (more
# tissue borders: r = 0.85 with the CSF fraction on clean Cam-CAN scans), so what is compared with
# the threshold is its excess over a line on the CSF fraction. Line and threshold (the 99th
# percentile of the excess, as for the A/B disagreement) set on 172 clean scans, 52 Cam-CAN
# seg_train/seg_val and the 120 ixi120 heads (scripts/measure_mirror_qc.py, docs/results/mirror_qc.csv);
# Cam-CAN test and ixi10 were held out from it (README, Quality control).
MIRROR_LINE = (0.0527, 0.1233)     # disagreement of a clean scan: intercept + slope x CSF fraction of TIV
MAX_MIRROR_EXCESS = 0.0134


def mirror_disagreement(prob: np.ndarray, prob_of_mirror: np.ndarray) -> float:
    """Mean over brain voxels (tissue probability > 0.5) of the summed absolute difference of the
    CSF, GM and WM probabilities (4, z, y, x) of a scan and of its left-right mirror (segmented
    mirrored, then flipped back); 0 for a perfectly consistent reading, at most 2."""
    brain = prob[1:4].sum(0) > 0.5
    if not brain.any():
        return float("nan")
    return float(np.abs(prob[1:4] - prob_of_mirror[1:4]).sum(0)[brain].mean())


def mirror_excess(disagreement: float, csf_fraction: float, line: tuple[float, float] = MIRROR_LINE) -> float:
    """How far a scan's mirror disagreement lies above that of clean scans with its CSF fraction."""
    return float(disagreement - (line[0] + line[1] * csf_fraction))


def mirror_qc(excess: float, maximum: float = MAX_MIRROR_EXCESS) -> list[str]:
    """A warning when the segmentation of the scan and of its mirror disagree more than on
    (almost) any clean scan with the same CSF fraction (:func:`mirror_excess`)."""
    if np.isfinite(excess) and excess > maximum:
        return [f"unstable segmentation (scan and mirror disagree {excess:.3f} more than clean scans, "
                f"threshold {maximum:.3f}): motion, ghosting or another artefact? volumes and ages are "
                "less reliable"]
    return []


# ---- model level: A/B disagreement, out-of-distribution score, age range ----------------------
OOD_CELL = 12          # 24 mm cells (2 mm voxels) for the out-of-distribution score
OOD_COMPONENTS = 12


class OutOfDistribution:
    """How far a scan's tissue-fraction pattern lies from the healthy training cohort's: the
    Mahalanobis distance in the first principal components of 24 mm regional fractions, and
    the relative residual outside them. Thresholds: the 99.5th percentile of the training
    subjects' (out-of-fold: each fifth scored by the PCA of the other four)."""

    def __init__(self, mean=None, components=None, variance=None, max_distance=np.inf,
                 max_residual=np.inf):
        self.mean = None if mean is None else np.asarray(mean, float)
        self.components = None if components is None else np.asarray(components, float)
        self.variance = None if variance is None else np.asarray(variance, float)
        self.max_distance, self.max_residual = float(max_distance), float(max_residual)

    def _fit_pca(self, X):
        mean = X.mean(0)
        _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
        k = min(OOD_COMPONENTS, len(s))
        return mean, vt[:k], (s[:k] ** 2) / max(1, len(X) - 1)

    def fit(self, X, seed: int = 0) -> "OutOfDistribution":
        X = np.asarray(X, float)
        d, r = np.zeros(len(X)), np.zeros(len(X))
        folds = np.random.default_rng(seed).permutation(len(X)) % 5
        for k in range(5):
            self.mean, self.components, self.variance = self._fit_pca(X[folds != k])
            d[folds == k], r[folds == k] = self.scores(X[folds == k])
        self.mean, self.components, self.variance = self._fit_pca(X)
        self.max_distance = float(np.percentile(d, 99.5))
        self.max_residual = float(np.percentile(r, 99.5))
        return self

    def scores(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(Mahalanobis distance in the components, residual norm / training mean norm)."""
        Xc = np.atleast_2d(np.asarray(X, float)) - self.mean
        proj = Xc @ self.components.T
        dist = np.sqrt((proj ** 2 / self.variance).sum(1))
        resid = np.linalg.norm(Xc - proj @ self.components, axis=1) / np.linalg.norm(self.mean)
        return dist, resid

    def warnings(self, features) -> list[str]:
        d, r = (float(v[0]) for v in self.scores(features))
        if d > self.max_distance or r > self.max_residual:
            return [f"tissue pattern unlike the healthy training scans (out-of-distribution score "
                    f"{d:.1f}/{self.max_distance:.1f}, residual {r:.3f}/{self.max_residual:.3f}): "
                    "a lesion, an artefact or a failed segmentation? check the segmentation"]
        return []

    def to_dict(self) -> dict:
        return {"type": "OutOfDistribution", "cell": OOD_CELL, "mean": np.round(self.mean, 7).tolist(),
                "components": np.round(self.components, 7).tolist(),
                "variance": self.variance.tolist(), "max_distance": self.max_distance,
                "max_residual": self.max_residual}

    @classmethod
    def from_dict(cls, d: dict) -> "OutOfDistribution":
        return cls(d["mean"], d["components"], d["variance"], d["max_distance"], d["max_residual"])


def ood_features(prob: np.ndarray) -> np.ndarray:
    """The features the out-of-distribution score reads: 24 mm regional fractions of TIV."""
    from .volumes import regional_fractions
    return regional_fractions(prob, OOD_CELL)


AB_LIMIT_Z = 2.576      # two-sided 99 % of a normal distribution


def disagreement_limit(differences) -> float:
    """The |A − B| (years) that healthy scans pass about 1 % of the time, from their differences
    on held-out healthy subjects: 2.576 x their root mean square (a normal model, centred on 0 since
    both ages are bias-corrected on those subjects). Steadier than their 99th percentile, which with
    80 subjects rests on the largest one or two (releases 15 and 16: 16.5 and 13.5 years for the same
    spread on `test`)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError(f"a disagreement limit needs at least 2 subjects' A - B differences, got {d.size}")
    return float(AB_LIMIT_Z * np.sqrt(np.mean(d ** 2)))


def stored_disagreement_limit(qc_ref: dict) -> float | None:
    """The A/B limit (years) an ``age_model.json`` holds: ``ab_disagreement_limit`` since release 17,
    the 99th percentile ``ab_disagreement_p99`` in older files; None when it holds neither."""
    return qc_ref.get("ab_disagreement_limit", qc_ref.get("ab_disagreement_p99"))


AB_MESSAGE = ("the two age models disagree by {diff:.1f} years (healthy scans: < {limit:.1f}): "
              "the age is uncertain; check the image and the segmentation")


def disagreement_qc(age_volumes: float | None, age_cnn: float | None, limit: float | None) -> list[str]:
    """A warning when approaches A and B differ by more than ``limit`` years
    (:func:`disagreement_limit` of healthy validation subjects)."""
    if age_volumes is None or age_cnn is None or limit is None:
        return []
    diff = age_volumes - age_cnn
    if abs(diff) > limit:
        return [AB_MESSAGE.format(diff=abs(diff), limit=limit)]
    return []


def age_range_qc(predicted: float, age_range: tuple[float, float] | None,
                 chronological: float | None = None) -> list[str]:
    """Warnings for a predicted (or chronological) age outside the training cohort's range."""
    if not age_range:
        return []
    lo, hi = age_range
    out = []
    if not lo - 2 <= predicted <= hi + 2:
        out.append(f"predicted age {predicted:.0f} outside the training range {lo:.0f}-{hi:.0f} years: "
                   "extrapolated, less reliable")
    if chronological is not None and not lo <= chronological <= hi:
        out.append(f"chronological age {chronological:.0f} outside the training range {lo:.0f}-{hi:.0f} "
                   "years: the gap is extrapolated")
    return out


# ---- building the atlas ------------------------------------------------------------------------
ATLAS_HELD_OUT, ATLAS_SEED = 60, 20261123   # reg_train subjects left out to calibrate the thresholds
ATLAS_OLD_AGE = 70.0          # the CSF share is that of the subjects this old or older (most atrophy)


def atlas_held_out(camcan_dir: str | os.PathLike, n: int = ATLAS_HELD_OUT, seed: int = ATLAS_SEED) -> list[str]:
    """The ``reg_train`` subjects left out of the atlas (a seeded draw): the healthy scans on
    which :data:`FOCAL_MAX_ML` and :data:`MIN_WM_SNR` were set."""
    from .training.data import read_camcan_subjects
    reg = [r["subject_id"] for r in read_camcan_subjects(camcan_dir) if r["split"] == "reg_train"]
    return sorted(np.random.default_rng(seed).choice(reg, n, replace=False).tolist())


def build_normative_atlas(camcan_dir: str | os.PathLike, out_path: str | os.PathLike,
                          smooth_voxels: float = 1.0) -> Path:
    """Write the normative tissue atlas from the Cam-CAN ``seg_train`` + ``reg_train`` reference
    labels (never ``test``), leaving out :func:`atlas_held_out`: per model-space voxel the share
    of the subjects aged ``ATLAS_OLD_AGE`` or more with CSF there (where even atrophic healthy
    brains have none), and of all with GM or WM, smoothed by a Gaussian of ``smooth_voxels``
    (registration spread), stored as a 2-component uint8 NIfTI (x ``ATLAS_SCALE``, rounded) on
    the template grid. ``python -m BrainAgeLib.qc CAMCAN_DIR OUT.nii.gz`` runs it."""
    from scipy.ndimage import gaussian_filter
    from .training.data import camcan_paths, read_camcan_subjects
    held = set(atlas_held_out(camcan_dir))
    ids = [r["subject_id"] for r in read_camcan_subjects(camcan_dir)
           if r["split"] in ("seg_train", "reg_train") and r["subject_id"] not in held]
    ages = {r["subject_id"]: r["age"] for r in read_camcan_subjects(camcan_dir)}
    csf = tissue = ref = None
    n_old = 0
    for sid in ids:
        seg = sitk.ReadImage(str(camcan_paths(camcan_dir, sid)["seg"]))
        a = sitk.GetArrayViewFromImage(seg)
        if csf is None:
            csf, tissue, ref = np.zeros(a.shape, np.float64), np.zeros(a.shape, np.float64), seg
        if ages[sid] >= ATLAS_OLD_AGE:
            csf += a == 1
            n_old += 1
        tissue += (a == 2) | (a == 3)
    maps = [gaussian_filter(csf / n_old, smooth_voxels), gaussian_filter(tissue / len(ids), smooth_voxels)]
    arr = np.round(np.stack(maps, -1) * ATLAS_SCALE).clip(0, ATLAS_SCALE).astype(np.uint8)
    img = sitk.GetImageFromArray(arr, isVector=True)
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(out_path), useCompression=True)
    return Path(out_path)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: python -m BrainAgeLib.qc CAMCAN_DIR OUT.nii.gz")
    print(build_normative_atlas(sys.argv[1], sys.argv[2]))
