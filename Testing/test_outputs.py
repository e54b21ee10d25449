"""BrainAgeLib.outputs: label naming, inputs never overwritten, atomic files, the results CSV."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import outputs
from BrainAgeLib.outputs import (OutputError, OutputLockedError, ResultsCSV, atomic_write_image,
                                 check_outputs_do_not_touch_inputs, escape_cell, label_path_for,
                                 label_paths)

COLUMNS = ["input", "predicted_age", "brain_age_gap", "qc"]


def _touch(path: Path, data: bytes = b"x") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


# --------------------------------------------------------------------------- label naming

def test_labels_of_one_folder_are_flat(tmp_path):
    a, b = _touch(tmp_path / "s" / "sub-01_T1w.nii.gz"), _touch(tmp_path / "s" / "sub-02_T1w.nii")
    paths = label_paths([a, b], tmp_path / "labels")
    assert paths[a] == tmp_path / "labels" / "sub-01_T1w_tissues.nii.gz"
    assert paths[b] == tmp_path / "labels" / "sub-02_T1w_tissues.nii.gz"
    assert label_path_for(a, [a], "L") == Path("L") / "sub-01_T1w_tissues.nii.gz"


def test_same_name_in_two_folders_keeps_the_folders(tmp_path):
    a, b = _touch(tmp_path / "a" / "sub.nii.gz"), _touch(tmp_path / "b" / "sub.nii.gz")
    paths = label_paths([a, b], tmp_path / "labels")
    assert paths[a] == tmp_path / "labels" / "a" / "sub_tissues.nii.gz"
    assert paths[b] == tmp_path / "labels" / "b" / "sub_tissues.nii.gz"


def test_same_stem_two_suffixes_keeps_whole_names(tmp_path):
    a, b = _touch(tmp_path / "x.nii"), _touch(tmp_path / "x.nii.gz")
    c, d = _touch(tmp_path / "Y.nii.gz"), _touch(tmp_path / "y.nrrd")
    paths = label_paths([a, b, c, d], "L")
    assert paths[a].name == "x.nii_tissues.nii.gz" and paths[b].name == "x.nii.gz_tissues.nii.gz"
    assert paths[c].name == "Y.nii.gz_tissues.nii.gz" and paths[d].name == "y.nrrd_tissues.nii.gz"
    assert len({str(p).lower() for p in paths.values()}) == 4


def test_dicom_folder_keeps_its_name(tmp_path):
    (tmp_path / "pat1" / "t1").mkdir(parents=True)
    d = str(tmp_path / "pat1" / "t1") + "/"
    assert label_paths([d], "L")[d] == Path("L") / "t1_tissues.nii.gz"


def test_one_input_twice_is_refused(tmp_path):
    a = _touch(tmp_path / "a.nii.gz")
    with pytest.raises(OutputError, match="give each input once"):
        label_paths([a, os.path.join(str(tmp_path), ".", "a.nii.gz")], "L")


# --------------------------------------------------------------------------- inputs vs outputs

def test_output_that_is_an_input_is_refused(tmp_path):
    a = _touch(tmp_path / "scan.nii.gz")
    with pytest.raises(OutputError, match="is the input"):
        check_outputs_do_not_touch_inputs([a], [a])
    link = tmp_path / "link.csv"
    link.symlink_to(a)
    with pytest.raises(OutputError, match="is the input"):
        check_outputs_do_not_touch_inputs([a], [link])
    hard = tmp_path / "hard.csv"
    os.link(a, hard)
    with pytest.raises(OutputError, match="is the input"):
        check_outputs_do_not_touch_inputs([a], [hard])
    check_outputs_do_not_touch_inputs([a], [tmp_path / "results.csv"])   # a new file is fine


def test_label_into_input_folder_over_an_input_is_refused(tmp_path):
    a = _touch(tmp_path / "scan.nii.gz")
    victim = _touch(tmp_path / "scan_tissues.nii.gz")
    labels = label_paths([a, victim], tmp_path)
    with pytest.raises(OutputError, match="is the input"):
        check_outputs_do_not_touch_inputs([a, victim], labels.values())


def test_outputs_inside_a_dicom_folder_or_picked_up_later_are_refused(tmp_path):
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    _touch(dicom / "IM0001")
    with pytest.raises(OutputError, match="inside the input folder"):
        check_outputs_do_not_touch_inputs([str(dicom)], [dicom / "dicom_tissues.nii.gz"])
    a = _touch(tmp_path / "scans" / "a.nii.gz")
    with pytest.raises(OutputError, match="later run"):
        check_outputs_do_not_touch_inputs([a], [tmp_path / "scans" / "a_tissues.nii.gz"],
                                          input_patterns=[str(tmp_path / "scans")])
    with pytest.raises(OutputError, match="input pattern"):
        check_outputs_do_not_touch_inputs([a], [tmp_path / "scans" / "a_tissues.nii.gz"],
                                          input_patterns=[str(tmp_path / "scans" / "*.nii.gz")])
    with pytest.raises(OutputError, match="share one file"):
        check_outputs_do_not_touch_inputs([a], [tmp_path / "o.nii.gz", tmp_path / "o.nii.gz"])


# --------------------------------------------------------------------------- atomic image

def _image() -> sitk.Image:
    return sitk.GetImageFromArray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


def test_atomic_write_image_is_whole_or_absent(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "lab.nii.gz"
    atomic_write_image(_image(), path)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))),
                          np.arange(24).reshape(2, 3, 4))
    before = path.read_bytes()

    def interrupted(image, name, useCompression=True):   # a write cut short by a signal
        Path(name).write_bytes(b"\x1f\x8b partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(sitk, "WriteImage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_image(_image(), path)
    assert path.read_bytes() == before                  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["lab.nii.gz"]   # no temporary left


# --------------------------------------------------------------------------- results CSV

def test_escape_cell_follows_owasp():
    for bad in ("=HYPERLINK(\"x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "=1"):
        assert escape_cell(bad) == "'" + bad
    for ok in ("-3.25", "+4", "-1e-3", "12", "sub-01.nii.gz", "", "'=x"):
        assert escape_cell(ok) == ok


def _read(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_results_csv_header_first_rows_appended(tmp_path):
    out = tmp_path / "r.csv"
    with ResultsCSV(out, COLUMNS) as r:
        assert _read(out) == [COLUMNS]            # a valid CSV before the first row
        r.append({"input": "=cmd|' /C calc'!A0", "predicted_age": "41.20", "brain_age_gap": "-3.10"})
        assert _read(out)[1] == ["'=cmd|' /C calc'!A0", "41.20", "-3.10", ""]
        assert r.is_done("=cmd|' /C calc'!A0") and not r.is_done("other")
    with pytest.raises(OutputError, match="--resume"):
        ResultsCSV(out, COLUMNS).open()
    assert len(_read(out)) == 2


def test_results_csv_resume_keeps_rows_and_drops_a_cut_row(tmp_path):
    out = tmp_path / "r.csv"
    with ResultsCSV(out, COLUMNS) as r:
        r.append({"input": "a", "predicted_age": "40.00"})
        r.append({"input": "-b", "predicted_age": "50.00"})
    with open(out, "ab") as f:
        f.write(b"c,60.0")                        # a crash in the middle of a row
    with ResultsCSV(out, COLUMNS, mode="resume") as r:
        assert [row["input"] for row in r.rows] == ["a", "'-b"]
        assert r.is_done("a") and r.is_done("-b") and not r.is_done("c")
        r.append({"input": "c", "predicted_age": "60.00"})
    assert [row[0] for row in _read(out)] == ["input", "a", "'-b", "c"]
    with ResultsCSV(out, COLUMNS, mode="overwrite"):
        assert _read(out) == [COLUMNS]
    (tmp_path / "other.csv").write_text("x,y\n1,2\n")
    with pytest.raises(OutputError, match="header"):
        ResultsCSV(tmp_path / "other.csv", COLUMNS, mode="resume").open()


def test_results_csv_lock_refuses_a_second_process(tmp_path):
    out = tmp_path / "r.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom BrainAgeLib.outputs import ResultsCSV\n"
         f"r = ResultsCSV({str(out)!r}, ['input']).open()\nprint('held', flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(OutputLockedError, match="another run is writing"):
            ResultsCSV(out, ["input"], mode="resume").open()
        assert time.perf_counter() - t0 < 5
    finally:
        holder.kill()
        holder.wait()
    with ResultsCSV(out, ["input"], mode="resume") as r:   # the lock dies with its process
        r.append({"input": "a"})


def test_public_api_listed():
    for name in outputs.__all__:
        assert hasattr(outputs, name)


def test_new_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        with ResultsCSV(tmp_path / "r.csv", COLUMNS):
            pass
        atomic_write_image(_image(), tmp_path / "l.nii.gz")
    finally:
        os.umask(mask)
    for name in ("r.csv", "l.nii.gz"):     # not mkstemp's 0600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_signals_become_interrupted_and_are_restored():
    import signal
    old = outputs.catch_signals()
    try:
        with pytest.raises(outputs.Interrupted) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert stop.value.signum == signal.SIGTERM and outputs.signal_name(15) == "SIGTERM"
        assert not isinstance(stop.value, Exception)    # per-input `except Exception` lets it pass
    finally:
        outputs.restore_signals(old)
    assert signal.getsignal(signal.SIGTERM) == old[signal.SIGTERM]


def test_resume_never_cuts_a_file_that_is_not_ours(tmp_path):
    other = tmp_path / "notes.csv"
    other.write_bytes(b"name,value\nlast line without newline")
    with pytest.raises(OutputError, match="header"):
        ResultsCSV(other, COLUMNS, mode="resume").open()
    assert other.read_bytes() == b"name,value\nlast line without newline"
