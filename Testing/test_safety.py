"""`brainage predict` loses nothing and mismatches nothing: outputs never touch inputs, label maps
are unique, the CSV is always whole rows, a second run on one --output is refused, a killed batch
resumes to the CSV of an uninterrupted one, ages match exactly, site offsets are validated."""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from BrainAgeLib import cli
from BrainAgeLib.ages import AgesError, match_age, parse_ages

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "Testing" / "data").glob("IXI*_T1.nii.gz"))


def run_cli(*args, cwd=None, **popen):
    return subprocess.run([sys.executable, "-m", "BrainAgeLib.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, **popen)


def start_cli(*args, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "BrainAgeLib.cli", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows_of(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def main_exit(args, capsys) -> tuple[int, str]:
    """``cli.main`` in this process: (exit status, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- --ages

def test_ages_match_exactly_never_by_prefix():
    ages = {"sub-1": 50.0, "IXI013": 30.0, "scan_T1": 40.0, "scan_T1.nii.gz": 41.0,
            "/data/x/scan_T1.nii.gz": 42.0}
    assert match_age(ages, "/d/sub-10_T1w.nii.gz") is None           # was sub-1's 50
    assert match_age(ages, "/d/sub-1_ses-2_T1w.nii.gz") == 50.0       # BIDS entity
    assert match_age(ages, "/bids/sub-1/anat/T1w.nii.gz") == 50.0     # BIDS folder
    assert match_age(ages, "/bids/sub-10/anat/T1w.nii.gz") is None
    assert match_age(ages, "/d/IXI013-HH-1212_T1.nii.gz") is None     # a prefix, not an id
    assert match_age(ages, "/data/x/scan_T1.nii.gz") == 42.0          # whole path first
    assert match_age(ages, "/data/./x/../x/scan_T1.nii.gz") == 42.0
    assert match_age(ages, "/elsewhere/scan_T1.nii.gz") == 41.0       # then file name
    assert match_age(ages, "/elsewhere/scan_T1.nrrd") == 40.0         # then the stem


@pytest.mark.parametrize("table, message", [
    ("id,age\nsub-01,40\nsub-02,41\nsub-01,42\n", "line 4: id 'sub-01' is already on line 2"),
    ("id,age\nsub-01,forty\n", "line 2: age 'forty' of 'sub-01' is not a number"),
    ("id,age\nsub-01,40\nsub-02,nan\n", "line 3: age 'nan' of 'sub-02' is not a finite number"),
    ("id,age\nsub-01,inf\n", "line 2: age 'inf'"),
    ("id,age\nsub-01,-3\n", "line 2: age -3 of 'sub-01' is outside 0-120 years"),
    ("id,age\nsub-01,130.5\n", "line 2: age 130.5"),
    ("id,age\n,40\n", "line 2: empty id"),
    ("id,age\nsub-01,40,extra\n", "line 2: 3 cells"),
    ("name,years\na,1\n", "needs an 'age' column"),
    ("", "is empty"),
])
def test_bad_ages_tables_name_the_line(table, message):
    with pytest.raises(AgesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_ages(table)


def test_bids_participants_tsv_and_missing_ages():
    ages = parse_ages("participant_id\tage\tsex\nsub-01\t40.5\tF\nsub-02\tn/a\tM\nsub-03\t\tM\n")
    assert ages == {"sub-01": 40.5}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_ages_or_a_clear_error(text):
    try:
        ages = parse_ages(text)
    except AgesError as e:
        assert "line" in str(e) or "column" in str(e) or "empty" in str(e)
        return
    assert all(0 <= a <= 120 for a in ages.values())


_cell = st.one_of(st.text(max_size=8), st.floats(allow_nan=True).map(repr),
                  st.integers(-5, 200).map(str), st.sampled_from(["n/a", "", "inf", "1e3", " 7 "]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_cell, _cell), max_size=8), st.sampled_from([",", "\t"]))
def test_generated_tables_give_rows_or_a_clear_error(rows, sep):
    buf = [sep.join(["subject_id", "age"])]
    for ident, age in rows:
        buf.append(sep.join(f'"{c}"' if sep in c or '"' in c or "\n" in c or "\r" in c else c
                            for c in (ident, age)))
    try:
        ages = parse_ages("\n".join(buf) + "\n")
    except AgesError as e:
        assert str(e)
        return
    kept = [i.strip() for i, a in rows if a.strip().lower() not in ("", "n/a")]
    assert sorted(ages) == sorted(kept)
    assert all(np.isfinite(a) and 0 <= a <= 120 for a in ages.values())


def test_bad_ages_exit_two_before_any_work(tmp_path, capsys):
    table = tmp_path / "ages.csv"
    table.write_text("subject_id,age\nsub-01,40\nsub-01,41\n")
    code, err = main_exit(["predict", FIXTURES[0], "--ages", table, "-o", tmp_path / "r.csv"], capsys)
    assert code == 2 and "line 3" in err and "Traceback" not in err
    assert not (tmp_path / "r.csv").exists()


# --------------------------------------------------------------------------- --site-offset

@pytest.mark.parametrize("text, field", [
    ("[1, 2]", "JSON object"),
    ('{"type": "SiteOffset", "offset_years": NaN, "n_controls": 10}', "NaN is not valid JSON"),
    ('{"type": "SiteOffset", "offset_years": 1e308, "n_controls": 10}', "'offset_years'"),
    ('{"type": "SiteOffset", "offset_years": 2.0, "n_controls": -4}', "'n_controls'"),
    ('{"type": "SiteOffset", "offset_years": "2", "n_controls": 10}', "'offset_years' must be a number"),
    ('{"type": "SiteOffset", "n_controls": 10}', "'offset_years' is missing"),
    ('{"type": "SiteOffset", "offset_years": 2, "n_controls": 10, "mad_years": -1}', "'mad_years'"),
    ('{"type": "SiteOffset", "offset_years": 2, "n_controls": true}', "'n_controls'"),
    ('{"type": "Other"}', "not a BrainAge site-offset file"),
])
def test_bad_site_offset_names_the_field(tmp_path, capsys, text, field):
    f = tmp_path / "site.json"
    f.write_text(text)
    code, err = main_exit(["predict", FIXTURES[0], "--site-offset", f, "-o", tmp_path / "r.csv"], capsys)
    assert code == 2 and field in err and "Traceback" not in err, err
    assert not (tmp_path / "r.csv").exists()


# --------------------------------------------------------------------------- refusals before work

def test_output_naming_an_input_is_refused(tmp_path, capsys):
    scan = tmp_path / "scan.nii.gz"
    shutil.copyfile(FIXTURES[0], scan)
    before = scan.read_bytes()
    code, err = main_exit(["predict", scan, "--output", scan], capsys)
    assert code == 2 and "is the input" in err
    assert scan.read_bytes() == before


def test_labels_over_an_input_are_refused(tmp_path, capsys):
    for name in ("x.nii.gz", "x_tissues.nii.gz"):
        shutil.copyfile(FIXTURES[0], tmp_path / name)
    before = (tmp_path / "x_tissues.nii.gz").read_bytes()
    code, err = main_exit(["predict", tmp_path / "x.nii.gz", tmp_path / "x_tissues.nii.gz",
                           "--labels-dir", tmp_path], capsys)
    assert code == 2 and "x_tissues.nii.gz is the input" in err
    assert (tmp_path / "x_tissues.nii.gz").read_bytes() == before
    (tmp_path / "x_tissues.nii.gz").unlink()
    code, err = main_exit(["predict", tmp_path, "--labels-dir", tmp_path], capsys)   # the folder
    assert code == 2 and "later run would read it as a scan" in err


def test_labels_dir_that_is_a_file_exits_two(tmp_path, capsys):
    (tmp_path / "labels").write_text("a file")
    code, err = main_exit(["predict", FIXTURES[0], "--labels-dir", tmp_path / "labels"], capsys)
    assert code == 2 and "is a file, not a folder" in err and "Traceback" not in err


def test_existing_output_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "r.csv"
    out.write_text("precious results\n")
    code, err = main_exit(["predict", FIXTURES[0], "-o", out], capsys)
    assert code == 2 and "--resume" in err and "--overwrite" in err
    assert out.read_text() == "precious results\n"
    code, err = main_exit(["predict", FIXTURES[0], "-o", out, "--resume"], capsys)
    assert code == 2 and "header" in err                    # not a brainage CSV: not resumed
    assert out.read_text() == "precious results\n"


def test_formula_like_names_are_escaped(tmp_path):
    names = ["=1+2.nii.gz", "@SUM(A1).nii.gz", "+x.nii.gz", "-x.nii.gz"]
    for n in names:
        (tmp_path / n).write_bytes(b"not an image")
    proc = run_cli("predict", "-q", "-o", "r.csv", "--", *names, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    raw = (tmp_path / "r.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in raw] == ["'" + n for n in names]


# --------------------------------------------------------------------------- real batches

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two real T1s with one name in two folders, a corrupt file, ages by a prefix id; run once
    uninterrupted while a second run tries the same --output."""
    tmp = tmp_path_factory.mktemp("cohort")
    for folder, src in (("a", FIXTURES[0]), ("b", FIXTURES[1])):
        (tmp / folder).mkdir()
        shutil.copyfile(src, tmp / folder / "sub-10_T1w.nii.gz")
    (tmp / "b" / "broken_T1w.nii.gz").write_bytes(b"\x1f\x8b\x08 not a gzip file" * 10)
    (tmp / "ages.csv").write_text("subject_id,age\nsub-1,50\n")

    def command(out, labels, *extra):
        return ["predict", tmp / "a", tmp / "b", "--output", out, "--labels-dir", labels,
                "--ages", tmp / "ages.csv", "-q", *extra]
    t0 = time.perf_counter()
    first = start_cli(*command(tmp / "base.csv", tmp / "labels"))
    while not (tmp / "base.csv").exists() and first.poll() is None:
        time.sleep(0.05)
    second = run_cli(*command(tmp / "base.csv", tmp / "labels2"))
    out, err = first.communicate(timeout=600)
    seconds = time.perf_counter() - t0
    return {"tmp": tmp, "command": command, "first": (first.returncode, err), "second": second,
            "seconds": seconds, "rows": rows_of(tmp / "base.csv")}


def test_two_runs_cannot_share_an_output(cohort):
    code, err = cohort["first"]
    assert code == 1, err                        # the corrupt file fails alone
    second = cohort["second"]
    assert second.returncode == 2 and "another run is writing" in second.stderr
    assert "Traceback" not in second.stderr
    inputs = [Path(r["input"]).relative_to(cohort["tmp"]).as_posix() for r in cohort["rows"]]
    assert inputs == ["a/sub-10_T1w.nii.gz", "b/broken_T1w.nii.gz", "b/sub-10_T1w.nii.gz"]
    assert not (cohort["tmp"] / "labels2").exists() or not any((cohort["tmp"] / "labels2").iterdir())


def test_same_name_in_two_folders_keeps_both_label_maps(cohort):
    labels = cohort["tmp"] / "labels"
    found = sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*") if p.is_file())
    assert found == ["a/sub-10_T1w_tissues.nii.gz", "b/sub-10_T1w_tissues.nii.gz"]
    for r in cohort["rows"]:
        if "sub-10" in r["input"]:
            rel = Path(r["input"]).relative_to(cohort["tmp"]).parent
            lab = sitk.ReadImage(str(labels / rel / "sub-10_T1w_tissues.nii.gz"))
            gm_ml = (sitk.GetArrayViewFromImage(lab) == 2).sum() * np.prod(lab.GetSpacing()) / 1000
            assert abs(gm_ml - float(r["gm_ml"])) < 0.2


def test_prefix_id_gives_no_age(cohort):
    for r in cohort["rows"]:
        assert r["chronological_age"] == "" and r["brain_age_gap"] == ""   # sub-1 is not sub-10


def test_killed_batch_resumes_to_the_uninterrupted_csv(cohort):
    tmp, command = cohort["tmp"], cohort["command"]
    rng = random.Random()
    seed = rng.randrange(10**6)
    # at most 0.6 of the uninterrupted run: the suite runs in two processes (make test), so this
    # run can be faster than the one it is timed against
    delay = random.Random(seed).uniform(0.1, 0.6) * cohort["seconds"]
    out, labels = tmp / "killed.csv", tmp / "labels_killed"
    proc = start_cli(*command(out, labels))
    time.sleep(delay)
    assert proc.poll() is None, f"finished before the kill (seed {seed}, delay {delay:.1f} s)"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    info = f"seed {seed}, SIGTERM after {delay:.1f} s of {cohort['seconds']:.1f} s; stderr: {err}"
    assert proc.returncode == 143, info
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("brainage: stopped by SIGTERM")
    base = without_seconds(cohort["rows"])
    if out.exists():                             # whole rows only: a prefix of the full run
        with open(out, newline="") as f:
            assert next(csv.reader(f)) == cli.COLUMNS, info
        assert without_seconds(rows_of(out)) == base[:len(rows_of(out))], info
    for folder in (tmp, labels):
        if folder.exists():
            assert hidden_files(folder) == [], info        # no temporary file left
    again = run_cli(*command(out, labels, "--resume"))
    assert again.returncode == 1, again.stderr
    assert without_seconds(rows_of(out)) == base, info
    for name in ("a", "b"):
        lab, ref = (sitk.ReadImage(str(d / name / "sub-10_T1w_tissues.nii.gz")) for d in (labels, tmp / "labels"))
        assert np.array_equal(sitk.GetArrayViewFromImage(lab), sitk.GetArrayViewFromImage(ref)), info


def test_sigint_during_the_first_scan(tmp_path):
    out, labels = tmp_path / "r.csv", tmp_path / "labels"
    proc = start_cli("predict", FIXTURES[0], "-o", out, "--labels-dir", labels)
    while not out.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("brainage: stopped by SIGINT during")
    assert "--resume" in lines[-1]
    assert out.read_text().splitlines() == [",".join(cli.COLUMNS)]   # a valid CSV, no partial row
    assert hidden_files(tmp_path) == [] and (not labels.exists() or not any(labels.rglob("*.nii.gz")))


def test_unwritable_labels_keep_the_age(tmp_path, capsys, monkeypatch):
    labels = tmp_path / "labels"
    labels.mkdir()
    labels.chmod(0o500)
    if os.access(labels, os.W_OK):          # root ignores permissions: make the writer refuse
        def refuse(image, name, useCompression=True):
            raise PermissionError(13, "Permission denied", name)
        monkeypatch.setattr(sitk, "WriteImage", refuse)
    out = tmp_path / "r.csv"
    code, err = main_exit(["predict", FIXTURES[0], "-o", out, "--labels-dir", labels, "-q"], capsys)
    labels.chmod(0o700)
    assert code == 1, err
    (row,) = rows_of(out)
    assert 15 < float(row["predicted_age"]) < 95
    assert "label map not written" in row["qc"] and "Permission denied" in row["qc"]
    assert "1 label map(s) not written" in err
    assert list(labels.iterdir()) == []
