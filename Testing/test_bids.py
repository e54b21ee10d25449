"""brainage bids without predicting: discovery (pybids), labels, filter file, ages, refusals, the
derivative's top-level files, group level. The runs on real scans are in test_cohort.py."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from bids_fixture import AGES, SCANS, make_dataset
from BrainAgeLib import bids, bids_group, cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("bids") / "ds")


def main_exit(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_finds_every_run_and_session_with_its_age(dataset):
    scans = bids.find_scans(dataset)
    assert [s.relpath for s in scans] == sorted(SCANS)
    assert bids.read_sexes(dataset) == {"01": "F", "02": "M"}
    assert {s.subject: s.sex for s in scans} == {"01": "F", "02": "M"}
    assert {s.relpath: s.age for s in scans} == AGES      # sessions.tsv wins over participants.tsv
    one = {s.relpath: s for s in scans}["sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz"]
    assert (one.subject, one.session, one.entities["run"]) == ("01", "2", "1")
    assert one.prefix == "sub-01/ses-2/anat/sub-01_ses-2_run-1"
    assert os.path.isabs(one.path) and os.path.exists(one.path)


def test_participant_and_session_labels(dataset):
    assert [s.subject for s in bids.find_scans(dataset, ["sub-02"])] == ["02"]
    assert [s.session for s in bids.find_scans(dataset, ["01"])] == ["1", "2"]
    assert [s.relpath for s in bids.find_scans(dataset, None, ["ses-2"])] == [
        "sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz"]


def test_filter_file_as_fmriprep(dataset, tmp_path):
    f = tmp_path / "filter.json"
    f.write_text(json.dumps({"t1w": {"run": None}, "bold": {"task": "rest"}}))   # null: no run entity
    assert [s.relpath for s in bids.find_scans(dataset, filter_file=f)] == [
        "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz"]
    f.write_text(json.dumps({"t1w": {"session": "2"}}))
    assert len(bids.find_scans(dataset, filter_file=f)) == 1
    f.write_text("[1, 2]")
    with pytest.raises(bids.BidsError, match="must hold an object"):
        bids.find_scans(dataset, filter_file=f)
    f.write_text("{not json")
    with pytest.raises(bids.BidsError, match="not valid JSON"):
        bids.find_scans(dataset, filter_file=f)


@pytest.mark.parametrize("args, message", [
    (["--participant-label", "03"], "no subject sub-03"),
    (["--session-label", "9"], "no session ses-9"),
    (["--bids-filter-file", "missing.json"], "cannot read missing.json"),
])
def test_bad_labels_exit_2_before_any_work(dataset, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, err = main_exit(["bids", dataset, out, "participant", *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_refuses_unusable_folders(dataset, tmp_path, capsys):
    code, err = main_exit(["bids", tmp_path, tmp_path / "out", "participant"], capsys)
    assert code == 2 and "not a BIDS dataset" in err
    code, err = main_exit(["bids", dataset, dataset, "participant"], capsys)
    assert code == 2 and "would hold the BIDS dataset itself" in err
    code, err = main_exit(["bids", dataset, dataset / "sub-01" / "out", "participant"], capsys)
    assert code == 2 and "outside derivatives/" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset_description.json").write_text(json.dumps({"Name": "x", "GeneratedBy": [{"Name": "fmriprep"}]}))
    code, err = main_exit(["bids", dataset, other, "participant"], capsys)
    assert code == 2 and "holds another dataset" in err
    code, err = main_exit(["bids", dataset, tmp_path / "g", "group", "--participant-label", "01"], capsys)
    assert code == 2 and "no labels" in err
    code, err = main_exit(["bids", dataset, tmp_path / "g", "participant", "--workers", "0"], capsys)
    assert code == 2 and "at least 1" in err


def test_ages_must_be_numbers(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    (ds / "participants.tsv").write_text("participant_id\tage\nsub-01\tn/a\nsub-02\tforty\n")
    with pytest.raises(bids.BidsError, match=r"participants.tsv line 3: age 'forty'"):
        bids.find_scans(ds)
    (ds / "participants.tsv").write_text("participant_id\tage\nsub-01\tn/a\nsub-02\tn/a\n")
    ages = {s.relpath: s.age for s in bids.find_scans(ds)}
    assert ages["sub-02/anat/sub-02_T1w.nii.gz"] is None                       # n/a: no age
    assert ages["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"] == 49.5            # sessions.tsv


def test_top_level_files(dataset, tmp_path):
    out = bids.prepare_output(dataset, tmp_path / "derivatives" / "brainage")
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "brainage" and gen["Version"] and gen["CodeURL"].startswith("https://")
    assert desc["SourceDatasets"][0]["URL"] == dataset.resolve().as_uri()
    lut = (out / "desc-brainage_dseg.tsv").read_text().splitlines()
    assert lut[0].split("\t")[:3] == ["index", "name", "abbreviation"]
    assert [line.split("\t")[2] for line in lut[1:]] == ["BG", "CSF", "GM", "WM"]
    assert "/figures" in (out / ".bidsignore").read_text()
    bids.prepare_output(dataset, out)      # a second run on its own derivative is fine


def test_group_level_from_rows(dataset, tmp_path):
    """The cohort table and figures from per-scan tables (one failed scan among them)."""
    out = bids.prepare_output(dataset, tmp_path / "d")
    scans = bids.find_scans(dataset)
    for i, s in enumerate(scans):
        row = {c: "" for c in bids.SCAN_COLUMNS}
        row.update(participant_id=f"sub-{s.subject}", source=s.relpath, qc="ok",
                   predicted_age=f"{50 + i:.2f}", chronological_age=f"{s.age:.2f}",
                   brain_age_gap=f"{50 + i - s.age:.2f}")
        if i == 2:
            row.update(predicted_age="", brain_age_gap="", qc="error: cannot read")
        tsv = bids.scan_outputs(out, s)["tsv"]
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(bids._tsv(bids.SCAN_COLUMNS, [row]))
    summary = bids_group.write_group(out)
    assert summary["scans"] == 3 and summary["qc"] == {"ok": 2, "error": 1} and summary["with_age"] == 2
    lines = (out / "brainage.tsv").read_text().splitlines()
    assert lines[0].split("\t") == bids.SCAN_COLUMNS and len(lines) == 4
    assert [line.split("\t")[2] for line in lines[1:]] == sorted(SCANS)
    assert "n/a" in lines[3]        # the failed scan's empty cells
    for f in ("brainage_vs_age.png", "brainage_gap.png", "brainage_qc.png"):
        assert (out / "figures" / f).read_bytes()[:4] == b"\x89PNG"
    html = (out / "reports" / "cohort_report.html").read_text()    # the cohort report (issue 15)
    assert (out / "reports" / "cohort_report.pdf").read_bytes()[:4] == b"%PDF"
    assert "Brain age cohort report (3 scans)" in html and "error: cannot read" in html
    assert summary["report"]["html"].endswith("cohort_report.html")
    linked = bids.report_path(out, scans[0])          # a scan report from --report
    linked.write_text("<html></html>")
    bids_group.write_group(out, dataset)
    html = (out / "reports" / "cohort_report.html").read_text()
    assert f'href="{linked.name}"' in html and html.count("_report.html") == 1
    assert "/reports" in (out / ".bidsignore").read_text()
    bids_group.write_group(out, report=False)
    shutil.rmtree(out / "sub-01")
    shutil.rmtree(out / "sub-02")
    with pytest.raises(bids.BidsError, match="run the participant level first"):
        bids_group.write_group(out)
