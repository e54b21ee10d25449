"""Reading and validating input images.

Every input goes through :func:`read_image` (paths) or :func:`validate_image`
(SimpleITK images), so that bad input fails with a clear :class:`InputError` before
any model runs. Input files and images are never modified.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MIN_SPACING_MM, MAX_SPACING_MM = 0.2, 8.0
MIN_EXTENT_MM = 60.0  # a brain is ~140 mm across; smaller fields of view are not a head


class InputError(ValueError):
    """The input cannot be processed (not a 3D T1 image, unreadable, degenerate)."""


def is_image_path(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def expand_inputs(inputs: list[str]) -> list[str]:
    """Expand folders (images or one DICOM series each) and globs into a sorted list of inputs.

    A folder that is one DICOM series is one input; any other folder is a batch of its image
    files and of its sub-folders that hold a DICOM series. Missing paths and folders with
    nothing readable are kept, so that their row reports the error.
    """
    out: list[str] = []
    for item in inputs:
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        for m in matches:
            p = Path(m)
            if p.is_dir():
                files = sorted(str(f) for f in p.iterdir() if f.is_file() and is_image_path(f))
                subdirs = sorted(str(f) for f in p.iterdir() if f.is_dir())
                if not files and _dicom_series(p):
                    out.append(str(p))
                    continue
                series = [s for s in subdirs if _dicom_series(Path(s))]
                out.extend(sorted(files + series) if files or series else [str(p)])
            else:
                out.append(str(p))
    return out


def _dicom_series(folder: Path) -> list[str]:
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        return []
    return list(ids or [])


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a NIfTI, NRRD, MHA file or a DICOM series folder as a validated float32 3D image."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    try:
        if p.is_dir():
            series = _dicom_series(p)
            if not series:
                raise InputError(f"{p}: folder holds no image file and no DICOM series")
            reader = sitk.ImageSeriesReader()
            # the longest series is the T1 when a folder holds a localiser too
            names = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p), s) for s in series),
                        key=len)
            reader.SetFileNames(names)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(p))
    except InputError:
        raise
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise InputError(f"{p.name}: cannot read the image (corrupt or unsupported file): "
                         f"{first[-1] if first else e}") from None
    return validate_image(image, name=p.name)


def validate_image(image: sitk.Image, name: str = "image") -> sitk.Image:
    """Check that ``image`` is a usable 3D scalar image; return it as float32 (a new image).

    Raises :class:`InputError` for 2D/4D or vector images, NaN/inf voxels, an empty or
    constant volume, and absurd spacing or field of view.
    """
    if not isinstance(image, sitk.Image):
        raise InputError(f"{name}: expected a SimpleITK image, got {type(image).__name__}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per "
                         "voxel; a T1 is a scalar image")
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
        dim = 3
    if dim != 3:
        raise InputError(f"{name}: is a {dim}D image of size {image.GetSize()}; "
                         "BrainAge needs one 3D T1-weighted volume")
    size = image.GetSize()
    if min(size) < 16:
        raise InputError(f"{name}: size {size} is too small for a 3D brain volume "
                         "(a 2D slice or a thin slab?)")
    spacing = image.GetSpacing()
    if not all(np.isfinite(spacing)) or min(spacing) < MIN_SPACING_MM or max(spacing) > MAX_SPACING_MM:
        raise InputError(f"{name}: voxel spacing {tuple(round(s, 3) for s in spacing)} mm is "
                         f"outside {MIN_SPACING_MM}-{MAX_SPACING_MM} mm; check the header")
    extent = [n * s for n, s in zip(size, spacing)]
    if min(extent) < MIN_EXTENT_MM:
        raise InputError(f"{name}: field of view {tuple(round(e) for e in extent)} mm is too small "
                         "to hold a whole brain")
    image = sitk.Cast(image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite voxels")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0:
        raise InputError(f"{name}: the volume is empty (all voxels are {lo:g})")
    return image
