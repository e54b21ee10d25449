"""One call from a T1 image to a brain age: :func:`predict`."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import SimpleITK as sitk

from . import models
from .io import InputError, read_image_qc, validate_image
from .preprocessing import harmonize_intensities, preprocess, tissue_medians, to_input_grid
from .qc import (contrast_qc, edge_sharpness, focal_qc, grey_white_contrast_qc, mirror_disagreement,
                 mirror_excess, mirror_qc, noise_qc, sharpness_qc, slice_geometry, unexpected_csf_ml, wm_snr)
from .segmentation import segment_array, segment_mirrored
from .volumes import global_fractions, tissue_volumes_ml, volume_qc

TISSUES = ("csf", "gm", "wm")
APPROACHES = ("ensemble", "volumes", "image")

Progress = Callable[[float, str], None]


@dataclass
class BrainAgeResult:
    """Everything :func:`predict` finds for one T1 image. Ages in years, volumes in ml."""

    predicted_age: float                 # the chosen approach (default: ensemble of A and B)
    predicted_age_volumes: float         # approach A: tissue volumes -> age
    predicted_age_cnn: float | None      # approach B: 3D CNN on the image
    interval: tuple[float, float]        # 90% prediction interval of predicted_age
    volumes_ml: dict[str, float]         # csf, gm, wm, tiv on the input's own grid
    labels: sitk.Image                   # uint8 0 bg, 1 CSF, 2 GM, 3 WM on the input grid
    qc: list[str] = field(default_factory=list)   # warnings; empty when all checks passed
    seconds: float = 0.0
    chronological_age: float | None = None
    approach: str = "ensemble"
    model_space_image: sitk.Image | None = None       # normalised T1 in model space
    model_space_probabilities: np.ndarray | None = None  # (4, z, y, x) float32
    age_details: dict = field(default_factory=dict)   # raw (uncorrected) ages of A and B
    brain_mask: sitk.Image | None = None  # input grid, uint8, when brain extraction ran
    template_similarity: float | None = None  # correlation with the template inside the brain
    edge_sharpness: float | None = None   # grey/white border sharpness in model space (QC)
    tissues: str = "camcan"               # tissue definition of labels and volumes_ml
    model_to_input: sitk.Transform | None = None  # maps model-space points to input points (mm)
    qc_measures: dict = field(default_factory=dict)  # image QC measures (BrainAgeLib.qc): wm_snr, ...

    @property
    def brain_age_gap(self) -> float | None:
        """Predicted minus chronological age (years), when the latter is known."""
        if self.chronological_age is None:
            return None
        return self.predicted_age - self.chronological_age

    @property
    def qc_text(self) -> str:
        return ";".join(self.qc) if self.qc else "ok"


def _device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but PyTorch sees no CUDA GPU")
    return device


# Registered scans (another scanner): read as they are (release 12). Releases 5-11 mapped their
# GM/WM medians to Cam-CAN's and segmented them again (:func:`harmonize_and_segment`); once the age
# models had learned to ignore contrast, that map made IXI heads respond to a gamma twice as much
# as without it and cost accuracy on the unseen scanner (docs/generalisation.md, *The harmonisation doubled the
# contrast response*). True restores it, for release 11's models. The feature caches record the
# switch (``harmonised``) and are rebuilt when it differs.
HARMONIZE_RAW_SCANS = False
# The mirror check (qc.mirror_qc, release 14): a second ResUNet pass on the left-right mirrored scan,
# ~1 s on 2 CPU cores. Off (False, or BRAINAGE_MIRROR_CHECK=0 in the environment, which background
# workers inherit) drops that QC and nothing else: the ages never read the mirrored pass.
MIRROR_CHECK = os.environ.get("BRAINAGE_MIRROR_CHECK", "1") != "0"


def harmonize_and_segment(net, array: np.ndarray, prob: np.ndarray, device: str = "cpu"):
    """A registered scan's second pass: its GM/WM intensities (under ``prob``, the first
    segmentation) mapped to the training data's, and segmented again. Returns
    ``(harmonised array, probabilities, (gm, wm) medians before harmonisation)``."""
    medians = tissue_medians(array, prob)
    arr = harmonize_intensities(array, prob, medians=medians)
    return arr, segment_array(net, arr, device=device), medians


def read_registered(net, array: np.ndarray, prob: np.ndarray, device: str = "cpu"):
    """A registered scan as the age models read it: ``(array, probabilities, (gm, wm) medians)``,
    the scan and its first segmentation as they are, or :func:`harmonize_and_segment`'s when
    :data:`HARMONIZE_RAW_SCANS`. The medians (before any map) feed the contrast QC."""
    if HARMONIZE_RAW_SCANS:
        return harmonize_and_segment(net, array, prob, device=device)
    return np.asarray(array, np.float32), prob, tissue_medians(array, prob)


def sharpness_of_registered(array: np.ndarray, prob: np.ndarray, medians: tuple[float, float]) -> float:
    """A registered scan's grey/white edge sharpness (:func:`~BrainAgeLib.qc.edge_sharpness`)
    measured as its threshold was set (releases 5-11): on the scan with its GM/WM medians mapped
    to Cam-CAN's, whether or not the age models read it so. The map reshapes the intensities
    around GM and WM, and unmapped IXI heads read 0.65-1.04 where mapped ones read 0.60-0.79
    and a 3 mm blur took one to 0.48 (README, *Quality control*)."""
    if HARMONIZE_RAW_SCANS:
        return edge_sharpness(array, prob)
    return edge_sharpness(harmonize_intensities(array, prob, medians=medians), prob)


def segment_image(image: sitk.Image, *, skull_stripped: bool | None = None, device: str = "cpu",
                  tissues: str = "camcan", progress: Progress | None = None):
    """Preprocess and segment a validated T1: returns ``(preprocessed, probabilities, labels)``,
    the network's class probabilities (4, z, y, x) in model space and the uint8 labels on the
    input grid, in the tissue definition ``tissues`` ("camcan", the network's own, or "dlmuse";
    see :class:`~BrainAgeLib.segmentation.TissueDefinitionMap`).

    Registered inputs (not already on the template grid) are read by :func:`read_registered`:
    with :data:`HARMONIZE_RAW_SCANS` (off since release 12) segmented twice, the first labels giving the
    GM/WM intensities that :func:`harmonize_intensities` maps to the training data's, and
    ``preprocessed.image`` becoming the harmonised image; their GM/WM medians feed the contrast QC."""
    report = progress or (lambda f, m: None)
    report(0.1, "preprocessing")
    prep = preprocess(image, skull_stripped=skull_stripped,
                      progress=lambda f, m: report(0.1 + 0.4 * f, m))
    report(0.5, "segmenting tissues")
    net = models.load_resunet()
    arr = sitk.GetArrayViewFromImage(prep.image)
    prob = segment_array(net, arr, device=device)
    if MIRROR_CHECK:      # the scan's mirror, segmented and flipped back: a reading that changes is unstable
        report(0.55, "checking the segmentation on the mirrored scan")
        mirrored = segment_mirrored(net, arr, device=device)
        prep.measures["mirror_disagreement"] = mirror_disagreement(prob, mirrored)
        prep.measures["mirror_excess"] = mirror_excess(prep.measures["mirror_disagreement"],
                                                       float(global_fractions(prob)[0]))
        prep.qc.extend(mirror_qc(prep.measures["mirror_excess"]))
        del mirrored
    # noise before harmonisation: the normalisation keeps the SNR, the piecewise map would not
    prep.measures["wm_snr"] = wm_snr(sitk.GetArrayViewFromImage(prep.image), prob)
    prep.qc.extend(noise_qc(prep.measures["wm_snr"]))
    if prep.registered:       # another scanner: its GM/WM contrast checked (and, if switched on, mapped)
        if HARMONIZE_RAW_SCANS:
            report(0.6, "harmonising tissue intensities")
        arr, prob, medians = read_registered(net, sitk.GetArrayViewFromImage(prep.image), prob, device=device)
        prep.qc.extend(grey_white_contrast_qc(*medians))
        if HARMONIZE_RAW_SCANS:
            image_h = sitk.GetImageFromArray(arr)
            image_h.CopyInformation(prep.image)
            prep.image = image_h
        prep.sharpness = sharpness_of_registered(arr, prob, medians)
    else:
        prep.sharpness = edge_sharpness(sitk.GetArrayViewFromImage(prep.image), prob)
    prep.qc.extend(sharpness_qc(prep.sharpness))
    prep.measures["unexpected_csf_ml"] = unexpected_csf_ml(prob)
    prep.qc.extend(focal_qc(prep.measures["unexpected_csf_ml"]))
    definition = models.load_tissue_definition(tissues)
    report(0.7, "resampling labels to the input grid")
    shown = prob if definition is None else definition.predict_proba(prob)
    return prep, prob, to_input_grid(shown, prep, image)


def predict(image: str | os.PathLike | sitk.Image, *, skull_stripped: bool | None = None,
            chronological_age: float | None = None, approach: str = "ensemble",
            tissues: str = "camcan", device: str = "auto", site_calibration=None,
            progress: Progress | None = None) -> BrainAgeResult:
    """Brain age of one T1-weighted MRI (a path or a SimpleITK image; never modified).

    ``skull_stripped``: True skips brain extraction, False forces it, None detects it.
    ``approach``: "ensemble" (default), "volumes" (A) or "image" (B) sets ``predicted_age``.
    ``tissues``: the definition of the labels and volumes: "camcan" (default, the training
    labels': CSF with sulcal CSF, conservative WM) or "dlmuse" (ventricles as CSF, DLMUSE's GM
    and WM). Ages do not depend on it.
    ``site_calibration``: a :class:`~BrainAgeLib.calibration.SiteCalibration` fitted on the
    scanner's healthy controls (``brainage calibrate-site``), applied to features and ages; a
    :class:`~BrainAgeLib.regression.SiteOffset` (``brainage site-offset``), applied to the ages;
    or the path of either's JSON file (validated when read, before any work).
    ``progress(fraction, message)`` is called as the steps advance.
    """
    if approach not in APPROACHES:
        raise ValueError(f"approach must be one of {APPROACHES}, not {approach!r}")
    models.load_tissue_definition(tissues)   # an unknown definition fails before any work
    if isinstance(site_calibration, (str, os.PathLike)):
        from .calibration import read_site_calibration
        site_calibration = read_site_calibration(site_calibration)
    from .regression import SiteOffset
    if isinstance(site_calibration, SiteOffset):
        offset = site_calibration
        result = predict(image, skull_stripped=skull_stripped, chronological_age=chronological_age,
                         approach=approach, tissues=tissues, device=device, progress=progress)
        return apply_site_offset(result, offset)
    report = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    dev = _device(device)
    report(0.0, "reading image")
    img, read_qc = (validate_image(image), []) if isinstance(image, sitk.Image) else read_image_qc(image)
    prep, prob, labels = segment_image(img, skull_stripped=skull_stripped, device=dev,
                                       tissues=tissues, progress=report)
    volumes = tissue_volumes_ml(labels)
    qc = (read_qc + list(prep.qc) + volume_qc(volumes)
          + contrast_qc(prob, sitk.GetArrayViewFromImage(prep.image)))
    report(0.8, "estimating age")
    from .regression import predict_ages
    ages = predict_ages(prob, sitk.GetArrayViewFromImage(prep.image), volumes, approach=approach,
                        device=dev, calibration=site_calibration, chronological_age=chronological_age,
                        slices=slice_geometry(img))
    qc += ages["qc"]
    report(1.0, "done")
    return BrainAgeResult(
        predicted_age=ages["predicted_age"], predicted_age_volumes=ages["volumes"],
        predicted_age_cnn=ages.get("cnn"), interval=ages["interval"], volumes_ml=volumes,
        labels=labels, qc=qc, seconds=time.perf_counter() - t0,
        chronological_age=chronological_age, approach=approach,
        model_space_image=prep.image, model_space_probabilities=prob, age_details=ages,
        brain_mask=prep.brain_mask, template_similarity=prep.similarity, tissues=tissues,
        edge_sharpness=prep.sharpness,
        model_to_input=prep.transform, qc_measures=dict(prep.measures))


def apply_site_offset(result: BrainAgeResult, site) -> BrainAgeResult:
    """``result`` with every age and its interval moved by a scanner's
    :class:`~BrainAgeLib.regression.SiteOffset` (a new object; ``result`` is kept)."""
    from dataclasses import replace
    lo, hi = result.interval
    return replace(result, predicted_age=site.offset_age(result.predicted_age),
                   predicted_age_volumes=site.offset_age(result.predicted_age_volumes),
                   predicted_age_cnn=site.offset_age(result.predicted_age_cnn),
                   interval=(site.offset_age(lo), site.offset_age(hi)),
                   age_details={**result.age_details, "site_offset": site.offset})


__all__ = ["BrainAgeResult", "predict", "apply_site_offset", "InputError"]
