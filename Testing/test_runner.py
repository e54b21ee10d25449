"""The background worker's protocol (BrainAgeLib.runner), headless and without Slicer: result
files round trip, a crash of the worker becomes a readable error, Cancel stops it within 2 s.

The jobs run the real worker (``python -m BrainAgeLib.runner``) on a real T1; cancel and kill
happen once the worker is inside ``predict``, so that no test waits for a whole prediction.
Results identical to the blocking call, and the batch CSV, are in Testing/test_mrml.py (they
reuse its blocking run of the sample).
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import runner
from BrainAgeLib.pipeline import BrainAgeResult
from BrainAgeLib.volumes import tissue_volumes_ml

DATA = Path(__file__).resolve().parent / "data"
T1 = DATA / "IXI013-HH-1212_T1.nii.gz"
TISSUES = DATA / "IXI013-HH-1212_DLMUSE_tissues.nii.gz"


def _result() -> BrainAgeResult:
    labels = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    t1 = sitk.ReadImage(str(T1), sitk.sitkFloat32)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((1.02, 0.01, 0, -0.01, 0.98, 0.02, 0, 0.03, 1.0))
    transform.SetTranslation((3.0, -2.0, 1.5))
    return BrainAgeResult(
        predicted_age=41.5, predicted_age_volumes=43.0, predicted_age_cnn=None, interval=(32.0, 51.0),
        volumes_ml=tissue_volumes_ml(labels), labels=labels, qc=["implausible CSF fraction"], seconds=1.5,
        chronological_age=35.0, approach="volumes", model_space_image=t1,
        model_space_probabilities=np.random.default_rng(0).random((4, 5, 6, 7), dtype=np.float32),
        age_details={"volumes": 43.0, "interval": (32.0, 51.0), "interval_halfwidths": {"volumes": 9.5}},
        brain_mask=sitk.Cast(labels > 0, sitk.sitkUInt8), template_similarity=0.91, edge_sharpness=0.6,
        tissues="dlmuse", model_to_input=transform)


def _same_image(a: sitk.Image, b: sitk.Image) -> bool:
    return (np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
            and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            and a.GetDirection() == b.GetDirection())


def test_result_files_round_trip(tmp_path):
    r = _result()
    runner.save_result(r, tmp_path / "result")
    assert not (tmp_path / "result.part").exists()
    back = runner.load_result(tmp_path / "result")
    for name in ("predicted_age", "predicted_age_volumes", "predicted_age_cnn", "interval", "volumes_ml",
                 "qc", "seconds", "chronological_age", "approach", "age_details", "template_similarity",
                 "edge_sharpness", "tissues", "brain_age_gap", "qc_text"):
        assert getattr(back, name) == getattr(r, name), name
    for name in ("labels", "brain_mask", "model_space_image"):
        assert _same_image(getattr(back, name), getattr(r, name)), name
    assert back.labels.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(back.model_space_probabilities, r.model_space_probabilities)
    point = (10.0, -20.0, 30.0)
    assert np.allclose(back.model_to_input.TransformPoint(point), r.model_to_input.TransformPoint(point))
    # no pickle anywhere: the probabilities load with allow_pickle=False, the rest is JSON/NRRD
    assert json.loads((tmp_path / "result" / "result.json").read_text())["approach"] == "volumes"


def _single_job(tmp_path, image=None, **kw) -> runner.BackgroundJob:
    image = image if image is not None else sitk.ReadImage(str(T1))
    runner.write_single_job(tmp_path / "job", image, chronological_age=40.0, **kw)
    return runner.start_job(tmp_path / "job")


def _wait_for(job, message_part: str, timeout: float = 600) -> list:
    """Poll until a progress message containing ``message_part`` arrived (the worker is busy)."""
    seen = []
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        seen += job.poll()
        if any(message_part in p.message for p in seen) or job.done:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"no progress '{message_part}' in {timeout} s: {seen}; log: {job.log_tail()}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_stops_the_worker_within_two_seconds(tmp_path):
    job = _single_job(tmp_path)
    seen = _wait_for(job, "preprocessing")         # inside predict: torch loaded, work under way
    assert job.state == "running" and seen[0].message == "starting"
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    seconds = job.cancel()
    assert seconds < 2.0
    assert job.state == "cancelled" and _gone(job.pid)
    assert not (job.job_dir / runner.RESULT_DIR).exists()
    assert job.poll() == [] and job.state == "cancelled"
    with pytest.raises(RuntimeError, match="cancelled"):
        job.result()
    job.close()
    assert not job.job_dir.exists()


def test_a_killed_worker_becomes_a_clear_error(tmp_path):
    """The worker dies without a word (as when the system runs out of memory)."""
    job = _single_job(tmp_path)
    _wait_for(job, "preprocessing")
    os.killpg(job.pid, signal.SIGKILL)
    assert job.wait(timeout=10) == "failed"
    assert "stopped unexpectedly" in job.error and "signal 9" in job.error
    with pytest.raises(runner.WorkerError, match="stopped unexpectedly"):
        job.result()
    job.close()


def test_a_failing_worker_reports_why(tmp_path):
    """A worker that raises (here: an input that is not an image) says why in words, and its
    traceback is in the log, not in the message."""
    runner.write_single_job(tmp_path / "job", sitk.ReadImage(str(T1)))
    (tmp_path / "job" / runner.INPUT_FILE).write_bytes(b"NRRD0004\nthis is not an image\n")
    job = runner.start_job(tmp_path / "job")
    assert job.wait(timeout=600) == "failed"
    assert job.error and "Traceback" not in job.error
    assert "Traceback" in (tmp_path / "job" / runner.LOG_FILE).read_text()
    with pytest.raises(runner.WorkerError):
        job.result()
    job.close()


def test_a_bad_option_fails_fast_with_the_core_message(tmp_path):
    runner.write_single_job(tmp_path / "job", sitk.ReadImage(str(T1)), approach="astrology")
    job = runner.start_job(tmp_path / "job")
    assert job.wait(timeout=600) == "failed"
    assert job.error == "approach must be one of ('ensemble', 'volumes', 'image'), not 'astrology'"


def test_worker_usage_and_start_once(tmp_path):
    assert runner.main([]) == 2
    runner.write_batch_job(tmp_path / "job", [str(tmp_path / "missing.nii.gz")], tmp_path / "out.csv")
    job = runner.BackgroundJob(tmp_path / "job")
    assert job.output_csv == str(tmp_path / "out.csv") and job.state == "created"
    job.start()
    with pytest.raises(RuntimeError, match="starts once"):
        job.start()
    assert job.wait(timeout=600) == "finished"       # a batch finishes; the bad scan's row says why
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 2 and ",error: " in rows[1]
    with pytest.raises(ValueError, match="one entry per input"):
        runner.write_batch_job(tmp_path / "job2", ["a", "b"], tmp_path / "x.csv", names=["a"])
