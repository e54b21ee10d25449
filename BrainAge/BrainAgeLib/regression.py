"""Age regression: approach A (tissue volumes), approach B (3D CNN), their ensemble,
age-bias correction and split-conformal prediction intervals.

Shipped as JSON (``age_model.json``) and safetensors (``age_cnn.safetensors``); no pickle.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.linear_model import Ridge

from .volumes import global_fractions, regional_fractions


# --------------------------------------------------------------------------- approach A

def volume_features(prob: np.ndarray, cell: int = 6) -> np.ndarray:
    """Approach A's features from model-space class probabilities (4, z, y, x): regional tissue
    fractions of TIV in cells of ``cell``^3 voxels (6: 12 mm in the 2 mm model space) followed
    by the global CSF/GM/WM fractions."""
    return np.concatenate([regional_fractions(prob, cell), global_fractions(prob)])


class VolumeFeatureTransform(TransformerMixin, BaseEstimator):
    """Drop tissue-volume features that are (nearly) always empty, then apply a power.

    Features whose training mean is at most ``min_mean`` (a fraction of TIV; cells at the
    edge of the field of view) carry only noise that standardisation would amplify. The power
    (default: square root) stabilises the variance of small volumes.
    """

    def __init__(self, power: float = 0.5, min_mean: float = 1e-6):
        self.power = power
        self.min_mean = min_mean

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.keep_ = np.flatnonzero((X.std(0) > 0) & (X.mean(0) > self.min_mean))
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        return np.clip(X[:, self.keep_], 0, None) ** self.power


class VolumeAgeRegressor(RegressorMixin, BaseEstimator):
    """Approach A: ridge regression of age (years) on standardised tissue-volume features.

    Features pass through :class:`VolumeFeatureTransform` (``power``, ``min_mean``).
    ``alpha`` is the ridge penalty per feature (the penalty used is ``alpha * n_features``),
    so that it transfers between feature sets of different sizes. ``cell`` records the cell
    size (voxels of the 2 mm model space) of the :func:`volume_features` it was fitted on.

    ``invariance``: weight of a penalty on the age difference between paired scans of one
    subject (``pairs`` given to :meth:`fit`: the same people under another contrast or
    acquisition). Each pair costs ``invariance`` times its squared age difference (years²),
    against one squared error per training row, so that the fit prefers the directions of the
    features that acquisition does not move. 0 (default): plain ridge.
    """

    def __init__(self, alpha: float = 1e-2, power: float = 0.5, min_mean: float = 1e-6, cell: int = 6,
                 invariance: float = 0.0):
        self.alpha = alpha
        self.power = power
        self.min_mean = min_mean
        self.cell = cell
        self.invariance = invariance

    def fit(self, X, y, pairs=None):
        """Fit on features ``X`` (n, features) and ages ``y`` (years); ``pairs``: an optional
        list of ``(Xa, Xb)`` matrices whose rows are the same subject under two acquisitions."""
        self.features_ = VolumeFeatureTransform(self.power, self.min_mean).fit(X)
        Z = self.features_.transform(X)
        self.mean_ = Z.mean(0)
        self.scale_ = Z.std(0)
        self.scale_[self.scale_ == 0] = 1.0
        y = np.asarray(y, dtype=np.float64)
        Zs = (Z - self.mean_) / self.scale_
        if pairs and self.invariance > 0:
            # the penalty as extra rows: sqrt(invariance) (za - zb) . w = 0 (no intercept)
            diffs = [(self.features_.transform(a) - self.features_.transform(b)) / self.scale_
                     for a, b in pairs]
            D = np.sqrt(self.invariance) * np.concatenate(diffs)
            y_mean = float(y.mean())
            ridge = Ridge(alpha=self.alpha * Z.shape[1], fit_intercept=False).fit(
                np.concatenate([Zs - Zs.mean(0), D]), np.concatenate([y - y_mean, np.zeros(len(D))]))
            self.coef_ = ridge.coef_
            self.intercept_ = y_mean - float(Zs.mean(0) @ ridge.coef_)
        else:
            ridge = Ridge(alpha=self.alpha * Z.shape[1]).fit(Zs, y)
            self.coef_ = ridge.coef_
            self.intercept_ = float(ridge.intercept_)
        self.n_features_in_ = self.features_.n_features_in_
        return self

    def predict(self, X):
        Z = self.features_.transform(X)
        return ((Z - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def to_dict(self) -> dict:
        return {"type": "VolumeAgeRegressor", "alpha": self.alpha, "power": self.power,
                "min_mean": self.min_mean, "cell": int(self.cell),
                "invariance": float(self.invariance), "n_features_in": int(self.n_features_in_),
                "keep": self.features_.keep_.tolist(), "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(),
                "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, d: dict) -> "VolumeAgeRegressor":
        if d.get("type") != "VolumeAgeRegressor":
            raise ValueError("not a VolumeAgeRegressor")
        m = cls(alpha=d["alpha"], power=d["power"], min_mean=d["min_mean"], cell=d.get("cell", 4),
                invariance=d.get("invariance", 0.0))
        m.features_ = VolumeFeatureTransform(d["power"], d["min_mean"])
        m.features_.keep_ = np.asarray(d["keep"], dtype=np.int64)
        m.features_.n_features_in_ = m.n_features_in_ = int(d["n_features_in"])
        m.mean_ = np.asarray(d["mean"])
        m.scale_ = np.asarray(d["scale"])
        m.coef_ = np.asarray(d["coef"])
        m.intercept_ = float(d["intercept"])
        return m


# --------------------------------------------------------------------------- calibration

class AgeBiasCorrection:
    """Removes regression to the mean without needing the chronological age at inference.

    Fitted on out-of-fold predictions: predicted = intercept + slope * age; the corrected
    age is (predicted - intercept) / slope, whose gap to the true age is uncorrelated with age.
    """

    def __init__(self, slope: float = 1.0, intercept: float = 0.0):
        self.slope, self.intercept = float(slope), float(intercept)

    def fit(self, predicted, age) -> "AgeBiasCorrection":
        self.slope, self.intercept = (float(v) for v in np.polyfit(np.asarray(age, float),
                                                                    np.asarray(predicted, float), 1))
        if self.slope < 0.2:
            raise ValueError(f"bias-correction slope {self.slope:.2f} is implausibly small")
        return self

    def __call__(self, predicted):
        return (np.asarray(predicted, float) - self.intercept) / self.slope

    def raw(self, corrected):
        """The uncorrected prediction that a corrected age (years) came from: the inverse of the call."""
        return self.intercept + self.slope * np.asarray(corrected, float)

    def to_dict(self):
        return {"slope": self.slope, "intercept": self.intercept}


def conformal_halfwidth(residuals, coverage: float = 0.9) -> float:
    """Split-conformal half-width (years) of a ``coverage`` prediction interval."""
    r = np.sort(np.abs(np.asarray(residuals, float)))
    n = len(r)
    k = min(n, math.ceil((n + 1) * coverage))
    return float(r[k - 1])


def best_ensemble_weight(pred_a, pred_b, age, grid=np.linspace(0, 1, 21)) -> float:
    """Weight of approach A (B gets 1 - w) minimising the MAE of held-out predictions."""
    maes = [np.mean(np.abs(w * np.asarray(pred_a) + (1 - w) * np.asarray(pred_b) - age)) for w in grid]
    return float(grid[int(np.argmin(maes))])


class SiteOffset:
    """A scanner's brain-age offset (years), learned from its own healthy controls.

    Models trained on one site read scans of another with a roughly constant bias (a "site
    effect"). ``fit`` takes the controls' predicted and chronological ages and keeps the
    Hodges-Lehmann location of their gaps (:func:`~BrainAgeLib.calibration.hodges_lehmann`: robust
    to a few outliers like the median, nearly as precise as the mean; a slope would need far more
    controls);
    ``offset_age(age)`` subtracts it. Saved as JSON.
    """

    MIN_CONTROLS = 5

    def __init__(self, offset: float = 0.0, n: int = 0, mad: float = 0.0):
        self.offset, self.n, self.mad = float(offset), int(n), float(mad)

    def fit(self, predicted, age) -> "SiteOffset":
        gap = np.asarray(predicted, float) - np.asarray(age, float)
        gap = gap[np.isfinite(gap)]
        if gap.size < self.MIN_CONTROLS:
            raise ValueError(f"a site offset needs at least {self.MIN_CONTROLS} controls with a "
                             f"predicted and a chronological age, got {gap.size}")
        from .calibration import hodges_lehmann
        self.offset = hodges_lehmann(gap)
        self.n = int(gap.size)
        self.mad = float(np.median(np.abs(gap - self.offset)))
        return self

    @property
    def standard_error(self) -> float:
        """Standard error (years) of the offset of ``n`` gaps: sqrt(pi / 3) x 1.4826 x MAD /
        sqrt(n) for normal gaps (:func:`~BrainAgeLib.calibration.offset_standard_error`). An offset
        within two of them of 0 is mostly sampling error: applying it is more likely to cost
        accuracy than to gain it (docs/generalisation.md, *How many controls*)."""
        from .calibration import offset_standard_error
        return offset_standard_error(self.mad, self.n)

    def offset_age(self, age: float | None) -> float | None:
        """``age`` (years) minus the site's offset; None stays None."""
        return None if age is None else float(age) - self.offset

    def to_dict(self) -> dict:
        return {"type": "SiteOffset", "offset_years": self.offset, "n_controls": self.n,
                "mad_years": self.mad}

    MAX_OFFSET = 30.0    # years; a larger site effect means the scans are not comparable
    MAX_MAD = 30.0       # years

    @classmethod
    def from_dict(cls, d) -> "SiteOffset":
        """A validated offset (ValueError naming the field): ``type`` "SiteOffset",
        ``offset_years`` finite within +-30, ``n_controls`` an integer >= MIN_CONTROLS,
        ``mad_years`` (optional) finite within 0-30."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got a JSON {type(d).__name__}")
        if d.get("type") != "SiteOffset":
            raise ValueError("not a BrainAge site-offset file (field 'type' is not \"SiteOffset\")")
        unknown = sorted(set(d) - {"type", "offset_years", "n_controls", "mad_years"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")

        def number(field: str, lo: float, hi: float, default=None) -> float:
            v = d.get(field, default)
            if v is None:
                raise ValueError(f"field '{field}' is missing")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"field '{field}' must be a number, not {json.dumps(v)[:40]}")
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"field '{field}' = {v!r} is outside {lo:g} to {hi:g}")
            return float(v)
        offset = number("offset_years", -cls.MAX_OFFSET, cls.MAX_OFFSET)
        mad = number("mad_years", 0.0, cls.MAX_MAD, default=0.0)
        n = d.get("n_controls")
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int) or not cls.MIN_CONTROLS <= n <= 10**7:
            raise ValueError(f"field 'n_controls' must be an integer from {cls.MIN_CONTROLS} to 10^7, "
                             f"not {json.dumps(n)[:40]}")
        return cls(offset, n, mad)


# --------------------------------------------------------------------------- shipped model

@lru_cache(maxsize=4)
def _load_age_model(folder: str):
    from . import models
    d = json.loads(models.verify("age_model.json", folder).read_text())
    d["_volumes"] = VolumeAgeRegressor.from_dict(d["volumes"]["regressor"])
    return d


@lru_cache(maxsize=4)
def _load_cnn(folder: str):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    from . import models
    from .cnn import AgeCNN
    path = models.verify("age_cnn.safetensors", folder)
    with safe_open(str(path), "pt") as f:
        widths = tuple(json.loads(f.metadata()["widths"]))
    net = AgeCNN(widths=widths)
    net.load_state_dict(load_file(str(path)))
    return net.eval().to(memory_format=torch.channels_last_3d)


@lru_cache(maxsize=4)
def _load_feature_reference(folder: str):
    """The shipped ``feature_reference.json`` (per-feature age norms and the out-of-distribution
    model), or None when this installation has none."""
    from . import models
    from .qc import OutOfDistribution
    if "feature_reference.json" not in models.read_manifest(folder).get("files", {}):
        return None
    d = json.loads(models.verify("feature_reference.json", folder).read_text())
    from .calibration import FeatureReference
    d["_ood"] = OutOfDistribution.from_dict(d["ood"])
    d["_reference"] = FeatureReference.from_dict(d["reference"])
    return d


def thick_slice_line(age, thickness_mm, fit: dict, approach: str, from_mm: float = 0.0) -> np.ndarray:
    """``approach``'s ("volumes" or "cnn") bias-corrected age (years) of thick-slice scans mapped
    by its line in ``fit`` at their slice thickness (mm): slope and intercept linear in thickness
    from the identity at ``from_mm``, held beyond the thickest fitted; the identity without lines."""
    grid = [from_mm] + list(fit.get("thicknesses_mm", []))
    mm = np.asarray(thickness_mm, dtype=float)
    slope = np.interp(mm, grid, [1.0] + list(fit.get(f"slopes_{approach}", [1.0] * (len(grid) - 1))))
    intercept = np.interp(mm, grid, [0.0] + list(fit.get(f"intercepts_{approach}", [0.0] * (len(grid) - 1))))
    return slope * np.asarray(age, dtype=float) + intercept


def thick_slice_age_array(volumes, cnn, thickness_mm, fit: dict, from_mm: float = 0.0) -> np.ndarray:
    """The ensemble age (years) of thick-slice scans: A's and B's ages mapped by their lines
    (:func:`thick_slice_line`), weighed by A's weight ``fit["weight_volumes"]``."""
    w = float(fit["weight_volumes"])
    return (w * thick_slice_line(volumes, thickness_mm, fit, "volumes", from_mm)
            + (1 - w) * thick_slice_line(cnn, thickness_mm, fit, "cnn", from_mm))


def thick_slice_age(volumes: float, cnn: float, thickness_mm: float, fit: dict, from_mm: float = 0.0) -> float:
    """:func:`thick_slice_age_array` of one scan (years)."""
    return float(thick_slice_age_array(volumes, cnn, thickness_mm, fit, from_mm))


def predict_ages(prob: np.ndarray, image: np.ndarray, volumes_ml: dict | None = None,
                 approach: str = "ensemble", device: str = "cpu", calibration=None,
                 chronological_age: float | None = None,
                 slices: tuple[str, float] | None = None) -> dict:
    """Ages (years) from model-space probabilities (4, z, y, x) and the normalised T1 (z, y, x).

    Returns ``volumes`` (A), ``cnn`` (B, None when no CNN is shipped), ``predicted_age`` (the
    chosen approach), ``interval`` (its 90% prediction interval), the raw ages,
    ``interval_halfwidths`` (years) of each approach and ``qc`` (model-level warnings: A and B
    disagreeing, an out-of-distribution tissue pattern, an age outside the training range).
    ``calibration``: a :class:`~BrainAgeLib.calibration.SiteCalibration` of the scanner (its
    features harmonise approach A's input; its age layer corrects every age).
    ``slices``: ``(orientation, thickness_mm)`` of a thick-slice input
    (:func:`~BrainAgeLib.qc.slice_geometry`): where the shipped thick-slice correction
    (:func:`~BrainAgeLib.models.load_thick_slice_weights`) covers that orientation, A's and B's
    bias-corrected ages are mapped by its lines at that thickness, the ensemble weighs them by
    its weight, and the interval widens by its out-of-fold residual SD; recorded under
    ``thick_slices`` with the uncorrected A and B and the usual ensemble's age.
    """
    from . import models
    from .qc import age_range_qc, disagreement_qc, ood_features, stored_disagreement_limit
    folder = str(models.models_dir())
    m = _load_age_model(folder)
    reg = m["_volumes"]
    features = volume_features(prob, reg.cell)
    harmonise = calibration is not None and getattr(calibration, "has_features", False)
    if harmonise:
        if calibration.shift.shape != features.shape:
            raise ValueError(f"the site calibration holds {calibration.shift.size} features, the "
                             f"shipped model reads {features.size}: recalibrate with this version")
        features_raw, features = features, calibration.harmonize(features[None])[0]
    raw_a = float(reg.predict(features[None])[0])
    out = {"volumes_raw": raw_a,
           "volumes": float(AgeBiasCorrection(**m["volumes"]["bias"])(raw_a))}
    out["cnn"] = out["cnn_raw"] = None
    if "cnn" in m:
        import torch
        from .cnn import cnn_input, predict_age
        net = _load_cnn(folder).to(device)
        x = torch.from_numpy(cnn_input(image, prob))[None].to(device)
        if device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            raw_b = float(predict_age(net, x, mirror=m["cnn"].get("mirror", False))[0])
        out["cnn_raw"] = raw_b
        out["cnn"] = float(AgeBiasCorrection(**m["cnn"]["bias"])(raw_b))
    ref = _load_feature_reference(folder)
    if harmonise and ref is not None and "ensemble" in m and out["cnn"] is not None:
        # second pass: the scale of the features' deviations, at the age of the first pass
        e = m["ensemble"]
        first = float(AgeBiasCorrection(**e["bias"])(e["weight_volumes"] * raw_a + (1 - e["weight_volumes"]) * out["cnn_raw"]))
        features = calibration.harmonize(features_raw[None], [first], ref["_reference"])[0]
        raw_a = float(reg.predict(features[None])[0])
        out["volumes_raw"] = raw_a
        out["volumes"] = float(AgeBiasCorrection(**m["volumes"]["bias"])(raw_a))
    if approach == "image" and out["cnn"] is None:
        raise RuntimeError("approach 'image' needs the CNN, which this installation does not ship")
    thick = models.load_thick_slice_weights() if slices is not None else None
    if thick is not None and slices[0] in thick["weight_volumes"] and slices[1] > thick["applies_above_mm"]:
        fit = {**thick.get("fit", {}).get(slices[0], {}), "weight_volumes": thick["weight_volumes"][slices[0]]}
        out["thick_slices"] = {"orientation": slices[0], "thickness_mm": slices[1],
                               "weight_volumes": float(fit["weight_volumes"]),
                               "volumes_uncorrected": out["volumes"], "cnn_uncorrected": out["cnn"]}
        for k in ("volumes", "cnn"):          # each approach's age mapped by its line at this thickness
            if out[k] is not None:
                out[k] = float(thick_slice_line(out[k], slices[1], fit, k, thick["applies_above_mm"]))
    else:
        fit = None
    if approach == "ensemble" and "ensemble" in m and out["cnn"] is not None:
        e = m["ensemble"]
        raw = e["weight_volumes"] * raw_a + (1 - e["weight_volumes"]) * out["cnn_raw"]
        age, half = float(AgeBiasCorrection(**e["bias"])(raw)), e["interval_halfwidth"]
        if fit is not None:
            out["thick_slices"]["usual_ensemble"] = age
            w = float(fit["weight_volumes"])
            age = w * out["volumes"] + (1 - w) * out["cnn"]
    elif approach == "image":
        age, half = out["cnn"], m["cnn"]["interval_halfwidth"]
    else:
        age, half = out["volumes"], m["volumes"]["interval_halfwidth"]
    if fit is not None and "residual_sd_out_of_fold" in fit:   # the thick-slice error adds to the interval
        half = float(np.hypot(half, 1.645 * fit["residual_sd_out_of_fold"]))
        out["thick_slices"]["interval_halfwidth"] = half
    out["interval"] = (age - half, age + half)
    if calibration is not None and hasattr(calibration, "correct_age"):
        for k in ("volumes", "cnn"):
            out[k] = calibration.correct_age(out[k])
        age = calibration.correct_age(age)
        out["interval"] = tuple(calibration.correct_age(v) for v in out["interval"])
    out["predicted_age"] = age
    out["interval_halfwidths"] = {k: m[k]["interval_halfwidth"] for k in ("volumes", "cnn", "ensemble")
                                  if k in m}
    qc_ref = m.get("qc", {})
    out["qc"] = (disagreement_qc(out["volumes"], out["cnn"], stored_disagreement_limit(qc_ref))
                 + age_range_qc(age, qc_ref.get("age_range"), chronological_age))
    if ref is not None:
        out["qc"] += ref["_ood"].warnings(ood_features(prob))
    return out
