"""The feature cache the age models learn from: every training and evaluation subject of both
sites segmented once, as acquired and as another acquisition would give it.

Cam-CAN images are already in model space. IXI whole heads go through the raw-scan path
(:func:`~BrainAgeLib.preprocessing.preprocess`: brain extraction, N4, registration), cached
separately by :func:`ixi_model_space` because it does not depend on the networks; the
ResUNet runs on that cached model-space image, as :func:`~BrainAgeLib.pipeline.read_registered`
reads it; every cache records whether those scans were harmonised (``harmonised``,
:data:`~BrainAgeLib.pipeline.HARMONIZE_RAW_SCANS`) and is rebuilt when the pipeline's differs.
"""
from __future__ import annotations

import csv
import random
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..preprocessing import normalize_intensity
from .augmentation import degrade_image
from .data import camcan_paths, read_camcan_subjects

REGIONAL_CELLS = (4, 6)   # cell sizes (2 mm voxels: 8 and 12 mm) compared for approach A
FEATURE_VERSION = 4       # bumped when the cache's content changes (rebuilt automatically); 4: rigid registration
IXI_SETS = ("ixi120", "ixi10")   # ixi120: training (with a validation part); ixi10: held out


def read_ixi_subjects(ixi_dir) -> list[dict]:
    """Rows of ``<ixi set>/subjects.csv`` (subject_id, age (years), sex)."""
    with open(Path(ixi_dir) / "subjects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["age"] = float(r["age"])
    return rows


def ixi_model_space(data_root, cache_path, sets=IXI_SETS, log=print) -> dict:
    """Each IXI whole head of ``sets`` brought into model space by the raw-scan path (before
    intensity harmonisation, which needs the ResUNet): ``subject_id, set, age, sex, image``
    (float16, model space), ``similarity``, ``registration`` (the pipeline's,
    :data:`~BrainAgeLib.preprocessing.REGISTRATION`). Cached in ``cache_path`` (.npz); a cache
    made with another registration is rebuilt."""
    from ..io import read_image
    from ..preprocessing import REGISTRATION, preprocess
    cache_path = Path(cache_path)
    if cache_path.exists():
        cached = dict(np.load(cache_path))
        if str(cached.get("registration", "affine")) == REGISTRATION:
            return cached
        log(f"{cache_path} was registered otherwise: rebuilding it")
    out = {k: [] for k in ("subject_id", "set", "age", "sex", "image", "similarity")}
    t0 = time.time()
    for s in sets:
        rows = read_ixi_subjects(Path(data_root) / s)
        for i, r in enumerate(rows):
            prep = preprocess(read_image(Path(data_root) / s / "t1" / f"{r['subject_id']}_T1.nii.gz"))
            out["subject_id"].append(r["subject_id"])
            out["set"].append(s)
            out["age"].append(r["age"])
            out["sex"].append(r["sex"])
            out["image"].append(sitk.GetArrayFromImage(prep.image).astype(np.float16))
            out["similarity"].append(prep.similarity)
            if (i + 1) % 10 == 0:
                log(f"{s}: {i + 1}/{len(rows)} in model space ({time.time() - t0:.0f} s)")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["registration"] = np.asarray(REGISTRATION)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **arrays)
    return arrays


def subject_array(data_dir, subject_id: str, ixi_images: dict | None = None) -> tuple[np.ndarray, bool]:
    """A cached subject's model-space T1 as the ResUNet first reads it (float32, z, y, x) and
    whether it came through registration: an IXI head from ``ixi_images`` (subject ID -> image
    of :func:`ixi_model_space`, before harmonisation), else the Cam-CAN scan of ``data_dir``,
    normalised."""
    if ixi_images is not None and subject_id in ixi_images:
        return ixi_images[subject_id].astype(np.float32), True
    img = sitk.ReadImage(str(camcan_paths(data_dir, subject_id)["image"]))
    return normalize_intensity(sitk.GetArrayFromImage(img)), False


def scan_features(net, array: np.ndarray, registered: bool) -> dict:
    """What the age models read from one model-space T1: regional and global tissue fractions
    (approach A) and the CNN input (B), from the ResUNet's probabilities. ``registered`` scans
    are read as :func:`~BrainAgeLib.pipeline.predict` reads them (:func:`~BrainAgeLib.pipeline.read_registered`)."""
    from ..cnn import cnn_input
    from ..pipeline import read_registered
    from ..segmentation import segment_array
    from ..volumes import global_fractions, regional_fractions
    array = np.asarray(array, np.float32)
    prob = segment_array(net, array)
    if registered:
        array, prob, _ = read_registered(net, array, prob)
    out = {f"regional_c{c}": regional_fractions(prob, c) for c in REGIONAL_CELLS}
    out["global"] = global_fractions(prob)
    out["cnn"] = cnn_input(array, prob).astype(np.float16)
    return out


def rescan_rows(feats: dict, model_space: dict, net) -> None:
    """Overwrite, in the feature cache ``feats``, the rows of the subjects of ``model_space`` (an
    :func:`ixi_model_space` cache made another way) with :func:`scan_features` of its images
    (registered scans read as :func:`~BrainAgeLib.pipeline.read_registered` reads them)."""
    rows = {str(s): i for i, s in enumerate(feats["subject_id"])}
    for sid, image in zip(model_space["subject_id"], model_space["image"]):
        for k, v in scan_features(net, image.astype(np.float32), True).items():
            feats[k][rows[str(sid)]] = v


def _harmonising() -> bool:
    """Whether the pipeline harmonises registered scans now (:data:`~BrainAgeLib.pipeline.HARMONIZE_RAW_SCANS`)."""
    from .. import pipeline
    return bool(pipeline.HARMONIZE_RAW_SCANS)


def _harmonised(cache: dict) -> bool:
    """Whether a cache's registered scans were harmonised (caches from before the key: yes)."""
    return bool(cache.get("harmonised", True))


def _harmonised_word(harmonised: bool) -> str:
    return "harmonised" if harmonised else "not harmonised"


def model_space_features(data_dir, cache_path, log=print, splits=("reg_train", "test"),
                         ixi_root=None, seed: int = 20261125) -> dict:
    """Segment every subject with the shipped ResUNet and cache what the age models learn from:
    Cam-CAN ``splits`` and, with ``ixi_root`` (the folder holding ``ixi120``/``ixi10``), the IXI
    sets. Each subject also gets a degraded copy (:func:`~.augmentation.degrade_image`: thick
    slices, noise, bias, contrast, blur, motion, ghosting drawn at random), segmented again
    (keys ``*_deg``), so that the age models learn that acquisition is not age.

    Keys: ``subject_id, site (camcan|ixi), split (reg_train|test|ixi120|ixi10), age, sex``, and
    the features of :func:`scan_features`. The cache (.npz) is rebuilt when missing or stale.
    """
    from ..models import load_resunet
    cache_path = Path(cache_path)
    if cache_path.exists():
        cached = dict(np.load(cache_path))
        if int(cached.get("version", 0)) != FEATURE_VERSION:
            log(f"{cache_path} predates the current feature set: rebuilding it")
        elif _harmonised(cached) != _harmonising():
            log(f"{cache_path}: registered scans were {_harmonised_word(_harmonised(cached))}, the "
                f"pipeline's are {_harmonised_word(_harmonising())}: rebuilding it")
        else:
            return cached
    net = load_resunet()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    subjects = []          # (subject_id, site, split, age, sex)
    for r in read_camcan_subjects(data_dir):
        if r["split"] in splits:
            subjects.append((r["subject_id"], "camcan", r["split"], r["age"], r["sex"]))
    ixi_images = None
    if ixi_root is not None:
        ixi = ixi_model_space(ixi_root, cache_path.with_name("ixi_model_space.npz"), log=log)
        ixi_images = dict(zip((str(s) for s in ixi["subject_id"]), ixi["image"]))
        for i, sid in enumerate(ixi["subject_id"]):
            subjects.append((str(sid), "ixi", str(ixi["set"][i]), float(ixi["age"][i]), str(ixi["sex"][i])))
    out: dict[str, list] = {k: [] for k in ("subject_id", "site", "split", "age", "sex")}
    t0 = time.time()
    for n, (sid, site, split, age, sex) in enumerate(subjects):
        arr, registered = subject_array(data_dir, sid, ixi_images if site == "ixi" else None)
        feats = scan_features(net, arr, registered)
        feats.update({f"{k}_deg": v for k, v in scan_features(net, degrade_image(arr, gen), registered).items()})
        for k, v in zip(("subject_id", "site", "split", "age", "sex"), (sid, site, split, age, sex)):
            out[k].append(v)
        for k, v in feats.items():
            out.setdefault(k, []).append(v)
        if (n + 1) % 50 == 0:
            log(f"segmented {n + 1}/{len(subjects)} subjects ({time.time() - t0:.0f} s)")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["version"] = np.asarray(FEATURE_VERSION)
    arrays["harmonised"] = np.asarray(_harmonising())
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **arrays)
    return arrays


def split_validation(ids: list[str], n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded shuffle of subject IDs into (train, validation); IDs are sorted first, so the
    draw does not depend on their order (Cam-CAN IDs encode the age decade: never split by order)."""
    ids = sorted(ids)
    random.Random(seed).shuffle(ids)
    return ids[n_val:], ids[:n_val]


CONTRAST_GAMMA = (0.6, 1.6)   # range of the contrast copies' gamma (log-uniform draw)
CONTRAST_VERSION = 2          # 2: IXI heads rigidly registered
MOTION_VERSION = 2
THICK_MM = (3.0, 6.0)         # range of the thick-slice copies' slice thickness (mm, uniform draw)
THICK_VERSION = 2
COPY_KINDS = ("contrast", "motion", "thick")  # the acquisition copies the age models are made invariant to
COPY_SUFFIX = {"contrast": "_gam", "motion": "_mot", "thick": "_thk"}   # their feature keys end so
MODEL_SPACING_MM = 2.0        # the model-space grid the cached arrays lie on


def copies_path(cache_path, kind: str = "contrast") -> Path:
    """Where the ``kind`` copies (:data:`COPY_KINDS`) of the feature cache ``cache_path`` live:
    beside it, as ``<kind>_copies.npz``."""
    if kind not in COPY_KINDS:
        raise ValueError(f"unknown kind of copies {kind!r}: one of {', '.join(COPY_KINDS)}")
    return Path(cache_path).with_name(f"{kind}_copies.npz")


def contrast_copies_path(cache_path) -> Path:
    """Where the contrast copies of the feature cache ``cache_path`` live: beside it."""
    return copies_path(cache_path, "contrast")


def _build_copies(data_dir, feats: dict, cache_path, version: int, suffix: str, change, label: str,
                  log=print, **extra) -> dict:
    """Every subject of the feature cache ``feats`` once more, its model-space T1 changed by
    ``change(array, row)`` and segmented again (keys ``*<suffix>``, ``subject_id`` in the cache's
    order, ``extra`` arrays). Cached in ``cache_path`` (.npz); a cache of another ``version`` or
    other subjects is rebuilt."""
    from ..models import load_resunet
    cache_path = Path(cache_path)
    ids = [str(s) for s in feats["subject_id"]]
    if cache_path.exists():
        cached = dict(np.load(cache_path))
        if (int(cached.get("version", 0)) == version and _harmonised(cached) == _harmonising()
                and [str(s) for s in cached["subject_id"]] == ids):
            return cached
        log(f"{cache_path} does not match the feature cache: rebuilding it")
    net = load_resunet()
    ixi_images = None
    if (np.asarray(feats["site"]) == "ixi").any():
        ixi = ixi_model_space(Path(data_dir).parent, cache_path.with_name("ixi_model_space.npz"), log=log)
        ixi_images = dict(zip((str(s) for s in ixi["subject_id"]), ixi["image"]))
    out: dict[str, list] = {}
    t0 = time.time()
    for n, sid in enumerate(ids):
        arr, registered = subject_array(data_dir, sid, ixi_images if str(feats["site"][n]) == "ixi" else None)
        for k, v in scan_features(net, change(arr, n), registered).items():
            out.setdefault(f"{k}{suffix}", []).append(v)
        if (n + 1) % 50 == 0:
            log(f"{label} copies: {n + 1}/{len(ids)} ({time.time() - t0:.0f} s)")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays.update(subject_id=np.asarray(ids), version=np.asarray(version),
                  harmonised=np.asarray(_harmonising()), **extra)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **arrays)
    return arrays


def contrast_copies(data_dir, feats: dict, cache_path, seed: int = 20261127, log=print) -> dict:
    """Every subject of the feature cache ``feats`` once more, its contrast changed by a gamma
    drawn log-uniformly from :data:`CONTRAST_GAMMA` and nothing else (keys ``*_gam``, the
    ``gamma`` drawn and ``subject_id`` in the cache's order).

    A gamma is what another sequence or scanner does to grey/white/CSF contrast; unlike the
    degraded copy (many artefacts mixed), each pair (clean, copy) differs in contrast alone, so
    that the age models can be taught to give both the same age (an invariance penalty).
    The gamma acts on the intensities as acquired (renormalised afterwards, as the pipeline
    would), before the registered scans' harmonisation. Cached in ``cache_path`` (.npz).
    """
    rng = np.random.default_rng(seed)
    lo, hi = np.log(CONTRAST_GAMMA)
    gammas = np.exp(rng.uniform(lo, hi, len(feats["subject_id"])))
    return _build_copies(data_dir, feats, cache_path, CONTRAST_VERSION, "_gam",
                         lambda arr, n: normalize_intensity(arr ** gammas[n]), "contrast", log, gamma=gammas)


def motion_copies(data_dir, feats: dict, cache_path, seed: int = 0, log=print) -> dict:
    """Every subject of the feature cache ``feats`` once more, with head motion and nothing else
    (keys ``*_mot``): the motion ``brainage evaluate-robustness`` simulates
    (:func:`~BrainAgeLib.degrade.motion_transform`), seeded by ``seed`` + the subject's row. It acts
    on the model-space intensities before normalisation and, for registered scans, before
    harmonisation; the brain mask is kept (background 0). Cached in ``cache_path`` (.npz)."""
    from ..degrade import motion_transform
    motion = motion_transform()
    return _build_copies(data_dir, feats, cache_path, MOTION_VERSION, "_mot",
                         lambda arr, n: motion_copy(arr, seed + n, motion), "motion", log)


def motion_copy(array: np.ndarray, seed: int, transform=None) -> np.ndarray:
    """A model-space T1 with head motion and nothing else, as :func:`motion_copies` makes each
    subject's: ``transform`` (default :func:`~BrainAgeLib.degrade.motion_transform`) drawn with
    torch seeded by ``seed`` (the global RNG state is kept), the brain mask kept, renormalised."""
    import torchio as tio
    from ..degrade import motion_transform
    motion = transform or motion_transform()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        moved = motion(tio.ScalarImage(tensor=torch.from_numpy(array)[None])).data[0].numpy()
    return normalize_intensity(np.clip(moved, 0, None) * (array > 0))


def thick_model_space(array: np.ndarray, thickness_mm: float, orientation: str) -> np.ndarray:
    """A model-space T1 (z, y, x on the 2 mm grid) as a scan stored with ``thickness_mm`` slices in
    ``orientation`` would reach model space: :func:`~BrainAgeLib.degrade.thick_slices` on the
    grid, then resampled (linear) back onto it. float32, not normalised."""
    from ..degrade import thick_slices
    img = sitk.GetImageFromArray(np.asarray(array, np.float32))
    img.SetSpacing((MODEL_SPACING_MM,) * 3)
    thick = thick_slices(img, thickness_mm, orientation)
    back = sitk.Resample(thick, img, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(back)


def thick_copies(data_dir, feats: dict, cache_path, seed: int = 20261128, log=print) -> dict:
    """Every subject of the feature cache ``feats`` once more, stored with thick slices and
    nothing else (keys ``*_thk``): a slice thickness drawn uniformly from :data:`THICK_MM` in
    an orientation drawn from sagittal, coronal and axial (``thickness_mm``, ``orientation``),
    as :func:`thick_model_space` makes it, renormalised. Most clinical T1s have 3-6 mm slices;
    ``brainage evaluate-robustness`` found them to lower the age (coronal most). Cached in
    ``cache_path`` (.npz)."""
    from ..degrade import ORIENTATIONS
    rng = np.random.default_rng(seed)
    n = len(feats["subject_id"])
    thickness = rng.uniform(*THICK_MM, n)
    orientation = np.asarray(list(ORIENTATIONS))[rng.integers(len(ORIENTATIONS), size=n)]
    def thicken(arr, i):
        return normalize_intensity(np.clip(thick_model_space(arr, thickness[i], orientation[i]), 0, None))
    return _build_copies(data_dir, feats, cache_path, THICK_VERSION, "_thk", thicken, "thick-slice", log,
                         thickness_mm=thickness, orientation=orientation)


def acquisition_copies(data_dir, feats: dict, cache_path, kind: str, log=print) -> dict:
    """The ``kind`` copies (:data:`COPY_KINDS`) of the feature cache whose file is ``cache_path``:
    :func:`contrast_copies`, :func:`motion_copies` or :func:`thick_copies`, read from beside it
    or built."""
    path = copies_path(cache_path, kind)          # refuses unknown kinds
    build = {"contrast": contrast_copies, "motion": motion_copies, "thick": thick_copies}[kind]
    return build(data_dir, feats, path, log=log)
