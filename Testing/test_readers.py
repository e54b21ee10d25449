"""Readers: NIfTI by content, header size limits (huge header, gzip bomb), DICOM folders with
several series or missing slices; generated and mutated files give an image or an InputError."""
from __future__ import annotations

import gzip
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from BrainAgeLib.io import InputError, read_image, read_image_qc

DATA = Path(__file__).resolve().parent / "data"
FIXTURE = sorted(DATA.glob("IXI*_T1.nii.gz"))[0]


def _nifti_header(shape, dtype=np.uint8, zooms=None) -> bytes:
    import nibabel as nib
    h = nib.Nifti1Header()
    h.set_data_shape(shape)
    h.set_data_dtype(dtype)
    if zooms:
        h.set_zooms(zooms)
    h["vox_offset"] = 352
    return h.binaryblock + b"\0" * 4


def _small_nifti() -> bytes:
    """A valid uncompressed NIfTI-1 of 20^3 int16 voxels, 4 mm (80 mm field of view)."""
    arr = np.random.default_rng(0).integers(0, 1000, (20, 20, 20), dtype=np.int16)
    return _nifti_header(arr.shape, np.int16, (4.0, 4.0, 4.0)) + arr.tobytes(order="F")


# --------------------------------------------------------------------------- NIfTI by content

@pytest.mark.parametrize("name", ["scan", "scan.img", "scan.nii"])
def test_nifti_recognised_by_its_bytes(tmp_path, name):
    """A gzip NIfTI called ``scan`` (no suffix), ``scan.img`` or ``scan.nii`` reads like the original."""
    path = tmp_path / name
    shutil.copyfile(FIXTURE, path)
    img = read_image(path)
    ref = read_image(FIXTURE)
    assert img.GetSize() == ref.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(img), sitk.GetArrayViewFromImage(ref))
    plain = tmp_path / "plain"
    plain.write_bytes(gzip.decompress(FIXTURE.read_bytes()))
    assert read_image(plain).GetSize() == ref.GetSize()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "plain"])   # nothing left


def test_not_an_image_without_suffix_is_a_clear_error(tmp_path):
    path = tmp_path / "notes"
    path.write_text("not an image\n")
    with pytest.raises(InputError, match="cannot read"):
        read_image(path)


# --------------------------------------------------------------------------- size limits

def test_huge_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.nii"
    path.write_bytes(_nifti_header((10000, 10000, 10000)))
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"10000x10000x10000 = 1,000,000,000,000 voxels.*BRAINAGE_MAX_VOXELS"):
        read_image(path)
    assert time.perf_counter() - t0 < 2


def test_gzip_bomb_is_refused_before_inflating(tmp_path):
    """0.5 MB that inflates to 512 MB (gzip members of 1 MB of zeros): refused from the header."""
    member = gzip.compress(bytes(1 << 20), 9)
    data = gzip.compress(_nifti_header((1024, 1024, 512))) + member * 512
    assert len(data) < 600_000
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="536,870,912 voxels, above the limit"):
        read_image(path)
    assert time.perf_counter() - t0 < 2


def test_limits_can_be_raised_or_lowered(tmp_path, monkeypatch):
    path = tmp_path / "big.nii"
    path.write_bytes(_nifti_header((512, 512, 256), np.float64))   # 67 M voxels, 512 MB
    with monkeypatch.context() as m:
        m.setenv("BRAINAGE_MAX_IMAGE_MB", "256")
        with pytest.raises(InputError, match="512 MB of image data.*BRAINAGE_MAX_IMAGE_MB"):
            read_image(path)
    monkeypatch.setenv("BRAINAGE_MAX_VOXELS", "1000")
    with pytest.raises(InputError, match="above the limit of 1,000"):
        read_image(FIXTURE)
    monkeypatch.setenv("BRAINAGE_MAX_VOXELS", "lots")
    with pytest.raises(InputError, match="BRAINAGE_MAX_VOXELS='lots' must be a positive integer"):
        read_image(FIXTURE)
    monkeypatch.setenv("BRAINAGE_MAX_VOXELS", str(10**9))
    assert read_image(FIXTURE).GetDimension() == 3
    nrrd = tmp_path / "big.nrrd"        # other formats: limits from ITK's header reading
    nrrd.write_text("NRRD0004\ntype: double\ndimension: 3\nsizes: 4000 4000 4000\n"
                    "encoding: raw\nendian: little\ndata file: big.raw\n\n")
    (tmp_path / "big.raw").write_bytes(bytes(64))   # 512 GB declared, 64 bytes there
    monkeypatch.delenv("BRAINAGE_MAX_VOXELS")
    with pytest.raises(InputError, match="4000x4000x4000"):
        read_image(nrrd)


# --------------------------------------------------------------------------- DICOM folders

def _write_series(folder: Path, uid: str, description: str, n: int = 20, skip=(), step=4.0,
                  steps=None) -> None:
    """``n`` synthetic 32x32 int16 slices (4 mm pixels, ``step`` mm apart) as one DICOM series."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(description) + n)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    z = 0.0
    for k in range(n):
        z = k * step if steps is None else z + (steps[k - 1] if k else 0.0)
        if k in skip:
            continue
        s = sitk.GetImageFromArray(rng.integers(0, 1000, (1, 32, 32), dtype=np.int16))
        s.SetSpacing((4.0, 4.0, step))
        for tag, value in (("0008|0060", "MR"), ("0020|000e", uid), ("0020|000d", "1.2.3.4"),
                           ("0008|103e", description), ("0020|0013", str(k + 1)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0032", f"0\\0\\{z:.3f}"),
                           ("0028|0030", "4\\4"), ("0018|0050", f"{step}")):
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-3:]}_{k:03d}.dcm"))
        writer.Execute(s)


def test_dicom_folder_uses_the_only_3d_series_and_says_so(tmp_path):
    _write_series(tmp_path / "d", "1.2.3.4.5.101", "T1 MPRAGE", 20)
    _write_series(tmp_path / "d", "1.2.3.4.5.102", "localizer", 3)
    import locale
    locale.setlocale(locale.LC_CTYPE, "")           # GDCM's writer left the C locale
    before = locale.setlocale(locale.LC_CTYPE)
    img, qc = read_image_qc(tmp_path / "d")
    assert locale.setlocale(locale.LC_CTYPE) == before     # reading leaves the locale alone
    assert img.GetSize() == (32, 32, 20)
    assert len(qc) == 1 and "holds 2 series" in qc[0] and "T1 MPRAGE" in qc[0]


def test_dicom_folder_picks_the_t1_by_description(tmp_path):
    _write_series(tmp_path / "d", "1.2.3.4.5.201", "t2_spc_sag", 24)
    _write_series(tmp_path / "d", "1.2.3.4.5.202", "t1_mprage_sag", 20)
    img, qc = read_image_qc(tmp_path / "d")
    assert img.GetSize() == (32, 32, 20)
    assert "t1_mprage_sag" in qc[0] and "description" in qc[0]


def test_dicom_folder_with_no_clear_t1_is_refused_with_the_list(tmp_path):
    _write_series(tmp_path / "d", "1.2.3.4.5.301", "T1 run 1", 20)
    _write_series(tmp_path / "d", "1.2.3.4.5.302", "T1 run 2", 20)
    with pytest.raises(InputError, match=r"2 DICOM series.*'T1 run 1' \(20 slices.*'T1 run 2'"):
        read_image(tmp_path / "d")


def test_missing_and_uneven_slices_are_qc_warnings(tmp_path, capfd):
    _write_series(tmp_path / "gap", "1.2.3.4.5.401", "T1", 21, skip=(10,))
    img, qc = read_image_qc(tmp_path / "gap")
    assert img.GetSize()[2] == 20
    assert qc == ["1 slice(s) missing from the DICOM series (gap of 8.00 mm where slices are "
                  "4.00 mm apart)"]
    steps = [4.0] * 19
    steps[5] = 4.8
    _write_series(tmp_path / "uneven", "1.2.3.4.5.402", "T1", 20, steps=steps)
    assert read_image_qc(tmp_path / "uneven")[1] == ["unevenly spaced DICOM slices (4.00-4.80 mm)"]
    _write_series(tmp_path / "even", "1.2.3.4.5.403", "T1", 20)
    assert read_image_qc(tmp_path / "even")[1] == []
    assert "Non uniform" not in capfd.readouterr().err     # the warning is in qc, not on stderr


# --------------------------------------------------------------------------- property-based

SMALL = _small_nifti()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, len(SMALL))), gz=st.booleans(),
       name=st.sampled_from(["x.nii", "x.nii.gz", "x", "x.mha"]))
def test_mutated_nifti_gives_an_image_or_a_clear_error(tmp_path, edits, cut, gz, name):
    data = bytearray(SMALL)
    for pos, value in edits:
        data[pos] = value
    data = bytes(data[:cut] if cut is not None else data)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data, 1) if gz else data)
    try:
        img = read_image(path)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert img.GetDimension() == 3 and img.GetPixelID() == sitk.sitkFloat32


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 3000)))
def test_mutated_gzip_gives_an_image_or_a_clear_error(tmp_path, edits, cut):
    data = bytearray(gzip.compress(SMALL, 6))
    for pos, value in edits:
        data[pos % len(data)] = value
    path = tmp_path / "z.nii.gz"
    path.write_bytes(bytes(data[:cut] if cut is not None else data))
    try:
        img = read_image(path)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert img.GetDimension() == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), name=st.sampled_from(["y.nii", "y.nii.gz", "y", "y.nrrd"]))
def test_random_bytes_give_a_clear_error(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError):
        read_image(path)


def test_valid_small_nifti_reads():
    """The property tests' seed file is itself readable (so mutations start from an image)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.nii"
        p.write_bytes(SMALL)
        assert read_image(p).GetSize() == (20, 20, 20)
        assert struct.unpack("<i", SMALL[:4])[0] == 348
