"""Tissue volumes (ml) and the volume features that approach A regresses age from."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

TISSUE_LABELS = {"csf": 1, "gm": 2, "wm": 3}

# plausible ranges for adults (ml and fractions of TIV); outside them the result gets a QC warning
TIV_RANGE_ML = (900.0, 2300.0)
# CSF from 0.02: young healthy adults of other scanners reach 0.04 through the raw-scan path
FRACTION_RANGES = {"csf": (0.02, 0.55), "gm": (0.25, 0.60), "wm": (0.15, 0.55)}


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in ml (spacing in mm)."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def tissue_volumes_ml(labels: sitk.Image) -> dict[str, float]:
    """CSF, GM, WM volumes and their sum, the total intracranial volume (TIV), in ml."""
    arr = sitk.GetArrayViewFromImage(labels)
    counts = np.bincount(arr.ravel(), minlength=4)
    vox = voxel_volume_ml(labels)
    vols = {name: float(counts[lab]) * vox for name, lab in TISSUE_LABELS.items()}
    vols["tiv"] = vols["csf"] + vols["gm"] + vols["wm"]
    return vols


def volume_qc(volumes: dict[str, float]) -> list[str]:
    """QC warnings for an implausible TIV or tissue fractions."""
    out = []
    tiv = volumes["tiv"]
    if not TIV_RANGE_ML[0] <= tiv <= TIV_RANGE_ML[1]:
        out.append(f"implausible TIV {tiv:.0f} ml (expected {TIV_RANGE_ML[0]:.0f}-{TIV_RANGE_ML[1]:.0f})")
    if tiv > 0:
        for name, (lo, hi) in FRACTION_RANGES.items():
            f = volumes[name] / tiv
            if not lo <= f <= hi:
                out.append(f"implausible {name.upper()} fraction {f:.2f} of TIV")
    return out


def global_fractions(prob: np.ndarray) -> np.ndarray:
    """CSF, GM, WM volume fractions of TIV from model-space class probabilities (4, z, y, x)."""
    vols = prob[1:4].reshape(3, -1).sum(1, dtype=np.float64)
    return (vols / vols.sum()).astype(np.float32)


def regional_fractions(prob: np.ndarray, cell: int = 4) -> np.ndarray:
    """Tissue volume in every ``cell``^3-voxel cell of model space, as a fraction of TIV.

    With the 2 mm model space, the default ``cell=4`` gives 8 mm cells. Returns a flat float32 vector
    ordered (tissue, z, y, x); soft volumes (probabilities) keep partial voluming.
    """
    t = prob[1:4]
    tiv = float(t.sum(dtype=np.float64))
    if tiv <= 0:
        raise ValueError("no tissue found: cannot compute regional volumes")
    z, y, x = (s - s % cell for s in t.shape[1:])
    t = t[:, :z, :y, :x].reshape(3, z // cell, cell, y // cell, cell, x // cell, cell)
    return (t.sum(axis=(2, 4, 6), dtype=np.float64) / tiv).astype(np.float32).ravel()


def one_hot(labels: np.ndarray, n_classes: int = 4) -> np.ndarray:
    """Label array -> (n_classes, ...) float32 probabilities (for reference labels)."""
    return (labels[None] == np.arange(n_classes).reshape((-1,) + (1,) * labels.ndim)).astype(np.float32)
