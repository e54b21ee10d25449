"""The `brainage predict` contract (DESIGN.md): columns, exit codes, batches, labels, checksums."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import cli, models

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "Testing" / "data"
FIXTURES = sorted(DATA.glob("IXI*_T1.nii.gz"))
COLUMNS = ("input,predicted_age,predicted_age_volumes,predicted_age_cnn,interval_low,interval_high,"
           "chronological_age,brain_age_gap,gm_ml,wm_ml,csf_ml,tiv_ml,qc,seconds").split(",")


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "BrainAgeLib.cli", *args], capture_output=True,
                          text=True, encoding="utf-8", errors="replace", env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One CLI run over a folder: two real T1s and a corrupt file, with ages and labels."""
    assert len(FIXTURES) >= 2, "Testing/data must hold at least two IXI T1 fixtures"
    tmp = tmp_path_factory.mktemp("batch")
    folder = tmp / "scans"
    folder.mkdir()
    for f in FIXTURES[:2]:
        shutil.copy(f, folder / f.name)
    (folder / "broken_T1.nii.gz").write_bytes(b"\x1f\x8b\x08not really a gzip file" * 10)
    ages = tmp / "ages.csv"
    ages.write_text("subject_id,age\n" + "".join(f"{f.name[:-7]},{40 + i}\n" for i, f in enumerate(FIXTURES[:2])))
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    out = tmp / "results.csv"
    proc = run_cli("predict", str(folder), "--output", str(out), "--ages", str(ages),
                   "--labels-dir", str(tmp / "labels"))
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    return {"proc": proc, "rows": rows, "header": header, "tmp": tmp, "folder": folder, "before": before}


def test_columns_in_contract_order(batch):
    assert batch["header"] == COLUMNS
    assert cli.COLUMNS == COLUMNS


def test_corrupt_file_in_batch_fails_alone(batch):
    assert batch["proc"].returncode == 1, batch["proc"].stderr
    rows = {Path(r["input"]).name: r for r in batch["rows"]}
    assert len(rows) == 3
    bad = rows["broken_T1.nii.gz"]
    assert bad["qc"].startswith("error:") and "cannot read" in bad["qc"]
    assert bad["predicted_age"] == ""
    for f in FIXTURES[:2]:
        r = rows[f.name]
        assert not r["qc"].startswith("error"), r["qc"]
        age = float(r["predicted_age"])
        assert 15 < age < 95
        assert float(r["interval_low"]) < age < float(r["interval_high"])
        assert 900 < float(r["tiv_ml"]) < 2300
        assert abs(float(r["gm_ml"]) + float(r["wm_ml"]) + float(r["csf_ml"]) - float(r["tiv_ml"])) < 0.5
        chron = float(r["chronological_age"])
        assert abs(float(r["brain_age_gap"]) - (age - chron)) < 0.02


def test_inputs_unchanged(batch):
    after = {f.name: f.read_bytes() for f in batch["folder"].iterdir()}
    assert after == batch["before"]


def test_labels_on_input_grid(batch):
    for f in FIXTURES[:2]:
        lab_path = batch["tmp"] / "labels" / f.name.replace(".nii.gz", "_tissues.nii.gz")
        lab = sitk.ReadImage(str(lab_path))
        img = sitk.ReadImage(str(f))
        assert lab.GetSize() == img.GetSize()
        assert np.allclose(lab.GetOrigin(), img.GetOrigin(), atol=1e-3)
        assert np.allclose(lab.GetDirection(), img.GetDirection(), atol=1e-5)
        arr = sitk.GetArrayFromImage(lab)
        assert arr.dtype == np.uint8 and set(np.unique(arr)) == {0, 1, 2, 3}
        row = next(r for r in batch["rows"] if Path(r["input"]).name == f.name)
        gm_ml = (arr == 2).sum() * np.prod(lab.GetSpacing()) / 1000
        assert abs(gm_ml - float(row["gm_ml"])) < 0.2


def test_dlmuse_tissue_definition_changes_volumes_not_ages(batch, tmp_path):
    out = tmp_path / "dlmuse.csv"
    proc = run_cli("predict", str(FIXTURES[0]), "--tissues", "dlmuse", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="") as f:
        (row,) = list(csv.DictReader(f))
    own = next(r for r in batch["rows"] if Path(r["input"]).name == FIXTURES[0].name)
    assert row["predicted_age"] == own["predicted_age"]
    assert float(row["csf_ml"]) < 0.6 * float(own["csf_ml"])      # ventricles only
    assert float(row["wm_ml"]) > 1.15 * float(own["wm_ml"])


def test_all_good_exit_zero_and_summary(tmp_path):
    proc = run_cli("predict", str(FIXTURES[0]))
    assert proc.returncode == 0, proc.stderr
    assert "brain age" in proc.stdout and "years" in proc.stdout
    assert not list(tmp_path.iterdir())   # nothing written without --output


@pytest.mark.parametrize("args", [("predict",), ("predict", "--sample", "x.nii.gz"),
                                  ("predict", "a.nii.gz", "--ages", "/nonexistent/ages.csv"),
                                  ("predict", "a.nii.gz", "--device", "tpu"),
                                  ("predict", "a.nii.gz", "--tissues", "freesurfer"), ("frobnicate",),
                                  ("train-cnn", "--copies", "blur"), ("train-age-model", "--copies", ","),
                                  ("train-cnn", "--sites", "camcan", "--site-adversarial", "0.3"),
                                  ("train-cnn", "--second-copies", "thick"),
                                  ("train-cnn", "--contrast-consistency", "0.01", "--second-copies", "blur"),
                                  ("train-cnn", "--contrast-consistency", "0.01", "--second-anchored"),
                                  ("train-thick-slice-weights", "--from-arrays", "a", "--resume"),
                                  ("train-age-model", "--select", "test")])
def test_bad_arguments_exit_two(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "error" in proc.stderr.lower()


def test_sample_prints_plausible_age():
    proc = run_cli("predict", "--sample")
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "brain age" in l)
    age = float(line.split()[2])
    assert 18 <= age <= 90


def test_checksum_mismatch_names_the_file(tmp_path):
    folder = tmp_path / "Models"
    shutil.copytree(models.models_dir(), folder)
    with open(folder / "age_model.json", "r+b") as f:
        f.seek(10)
        f.write(b"9")
    with pytest.raises(models.ModelError, match="age_model.json"):
        models.verify("age_model.json", folder)
    (folder / "resunet.safetensors").unlink()
    with pytest.raises(models.ModelError, match="2 model files are damaged.*age_model.json.*resunet"):
        models.verify_all(folder)
    # a batch stops before its first scan, writes nothing and names every broken file
    out = tmp_path / "r.csv"
    proc = run_cli("predict", str(FIXTURES[0]), str(FIXTURES[1]), "-o", str(out),
                   env={"BRAINAGE_MODELS_DIR": str(folder)})
    assert proc.returncode == 1, proc.stderr
    assert "checksum mismatch" in proc.stderr and "age_model.json" in proc.stderr
    assert "model file missing" in proc.stderr and "resunet.safetensors" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    assert models.verify_all() == sorted(models.read_manifest()["files"])     # the shipped ones


def test_manifest_lists_every_shipped_file():
    manifest = models.read_manifest()
    shipped = {p.name for p in models.models_dir().iterdir() if p.name != "manifest.json"}
    assert shipped == set(manifest["files"])
    for name in manifest["files"]:
        models.verify(name)


def test_site_offset_from_controls_then_applied(batch, tmp_path):
    """`brainage site-offset` fits a scanner's offset from a predict CSV of controls;
    `predict --site-offset` subtracts it from every age."""
    controls = tmp_path / "controls.csv"
    with open(controls, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for pred, age in ((50, 40), (52, 45), (47, 41), (61, 50), (55, 46), (49, 44)):
            w.writerow({**{c: "" for c in COLUMNS}, "input": f"s{age}.nii.gz", "predicted_age": pred,
                        "chronological_age": age, "qc": "ok"})
        w.writerow({**{c: "" for c in COLUMNS}, "input": "bad.nii.gz", "qc": "error: corrupt"})
    site = tmp_path / "site.json"
    assert cli.main(["site-offset", str(controls), "--output", str(site)]) == 0
    assert json.loads(site.read_text())["offset_years"] == pytest.approx(8.0)
    # an offset within two standard errors of 0 is written too, with a warning
    noisy = tmp_path / "noisy.csv"
    with open(noisy, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for gap, age in ((-6, 40), (5, 45), (1, 41), (-3, 50), (7, 46), (-2, 44)):
            w.writerow({**{c: "" for c in COLUMNS}, "input": f"n{age}.nii.gz", "predicted_age": age + gap,
                        "chronological_age": age, "qc": "ok"})
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["site-offset", str(noisy), "--output", str(tmp_path / "noisy.json")]) == 0
    assert "within two standard errors" in err.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["site-offset", str(controls), "--output", str(tmp_path / "again.json")]) == 0
    assert "standard errors" not in err.getvalue()
    # too few controls: a clear error, exit 1
    assert cli.main(["site-offset", str(batch["tmp"] / "results.csv"), "-o", str(tmp_path / "x.json")]) == 1
    out = tmp_path / "moved.csv"
    fixture = batch["folder"] / FIXTURES[0].name
    assert cli.main(["predict", str(fixture), "--site-offset", str(site), "--output", str(out), "-q"]) == 0
    moved = next(csv.DictReader(out.open()))
    before = next(r for r in batch["rows"] if Path(r["input"]).name == FIXTURES[0].name)
    for col in ("predicted_age", "predicted_age_volumes", "predicted_age_cnn", "interval_low"):
        assert float(moved[col]) == pytest.approx(float(before[col]) - 8.0, abs=0.02)
    assert moved["gm_ml"] == before["gm_ml"]
    with pytest.raises(SystemExit) as bad:          # not a site-offset file: bad argument
        cli.main(["predict", str(fixture), "--site-offset", str(controls)])
    assert bad.value.code == 2


def test_ages_csv_from_a_spreadsheet(tmp_path):
    """An ages CSV saved by a spreadsheet (UTF-8 with BOM, non-ASCII names) is read as is."""
    f = tmp_path / "ages.csv"
    f.write_bytes("subject_id,age\r\nMüller_01,63.5\r\nIXI014,34.24\r\n".encode("utf-8-sig"))
    ages = cli.read_ages(str(f))
    assert ages == {"Müller_01": 63.5, "IXI014": 34.24}
    assert cli.match_age(ages, "/data/Müller_01.nii.gz") == 63.5
    assert cli.match_age(ages, "/data/Müller_01_T1.nii.gz") is None     # never a prefix


def test_calibrate_site_offset_only_matches_site_offset_on_the_predict_csv(tmp_path):
    """`calibrate-site --offset-only` on five controls' scans writes the same offset (years) as
    `site-offset` fitted on their `predict` CSV, and predict reads it back."""
    from BrainAgeLib.calibration import load_site_calibration
    from BrainAgeLib.io import read_image
    from BrainAgeLib.regression import SiteOffset
    folder = tmp_path / "controls"
    folder.mkdir()
    heads = [read_image(f) for f in FIXTURES[:2]]
    scans = {"c1_T1": heads[0], "c2_T1": heads[1], "c3_T1": sitk.Flip(heads[0], [True, False, False]),
             "c4_T1": sitk.Flip(heads[1], [True, False, False]), "c5_T1": sitk.Cast(heads[0], sitk.sitkFloat32) * 1.3}
    for name, img in scans.items():
        sitk.WriteImage(img, str(folder / f"{name}.nii.gz"))
    ages = tmp_path / "ages.csv"
    ages.write_text("subject_id,age\n" + "".join(f"{n},{30 + 2 * i}\n" for i, n in enumerate(scans)))
    proc = run_cli("calibrate-site", str(folder), "--ages", str(ages), "--offset-only", "--output",
                   str(tmp_path / "offset.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Hodges-Lehmann gap of 5 controls" in proc.stdout
    direct = load_site_calibration(tmp_path / "offset.json")
    assert isinstance(direct, SiteOffset) and direct.n == 5
    proc = run_cli("predict", str(folder), "--ages", str(ages), "--output", str(tmp_path / "controls.csv"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("site-offset", str(tmp_path / "controls.csv"), "--output", str(tmp_path / "from_csv.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from_csv = load_site_calibration(tmp_path / "from_csv.json")
    assert direct.offset == pytest.approx(from_csv.offset, abs=0.02)    # the CSV rounds ages to 0.01
    assert direct.mad == pytest.approx(from_csv.mad, abs=0.02)
