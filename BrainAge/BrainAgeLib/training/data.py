"""Readers of the training sets (Cam-CAN, IXI) and small shared helpers (seeding, Dice)."""
from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..preprocessing import normalize_intensity
from ..resunet import pad_to_multiple


def read_camcan_subjects(data_dir: str | os.PathLike) -> list[dict]:
    """Rows of ``camcan/subjects.csv`` (subject_id, age (years), sex, split)."""
    with open(Path(data_dir) / "subjects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["age"] = float(r["age"])
    return rows


def camcan_paths(data_dir: str | os.PathLike, subject_id: str) -> dict[str, Path]:
    d = Path(data_dir)
    return {"image": d / "images" / f"{subject_id}_T1w.nii.gz",
            "mask": d / "masks" / f"{subject_id}_brain_mask.nii.gz",
            "seg": d / "segs" / f"{subject_id}_seg.nii.gz"}


def read_camcan_image(data_dir, subject_id: str) -> np.ndarray:
    """A Cam-CAN subject's T1 (on the template grid) as a normalised numpy array (z, y, x)."""
    return normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths(data_dir, subject_id)["image"]))))


def load_camcan_volumes(data_dir, subject_ids, divisor=8):
    """Normalised images (float16) and reference labels (uint8), padded, as numpy arrays."""
    images, labels = [], []
    for sid in subject_ids:
        p = camcan_paths(data_dir, sid)
        img = read_camcan_image(data_dir, sid)
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"]))).astype(np.uint8)
        img, _ = pad_to_multiple(img, divisor)
        seg, _ = pad_to_multiple(seg, divisor)
        images.append(img.astype(np.float16))
        labels.append(seg)
    return np.stack(images), np.stack(labels)



def load_unlabelled_ixi(cache_npz, n_val_ixi: int = 20, seed: int = 20261123) -> np.ndarray:
    """Model-space T1s (float16, N x D x H x W) of the ``ixi120`` heads that approach B trains on,
    from the feature cache's ``ixi_model_space.npz``: the CNN's seeded validation draw
    (``n_val_ixi``, ``seed``; :func:`~BrainAgeLib.training.features.split_validation`) and
    ``ixi10`` are left out. No labels: for the ResUNet's teacher-consistency term."""
    from .features import split_validation
    z = np.load(cache_npz, allow_pickle=False)
    ids = [str(s) for s in z["subject_id"]]
    pool = [s for s, st in zip(ids, z["set"]) if str(st) == "ixi120"]
    train, _ = split_validation(pool, n_val_ixi, seed)
    keep = sorted(ids.index(s) for s in train)
    return np.asarray(z["image"][keep], np.float16)


def dice_scores(pred: np.ndarray, ref: np.ndarray, labels=(1, 2, 3)) -> list[float]:
    """Dice per label between two integer label arrays."""
    out = []
    for lab in labels:
        a, b = pred == lab, ref == lab
        denom = a.sum() + b.sum()
        out.append(float(2 * np.logical_and(a, b).sum() / denom) if denom else 1.0)
    return out


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def read_dlmuse_tissues(dlmuse_path, tissue_map_csv) -> np.ndarray:
    """DLMUSE parcellation -> tissue labels (0 bg, 1 CSF, 2 GM, 3 WM) via the tissue map."""
    code = {"CSF": 1, "GM": 2, "WM": 3}
    with open(tissue_map_csv, newline="") as f:
        mapping = {int(r["dlmuse_label"]): code[r["tissue"]] for r in csv.DictReader(f)}
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(dlmuse_path))).astype(np.int64)
    lut = np.zeros(max(arr.max(), max(mapping)) + 1, np.uint8)
    for k, v in mapping.items():
        lut[k] = v
    return lut[arr]


