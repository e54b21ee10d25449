"""Raw-scan preprocessing on real whole-head T1s (IXI fixtures): brain extraction,
registration to the template, detection of skull-stripped inputs, non-T1 inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import models
from BrainAgeLib import preprocessing as pp
from BrainAgeLib.io import InputError, read_image
from BrainAgeLib.qc import MIN_EDGE_SHARPNESS
from BrainAgeLib.input_checks import check_t1_like
from BrainAgeLib.preprocessing import (MIN_SIMILARITY, looks_skull_stripped, normalize_intensity,
                                       preprocess, same_grid, template_grid_array)

DATA = Path(__file__).resolve().parent / "data"
T1 = DATA / "IXI013-HH-1212_T1.nii.gz"
DLMUSE = DATA / "IXI013-HH-1212_DLMUSE_tissues.nii.gz"


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def volume_ml(mask: sitk.Image) -> float:
    return float((sitk.GetArrayViewFromImage(mask) > 0).sum()) * float(np.prod(mask.GetSpacing())) / 1000


def resampled(image: sitk.Image, orientation: str, spacing: float) -> sitk.Image:
    """A copy in another orientation and spacing, same physical content."""
    img = sitk.DICOMOrient(image, orientation)
    size = [int(n * s / spacing) for n, s in zip(img.GetSize(), img.GetSpacing())]
    return sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(),
                         (spacing,) * 3, img.GetDirection(), 0.0, sitk.sitkFloat32)


@pytest.fixture(scope="module")
def image():
    return read_image(T1)


@pytest.fixture(scope="module")
def prep(image):
    before = sitk.GetArrayFromImage(image).copy()
    out = preprocess(image)
    out._input_before = before
    return out


def test_whole_head_is_brain_extracted_like_dlmuse(image, prep):
    assert not prep.skull_stripped
    assert prep.brain_mask is not None and same_grid(prep.brain_mask, image)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(DLMUSE))) > 0
    assert dice(sitk.GetArrayFromImage(prep.brain_mask) > 0, ref) > 0.93


def test_registered_to_template(prep):
    template = models.load_template()
    assert same_grid(prep.image, template)
    assert prep.similarity > MIN_SIMILARITY
    assert prep.qc == []
    arr = sitk.GetArrayViewFromImage(prep.image)
    assert arr.max() <= 2.0 and np.percentile(arr[arr > 0], 99.5) == pytest.approx(1.0, abs=0.02)


def test_rigid_registration_recovers_a_rotation_without_rescaling():
    """register_to_template (rigid by default): the template turned by 6 degrees and shifted by
    4 mm is found again, as an affine transform whose matrix is a pure rotation (the brain keeps
    its size); the affine option recovers the same pose."""
    template = models.load_template()
    truth = sitk.Euler3DTransform(template.TransformContinuousIndexToPhysicalPoint((49, 58, 47)),
                                  np.deg2rad(6), 0.0, 0.0, (0.0, 4.0, 0.0))
    moving = sitk.Resample(template, template, truth.GetInverse(), sitk.sitkLinear, 0.0)
    rigid = pp.register_to_template(moving, template)
    affine = pp.register_to_template(moving, template, sitk.AffineTransform(3))
    m = np.array(rigid.GetMatrix()).reshape(3, 3)
    assert isinstance(rigid, sitk.AffineTransform)
    assert np.allclose(m.T @ m, np.eye(3), atol=1e-6)
    point = template.TransformContinuousIndexToPhysicalPoint((30, 40, 60))
    for tx in (rigid, affine):
        assert np.linalg.norm(np.subtract(tx.TransformPoint(point), truth.TransformPoint(point))) < 1.0


def test_reoriented_and_resampled_copy_lands_in_the_same_place(image, prep):
    """A 1.5 mm copy in another orientation gives nearly the same model-space image and the
    same brain volume; its mask comes back on its own (finer) grid."""
    fine = resampled(image, "RAS", 1.5)
    p2 = preprocess(fine)
    a = sitk.GetArrayViewFromImage(prep.image)
    b = sitk.GetArrayViewFromImage(p2.image)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert same_grid(p2.brain_mask, fine)
    assert volume_ml(p2.brain_mask) == pytest.approx(volume_ml(prep.brain_mask), rel=0.03)
    # the transforms differ (other input grid) but send the same model-space point to the
    # same physical point
    centre = models.load_template().TransformContinuousIndexToPhysicalPoint((49, 58, 47))
    assert np.allclose(prep.transform.TransformPoint(centre), p2.transform.TransformPoint(centre), atol=3)
    assert p2.similarity > MIN_SIMILARITY and p2.qc == []


def test_skull_stripped_input_is_detected(image, prep):
    """A brain-extracted copy (reoriented, 1.5 mm) is recognised and not extracted again."""
    stripped = resampled(sitk.Mask(image, prep.brain_mask), "LPS", 1.5)
    assert looks_skull_stripped(stripped)
    assert not looks_skull_stripped(image)
    p = preprocess(stripped)
    assert p.skull_stripped and p.brain_mask is None
    assert p.similarity > MIN_SIMILARITY and p.qc == []
    a = sitk.GetArrayViewFromImage(prep.image)
    b = sitk.GetArrayViewFromImage(p.image)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_model_space_input_takes_identity_path():
    template = models.load_template()
    p = preprocess(template)
    assert p.transform.GetName() == "Transform" or p.transform.GetParameters() == ()
    assert not p.registered
    # the template (a mean of bias-corrected scans) has no field beyond the training scans':
    # normalised only, as the training scans were
    assert p.measures["bias_field_sd"] < pp.BIAS_FIELD_MAX_SD
    assert np.array_equal(sitk.GetArrayViewFromImage(p.image),
                          normalize_intensity(sitk.GetArrayViewFromImage(template)))
    arr, sd = template_grid_array(template)
    assert (np.array_equal(arr, sitk.GetArrayViewFromImage(p.image))
            and sd == pytest.approx(p.measures["bias_field_sd"], abs=1e-4))


def test_label_map_is_refused():
    lab = sitk.ReadImage(str(DLMUSE), sitk.sitkFloat32)
    with pytest.raises(InputError, match="label map"):
        check_t1_like(lab)


def test_ct_like_range_is_refused(image):
    arr = sitk.GetArrayFromImage(image)
    ct = np.where(arr > 0.05 * arr.max(), 40.0, -1000.0).astype(np.float32)
    ct_img = sitk.GetImageFromArray(ct + np.random.default_rng(0).normal(0, 5, ct.shape).astype(np.float32))
    ct_img.CopyInformation(image)
    with pytest.raises(InputError, match="CT"):
        preprocess(ct_img)


def test_inverted_contrast_gets_a_qc_warning(image, prep):
    """A T2-like image (CSF bright, WM dark) is flagged, not silently aged."""
    brain = sitk.GetArrayFromImage(sitk.Mask(image, prep.brain_mask))
    inv = np.where(brain > 0, brain.max() * 1.05 - brain, 0).astype(np.float32)
    inv_img = sitk.GetImageFromArray(inv)
    inv_img.CopyInformation(image)
    p = preprocess(inv_img, skull_stripped=True)
    assert any(w.startswith("not a T1: inverted contrast") for w in p.qc), p.qc
    assert all(";" not in w and "," not in w for w in p.qc)


def test_missing_deepbet_gives_a_clear_error(image, monkeypatch):
    import sys
    from BrainAgeLib import brain_extraction
    monkeypatch.setattr(brain_extraction, "_BET", None)
    monkeypatch.setitem(sys.modules, "deepbet", None)
    with pytest.raises(RuntimeError, match="deepbet"):
        preprocess(image, skull_stripped=False)


def test_label_map_is_refused_before_any_work():
    """A label map stored as float with 4 values is refused before any work."""
    arr = np.zeros((40, 40, 40), np.float32)
    arr[10:30, 10:30, 10:30] = 1
    arr[15:25, 15:25, 15:25] = 2
    arr[18:22, 18:22, 18:22] = 3
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((4.0, 4.0, 4.0))
    with pytest.raises(InputError, match="label map"):
        preprocess(img)


def test_input_image_not_modified(image, prep):
    assert np.array_equal(prep._input_before, sitk.GetArrayFromImage(image))


def test_harmonize_intensities_moves_tissue_medians_to_the_landmarks():
    """A scanner with other GM/WM contrast: after harmonisation the medians are Cam-CAN's."""
    from BrainAgeLib.preprocessing import TISSUE_LANDMARKS, harmonize_intensities
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, (20, 20, 20))
    arr = np.choose(lab, [0.0, 0.35, 0.78, 0.94]).astype(np.float32) + rng.normal(0, 0.01, lab.shape).astype(np.float32)
    arr[lab == 0] = 0
    prob = (lab[None] == np.arange(4)[:, None, None, None]).astype(np.float32)
    out = harmonize_intensities(arr, prob)
    assert np.median(out[lab == 2]) == pytest.approx(TISSUE_LANDMARKS["gm"], abs=2e-3)
    assert np.median(out[lab == 3]) == pytest.approx(TISSUE_LANDMARKS["wm"], abs=2e-3)
    assert (out[lab == 0] == 0).all() and out.dtype == np.float32
    assert np.median(out[lab == 1]) < TISSUE_LANDMARKS["gm"]          # order kept
    # no T1 contrast (GM brighter than WM): left unchanged, the contrast QC reports it
    inverted = np.choose(lab, [0.0, 0.9, 0.8, 0.3]).astype(np.float32)
    assert np.array_equal(harmonize_intensities(inverted, prob), inverted)


def test_probabilities_and_labels_on_the_input_grid(image, prep):
    """Per-class probabilities come back on the scan's own grid; their arg-max is the labels."""
    from BrainAgeLib.preprocessing import input_grid_probabilities, to_input_grid
    from BrainAgeLib.segmentation import segment_array
    prob = segment_array(models.load_resunet(), sitk.GetArrayViewFromImage(prep.image))
    labels = to_input_grid(prob, prep, image)
    probs = input_grid_probabilities(prob, prep, image)
    assert labels.GetPixelID() == sitk.sitkUInt8 and probs.GetNumberOfComponentsPerPixel() == 4
    assert pp.same_grid(probs, image) and pp.same_grid(labels, image)
    p = sitk.GetArrayFromImage(probs)
    assert np.allclose(p.sum(-1), 1.0, atol=1e-3)
    lab = sitk.GetArrayFromImage(labels)
    assert (p.argmax(-1) == lab).mean() > 0.999
    assert set(np.unique(lab)) == {0, 1, 2, 3}


def test_unusual_grey_white_contrast_gets_a_qc_warning(image):
    """The real scan passes; the same scan with its grey/white contrast squashed is flagged."""
    from BrainAgeLib.pipeline import segment_image
    prep_ok, _, _ = segment_image(image)
    assert not any("grey/white" in q for q in prep_ok.qc)
    squashed = sitk.Pow(sitk.Cast(image, sitk.sitkFloat32) + 1.0, 0.3)
    prep_bad, _, _ = segment_image(squashed)
    assert any("unusual grey/white contrast" in q for q in prep_bad.qc)


def test_dlmuse_tissue_definition(image):
    """``tissues="dlmuse"`` relabels the same segmentation in DLMUSE's definition: GM and WM
    much closer to DLMUSE's, CSF down to the ventricles, the ages unchanged. (IXI013 is one of
    the map's ten training subjects; the leave-one-out figures come from evaluate-ixi.)"""
    from BrainAgeLib.pipeline import predict
    from BrainAgeLib.training import dice_scores
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(DLMUSE)))
    own = predict(image, approach="volumes", device="cpu")
    theirs = predict(image, approach="volumes", tissues="dlmuse", device="cpu")
    assert own.tissues == "camcan" and theirs.tissues == "dlmuse"
    d_own = dice_scores(sitk.GetArrayFromImage(own.labels), ref)
    d_theirs = dice_scores(sitk.GetArrayFromImage(theirs.labels), ref)
    assert d_theirs[1] > d_own[1] + 0.08 and d_theirs[1] > 0.8      # GM
    assert d_theirs[2] > d_own[2] + 0.04 and d_theirs[2] > 0.85     # WM
    assert theirs.volumes_ml["csf"] < 0.6 * own.volumes_ml["csf"]
    assert theirs.predicted_age == own.predicted_age
    assert np.array_equal(theirs.model_space_probabilities, own.model_space_probabilities)
    assert pp.same_grid(theirs.labels, image)


def test_blurred_scan_gets_a_sharpness_warning(image):
    """The real scan passes; the same scan blurred (Gaussian, sigma 3 mm) is flagged as much
    softer than the training scans."""
    from BrainAgeLib.pipeline import segment_image
    sharp, _, _ = segment_image(image)
    assert sharp.sharpness > MIN_EDGE_SHARPNESS
    assert not any("softer" in q for q in sharp.qc)
    blurred, _, _ = segment_image(sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 3.0))
    assert blurred.sharpness < sharp.sharpness - 0.15
    assert any("image much softer than the training scans" in q for q in blurred.qc)


def test_resampling_only_around_the_brain_changes_nothing(image, prep):
    """Labels and brain mask on a finer grid (1.2 mm) are resampled only where the brain maps
    (to_input_grid, _mask_to_grid): the same voxels, exactly, as resampling the whole grid."""
    from BrainAgeLib.segmentation import segment_array
    fine = resampled(image, "RAS", 1.2)
    prob = segment_array(models.load_resunet(), sitk.GetArrayViewFromImage(prep.image))
    labels = sitk.GetArrayFromImage(pp.to_input_grid(prob, prep, fine))
    whole = np.stack(list(pp._channels_on_grid(prob, prep, fine))).argmax(0)
    assert whole.shape == labels.shape and np.array_equal(labels, whole)
    assert set(np.unique(labels)) == {0, 1, 2, 3} and (labels == 0).mean() > 0.3
    mask = sitk.GetArrayFromImage(pp._mask_to_grid(prep.brain_mask, fine))
    whole_mask = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(prep.brain_mask, sitk.sitkFloat32), fine,
                                                      sitk.Transform(), sitk.sitkLinear, 0.0)) >= 0.5
    assert np.array_equal(mask > 0, whole_mask) and whole_mask.any()
