"""Robustness to acquisitions (real IXI fixtures): each degradation of ``degrade`` changes what it
should and leaves its input alone; thick-slice, anisotropic and oblique inputs are processed;
CT is refused from its histogram while an MRI stored with an offset is accepted; each image QC
of ``qc`` fires on a degraded scan and not on the clean one; evaluate-robustness' summary."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import degrade as dg
from BrainAgeLib import qc
from BrainAgeLib.io import InputError, read_image
from BrainAgeLib.input_checks import check_t1_like, to_nonnegative
from BrainAgeLib.preprocessing import MIN_SIMILARITY, _resample_isotropic, preprocess

DATA = Path(__file__).resolve().parent / "data"
T1 = DATA / "IXI013-HH-1212_T1.nii.gz"
T1B = DATA / "IXI014-HH-1236_T1.nii.gz"
TISSUES = DATA / "IXI013-HH-1212_DLMUSE_tissues.nii.gz"


@pytest.fixture(scope="module")
def image():
    return read_image(T1)


@pytest.fixture(scope="module")
def labels(image):
    lab = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    lab.CopyInformation(image)
    return lab


def arr(img):
    return sitk.GetArrayFromImage(img).astype(np.float64)


def centre(img):
    return np.array(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()]))


# ---- degradations ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(dg.conditions()))
def test_each_degradation_leaves_its_input_alone_and_changes_the_scan(name, image, labels):
    before, lab_before = arr(image), arr(labels)
    out = dg.conditions()[name](image, labels, 7)
    assert np.array_equal(arr(image), before) and np.array_equal(arr(labels), lab_before)
    assert out is not image
    if out.GetSize() == image.GetSize():
        assert np.abs(arr(out) - before).mean() > 1.0


def test_rician_noise_has_the_asked_snr(image):
    """In the air, Rician noise is Rayleigh: mean sigma * sqrt(pi / 2), with sigma = signal / SNR."""
    out = arr(dg.rician_noise(image, 20, seed=1))
    air = arr(image) == 0
    sigma = dg.foreground_level(image) / 20
    assert out[air].mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.05)
    assert out.min() >= 0                      # a magnitude
    assert not np.array_equal(out, arr(dg.rician_noise(image, 20, seed=2)))
    assert np.array_equal(out, arr(dg.rician_noise(image, 20, seed=1)))   # seeded


def test_bias_gamma_and_offset_change_intensities_as_asked(image):
    x = arr(image)
    fg = x > dg.foreground_level(image) / 2
    ratio = arr(dg.bias_field(image, seed=3))[fg] / x[fg]
    assert ratio.max() / ratio.min() > 1.3                 # a field, not a constant scale
    assert np.allclose(arr(dg.gamma(image, 0.7)), x ** 0.7, rtol=1e-3, atol=1e-2)
    assert np.allclose(arr(dg.offset(image)), x - 1024)


def test_motion_and_ghosting_spread_signal_into_the_air(image):
    x = arr(image)
    air = x == 0
    for f in (dg.motion, dg.ghosting):
        out = arr(f(image, seed=4))
        assert np.abs(out[air]).mean() > 5 * (np.abs(x[air]).mean() + 1)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_thick_slices_are_a_new_grid_over_the_same_field_of_view(image, orientation):
    out = dg.thick_slices(image, 5.0, orientation)
    axis = dg.image_axis(image, orientation)
    direction = np.abs(np.array(image.GetDirection()).reshape(3, 3))
    assert direction[dg.ORIENTATIONS[orientation], axis] > 0.9    # the anatomical axis asked for
    assert out.GetSpacing()[axis] == 5.0
    assert [s for i, s in enumerate(out.GetSpacing()) if i != axis] == \
           [s for i, s in enumerate(image.GetSpacing()) if i != axis]
    assert out.GetDirection() == image.GetDirection()
    assert np.allclose(centre(out), centre(image), atol=1e-3)
    assert abs(out.GetSize()[axis] * 5.0 - image.GetSize()[axis] * image.GetSpacing()[axis]) <= 5.0


@pytest.mark.parametrize("orientation, axis", [("sagittal", 2), ("coronal", 1), ("axial", 0)])
def test_thick_slice_copies_blur_the_model_space_grid_most_along_the_slice_axis(image, orientation, axis):
    """training.features.thick_model_space (the thick-slice copies the age models learn
    invariance from): same 2 mm grid back, smoothed most along the slice axis (the others lose
    only what the slice profile averages away in-plane: noise, oblique edges)."""
    from BrainAgeLib.training.features import thick_model_space
    x = arr(sitk.Resample(image, [96, 112, 96], sitk.Transform(), sitk.sitkLinear,
                          image.GetOrigin(), (2.0, 2.0, 2.0), image.GetDirection()))
    out = thick_model_space(x, 5.0, orientation)
    assert out.shape == x.shape and out.dtype == np.float32
    kept = [np.abs(np.diff(out, axis=k)).mean() / np.abs(np.diff(x, axis=k)).mean() for k in range(3)]
    assert kept[axis] < 0.5
    assert all(kept[axis] < 0.8 * kept[k] for k in {0, 1, 2} - {axis})
    assert abs(out.mean() - x.mean()) < 0.05 * x.mean()


def test_lesion_is_a_45_ml_csf_like_region_in_tissue(image, labels):
    x, lab = arr(image), arr(labels)
    out = arr(dg.lesion(image, labels, 45.0, seed=5))
    changed = np.abs(out - x) > 1e-3
    ml = changed.sum() * np.prod(image.GetSpacing()) / 1000
    assert 30 < ml < 50
    assert np.isin(lab[changed], (2, 3)).mean() > 0.8                  # placed in tissue
    assert np.median(out[changed]) < np.median(x[lab == 2])             # darker than GM, CSF-like
    assert np.median(out[changed]) == pytest.approx(np.median(x[lab == 1]), rel=0.35)


def test_wraparound_overflows_the_brightest_voxels_into_negatives(image):
    out = dg.wraparound(image, 0.003)
    assert out.GetPixelID() == sitk.sitkInt16
    x = arr(out)
    fg = arr(image) > dg.foreground_level(image) * 0.3
    assert 0.001 < (x < 0).sum() / fg.sum() < 0.006
    assert x.min() < -10000


# ---- any geometry ------------------------------------------------------------------------------
def anisotropic(image, spacing, rotation_deg=0.0):
    """The scan resampled to ``spacing`` (mm), optionally on a grid rotated about its centre."""
    c = centre(image)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if rotation_deg:
        t = math.radians(rotation_deg)
        rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        direction = rot @ direction
    size = [int(round(n * s / sp)) for n, s, sp in zip(image.GetSize(), image.GetSpacing(), spacing)]
    origin = c - direction @ ((np.array(size) - 1) / 2 * np.array(spacing))
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), tuple(spacing),
                         tuple(direction.ravel()), 0.0, sitk.sitkFloat32)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 5.0), (0.5, 0.5, 6.0), (0.9, 0.9, 3.0), (1.0, 1.0, 2.0),
                                     (6.0, 0.9, 0.9)])
def test_any_voxel_shape_resamples_to_the_working_grid(image, spacing):
    """Refused before with "Sigma must be greater than zero": now smoothed only along fine axes."""
    src = anisotropic(image, spacing)
    work = _resample_isotropic(src, 2.0)
    assert work.GetSpacing() == (2.0, 2.0, 2.0)
    assert np.allclose(centre(work), centre(src), atol=1.0)
    assert np.isfinite(arr(work)).all() and arr(work).max() > 0.5 * arr(src).max()


def test_thick_slice_whole_head_is_processed(image):
    prep = preprocess(anisotropic(image, (1.0, 1.0, 5.0)))
    assert prep.similarity > MIN_SIMILARITY
    assert any("thick slices (5.0 mm" in q for q in prep.qc)


def test_oblique_anisotropic_input_is_processed(image, labels):
    """A brain-extracted scan on a grid tilted by 20 degrees with 0.9 x 0.9 x 3 mm voxels."""
    brain = sitk.Mask(image, sitk.Cast(labels > 0, sitk.sitkUInt8))
    src = anisotropic(brain, (0.9, 0.9, 3.0), rotation_deg=20)
    assert not np.allclose(np.abs(np.array(src.GetDirection())), np.abs(np.array(image.GetDirection())))
    prep = preprocess(src)
    assert prep.skull_stripped and prep.similarity > MIN_SIMILARITY
    assert any("thick slices (3.0 mm > 2.5 mm)" in q for q in prep.qc)   # processed, and warned about


# ---- CT and offsets ----------------------------------------------------------------------------
def synthetic_ct(image, labels):
    """A head CT in Hounsfield units from the fixture's tissues: brain 5-40 HU, a 6 mm skull of
    1000 HU around it, scalp 40 HU, air -1000, noise 5 HU."""
    lab = sitk.GetArrayFromImage(labels)
    head = arr(image) > 0.1 * arr(image).max()
    brain = lab > 0
    dil = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.Cast(labels > 0, sitk.sitkUInt8), [3, 3, 3])) > 0
    hu = np.full(lab.shape, -1000.0)
    hu[head | dil] = 40.0
    hu[dil & ~brain] = 1000.0
    hu[brain] = np.choose(lab[brain], [0, 8, 40, 28])
    hu += np.random.default_rng(0).normal(0, 5, hu.shape)
    out = sitk.GetImageFromArray(hu.astype(np.float32))
    out.CopyInformation(image)
    return out


def test_ct_is_refused_by_its_histogram(image, labels):
    with pytest.raises(InputError, match="looks like a CT"):
        check_t1_like(synthetic_ct(image, labels))


@pytest.mark.parametrize("path", [T1, T1B])
def test_mri_with_an_offset_of_minus_1024_is_accepted_and_shifted_back(path):
    image = read_image(path)
    shifted = dg.offset(image, -1024)
    assert check_t1_like(shifted) == []
    back, added = to_nonnegative(shifted)
    assert added == pytest.approx(1024)
    assert np.allclose(arr(back), arr(image), atol=1e-2)
    assert to_nonnegative(image)[0] is image


# ---- image QC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [T1, T1B])
def test_wraparound_qc_fires_on_overflow_only(path):
    image = read_image(path)
    assert qc.wraparound_qc(image) == []
    assert qc.wraparound_qc(dg.offset(image, -1024)) == []
    assert any("wrap-around" in w for w in qc.wraparound_qc(dg.wraparound(image)))


def test_geometry_qc_flags_thick_slices_only(image):
    assert qc.geometry_qc(image) == []
    assert qc.geometry_qc(anisotropic(image, (1.0, 1.0, 2.5))) == []
    assert qc.geometry_qc(anisotropic(image, (1.0, 1.0, 3.0)))      # 3 mm moves ages by 3.5-7 years
    assert qc.geometry_qc(dg.thick_slices(image, 5.0))


@pytest.fixture(scope="module")
def model_space(image):
    """The fixture in model space with the ResUNet's probabilities (one preprocessing)."""
    from BrainAgeLib import models
    from BrainAgeLib.segmentation import segment_array
    x = sitk.GetArrayFromImage(preprocess(image).image)
    return x, segment_array(models.load_resunet(), x, device="cpu")


def test_noise_qc_fires_on_a_noisy_scan_only(model_space):
    from BrainAgeLib import models
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.segmentation import segment_array
    x, prob = model_space
    snr = qc.wm_snr(x, prob)
    assert snr > qc.MIN_WM_SNR and qc.noise_qc(snr) == []
    template = models.load_template()
    img = sitk.GetImageFromArray(x)
    img.CopyInformation(template)
    noisy = sitk.GetArrayFromImage(dg.keep_zero_background(dg.rician_noise(img, 10, seed=1), img))
    noisy = normalize_intensity(noisy)
    noisy_snr = qc.wm_snr(noisy, segment_array(models.load_resunet(), noisy, device="cpu"))
    assert noisy_snr < 0.5 * snr
    assert any("noisy image" in w for w in qc.noise_qc(noisy_snr))


def test_focal_qc_fires_on_a_lesion_only(model_space):
    from BrainAgeLib import models
    from BrainAgeLib.segmentation import segment_array
    x, prob = model_space
    clean_ml = qc.unexpected_csf_ml(prob)
    assert clean_ml < qc.FOCAL_MAX_ML and qc.focal_qc(clean_ml) == []
    template = models.load_template()
    img = sitk.GetImageFromArray(x)
    img.CopyInformation(template)
    lab = sitk.GetImageFromArray(prob.argmax(0).astype(np.uint8))
    lab.CopyInformation(template)
    hurt = sitk.GetArrayFromImage(dg.lesion(img, lab, 45.0, seed=2))
    ml = qc.unexpected_csf_ml(segment_array(models.load_resunet(), hurt, device="cpu"))
    assert ml > qc.FOCAL_MAX_ML
    assert any("focal abnormality" in w for w in qc.focal_qc(ml))


def test_mirror_disagreement_is_zero_for_one_reading_and_nan_without_brain():
    rng = np.random.default_rng(0)
    prob = rng.dirichlet(np.ones(4), size=(6, 7, 8)).transpose(3, 0, 1, 2).astype(np.float32)
    assert qc.mirror_disagreement(prob, prob) == 0.0
    other = prob.copy()
    other[[2, 3]] = prob[[3, 2]]                  # GM and WM swapped: a large disagreement
    assert qc.mirror_disagreement(prob, other) > 0.1
    background = np.zeros_like(prob)
    background[0] = 1.0
    assert math.isnan(qc.mirror_disagreement(background, background))
    assert qc.mirror_qc(float("nan")) == [] and qc.mirror_qc(qc.MAX_MIRROR_EXCESS) == []
    assert "unstable segmentation" in qc.mirror_qc(qc.MAX_MIRROR_EXCESS + 0.01)[0]
    # the excess is over the clean scans' line on the CSF fraction: more atrophy, more disagreement allowed
    base, slope = qc.MIRROR_LINE
    assert qc.mirror_excess(base + slope * 0.3, 0.3) == pytest.approx(0.0)
    assert qc.mirror_excess(0.1, 0.35) < qc.mirror_excess(0.1, 0.2)


def test_mirror_qc_fires_on_head_motion_and_not_on_the_clean_head():
    """IXI014 with evaluate-robustness' motion (its seed there): the age moved by 20 years while
    every other QC stayed silent; the segmentation of the scan and its mirror now disagree."""
    import zlib
    from BrainAgeLib import models
    from BrainAgeLib.segmentation import segment_array, segment_mirrored
    from BrainAgeLib.volumes import global_fractions
    net = models.load_resunet()

    def excess(img):
        x = sitk.GetArrayFromImage(preprocess(img).image)
        prob = segment_array(net, x, device="cpu")
        mirrored = segment_mirrored(net, x, device="cpu")
        return qc.mirror_excess(qc.mirror_disagreement(prob, mirrored), float(global_fractions(prob)[0]))

    head = read_image(T1B)
    seed = int(np.random.SeedSequence([20261123, zlib.crc32(b"IXI014-HH-1236"),
                                       zlib.crc32(b"motion")]).generate_state(1)[0])
    clean, moved = excess(head), excess(dg.motion(head, seed))
    assert clean < qc.MAX_MIRROR_EXCESS and qc.mirror_qc(clean) == []
    assert moved > qc.MAX_MIRROR_EXCESS and qc.mirror_qc(moved)


def test_predict_runs_the_mirror_check_by_default(monkeypatch):
    """On by default (the suite switches it off for speed, conftest.py); with it on, predict records
    its measures and a clean head passes it."""
    import subprocess
    import sys
    from BrainAgeLib import pipeline
    env = {k: v for k, v in os.environ.items() if k != "BRAINAGE_MIRROR_CHECK"}
    out = subprocess.run([sys.executable, "-c", "import BrainAgeLib.pipeline as p; print(p.MIRROR_CHECK)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    monkeypatch.setattr(pipeline, "MIRROR_CHECK", True)
    res = pipeline.predict(T1, device="cpu")
    assert res.qc_measures["mirror_excess"] < qc.MAX_MIRROR_EXCESS
    assert not any("unstable segmentation" in w for w in res.qc)
    monkeypatch.setattr(pipeline, "MIRROR_CHECK", False)
    off = pipeline.predict(T1, device="cpu")
    assert "mirror_excess" not in off.qc_measures and off.predicted_age == res.predicted_age


# ---- evaluate-robustness -------------------------------------------------------------------------
def test_summary_counts_silent_large_errors_and_warning_rates():
    from BrainAgeLib.evaluation_robustness import summarise
    rows = [
        {"set": "ixi10", "subject_id": "a", "condition": "clean", "processed": True, "qc": "ok", "warnings": ""},
        {"set": "ixi10", "subject_id": "b", "condition": "clean", "processed": True, "qc": "noisy image",
         "warnings": "noise"},
        {"set": "ixi10", "subject_id": "a", "condition": "noise_snr10", "processed": True, "age_change": 8.0,
         "qc": "ok", "warnings": "", "silent_large_error": True},
        {"set": "ixi10", "subject_id": "b", "condition": "noise_snr10", "processed": True, "age_change": -6.0,
         "qc": "noisy image", "warnings": "noise", "silent_large_error": False},
        {"set": "ixi10", "subject_id": "a", "condition": "thick6mm_axial", "processed": False, "error": "x"},
        {"set": "ixi10", "subject_id": "b", "condition": "thick6mm_axial", "processed": True, "age_change": 1.0,
         "qc": "ok", "warnings": "", "silent_large_error": False},
    ]
    s = summarise(rows)
    c = s["conditions"]["noise_snr10"]
    assert c["age_change"]["mean"] == 1.0 and c["age_change"]["mean_abs"] == 7.0
    assert c["silent_large_errors"] == 1 and c["flagged"] == 0.5
    assert s["conditions"]["thick6mm_axial"]["processed"] == 0.5
    assert s["qc_warnings"]["noise"]["false_alarm_rate"] == 0.5
    assert s["qc_warnings"]["noise"]["hit_rate"]["noise_snr10"] == 0.5
    assert s["targets"]["no_valid_mri_refused"] is False
    assert s["targets"]["silent_large_errors_share"] == 0.25
    from BrainAgeLib.evaluation_robustness import format_table, markdown_tables
    assert "noise_snr10" in format_table(s)
    table = markdown_tables(s, s)
    assert "| noise_snr10 | 2 / 2 | +1.0 ± 9.9 (7.0) | 100 % | 50 % | 1 |" in table
    assert "| noise | 50 % | noise_snr10 50 %" in table


def test_a_higher_ab_limit_lifts_only_the_warnings_within_it():
    from BrainAgeLib.evaluation_robustness import reapply_ab_limit
    ab = ("the two age models disagree by {:.1f} years (healthy scans: < 13.5): the age is uncertain; "
          "check the image and the segmentation")
    alone = {"subject_id": "a", "condition": "gamma_1.4", "age_change": "6.2", "qc": ab.format(14.1),
             "warnings": "ab_disagreement", "flagged": "True", "silent_large_error": "False"}
    row = reapply_ab_limit(alone, 14.76)     # 14.1 is within the new limit: now a silent large error
    assert (row["qc"], row["warnings"], row["flagged"], row["silent_large_error"]) == ("ok", "", "False", "True")
    both = {**alone, "qc": "noisy image;" + ab.format(14.1) + ";focal", "warnings": "ab_disagreement|focal|noise"}
    row = reapply_ab_limit(both, 14.76)      # other warnings stay, so the row stays flagged
    assert (row["qc"], row["warnings"], row["flagged"]) == ("noisy image;focal", "focal|noise", "True")
    above = {**alone, "qc": ab.format(14.9)}
    assert reapply_ab_limit(above, 14.76)["qc"] == ab.format(14.9).replace("< 13.5", "< 14.8")
    assert reapply_ab_limit({**alone, "qc": "ok", "warnings": ""}, 14.76)["qc"] == "ok"
    with pytest.raises(ValueError, match="rerun"):
        reapply_ab_limit(alone, 12.0)        # lower limits would need the unflagged rows' values
    with pytest.raises(ValueError, match="too close"):
        reapply_ab_limit(alone, 14.12)


def test_cli_rejects_unknown_conditions(capsys):
    from BrainAgeLib.cli import main
    with pytest.raises(SystemExit) as e:
        main(["evaluate-robustness", "--conditions", "noise_snr7"])
    assert e.value.code == 2
    assert "noise_snr7" in capsys.readouterr().err
