"""DICOM series folders: pick the T1 series openly (or refuse), and report missing slices.

A folder may hold several series (a localiser, a T2, the T1). :func:`read_dicom_folder` uses a
series only when it is clearly the T1: the only series with enough slices for a 3D volume, or
else the only such series whose description names a T1 sequence (T1, MPRAGE, SPGR, BRAVO, TFE,
TFL). It says which in the QC warnings; otherwise it refuses and lists the series. A missing
slice or unevenly spaced slices (from the slice positions) become QC warnings too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

MIN_SLICES = 16   # fewer cannot be a 3D brain volume (io.validate_image needs 16 per axis)
_T1 = re.compile(r"t1|mp-?rage|mp2rage|spgr|bravo|tfe|tfl", re.I)
_NOT_T1 = re.compile(r"t2|flair|dwi|dti|diff|locali[sz]er|scout|survey|swi|bold|fmri|asl|\bpd", re.I)


@dataclass
class Series:
    """One DICOM series of a folder."""
    uid: str
    files: list[str]
    description: str
    slices: int             # files x frames per file
    rows: int
    columns: int
    bytes_per_voxel: float

    def label(self) -> str:
        return f"'{self.description or 'no description'}' ({self.slices} slices, uid {self.uid})"


def _tag(reader, key: str, default: str = "") -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else default


def list_series(folder: Path) -> list[Series]:
    """Every series of ``folder`` (reads the first file's header of each)."""
    from .io import _pixel_bytes
    out = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or []:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        r = sitk.ImageFileReader()
        r.SetFileName(files[0])
        r.ReadImageInformation()
        frames = _tag(r, "0028|0008", "1")
        frames = int(frames) if frames.isdigit() else 1
        size = r.GetSize()
        out.append(Series(uid, files, _tag(r, "0008|103e"), len(files) * max(frames, 1),
                          size[1], size[0], _pixel_bytes(r.GetPixelID()) * r.GetNumberOfComponents()))
    return out


def choose_series(folder: Path, series: list[Series]) -> tuple[Series, list[str]]:
    """The series to use and a QC note saying why, or :class:`~BrainAgeLib.io.InputError`."""
    from .io import InputError
    if len(series) == 1:
        return series[0], []
    volumes = [s for s in series if s.slices >= MIN_SLICES]
    if len(volumes) == 1:
        s = volumes[0]
        return s, [f"DICOM folder holds {len(series)} series; used the only 3D one {s.label()}"]
    t1 = [s for s in volumes if _T1.search(s.description) and not _NOT_T1.search(s.description)]
    if len(t1) == 1:
        s = t1[0]
        return s, [f"DICOM folder holds {len(series)} series; used {s.label()}, the only T1 by its "
                   "description"]
    listing = "; ".join(s.label() for s in series)
    raise InputError(f"{folder.name}: holds {len(series)} DICOM series and none is clearly the T1: "
                     f"{listing}. Put the T1 series in a folder of its own")


def slice_spacing_qc(positions: np.ndarray, normal: np.ndarray) -> list[str]:
    """QC warnings for missing, duplicated or unevenly spaced slices (positions in mm, one per
    slice, along the slice normal)."""
    if len(positions) < 3:
        return []
    d = np.diff(np.sort(positions @ normal))
    step = float(np.median(d))
    if step <= 1e-3:
        return ["DICOM slices share one position (duplicated slices?)"]
    tol = max(0.01 * step, 1e-3)
    missing = int(np.sum(np.round(d[d > 1.5 * step] / step) - 1))
    if missing > 0:
        return [f"{missing} slice(s) missing from the DICOM series (gap of {d.max():.2f} mm where "
                f"slices are {step:.2f} mm apart)"]
    if d.max() - d.min() > tol:
        return [f"unevenly spaced DICOM slices ({d.min():.2f}-{d.max():.2f} mm)"]
    return []


def read_dicom_folder(folder: Path, check_size: Callable) -> tuple[sitk.Image, list[str]]:
    """The T1 volume of a DICOM folder and QC notes; ``check_size(name, size, components,
    bytes)`` refuses too large a series before its voxels are read."""
    from .io import InputError
    series = list_series(folder)
    if not series:
        raise InputError(f"{folder}: folder holds no image file and no DICOM series")
    chosen, qc = choose_series(folder, series)
    check_size(folder.name, (chosen.columns, chosen.rows, chosen.slices), 1, chosen.bytes_per_voxel)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen.files)
    reader.MetaDataDictionaryArrayUpdateOn()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)   # ITK's slice warning becomes a QC note
    try:
        image = reader.Execute()
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    try:
        pos = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]
                        for i in range(len(chosen.files))])
        ori = [float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")]
        normal = np.cross(ori[:3], ori[3:6])
    except (RuntimeError, ValueError, IndexError):   # no positions (e.g. multi-frame): trust ITK
        return image, qc
    return image, qc + slice_spacing_qc(pos, normal)
