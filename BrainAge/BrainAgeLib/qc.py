"""Quality checks that turn doubtful inputs and results into plain-words warnings.

Model-level checks (this part): approaches A and B disagreeing beyond what healthy training
subjects show, features far from the training cohort (an out-of-distribution score), and ages
outside the training range. Thresholds come from the training cohort and ship in
``age_model.json`` (``qc``) and ``feature_reference.json`` (``ood``).
"""
from __future__ import annotations

import numpy as np

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


def disagreement_qc(age_volumes: float | None, age_cnn: float | None, limit: float | None) -> list[str]:
    """A warning when approaches A and B differ by more than ``limit`` years (the 99th
    percentile of healthy validation subjects')."""
    if age_volumes is None or age_cnn is None or limit is None:
        return []
    diff = age_volumes - age_cnn
    if abs(diff) > limit:
        return [f"the two age models disagree by {abs(diff):.1f} years (healthy scans: < {limit:.1f}): "
                "the age is uncertain; check the image and the segmentation"]
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
