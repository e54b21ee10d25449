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
    files and of its sub-folders that hold a DICOM series (hidden names, ``.*``, are skipped).
    Missing paths and folders with nothing readable are kept, so that their row reports the error.
    """
    out: list[str] = []
    for item in inputs:
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        for m in matches:
            p = Path(m)
            if p.is_dir():
                # hidden files (``.x.tmp.nii.gz`` left by a killed run, macOS ``._x``) are skipped
                entries = [f for f in p.iterdir() if not f.name.startswith(".")]
                files = sorted(str(f) for f in entries if f.is_file() and is_image_path(f))
                subdirs = sorted(str(f) for f in entries if f.is_dir())
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


# --------------------------------------------------------------------------- size limits

DEFAULT_MAX_VOXELS = 100_000_000     # e.g. 464^3 (0.5 mm whole head); a 1 mm T1 has ~16 million
DEFAULT_MAX_IMAGE_MB = 1024          # inflated image data (MB) that a header may declare


def size_limits() -> tuple[int, int]:
    """``(max_voxels, max_megabytes)`` of an input image, checked on its header before any voxel
    is read. Raise them with the environment variables ``BRAINAGE_MAX_VOXELS`` and
    ``BRAINAGE_MAX_IMAGE_MB`` (positive integers) for genuinely larger scans."""
    out = []
    for var, default in (("BRAINAGE_MAX_VOXELS", DEFAULT_MAX_VOXELS),
                         ("BRAINAGE_MAX_IMAGE_MB", DEFAULT_MAX_IMAGE_MB)):
        raw = os.environ.get(var, "").strip()
        try:
            value = int(raw) if raw else default
        except ValueError:
            value = 0
        if value <= 0:
            raise InputError(f"{var}={raw!r} must be a positive integer")
        out.append(value)
    return out[0], out[1]


def check_size(name: str, size: tuple[int, ...], components: int, bytes_per_component: float) -> None:
    """Raise :class:`InputError` naming the limit if a header declares too large an image."""
    max_voxels, max_mb = size_limits()
    voxels = int(np.prod([int(n) for n in size], dtype=object))
    shape = "x".join(str(int(n)) for n in size)
    if voxels > max_voxels:
        raise InputError(f"{name}: the header declares {shape} = {voxels:,} voxels, above the limit "
                         f"of {max_voxels:,}; if the scan is genuine, raise BRAINAGE_MAX_VOXELS")
    mb = voxels * max(components, 1) * bytes_per_component / 2**20
    if mb > max_mb:
        raise InputError(f"{name}: the header declares {mb:,.0f} MB of image data ({shape} voxels), "
                         f"above the limit of {max_mb:,} MB; if the scan is genuine, raise "
                         "BRAINAGE_MAX_IMAGE_MB")


def _pixel_bytes(pixel_id: int) -> float:
    import re
    text = sitk.GetPixelIDValueAsString(pixel_id)
    bits = re.search(r"(\d+)-bit", text)
    return (int(bits.group(1)) if bits else 64) / 8 * (2 if "complex" in text else 1)


# --------------------------------------------------------------------------- NIfTI by content

def nifti_header(path: str | os.PathLike) -> dict | None:
    """``{"version", "gzip", "dim", "bitpix"}`` if the file's bytes are a NIfTI-1/2 header
    (plain or gzip), else None. Reads at most 544 (inflated) bytes."""
    import gzip
    import struct
    import zlib
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            head = gzip.GzipFile(fileobj=f).read(544) if gz else f.read(544)
    except (OSError, EOFError, ValueError, zlib.error):
        return None
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 \
                and head[344:348] in (b"n+1\0", b"ni1\0"):
            dim = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            return {"version": 1, "gzip": gz, "dim": dim, "bitpix": bitpix}
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 \
                and head[4:8] == b"n+2\0":
            dim = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            return {"version": 2, "gzip": gz, "dim": dim, "bitpix": bitpix}
    return None


def _check_nifti(name: str, hdr: dict) -> None:
    dim = hdr["dim"]
    n = dim[0]
    if not 1 <= n <= 7 or any(d < 0 for d in dim[1:n + 1]):
        raise InputError(f"{name}: corrupt NIfTI header (dim = {list(dim)})")
    check_size(name, tuple(max(d, 1) for d in dim[1:n + 1]), 1, max(hdr["bitpix"], 8) / 8)


# --------------------------------------------------------------------------- readers

def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a NIfTI, NRRD, MHA file or a DICOM series folder as a validated float32 3D image."""
    return read_image_qc(path)[0]


def read_image_qc(path: str | os.PathLike) -> tuple[sitk.Image, list[str]]:
    """:func:`read_image` plus the reader's QC warnings (which DICOM series was used, missing or
    unevenly spaced slices). NIfTI is recognised by its bytes, whatever the file is called; the
    header's voxel count and data size are checked against :func:`size_limits` first."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    qc: list[str] = []
    try:
        if p.is_dir():
            from .dicom import read_dicom_folder
            image, qc = read_dicom_folder(p, check_size)
        else:
            image = _read_file(p)
    except InputError:
        raise
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise InputError(f"{p.name}: cannot read the image (corrupt or unsupported file): "
                         f"{first[-1] if first else e}") from None
    return validate_image(image, name=p.name), qc


def _read_file(p: Path) -> sitk.Image:
    hdr = nifti_header(p)
    if hdr is not None:
        _check_nifti(p.name, hdr)
        wanted = ".nii.gz" if hdr["gzip"] else ".nii"
        if not p.name.lower().endswith(wanted):   # ITK picks its reader by the suffix
            import tempfile
            with tempfile.TemporaryDirectory(prefix="brainage-") as tmp:
                link = Path(tmp) / ("input" + wanted)
                try:
                    link.symlink_to(p.resolve())
                except OSError:
                    import shutil
                    shutil.copyfile(p, link)
                return _read_checked(link, p.name)
    return _read_checked(p, p.name)


def _read_checked(p: Path, name: str) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    reader.ReadImageInformation()
    check_size(name, reader.GetSize(), reader.GetNumberOfComponents(), _pixel_bytes(reader.GetPixelID()))
    return reader.Execute()


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
    try:
        image = sitk.Cast(image, sitk.sitkFloat32)
    except RuntimeError:          # complex voxels (e.g. a raw k-space or phase export)
        raise InputError(f"{name}: voxels of type {image.GetPixelIDTypeAsString()} are not "
                         "magnitudes; a T1 is a real-valued scalar image") from None
    arr = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite voxels")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0:
        raise InputError(f"{name}: the volume is empty (all voxels are {lo:g})")
    return image
