"""Shipped models: weights (safetensors), regressors (JSON), template, checksummed.

Everything a prediction needs lies in ``BrainAge/Resources/Models``; ``manifest.json``
there lists each file with its SHA256, which :func:`verify` checks before any file is used.
Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
MANIFEST = "manifest.json"


class ModelError(RuntimeError):
    """A shipped model file is missing or does not match its checksum."""


def models_dir() -> Path:
    """Folder of the shipped models (``BRAINAGE_MODELS_DIR`` overrides it, for tests)."""
    return Path(os.environ.get("BRAINAGE_MODELS_DIR", MODELS_DIR))


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: str | os.PathLike | None = None) -> dict:
    folder = Path(folder or models_dir())
    path = folder / MANIFEST
    if not path.exists():
        raise ModelError(f"model manifest not found: {path}")
    return json.loads(path.read_text())


def verify(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Path of the shipped file ``name`` after checking its SHA256 against the manifest."""
    folder = Path(folder or models_dir())
    entry = read_manifest(folder).get("files", {}).get(name)
    if entry is None:
        raise ModelError(f"{name} is not listed in {folder / MANIFEST}")
    path = folder / name
    if not path.exists():
        raise ModelError(f"model file missing: {path}")
    digest = sha256(path)
    if digest != entry["sha256"]:
        raise ModelError(f"checksum mismatch for model file {name}: expected {entry['sha256']}, "
                         f"got {digest}. The file is corrupt or was changed; reinstall BrainAge.")
    return path


def verify_all(folder: str | os.PathLike | None = None) -> list[str]:
    """Check every file of the manifest (a few MB, well under a second); the names checked.

    Commands call it before their first scan: a damaged installation stops the run at once with
    every broken file named, instead of failing each scan of a batch after its preprocessing."""
    folder = Path(folder or models_dir())
    names = sorted(read_manifest(folder).get("files", {}))
    broken = []
    for name in names:
        try:
            verify(name, folder)
        except ModelError as e:
            broken.append(str(e))
    if broken:
        raise ModelError("; ".join(broken) if len(broken) == 1 else
                         f"{len(broken)} model files are damaged: " + "; ".join(broken))
    return names


def update_manifest(name: str, info: dict, folder: str | os.PathLike | None = None) -> dict:
    """Add or replace the entry of ``name`` (its SHA256 computed here) in the manifest."""
    folder = Path(folder or models_dir())
    path = folder / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {"files": {}}
    import time
    entry = {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size,
             "created": time.strftime("%Y-%m-%d")}
    entry.update(info)
    manifest.setdefault("files", {})[name] = entry
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


def load_json(name: str) -> dict:
    return json.loads(verify(name).read_text())


THICK_SLICE_WEIGHTS = "thick_slice_weights.json"


def load_thick_slice_weights() -> dict | None:
    """The ensemble's weights for thick-slice scans (``brainage train-thick-slice-weights``), or
    None when none are shipped or when they were fitted for other age models than the shipped
    ones (their SHA256 is recorded in the file): then the usual ensemble applies."""
    return _load_thick_slice_weights(str(models_dir()))


@lru_cache(maxsize=4)
def _load_thick_slice_weights(folder: str) -> dict | None:
    files = read_manifest(folder).get("files", {})
    if THICK_SLICE_WEIGHTS not in files:
        return None
    doc = json.loads(verify(THICK_SLICE_WEIGHTS, folder).read_text())
    if any(files.get(name, {}).get("sha256") != digest for name, digest in doc.get("fitted_for", {}).items()):
        return None
    return doc


@lru_cache(maxsize=4)
def _load_resunet(folder: str):
    import torch
    from .resunet import load_resunet_weights
    net = load_resunet_weights(verify("resunet.safetensors", folder))
    return net.to(memory_format=torch.channels_last_3d)


def load_resunet():
    """The trained segmentation ResUNet (eval mode, CPU)."""
    return _load_resunet(str(models_dir()))


@lru_cache(maxsize=4)
def _load_template(folder: str):
    import SimpleITK as sitk
    return sitk.ReadImage(str(verify("template_T1.nii.gz", folder)), sitk.sitkFloat32)


def load_template():
    """The registration template: mean normalised T1 of the training set, in model space."""
    return _load_template(str(models_dir()))


@lru_cache(maxsize=4)
def _load_tissue_definition(folder: str, name: str):
    from .segmentation import TissueDefinitionMap
    return TissueDefinitionMap.from_dict(json.loads(verify(f"tissues_{name}.json", folder).read_text()))


def load_tissue_definition(name: str):
    """The :class:`~BrainAgeLib.segmentation.TissueDefinitionMap` to tissue definition ``name``;
    None for "camcan", the network's own."""
    from .segmentation import TISSUE_DEFINITIONS
    if name not in TISSUE_DEFINITIONS:
        raise ValueError(f"tissues must be one of {TISSUE_DEFINITIONS}, not {name!r}")
    return None if name == "camcan" else _load_tissue_definition(str(models_dir()), name)
