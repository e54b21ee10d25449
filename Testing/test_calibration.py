"""Site calibration (features ComBat-style + ages) and the model-level QC helpers."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from BrainAgeLib.calibration import FeatureReference, SiteCalibration, load_site_calibration
from BrainAgeLib.qc import OutOfDistribution, age_range_qc, disagreement_qc


def _cohort(n, rng, shift=0.0, scale=1.0, n_feat=40):
    age = rng.uniform(20, 85, n)
    slope = np.linspace(-0.001, 0.001, n_feat)
    mean = 0.1 + slope[None] * (age[:, None] - 50)
    noise = 0.002 * rng.standard_normal((n, n_feat))
    return mean + shift + scale * noise, age


def test_feature_calibration_removes_a_site_shift_and_scale():
    rng = np.random.default_rng(0)
    X_ref, age_ref = _cohort(400, rng)
    ref = FeatureReference(cell=6).fit(X_ref, age_ref)
    X_site, age_site = _cohort(200, rng, shift=0.003, scale=1.8)
    cal = SiteCalibration().fit_features(X_site[:20], age_site[:20], ref)
    before = np.abs((X_site[20:] - ref.expected(age_site[20:])).mean(0)).mean()
    after = np.abs((cal.harmonize(X_site[20:]) - ref.expected(age_site[20:])).mean(0)).mean()
    assert after < 0.3 * before                      # the location shift is gone
    # given the scans' ages (in BrainAge: the first pass's predicted ages), the scale too
    harmonised = cal.harmonize(X_site[20:], age_site[20:] + rng.normal(0, 5, 180), ref)
    resid_sd = (harmonised - ref.expected(age_site[20:])).std(0).mean()
    raw_sd = (X_site[20:] - ref.expected(age_site[20:])).std(0).mean()
    assert raw_sd > 0.0033 and resid_sd == pytest.approx(0.002, rel=0.35)
    # a reference-site scan is (nearly) untouched by a calibration fitted on reference controls
    cal_ref = SiteCalibration().fit_features(X_ref[:20], age_ref[:20], ref)
    assert np.abs(cal_ref.harmonize(X_ref[20:]) - X_ref[20:]).mean() < 0.5 * before
    assert cal.has_features and not SiteCalibration().has_features


def test_age_calibration_shrinks_the_slope_and_needs_a_span():
    age = np.linspace(20, 80, 20)
    pred = 10 + 0.8 * age
    cal = SiteCalibration().fit_ages(pred, age)
    assert 0.8 < cal.slope < 1.0                      # shrunk toward 1 with 20 controls
    corrected = np.array([cal.correct_age(p) for p in pred])
    assert abs(np.mean(corrected - age)) < 1.5
    narrow = SiteCalibration().fit_ages(pred[:6], age[:6])   # 20-36 years: offset only
    assert narrow.slope == 1.0
    # the offset's standard error (years): 0 for exact gaps, about 1.25 SD / sqrt(n) for noisy ones
    assert SiteCalibration().fit_ages(age + 3, age).offset_se == pytest.approx(0.0, abs=1e-9)
    noisy = SiteCalibration().fit_ages(age + np.random.default_rng(0).normal(0, 5, age.size), age)
    assert 0.8 < noisy.offset_se < 2.5
    with pytest.raises(ValueError, match="at least 5 controls"):
        SiteCalibration().fit_ages(pred[:3], age[:3])
    assert cal.correct_age(None) is None


def test_site_calibration_json_round_trip_and_validation(tmp_path):
    rng = np.random.default_rng(1)
    X_ref, age_ref = _cohort(100, rng, n_feat=8)
    ref = FeatureReference().fit(X_ref, age_ref)
    X, age = _cohort(12, rng, shift=0.001, n_feat=8)
    cal = SiteCalibration().fit_features(X, age, ref).fit_ages(age + 3, age)
    path = tmp_path / "site.json"
    path.write_text(json.dumps(cal.to_dict()))
    back = load_site_calibration(path)
    assert isinstance(back, SiteCalibration)
    assert np.allclose(back.harmonize(X), cal.harmonize(X), atol=1e-5)
    assert back.correct_age(50.0) == pytest.approx(cal.correct_age(50.0))
    bad = cal.to_dict()
    bad["age"]["slope"] = float("nan")
    with pytest.raises(ValueError, match="slope"):
        SiteCalibration.from_dict(bad)
    bad = cal.to_dict()
    bad["features"]["scale"][0] = -1
    with pytest.raises(ValueError, match="positive"):
        SiteCalibration.from_dict(bad)
    with pytest.raises(ValueError, match="SiteCalibration"):
        SiteCalibration.from_dict([1, 2])
    (tmp_path / "offset.json").write_text(json.dumps({"type": "SiteOffset", "offset_years": 2.0,
                                                      "n_controls": 10, "mad_years": 1.0}))
    assert load_site_calibration(tmp_path / "offset.json").offset == 2.0


def test_out_of_distribution_flags_a_lesion_like_pattern():
    rng = np.random.default_rng(2)
    X, _ = _cohort(300, rng, n_feat=60)
    ood = OutOfDistribution().fit(X)
    assert ood.warnings(_cohort(1, rng, n_feat=60)[0][0]) == []
    odd = X[1].copy()
    odd[10:20] += 0.02                                # a large focal change
    w = ood.warnings(odd)
    assert w and "unlike the healthy training scans" in w[0]
    back = OutOfDistribution.from_dict(json.loads(json.dumps(ood.to_dict())))
    assert back.warnings(odd) == w
    # new healthy people exceed the thresholds rarely (they are the 99.5th percentiles of
    # out-of-fold scores)
    X_new, _ = _cohort(400, rng, n_feat=60)
    d, r = ood.scores(X_new)
    assert (d > ood.max_distance).mean() < 0.03 and (r > ood.max_residual).mean() < 0.03


def test_model_level_qc_messages():
    assert disagreement_qc(40.0, 52.0, 9.5) and not disagreement_qc(40.0, 45.0, 9.5)
    assert disagreement_qc(40.0, None, 9.5) == []
    assert age_range_qc(95.0, (18, 88)) and not age_range_qc(60.0, (18, 88))
    assert "chronological age" in age_range_qc(60.0, (18, 88), chronological=10.0)[0]


def test_coarse_cells_of_the_cache_equal_the_24mm_fractions():
    from BrainAgeLib.training.age_model import MODEL_SHAPE, coarse_cells
    from BrainAgeLib.volumes import regional_fractions
    prob = np.random.default_rng(3).random((4, *MODEL_SHAPE)).astype(np.float32)
    prob[:, :, :40] *= 3                       # not uniform: a misplaced cell would show
    cache = {"regional_c6": regional_fractions(prob, 6)[None]}
    assert np.allclose(coarse_cells(cache, np.array([0]))[0], regional_fractions(prob, 12), rtol=1e-5, atol=1e-9)


def test_calibrate_from_real_scans_thick_slices_included():
    """`calibrate_from_scans` on five real IXI scans (two heads, a 1.5 mm copy, a coronal 5 mm and
    an axial 5 mm copy): features and ages calibrated from all five, thick-slice controls read with
    the ensemble predict() gives them, and the offset's standard error finite."""
    from pathlib import Path
    import SimpleITK as sitk
    from BrainAgeLib import degrade
    from BrainAgeLib.calibration import calibrate_from_scans
    from BrainAgeLib.io import read_image
    data = Path(__file__).resolve().parent / "data"
    heads = [read_image(data / f"IXI01{i}_T1.nii.gz") for i in ("3-HH-1212", "4-HH-1236")]
    fine = sitk.Resample(heads[0], [int(n * 2 / 1.5) for n in heads[0].GetSize()], sitk.Transform(),
                         sitk.sitkLinear, heads[0].GetOrigin(), (1.5,) * 3, heads[0].GetDirection(), 0.0,
                         sitk.sitkFloat32)
    scans = heads + [fine, degrade.thick_slices(heads[1], 5.0, "coronal"), degrade.thick_slices(heads[0], 5.0, "axial")]
    cal = calibrate_from_scans(scans, [34.2, 34.2, 34.2, 34.2, 34.2], log=lambda m: None)
    assert cal.has_features and cal.n == 5
    assert np.isfinite(cal.offset_se) and cal.offset_se >= 0
    assert abs(cal.offset) < 30


def test_disagreement_limit_is_steadier_than_a_99th_percentile_of_80():
    """The A/B limit from 80 healthy subjects: near the true 99th percentile of |A - B|, and it
    moves less between draws of 80 than their empirical 99th percentile does."""
    from BrainAgeLib.qc import disagreement_limit
    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 5.5, size=(300, 80))
    limits = np.array([disagreement_limit(d) for d in draws])
    p99 = np.percentile(np.abs(draws), 99, axis=1)
    true = 2.576 * 5.5
    assert abs(np.median(limits) - true) < 0.3
    assert limits.std() < 0.75 * p99.std()      # normal: a third less spread (1.1 against 1.7 years)
    assert disagreement_limit([3.0, -3.0, np.nan]) == pytest.approx(2.576 * 3.0)
    with pytest.raises(ValueError, match="at least 2"):
        disagreement_limit([np.nan, 1.0])


def test_the_stored_limit_and_older_files_p99():
    """age_model.json since release 17 holds ``ab_disagreement_limit``; older files only the p99;
    the shipped file holds the limit, below its validation subjects' largest difference."""
    from BrainAgeLib import models
    from BrainAgeLib.qc import stored_disagreement_limit
    assert stored_disagreement_limit({"ab_disagreement_limit": 14.0, "ab_disagreement_p99": 13.5}) == 14.0
    assert stored_disagreement_limit({"ab_disagreement_p99": 16.5}) == 16.5
    assert stored_disagreement_limit({}) is None
    q = json.loads(models.verify("age_model.json").read_text())["qc"]
    assert 0 < q["ab_disagreement_limit"] < q["ab_disagreement_max"]


def test_the_site_offset_is_robust_and_nearly_as_precise_as_the_mean():
    """The Hodges-Lehmann offset: a wild control barely moves it (the mean moves 50 years); over
    draws of 20 normal gaps it misses by clearly less than the median, and its stated standard
    error matches its spread."""
    from BrainAgeLib.calibration import hodges_lehmann, offset_standard_error
    from BrainAgeLib.regression import SiteOffset
    rng = np.random.default_rng(7)
    gaps = rng.normal(3.0, 7.0, 20)
    wild = np.append(gaps[:-1], 1000.0)
    assert abs(hodges_lehmann(wild) - hodges_lehmann(gaps)) < 2.0 < abs(wild.mean() - gaps.mean())
    draws = rng.normal(3.0, 7.0, (2000, 20))
    hl = np.array([hodges_lehmann(d) for d in draws])
    assert hl.std() < 0.9 * np.median(draws, axis=1).std()      # 0.86 here; theory 0.85
    assert abs(hl.mean() - 3.0) < 0.1
    se = np.median([offset_standard_error(float(np.median(np.abs(d - h))), 20) for d, h in zip(draws, hl)])
    assert 0.85 < se / hl.std() < 1.2
    site = SiteOffset().fit(gaps + 40.0, np.full(20, 40.0))
    assert site.offset == pytest.approx(hodges_lehmann(gaps)) and site.standard_error == pytest.approx(
        offset_standard_error(site.mad, 20))
    big = rng.normal(-2.0, 7.0, 5000)            # beyond the exact pairs: sampled pairs, same answer
    assert abs(hodges_lehmann(big) - np.mean(big)) < 0.1

_gaps = arrays(np.float64, st.integers(5, 60), elements=st.floats(-40, 40, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(_gaps, st.floats(-30, 30, allow_nan=False))
def test_the_offset_estimate_moves_with_the_gaps_and_stays_among_them(gaps, shift):
    """Hodges-Lehmann: shifted gaps shift it, mirrored gaps mirror it (years), and it never
    leaves the range of the gaps."""
    from BrainAgeLib.calibration import hodges_lehmann
    hl = hodges_lehmann(gaps)
    assert gaps.min() - 1e-9 <= hl <= gaps.max() + 1e-9
    assert hodges_lehmann(gaps + shift) == pytest.approx(hl + shift, abs=1e-6)
    assert hodges_lehmann(-gaps) == pytest.approx(-hl, abs=1e-6)
