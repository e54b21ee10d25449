"""Cohorts on Dask: brainage bids and predict on a 2-worker LocalCluster against the serial run,
a worker killed mid-scan, a resumed run, and the BIDS validator's verdict on the derivative.

One module fixture does the expensive runs once (real scans, shipped models):
1. ``brainage predict`` in this process, one scan after another: the reference;
2. a 2-worker LocalCluster; ``brainage bids ... --scheduler`` on it while a watcher thread
   SIGKILLs the worker process that is in the middle of a scan;
3. ``brainage predict --scheduler`` on two of the scans (same cluster).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from bids_fixture import AGES, SCANS, make_dataset
from BrainAgeLib import bids, cli, cohort

AGE_COLUMNS = ("predicted_age", "predicted_age_volumes", "predicted_age_cnn", "interval_low",
               "interval_high")
VOLUME_COLUMNS = ("gm_ml", "wm_ml", "csf_ml", "tiv_ml")


def read_csv(path, delimiter=","):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


@contextmanager
def worker_threads():
    """This process with a worker's thread settings (torch and SimpleITK: 1 thread). ITK's
    multi-threaded registration sums in thread order, so a scan's numbers depend (by up to a
    few hundredths of a year) on the thread count; with the same count they are identical."""
    import SimpleITK as sitk
    import torch
    old = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    cohort.limit_threads(cohort.THREADS_PER_WORKER)
    try:
        yield
    finally:
        torch.set_num_threads(old[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old[1])


def run_main(argv) -> int:
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


class Killer(threading.Thread):
    """SIGKILL the worker process that has been running a scan for ``after`` seconds (once)."""

    def __init__(self, client, pids: dict[str, int], after: float = 2.0):
        super().__init__(daemon=True)
        self.client, self.pids, self.after = client, pids, after
        self.killed: tuple[str, str] | None = None      # (worker address, task key)
        self.stop = threading.Event()

    def run(self):
        first_seen: dict[tuple[str, str], float] = {}
        while not self.stop.is_set() and self.killed is None:
            try:
                processing = self.client.processing()
            except Exception:
                return
            now = time.monotonic()
            for addr, keys in processing.items():
                for key in keys:
                    since = first_seen.setdefault((addr, key), now)
                    if now - since > self.after and addr in self.pids:
                        os.kill(self.pids[addr], signal.SIGKILL)
                        self.killed = (addr, key)
                        return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from distributed import Client
    tmp = tmp_path_factory.mktemp("cohort")
    ds = make_dataset(tmp / "ds")
    serial_csv = tmp / "serial.csv"
    with worker_threads():
        assert run_main(["predict", *[ds / rel for rel in sorted(SCANS)], "-o", serial_csv, "-q"]) == 0
    out = ds / "derivatives" / "brainage"
    cluster = cohort.local_cluster(2)
    client = Client(cluster)
    try:
        pids = client.run(os.getpid)
        killer = Killer(client, pids)
        killer.start()
        t0 = time.monotonic()
        code = run_main(["bids", ds, out, "participant", "--scheduler", cluster.scheduler_address, "-q"])
        bids_seconds = time.monotonic() - t0
        killer.stop.set()
        killer.join()
        client.wait_for_workers(2, timeout=120)
        threads = client.run(lambda: __import__("torch").get_num_threads())
        pids_after = client.run(os.getpid)
        dask_csv = tmp / "dask.csv"
        two = [ds / rel for rel in sorted(SCANS)[:2]]
        predict_code = run_main(["predict", *two, "-o", dask_csv, "-q", "--scheduler", cluster.scheduler_address])
    finally:
        client.close()
        cluster.close()
    group_code = run_main(["bids", ds, out, "group"])
    return {"ds": ds, "out": out, "code": code, "serial": {r["input"]: r for r in read_csv(serial_csv)},
            "killed": killer.killed, "pids": pids, "pids_after": pids_after, "threads": threads,
            "dask_predict": (predict_code, read_csv(dask_csv)), "group_code": group_code,
            "bids_seconds": bids_seconds}


def scan_rows(out: Path) -> dict[str, dict]:
    rows = {}
    for tsv in sorted(out.glob("sub-*/**/*_brainage.tsv")):
        (row,) = read_csv(tsv, delimiter="\t")
        assert row["source"] not in rows, f"{row['source']} twice"
        rows[row["source"]] = row
    return rows


def assert_same_values(row: dict, ref: dict) -> None:
    """The same ages and volumes as the serial run (same thread settings: identical)."""
    assert {c: row[c] for c in AGE_COLUMNS + VOLUME_COLUMNS} == {c: ref[c] for c in AGE_COLUMNS + VOLUME_COLUMNS}


def test_worker_killed_mid_scan_loses_nothing(runs):
    assert runs["killed"] is not None, "the watcher never saw a scan in progress"
    addr, key = runs["killed"]
    assert runs["pids"][addr] not in runs["pids_after"].values()     # that process is gone
    assert runs["code"] == 0
    rows = scan_rows(runs["out"])
    assert sorted(rows) == sorted(SCANS)                              # every scan, exactly once
    assert all(r["qc"] == "ok" for r in rows.values())


def test_bids_values_equal_serial_predict(runs):
    rows = scan_rows(runs["out"])
    for rel, row in rows.items():
        ref = runs["serial"][str(runs["ds"] / rel)]
        assert_same_values(row, ref)
        assert float(row["chronological_age"]) == AGES[rel]
        assert abs(float(row["brain_age_gap"]) - (float(row["predicted_age"]) - AGES[rel])) < 0.011


def test_predict_on_workers_equals_serial(runs):
    code, rows = runs["dask_predict"]
    assert code == 0 and len(rows) == 2 and len({r["input"] for r in rows}) == 2
    for r in rows:
        assert_same_values(r, runs["serial"][r["input"]])


def test_each_worker_uses_one_torch_thread(runs):
    assert set(runs["threads"].values()) == {cohort.THREADS_PER_WORKER}
    assert len(runs["threads"]) == 2                                  # the killed one was restarted


def test_derivative_files(runs):
    out = runs["out"]
    for rel in SCANS:
        scan = next(s for s in bids.find_scans(runs["ds"]) if s.relpath == rel)
        files = bids.scan_outputs(out, scan)
        assert all(p.exists() for p in files.values()), files
        import SimpleITK as sitk
        labels = sitk.ReadImage(str(files["dseg"]))
        source = sitk.ReadImage(scan.path)
        assert labels.GetSize() == source.GetSize() and labels.GetPixelID() == sitk.sitkUInt8
        sidecar = json.loads(files["json"].read_text())
        assert sidecar["predicted_age"]["Units"] == "year" and sidecar["gm_ml"]["Units"] == "ml"
        assert json.loads(files["dseg_json"].read_text())["Sources"] == [f"bids:raw:{rel}"]
    assert not list(out.rglob(".*.tmp*"))                             # no temporary file left
    assert runs["group_code"] == 0
    group = read_csv(out / "brainage.tsv", delimiter="\t")
    assert [r["source"] for r in group] == sorted(SCANS)
    assert sorted((out / "figures").iterdir())


def test_bids_validator_accepts_the_derivative(runs):
    validator = Path(sys.executable).parent / "bids-validator-deno"
    assert validator.exists(), "make setup installs bids-validator-deno (requirements-test.txt)"
    proc = subprocess.run([str(validator), "--format", "json", str(runs["out"])], capture_output=True,
                          text=True, timeout=300)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    errors = [(i["code"], i.get("location")) for i in issues if i["severity"] == "error"]
    assert errors == [] and proc.returncode == 0, errors
    assert {i["code"] for i in issues} <= {"TOO_FEW_AUTHORS", "SIDECAR_KEY_RECOMMENDED"}


def test_resumed_run_does_no_work_twice(runs, tmp_path, capsys):
    """A copy of the derivative whose run was stopped after one scan's label map but before its
    table: the next run redoes that scan only, leaves the others' files untouched, and ends with
    the uninterrupted run's table."""
    out = tmp_path / "brainage"
    shutil.copytree(runs["out"], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    redo = next(s for s in bids.find_scans(runs["ds"]) if s.subject == "02")
    files = bids.scan_outputs(out, redo)
    files["tsv"].unlink()
    with worker_threads():
        assert run_main(["bids", runs["ds"], out, "participant", "-q"]) == 0
    err = capsys.readouterr().err
    assert "3 T1w scan(s)" in err and "2 already in" in err and "1 to do" in err
    changed = {p for p, t in before.items() if p.exists() and p.stat().st_mtime_ns != t}
    assert changed <= set(files.values())                               # only the redone scan's files
    assert files["tsv"].exists()
    assert_same_values(read_csv(files["tsv"], "\t")[0], scan_rows(runs["out"])[redo.relpath])
    assert run_main(["bids", runs["ds"], out, "participant", "-q"]) == 0      # nothing left to do
    assert "0 to do" in capsys.readouterr().err
    assert run_main(["bids", runs["ds"], out, "group"]) == 0
    resumed, whole = (read_csv(d / "brainage.tsv", "\t") for d in (out, runs["out"]))
    for r in resumed + whole:
        r.pop("seconds")
    assert resumed == whole


def test_participant_report_and_cohort_report(runs, tmp_path, capsys):
    """``participant --report`` on a finished derivative writes the missing one-page report (the
    scan is redone, its numbers unchanged); the group level's cohort report links it."""
    out = tmp_path / "brainage"
    shutil.copytree(runs["out"], out)
    scan = next(s for s in bids.find_scans(runs["ds"]) if s.subject == "02")
    with worker_threads():
        assert run_main(["bids", runs["ds"], out, "participant", "--participant-label", "02",
                         "--report", "-q"]) == 0
    assert "1 to do" in capsys.readouterr().err
    report = bids.report_path(out, scan)
    assert report.name == "sub-02_T1w_report.html" and report.with_suffix(".pdf").exists()
    row = read_csv(bids.scan_outputs(out, scan)["tsv"], "\t")[0]
    html = report.read_text()
    assert f'data-field="predicted_age">{float(row["predicted_age"]):.2f}<' in html and "<th>Sex</th><td>male</td>" in html
    assert_same_values(row, scan_rows(runs["out"])[scan.relpath])
    assert run_main(["bids", runs["ds"], out, "group"]) == 0
    cohort = (out / "reports" / "cohort_report.html").read_text()
    assert 'href="sub-02_T1w_report.html"' in cohort and "(3 scans)" in cohort


def test_a_scan_that_always_fails_becomes_one_failed_row():
    """A task that raises on every try: retried twice, then one error row per scan, no raise."""
    jobs = [cohort.ScanJob(key=f"scan{i}", path=f"scan{i}.nii.gz", chronological_age=40.0 + i)
            for i in range(2)]
    lines = []
    rows = list(cohort.run_jobs(int, jobs, workers=1, log=lines.append))   # int(ScanJob) raises
    assert sorted(job.key for job, _ in rows) == ["scan0", "scan1"]
    for job, row in rows:
        assert row["_failed"] and row["input"] == job.key
        assert row["qc"].startswith(f"error: failed {cohort.ALLOWED_FAILURES + 1} tries") and "TypeError" in row["qc"]
        assert row["chronological_age"] == f"{job.chronological_age:.2f}"
    assert "1 worker(s) of a local cluster" in lines[0]


def test_unreachable_scheduler_is_one_line(runs, tmp_path, capsys):
    code = run_main(["predict", str(runs["ds"] / sorted(SCANS)[0]), "--scheduler", "tcp://127.0.0.1:9",
                     "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err
