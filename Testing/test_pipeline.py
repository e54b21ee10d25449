"""The Python API: predict() on real images, bad inputs, and the shipped regressors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import models
from BrainAgeLib.io import InputError, read_image, validate_image
from BrainAgeLib.pipeline import predict
from BrainAgeLib.regression import (AgeBiasCorrection, VolumeAgeRegressor, conformal_halfwidth,
                                    volume_features)
from BrainAgeLib.volumes import volume_qc


@pytest.fixture(scope="module")
def template():
    return models.load_template()


@pytest.fixture(scope="module")
def template_result(template):
    return predict(template)


def test_model_space_image_takes_identity_path(template, template_result):
    r = template_result
    assert r.labels.GetSize() == template.GetSize()
    assert r.labels.GetPixelID() == sitk.sitkUInt8
    assert np.allclose(r.labels.GetOrigin(), template.GetOrigin())
    # the mean brain of healthy adults is a plausible adult brain
    assert 18 < r.predicted_age < 90
    assert 1000 < r.volumes_ml["tiv"] < 2000
    # within the adult ranges of volume QC (the template, a mean image, is smoother than any scan)
    assert volume_qc(r.volumes_ml) == []
    assert r.volumes_ml["gm"] > r.volumes_ml["wm"] > 0.5 * r.volumes_ml["csf"]
    assert r.interval[0] < r.predicted_age < r.interval[1]
    assert r.brain_age_gap is None


def test_approaches(template, template_result):
    vol = predict(template, approach="volumes", chronological_age=50.0)
    assert vol.predicted_age == pytest.approx(template_result.predicted_age_volumes)
    assert vol.brain_age_gap == pytest.approx(vol.predicted_age - 50.0)
    if template_result.predicted_age_cnn is not None:
        img = predict(template, approach="image")
        assert img.predicted_age == pytest.approx(template_result.predicted_age_cnn)
    with pytest.raises(ValueError, match="approach"):
        predict(template, approach="magic")


def test_input_image_not_modified(template):
    before = sitk.GetArrayFromImage(template).copy()
    predict(template, approach="volumes")
    assert np.array_equal(before, sitk.GetArrayFromImage(template))


def _image(arr, spacing=(2.0, 2.0, 2.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


@pytest.mark.parametrize("make, message", [
    (lambda: _image(np.random.rand(120, 120).astype(np.float32), (1.0, 1.0)), "2D"),
    (lambda: sitk.JoinSeries([_image(np.random.rand(40, 40, 40).astype(np.float32))] * 3), "4D"),
    (lambda: _image(np.zeros((60, 60, 60), np.float32)), "empty"),
    (lambda: _image(np.full((60, 60, 60), np.nan, np.float32)), "NaN"),
    (lambda: _image(np.random.rand(60, 60, 60).astype(np.float32), (40.0, 40.0, 40.0)), "spacing"),
    (lambda: _image(np.random.rand(60, 60, 60).astype(np.float32), (0.01, 0.01, 0.01)), "spacing"),
])
def test_bad_images_raise_clear_errors(make, message):
    with pytest.raises(InputError, match=message):
        predict(make())


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(InputError, match="cannot read"):
        read_image(bad)
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")


def test_validate_returns_new_float_image(template):
    u8 = sitk.Cast(sitk.RescaleIntensity(template, 0, 255), sitk.sitkUInt8)
    out = validate_image(u8)
    assert out.GetPixelID() == sitk.sitkFloat32 and u8.GetPixelID() == sitk.sitkUInt8


def test_volume_regressor_json_round_trip(template_result):
    """The shipped regressor reloads from JSON to identical predictions."""
    d = json.loads(models.verify("age_model.json").read_text())["volumes"]["regressor"]
    reg = VolumeAgeRegressor.from_dict(d)
    x = volume_features(template_result.model_space_probabilities, reg.cell)[None]
    again = VolumeAgeRegressor.from_dict(json.loads(json.dumps(reg.to_dict())))
    assert again.predict(x)[0] == reg.predict(x)[0]
    assert template_result.age_details["volumes_raw"] == pytest.approx(reg.predict(x)[0])


def test_fit_export_reload_identical():
    rng = np.random.default_rng(0)
    X = rng.random((80, 30))
    y = X[:, :5].sum(1) * 10 + rng.normal(0, 0.5, 80)
    m = VolumeAgeRegressor(alpha=1e-3).fit(X, y)
    m2 = VolumeAgeRegressor.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.array_equal(m.predict(X), m2.predict(X))
    assert np.corrcoef(m.predict(X), y)[0, 1] > 0.9


def test_invariance_penalty_ignores_what_acquisition_moves():
    """Paired scans (the same people under two contrasts) teach the regressor to leave out the
    feature that the contrast moves, even where that feature also tracks age in training."""
    rng = np.random.default_rng(3)
    age = rng.uniform(20, 85, 200)
    clean = rng.random((200, 20)) * 0.03 + 0.05
    clean[:, 0] += age / 400                    # a robust age feature
    clean[:, 1] += age / 400                    # one that the contrast also moves
    copy = clean.copy()
    copy[:, 1] += rng.uniform(-0.15, 0.15, 200)
    plain = VolumeAgeRegressor(alpha=1e-3).fit(clean, age)
    inv = VolumeAgeRegressor(alpha=1e-3, invariance=10.0).fit(clean, age, pairs=[(clean, copy)])
    change = lambda m: np.abs(m.predict(copy) - m.predict(clean)).mean()
    assert change(inv) < 0.3 * change(plain)
    assert np.abs(inv.predict(clean) - age).mean() < 5.0          # still an age model
    again = VolumeAgeRegressor.from_dict(json.loads(json.dumps(inv.to_dict())))
    assert again.invariance == 10.0 and np.array_equal(again.predict(copy), inv.predict(copy))
    # without pairs, or with weight 0, it is the plain ridge
    assert np.allclose(VolumeAgeRegressor(alpha=1e-3, invariance=0.0).fit(clean, age, pairs=[(clean, copy)])
                       .predict(copy), plain.predict(copy))


def test_invariance_to_two_kinds_of_copy_needs_both():
    """Approach A's fit with two kinds of acquisition copy (contrast, motion: each moves another
    feature) leaves out both features; with one kind of copy only, the other still moves the age."""
    from BrainAgeLib.training.age_model import fit_regressor
    rng = np.random.default_rng(5)
    age = rng.uniform(20, 85, 300)
    clean = rng.random((300, 12)) * 0.03 + 0.05
    clean[:, :3] += age[:, None] / 400                  # 0: robust; 1: contrast moves it; 2: motion does
    contrast, motion = clean.copy(), clean.copy()
    contrast[:, 1] += rng.uniform(-0.15, 0.15, 300)
    motion[:, 2] += rng.uniform(-0.15, 0.15, 300)
    est = VolumeAgeRegressor(alpha=1e-3, invariance=10.0)
    both = fit_regressor(est, clean, age, copies=[contrast, motion])
    one = fit_regressor(est, clean, age, copies=[contrast])
    change = lambda m, c: np.abs(m.predict(c) - m.predict(clean)).mean()
    plain = VolumeAgeRegressor(alpha=1e-3).fit(clean, age)
    assert change(both, contrast) < 0.3 * change(plain, contrast)
    assert change(both, motion) < 0.3 * change(plain, motion)
    assert change(one, motion) > 2 * change(both, motion)
    assert np.abs(both.predict(clean) - age).mean() < 5.0


def test_copies_live_beside_the_cache_and_unknown_kinds_are_refused(tmp_path):
    from BrainAgeLib.training.features import contrast_copies_path, copies_path
    cache = tmp_path / "features.npz"
    assert copies_path(cache, "motion") == tmp_path / "motion_copies.npz"
    assert contrast_copies_path(cache) == tmp_path / "contrast_copies.npz"
    with pytest.raises(ValueError, match="unknown kind"):
        copies_path(cache, "blur")
    assert copies_path(cache, "thick") == tmp_path / "thick_copies.npz"


def test_bias_correction_removes_age_dependence():
    rng = np.random.default_rng(1)
    age = rng.uniform(20, 85, 400)
    pred = 20 + 0.6 * age + rng.normal(0, 4, 400)      # regression to the mean
    bc = AgeBiasCorrection().fit(pred, age)
    assert bc.slope == pytest.approx(0.6, abs=0.05)
    gap = bc(pred) - age
    assert abs(np.corrcoef(gap, age)[0, 1]) < 0.1
    assert abs(np.corrcoef(pred - age, age)[0, 1]) > 0.5


def test_conformal_halfwidth_covers():
    rng = np.random.default_rng(2)
    half = conformal_halfwidth(rng.normal(0, 5, 500), 0.9)
    assert half == pytest.approx(1.645 * 5, rel=0.12)
    fresh = rng.normal(0, 5, 5000)
    assert 0.87 < (np.abs(fresh) <= half).mean() < 0.93


def test_site_offset_fit_json_and_application(template_result):
    from BrainAgeLib.pipeline import apply_site_offset
    from BrainAgeLib.regression import SiteOffset
    site = SiteOffset().fit([50, 52, 47, 61, 55, 49], [40, 45, 41, 50, 46, 44])
    assert site.offset == pytest.approx(8.0) and site.n == 6
    again = SiteOffset.from_dict(json.loads(json.dumps(site.to_dict())))
    assert again.offset == site.offset and again.n == 6
    with pytest.raises(ValueError, match="at least 5 controls"):
        SiteOffset().fit([50, 52], [40, 45])
    with pytest.raises(ValueError, match="site-offset"):
        SiteOffset.from_dict({"type": "VolumeAgeRegressor"})
    moved = apply_site_offset(template_result, site)
    assert moved.predicted_age == pytest.approx(template_result.predicted_age - 8.0)
    assert moved.predicted_age_volumes == pytest.approx(template_result.predicted_age_volumes - 8.0)
    assert moved.interval[0] == pytest.approx(template_result.interval[0] - 8.0)
    assert moved.volumes_ml == template_result.volumes_ml and moved is not template_result


def test_package_exports_predict_lazily():
    """DESIGN.md's `from BrainAgeLib import predict`; importing the package loads no torch."""
    import subprocess
    import sys
    code = ("import sys, BrainAgeLib; assert 'torch' not in sys.modules; "
            "from BrainAgeLib import predict, BrainAgeResult; from BrainAgeLib import pipeline; "
            "assert predict is pipeline.predict and BrainAgeResult is pipeline.BrainAgeResult")
    subprocess.run([sys.executable, "-c", code], check=True)


def _write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """A 3D image as a DICOM series of int16 slices (position, orientation, spacing tags)."""
    folder.mkdir(parents=True)
    img = sitk.Cast(sitk.RescaleIntensity(image, 0, 1000), sitk.sitkInt16)
    direction = img.GetDirection()
    series = "1.2.826.0.1.3680043.2.1125.1.99." + "20261124"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        s = img[:, :, k]
        for tag, value in (("0008|0060", "MR"), ("0020|000e", series), ("0020|000d", series + ".0"),
                           ("0020|0013", str(k + 1)),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                                       direction[1], direction[4], direction[7]))),
                           ("0020|0032", "\\".join(f"{v:.6f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k)))),
                           ("0028|0030", f"{img.GetSpacing()[1]:.6f}\\{img.GetSpacing()[0]:.6f}"),
                           ("0018|0050", f"{img.GetSpacing()[2]:.6f}")):
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)


def test_dicom_series_and_nrrd_read_like_nifti(tmp_path):
    """A real T1 saved as a DICOM series folder and as NRRD reads back with the same voxels in
    the same physical places."""
    from BrainAgeLib.io import expand_inputs
    src = sorted((Path(__file__).parent / "data").glob("IXI014*_T1.nii.gz"))[0]
    ref = read_image(src)
    _write_dicom_series(ref, tmp_path / "cohort" / "IXI014_dicom")
    sitk.WriteImage(ref, str(tmp_path / "cohort" / "IXI014.nrrd"))
    inputs = expand_inputs([str(tmp_path / "cohort")])
    assert sorted(Path(i).name for i in inputs) == ["IXI014.nrrd", "IXI014_dicom"]
    ref = sitk.DICOMOrient(ref, "LPS")    # DICOM stores a left-handed grid with its slices reversed
    for path in inputs:
        img = sitk.DICOMOrient(read_image(path), "LPS")
        assert img.GetSize() == ref.GetSize()
        assert np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4)
        assert np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3)
        assert np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-4)
        r = np.corrcoef(sitk.GetArrayViewFromImage(img).ravel(), sitk.GetArrayViewFromImage(ref).ravel())[0, 1]
        assert r > 0.999


def test_dicom_series_predicts_like_the_nifti(tmp_path):
    """The whole pipeline on a DICOM series (int16, slices re-ordered by the reader) gives the
    ages and volumes of the NIfTI it came from; so does the NIfTI in another axis order."""
    from BrainAgeLib.pipeline import predict
    src = sorted((Path(__file__).parent / "data").glob("IXI014*_T1.nii.gz"))[0]
    _write_dicom_series(read_image(src), tmp_path / "dicom")
    a, b = predict(src, device="cpu"), predict(tmp_path / "dicom", device="cpu")
    assert b.predicted_age == pytest.approx(a.predicted_age, abs=0.3)      # int16 rounding only
    # the same scan stored in another axis order gives the same result (reoriented first)
    c = predict(sitk.DICOMOrient(read_image(src), "RAI"), device="cpu")
    assert c.predicted_age == pytest.approx(a.predicted_age, abs=0.01)
    assert b.volumes_ml["tiv"] == pytest.approx(a.volumes_ml["tiv"], rel=0.01)
    assert b.volumes_ml["gm"] == pytest.approx(a.volumes_ml["gm"], rel=0.02)


def test_template_grid_input_is_bias_corrected(template, monkeypatch):
    """A scan already on the template grid with a bias field (a smooth multiplicative field,
    TorchIO's) comes out of preprocessing close to the clean scan: its field is beyond the
    training scans' (BIAS_FIELD_MAX_SD), so N4 is applied. Without the correction (the path of
    release 5) the field stays in the model-space image."""
    import BrainAgeLib.preprocessing as pp
    from BrainAgeLib import degrade
    biased = degrade.keep_zero_background(degrade.bias_field(template, seed=3), template)
    brain = sitk.GetArrayViewFromImage(template) > 0.05 * float(sitk.GetArrayViewFromImage(template).max())
    clean = sitk.GetArrayViewFromImage(pp.preprocess(template).image)[brain]

    def error(limit: float) -> tuple[float, float]:
        monkeypatch.setattr(pp, "BIAS_FIELD_MAX_SD", limit)
        p = pp.preprocess(biased)
        return float(np.median(np.abs(sitk.GetArrayViewFromImage(p.image)[brain] - clean))), p.measures["bias_field_sd"]

    limit = pp.BIAS_FIELD_MAX_SD
    with_n4, sd = error(limit)
    without, _ = error(float("inf"))
    assert sd > limit                # measured 0.21 (clean training scans: at most 0.05)
    assert without > 0.05            # the field is there without N4 (normalised units, WM ~0.9)
    # measured 0.047 against 0.169; the rest is what N4 changes beyond the field (the clean
    # template is read without N4, as a clean scan is)
    assert with_n4 < 0.35 * without


def test_cnn_reads_a_scan_and_its_mirror_at_the_same_age(template_result):
    """B's age is the mean over the scan and its left-right mirror (a flip training draws):
    mirrored inputs read the same, and the mirror changes what one pass alone reads."""
    import torch
    from BrainAgeLib.cnn import cnn_input, predict_age
    from BrainAgeLib.regression import _load_cnn
    net = _load_cnn(str(models.models_dir()))
    x = torch.from_numpy(cnn_input(sitk.GetArrayFromImage(template_result.model_space_image), template_result.model_space_probabilities))[None]
    x = torch.cat([x, x.flip(-1)])
    with torch.inference_mode():
        both = predict_age(net, x)
        single = predict_age(net, x, mirror=False)
    assert both[0].item() == pytest.approx(both[1].item(), abs=1e-4)
    assert abs(single[0].item() - single[1].item()) > 1e-3          # one pass alone is not symmetric
    assert both[0].item() == pytest.approx(single.mean().item(), abs=1e-4)
    assert json.loads(models.verify("age_model.json").read_text())["cnn"]["mirror"] is True


def test_approach_a_selection_by_cv_or_by_cv_and_site_transfer():
    from BrainAgeLib.training.age_model import select_regressor
    rows = [{"regressor": "polynomial (deg 3) on global fractions [seed]", "mae": 5.0, "site_transfer_mae": 7.0},
            {"regressor": "ridge on regional 12 mm, sqrt, alpha 3e-1", "mae": 5.66, "site_transfer_mae": 10.27},
            {"regressor": "ridge on regional 12 mm, sqrt, alpha 3e0", "mae": 6.39, "site_transfer_mae": 8.87}]
    assert select_regressor(rows)["regressor"].endswith("alpha 3e-1")          # only ridges ship
    assert select_regressor(rows, "cv+sites")["regressor"].endswith("alpha 3e0")
    with pytest.raises(ValueError, match="selection"):
        select_regressor(rows, "test")


def _tissue_volume(shape=(32, 32, 32), seed=0):
    """A normalised T1-like array (another scanner's GM/WM contrast) and one-hot probabilities."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 4, shape)
    arr = np.choose(lab, [0.0, 0.35, 0.78, 0.94]).astype(np.float32)
    arr[lab > 0] += rng.normal(0, 0.01, int((lab > 0).sum())).astype(np.float32)
    return arr, (lab[None] == np.arange(4)[:, None, None, None]).astype(np.float32), lab


def test_registered_scans_are_read_as_the_harmonisation_switch_says(monkeypatch):
    """Off: the scan and its first segmentation as they are; on: GM/WM mapped to Cam-CAN's and
    segmented again. The medians for the contrast QC are the scan's own either way."""
    from BrainAgeLib import pipeline
    from BrainAgeLib.preprocessing import TISSUE_LANDMARKS, tissue_medians
    arr, prob, lab = _tissue_volume()
    net = models.load_resunet()
    monkeypatch.setattr(pipeline, "HARMONIZE_RAW_SCANS", False)
    out, p, medians = pipeline.read_registered(net, arr, prob)
    assert np.array_equal(out, arr) and p is prob and medians == tissue_medians(arr, prob)
    monkeypatch.setattr(pipeline, "HARMONIZE_RAW_SCANS", True)
    out, p, medians_on = pipeline.read_registered(net, arr, prob)
    assert medians_on == medians
    assert np.median(out[lab == 2]) == pytest.approx(TISSUE_LANDMARKS["gm"], abs=2e-3)
    assert p.shape == prob.shape and not np.array_equal(p, prob)      # segmented again


def test_feature_cache_built_with_the_other_switch_is_rebuilt(tmp_path, monkeypatch):
    """A cache records whether its registered scans were harmonised; with the switch the other way
    it is not used (rebuilt), and caches from before the record count as harmonised."""
    from BrainAgeLib import pipeline
    from BrainAgeLib.training import features
    cache = tmp_path / "features.npz"
    np.savez(cache, version=np.asarray(features.FEATURE_VERSION), subject_id=np.asarray(["a"]))
    monkeypatch.setattr(pipeline, "HARMONIZE_RAW_SCANS", True)
    assert list(features.model_space_features(None, cache)["subject_id"]) == ["a"]
    monkeypatch.setattr(pipeline, "HARMONIZE_RAW_SCANS", False)
    said = []
    with pytest.raises(Exception):            # rebuilding needs the data, absent here
        features.model_space_features(tmp_path / "no data", cache, log=said.append)
    assert said and "registered scans were harmonised" in said[0] and "rebuilding" in said[0]
