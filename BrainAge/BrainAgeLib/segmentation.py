"""Tissue segmentation with the trained ResUNet, in model space."""
from __future__ import annotations

import numpy as np
import torch

from .resunet import pad_to_multiple


def segment_array(net, array: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class probabilities (4, z, y, x) float32 of a normalised model-space T1 array (z, y, x).

    Classes: 0 background, 1 CSF, 2 GM, 3 WM. The whole field of view is segmented.
    """
    x, crop = pad_to_multiple(np.asarray(array, dtype=np.float32), net.divisor)
    t = torch.from_numpy(x)[None, None].to(device)
    if device == "cpu":
        t = t.contiguous(memory_format=torch.channels_last_3d)
    net = net.to(device)
    with torch.inference_mode():
        prob = net(t).softmax(1)[0]
    prob = prob[(slice(None),) + crop]
    return prob.float().cpu().contiguous().numpy()


def segment_mirrored(net, array: np.ndarray, device: str = "cpu") -> np.ndarray:
    """:func:`segment_array` of the left-right mirror of ``array`` (its last axis flipped), flipped
    back onto ``array``'s voxels: what the mirror check (:func:`~BrainAgeLib.qc.mirror_disagreement`)
    compares with the scan's own probabilities."""
    return segment_array(net, np.ascontiguousarray(np.asarray(array)[..., ::-1]), device=device)[..., ::-1]


def labels_from_probabilities(prob: np.ndarray) -> np.ndarray:
    """Most likely class per voxel, uint8."""
    return prob.argmax(0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Tissue definitions. The ResUNet reproduces Cam-CAN's reference labels ("camcan"): CSF includes
# sulcal CSF and a rim outside the brain, WM stops short of the GM/WM partial-volume layer.
# Other tools draw the lines elsewhere; DLMUSE ("dlmuse") keeps only the ventricles as CSF,
# counts sulcal CSF as GM and has about 30% more WM. A TissueDefinitionMap re-expresses the
# network's probabilities in such a definition. Ages never depend on it: the age models read
# the network's own (Cam-CAN) probabilities.

TISSUE_DEFINITIONS = ("camcan", "dlmuse")
CONTEXT_SIGMAS_VOXELS = (1.0, 2.0, 4.0)   # 2, 4 and 8 mm in the 2 mm model space
BACKGROUND_CERTAIN = 0.99                  # voxels this sure to be background are left alone


def definition_features(prob: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per-voxel features (n, 13) float32 at the voxels ``where`` (bool, z, y, x) of model-space
    probabilities (4, z, y, x): log-probabilities of the 4 classes and the CSF, GM and WM
    probabilities averaged over 2, 4 and 8 mm (Gaussian sigma) around the voxel."""
    from scipy.ndimage import gaussian_filter
    cols = [np.log(np.asarray(p, np.float32)[where] + 1e-4) for p in prob]
    for s in CONTEXT_SIGMAS_VOXELS:
        for c in (1, 2, 3):
            cols.append(gaussian_filter(np.asarray(prob[c], np.float32), s)[where])
    return np.stack(cols, axis=1).astype(np.float32)


class TissueDefinitionMap:
    """Cam-CAN-definition class probabilities -> another tool's tissue definition.

    A multinomial logistic regression per voxel on :func:`definition_features`, fitted to
    that tool's labels resampled into model space. Follows scikit-learn's ``fit`` /
    ``predict_proba``; saved as JSON (:meth:`to_dict`), never pickled.

    Parameters: ``name`` of the definition; ``C`` inverse L2 strength; ``n_per_subject``
    voxels sampled from each training subject; ``seed`` of that sampling.
    """

    def __init__(self, name: str = "dlmuse", C: float = 1.0, n_per_subject: int = 40000,
                 seed: int = 0):
        self.name, self.C, self.n_per_subject, self.seed = name, C, n_per_subject, seed

    @staticmethod
    def _where(prob: np.ndarray) -> np.ndarray:
        return np.asarray(prob[0]) < BACKGROUND_CERTAIN

    def fit(self, probs: list[np.ndarray], targets: list[np.ndarray]) -> "TissueDefinitionMap":
        """``probs``: model-space probabilities (4, z, y, x) of each subject; ``targets``: the
        other tool's labels (0 bg, 1 CSF, 2 GM, 3 WM) on the same grid."""
        from sklearn.linear_model import LogisticRegression
        rng = np.random.default_rng(self.seed)
        xs, ys = [], []
        for prob, target in zip(probs, targets):
            where = self._where(prob) | (np.asarray(target) > 0)
            idx = np.flatnonzero(where)
            keep = np.zeros(where.size, bool)
            keep[rng.choice(idx, min(self.n_per_subject, idx.size), replace=False)] = True
            keep = keep.reshape(where.shape)
            xs.append(definition_features(prob, keep))
            ys.append(np.asarray(target)[keep])
        x, y = np.concatenate(xs), np.concatenate(ys)
        if set(np.unique(y)) != {0, 1, 2, 3}:
            raise ValueError("the training labels must contain background, CSF, GM and WM")
        self.mean_ = x.mean(0, dtype=np.float64)
        self.scale_ = x.std(0, dtype=np.float64) + 1e-6
        clf = LogisticRegression(C=self.C, max_iter=500).fit((x - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
        return self

    def predict_proba(self, prob: np.ndarray) -> np.ndarray:
        """Probabilities (4, z, y, x) float32 in this definition; voxels at least
        ``BACKGROUND_CERTAIN`` sure to be background keep the network's probabilities."""
        out = np.array(prob, dtype=np.float32, copy=True)
        where = self._where(prob)
        if where.any():
            z = ((definition_features(prob, where) - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            out[:, where] = p.T.astype(np.float32)
        return out

    def to_dict(self) -> dict:
        return {"kind": "TissueDefinitionMap", "name": self.name, "C": self.C,
                "n_per_subject": self.n_per_subject, "seed": self.seed,
                "context_sigmas_voxels": list(CONTEXT_SIGMAS_VOXELS),
                "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "TissueDefinitionMap":
        if d.get("kind") != "TissueDefinitionMap":
            raise ValueError("not a TissueDefinitionMap JSON")
        if tuple(d["context_sigmas_voxels"]) != CONTEXT_SIGMAS_VOXELS:
            raise ValueError("tissue definition map made for other context features")
        m = cls(d["name"], d["C"], d["n_per_subject"], d["seed"])
        m.mean_, m.scale_ = np.array(d["mean"]), np.array(d["scale"])
        m.coef_, m.intercept_ = np.array(d["coef"]), np.array(d["intercept"])
        return m
