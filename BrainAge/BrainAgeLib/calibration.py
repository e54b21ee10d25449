"""Calibration to a new scanner from its own healthy controls.

Two layers, fitted together by :meth:`SiteCalibration.fit` and saved as one JSON:

- **features** (ComBat-style, approach A): each regional tissue-fraction feature of the site's
  controls is compared with the training cohort's at the same ages (the shipped
  ``feature_reference.json``: per-feature mean as a quadratic in age, and residual SD). The
  site's location shift and scale of every feature are estimated with ComBat's empirical-Bayes
  shrinkage across features (Johnson et al. 2007), so that a handful of controls gives stable
  estimates. A new scan's features are mapped as x* = e(a) + (x - e(a) - shift) / scale, where
  e(a) is the reference's expectation at age a; since the person's age is unknown, a is the
  age predicted after the location shift alone (two passes, :func:`~BrainAgeLib.regression.predict_ages`);
- **age** (on top, all approaches): the controls' calibrated predictions are regressed on their
  ages (pred = a + b * age) and ages are corrected as (pred - a) / b. The slope is shrunk toward 1
  by k / (k + ``SLOPE_PRIOR_N``) and used only when the controls span ``MIN_SPAN_YEARS``;
  otherwise the calibration is an offset.

Why not neuroHarmonize: it pins numpy < 2 (BrainAge runs on numpy 2), and it needs the reference
site's raw features at calibration time; the reference statistics shipped here suffice.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MIN_CONTROLS = 5
SLOPE_PRIOR_N = 40       # controls at which the fitted slope gets half the weight
MIN_SPAN_YEARS = 20.0    # age span of the controls below which no slope is fitted


EXACT_WALSH_MAX = 3000    # controls up to which the Hodges-Lehmann estimate uses every pair


def hodges_lehmann(x) -> float:
    """The Hodges-Lehmann location of ``x`` (years): the median of the Walsh averages
    (x_i + x_j) / 2, i <= j. Robust like the median (a quarter of the values can be wild,
    breakdown 29 %) but, for normal gaps, as efficient as the mean within 5 % (the median: 64 %),
    so a site's offset from k controls misses by about 20 % less (k = 20: 1.37 against 1.84
    years over draws on IXI; ``docs/results/candidates/offset_estimator/``). Above
    :data:`EXACT_WALSH_MAX` values, from 4.5 million seeded random pairs."""
    x = np.asarray(x, float)
    if x.size == 0:
        raise ValueError("no values")
    if x.size <= EXACT_WALSH_MAX:
        i, j = np.triu_indices(x.size)
    else:
        rng = np.random.default_rng(0)
        i, j = rng.integers(0, x.size, (2, EXACT_WALSH_MAX * (EXACT_WALSH_MAX + 1) // 2))
    return float(np.median((x[i] + x[j]) / 2))


def offset_standard_error(mad: float, n: int) -> float:
    """Standard error (years) of the Hodges-Lehmann offset (:func:`hodges_lehmann`) of ``n``
    normal gaps whose median absolute deviation is ``mad``: sqrt(pi / 3) x 1.4826 x MAD /
    sqrt(n); infinite without controls."""
    return math.sqrt(math.pi / 3) * 1.4826 * mad / math.sqrt(n) if n else math.inf


def _design(age) -> np.ndarray:
    a = (np.asarray(age, float) - 50.0) / 20.0
    return np.stack([np.ones_like(a), a, a ** 2], axis=1)


class FeatureReference:
    """The training cohort's tissue-fraction features as a function of age: per feature,
    a quadratic mean in age and the residual SD. Fitted on healthy training subjects."""

    def __init__(self, coef=None, sd=None, cell: int = 6):
        self.coef = None if coef is None else np.asarray(coef, float)   # (3, n_features)
        self.sd = None if sd is None else np.asarray(sd, float)         # (n_features,)
        self.cell = int(cell)

    def fit(self, X, age) -> "FeatureReference":
        X = np.asarray(X, float)
        D = _design(age)
        self.coef, *_ = np.linalg.lstsq(D, X, rcond=None)
        resid = X - D @ self.coef
        self.sd = np.sqrt((resid ** 2).sum(0) / max(1, len(X) - 3))
        return self

    def expected(self, age) -> np.ndarray:
        return _design(age) @ self.coef

    def to_dict(self) -> dict:
        return {"type": "FeatureReference", "cell": self.cell,
                "coef": np.round(self.coef, 7).tolist(), "sd": np.round(self.sd, 7).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureReference":
        if d.get("type") != "FeatureReference":
            raise ValueError("not a BrainAge feature reference")
        return cls(d["coef"], d["sd"], d.get("cell", 6))


def _eb_shrink(gamma_hat: np.ndarray, delta_hat: np.ndarray, n: int, iters: int = 50):
    """ComBat's empirical-Bayes posterior of per-feature location (``gamma``) and variance
    (``delta``) from their per-feature estimates over ``n`` controls (standardised units)."""
    g_bar, tau2 = gamma_hat.mean(), max(gamma_hat.var(ddof=1), 1e-8)
    m, v = delta_hat.mean(), max(delta_hat.var(ddof=1), 1e-8)
    lam, theta = (2 * v + m ** 2) / v, (m * v + m ** 3) / v      # inverse-gamma prior moments
    g, d = gamma_hat.copy(), delta_hat.copy()
    ss = delta_hat * (n - 1)            # sum of squares around the features' own means
    for _ in range(iters):
        g_new = (n * tau2 * gamma_hat + d * g_bar) / (n * tau2 + d)
        d_new = (theta + 0.5 * (ss + n * (gamma_hat - g_new) ** 2)) / (n / 2 + lam - 1)
        if np.max(np.abs(g_new - g)) < 1e-6 and np.max(np.abs(d_new - d)) < 1e-6:
            g, d = g_new, d_new
            break
        g, d = g_new, d_new
    return g, d


class SiteCalibration:
    """A scanner's calibration from ``n`` healthy controls (see the module docstring). JSON."""

    def __init__(self, shift=None, scale=None, slope: float = 1.0,
                 intercept: float = 0.0, n: int = 0, age_range=(math.nan, math.nan), cell: int = 6):
        self.shift = None if shift is None else np.asarray(shift, float)
        self.scale = None if scale is None else np.asarray(scale, float)
        self.slope, self.intercept, self.n = float(slope), float(intercept), int(n)
        self.age_range = tuple(float(a) for a in age_range)
        self.cell = int(cell)
        self.offset_se = math.nan     # set by fit_ages

    # -- features
    def fit_features(self, X, age, reference: FeatureReference) -> "SiteCalibration":
        """Location and scale of each feature of the controls ``X`` (n, features) against the
        reference at their ages ``age`` (years), shrunk by empirical Bayes."""
        X, age = np.asarray(X, float), np.asarray(age, float)
        n = len(X)
        if n < MIN_CONTROLS:
            raise ValueError(f"a site calibration needs at least {MIN_CONTROLS} controls, got {n}")
        sd = np.where(reference.sd > 1e-9, reference.sd, 1.0)
        z = (X - reference.expected(age)) / sd
        gamma_hat = z.mean(0)
        delta_hat = np.maximum(z.var(0, ddof=1), 1e-4)
        live = reference.sd > 1e-9
        g, d = gamma_hat.copy(), np.ones_like(delta_hat)
        g[live], d[live] = _eb_shrink(gamma_hat[live], delta_hat[live], n)
        g[~live] = 0
        self.shift = g * sd                         # the site's location, in feature units
        self.scale = np.sqrt(np.clip(d, 0.25, 4.0))
        self.cell = reference.cell
        return self

    @property
    def has_features(self) -> bool:
        return self.shift is not None

    def harmonize(self, X, age=None, reference: FeatureReference | None = None) -> np.ndarray:
        """Features of this site's scans (n, features) mapped to the training reference: the
        location shift alone, or, given each scan's (predicted) ``age`` (years) and the
        ``reference``, also the scale of its deviation from the reference at that age."""
        X = np.asarray(X, float)
        if self.shift is None:
            return X
        if age is None or reference is None:
            return np.clip(X - self.shift, 0, None)
        e = reference.expected(np.atleast_1d(np.asarray(age, float)))
        return np.clip(e + (X - e - self.shift) / self.scale, 0, None)

    # -- ages
    def fit_ages(self, predicted, age) -> "SiteCalibration":
        """Offset (and, with enough controls spanning enough ages, a shrunk slope) of the
        controls' predicted ages (years) against their chronological ages."""
        p, a = np.asarray(predicted, float), np.asarray(age, float)
        ok = np.isfinite(p) & np.isfinite(a)
        p, a = p[ok], a[ok]
        if p.size < MIN_CONTROLS:
            raise ValueError(f"a site calibration needs at least {MIN_CONTROLS} controls with a "
                             f"predicted and a chronological age, got {p.size}")
        self.n = int(p.size)
        self.age_range = (float(a.min()), float(a.max()))
        b = 1.0
        if a.max() - a.min() >= MIN_SPAN_YEARS:
            b_fit = float(np.polyfit(a, p, 1)[0])
            w = p.size / (p.size + SLOPE_PRIOR_N)
            b = float(np.clip(w * b_fit + (1 - w) * 1.0, 0.5, 1.5))
        self.slope = b
        self.intercept = hodges_lehmann(p - b * a)     # robust offset
        # its standard error (years), for the message of `brainage calibrate-site`
        self.offset_se = offset_standard_error(float(np.median(np.abs(p - b * a - self.intercept))), p.size)
        return self

    def correct_age(self, age):
        """A predicted age (years; None stays None) in this site's calibration."""
        if age is None:
            return None
        return (float(age) - self.intercept) / self.slope

    @property
    def offset(self) -> float:
        """The age offset (years) at the controls' mean age, for messages."""
        mid = np.mean(self.age_range) if all(map(math.isfinite, self.age_range)) else 50.0
        return float(self.intercept + (self.slope - 1) * mid)

    def to_dict(self) -> dict:
        d = {"type": "SiteCalibration", "n_controls": self.n, "age_range": list(self.age_range),
             "age": {"slope": self.slope, "intercept": self.intercept}}
        if self.shift is not None:
            d["features"] = {"cell": self.cell, "shift": np.round(self.shift, 8).tolist(),
                             "scale": np.round(self.scale, 5).tolist()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SiteCalibration":
        """Validated: the right type, finite numbers, a plausible slope and offset."""
        if not isinstance(d, dict) or d.get("type") != "SiteCalibration":
            raise ValueError("not a BrainAge site-calibration file (type must be 'SiteCalibration')")
        try:
            slope, intercept = float(d["age"]["slope"]), float(d["age"]["intercept"])
            n = int(d["n_controls"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"site calibration: missing or invalid field {e}") from None
        if not (math.isfinite(slope) and 0.5 <= slope <= 1.5):
            raise ValueError(f"site calibration: age.slope {slope} is outside 0.5-1.5")
        if not (math.isfinite(intercept) and abs(intercept) <= 60):
            raise ValueError(f"site calibration: age.intercept {intercept} is not a plausible offset")
        if n < MIN_CONTROLS:
            raise ValueError(f"site calibration: n_controls {n} is below {MIN_CONTROLS}")
        out = cls(slope=slope, intercept=intercept, n=n, age_range=d.get("age_range", (math.nan,) * 2))
        if "features" in d:
            f = d["features"]
            try:
                arrs = [np.asarray(f[k], float) for k in ("shift", "scale")]
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"site calibration: features: missing or invalid field {e}") from None
            if arrs[0].ndim != 1 or arrs[0].shape != arrs[1].shape or not all(np.isfinite(a).all() for a in arrs):
                raise ValueError("site calibration: features.shift and features.scale must be finite "
                                 "arrays of one length")
            if (arrs[1] <= 0).any():
                raise ValueError("site calibration: features.scale must be positive")
            out.shift, out.scale = arrs
            out.cell = int(f.get("cell", 6))
        return out


def load_site_calibration(path: str | Path):
    """A :class:`SiteCalibration` (``brainage calibrate-site``) or a ``SiteOffset``
    (``brainage site-offset``) from a JSON file, validated: a JSON object of a known type, no
    NaN or Infinity, every field checked."""

    def no_constants(name: str):
        raise ValueError(f"{name} is not valid JSON")
    d = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=no_constants)
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got a {type(d).__name__}")
    return site_calibration_from_dict(d)


def site_calibration_from_dict(d: dict):
    """A :class:`SiteCalibration` or a ``SiteOffset`` from its dict (``to_dict``), by its ``type``."""
    from .regression import SiteOffset
    if d.get("type") == "SiteCalibration":
        return SiteCalibration.from_dict(d)
    if d.get("type") == "SiteOffset":
        return SiteOffset.from_dict(d)
    raise ValueError("not a BrainAge site-offset file (type SiteOffset) nor a site-calibration file "
                     "(type SiteCalibration)")


def read_site_calibration(path: str | Path):
    """:func:`load_site_calibration`, with any reason it cannot be used as a ValueError that
    names the file ("site calibration PATH: why")."""
    try:
        return load_site_calibration(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"site calibration {path}: {getattr(e, 'strerror', None) or e}") from None


def calibrate_from_scans(scans, ages, approach: str = "ensemble", log=print, offset_only: bool = False):
    """Fit a scanner's :class:`SiteCalibration` from its healthy controls: ``scans`` (paths or
    SimpleITK images, run through the whole pipeline once) and their chronological ``ages``
    (years). Needs the shipped ``feature_reference.json`` (not for ``offset_only``). ``offset_only``: the age offset of
    the controls' uncalibrated predictions alone, a :class:`~BrainAgeLib.regression.SiteOffset`
    (what ``brainage site-offset`` fits from their ``predict`` CSV): with each training site held
    out in turn it was more accurate than features + age at every number of controls measured
    (docs/generalisation.md, *Both directions*)."""
    import SimpleITK as sitk
    from . import models
    from .io import read_image, validate_image
    from .pipeline import segment_image
    from .regression import _load_age_model, _load_feature_reference, predict_ages, volume_features
    folder = str(models.models_dir())
    if not offset_only:         # the features' calibration needs the training reference
        ref_d = _load_feature_reference(folder)
        if ref_d is None:
            raise RuntimeError("this installation ships no feature_reference.json: cannot calibrate features")
        reference, cell = ref_d["_reference"], _load_age_model(folder)["_volumes"].cell
    from .qc import slice_geometry
    feats, probs, images, slices = [], [], [], []
    for i, scan in enumerate(scans):
        img = validate_image(scan) if isinstance(scan, sitk.Image) else read_image(scan)
        prep, prob, _ = segment_image(img)
        if not offset_only:
            feats.append(volume_features(prob, cell))
        probs.append(prob)
        images.append(sitk.GetArrayFromImage(prep.image))
        slices.append(slice_geometry(img))     # thick-slice controls: the ensemble predict() gives them
        log(f"[{i + 1}/{len(scans)}] {scan if isinstance(scan, str) else 'image'} segmented")
    if offset_only:
        from .regression import SiteOffset
        return SiteOffset().fit([predict_ages(p, im, approach=approach, slices=sl)["predicted_age"]
                                 for p, im, sl in zip(probs, images, slices)], ages)
    cal = SiteCalibration().fit_features(np.stack(feats), ages, reference)
    predicted = [predict_ages(p, im, approach=approach, calibration=cal, slices=sl)["predicted_age"]
                 for p, im, sl in zip(probs, images, slices)]
    return cal.fit_ages(predicted, ages)
