"""Running BrainAge on a Slicer volume node, without Qt: :func:`process` (blocking, for scripts)
and :func:`start_process` / :func:`start_batch` (a background worker, :mod:`BrainAgeLib.runner`,
polled from a timer by the GUI). The nodes themselves (volume <-> SimpleITK, the segmentation and
table outputs) are :mod:`BrainAgeLib.mrml`, which re-exports these functions.
"""
from __future__ import annotations

import os
from typing import Callable

import SimpleITK as sitk

from .mrml import ProcessResult, _check_input, show_result, volume_node_to_sitk


def release_models() -> None:
    """Drop the cached networks and give their GPU memory back (after a run in this process;
    a background worker gives everything back when it exits). Reloading costs ~0.1 s."""
    import sys
    from . import models
    models._load_resunet.cache_clear()
    regression = sys.modules.get(f"{__package__}.regression")
    if regression is not None:
        regression._load_cnn.cache_clear()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc
        gc.collect()
        torch.cuda.empty_cache()


def process(scene, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
            approach: str = "ensemble", device: str = "auto", skullStripped: bool | None = None,
            progress: Callable[[float, str], None] | None = None,
            tissues: str = "camcan", siteCalibration=None) -> ProcessResult:
    """Brain age of a volume node; tissues into a segmentation node, measurements into a table.

    Blocking (for scripts; the GUI uses :func:`start_process`). Outputs that are None are
    created; given ones are reused and overwritten, never duplicated. The input node is never
    modified. ``skullStripped``: True skips brain extraction, None detects it.
    ``progress(fraction, message)`` is called as the steps advance. ``tissues``: "camcan" or
    "dlmuse", the tissue definition of the segments and volumes. ``siteCalibration``: the path of
    this scanner's calibration JSON (``brainage calibrate-site`` or ``site-offset``), or None.
    The networks leave the GPU after the run.
    """
    from .pipeline import predict
    _check_input(volumeNode)
    image = volume_node_to_sitk(volumeNode)
    try:
        result = predict(image, skull_stripped=skullStripped, chronological_age=chronologicalAge,
                         approach=approach, tissues=tissues, device=device, progress=progress,
                         site_calibration=siteCalibration or None)
    finally:
        if device != "cpu":
            release_models()
    return show_result(scene, volumeNode, result, segmentationNode, tableNode)


class BackgroundProcess:
    """:func:`process` in a worker process (see :mod:`BrainAgeLib.runner`): poll it from a timer.

    The scene is touched only when the worker has finished, by :meth:`poll`: a cancelled or
    failed run leaves the scene as it was. ``output`` is the :class:`ProcessResult` once
    ``state`` is "finished"; ``error`` says why when it is "failed".
    """

    def __init__(self, scene, volumeNode, segmentationNode, tableNode, job) -> None:
        self.scene, self.job = scene, job
        self.volumeID = volumeNode.GetID()
        self.segmentationID = segmentationNode.GetID() if segmentationNode is not None else None
        self.tableID = tableNode.GetID() if tableNode is not None else None
        self.output: ProcessResult | None = None
        self.error: str | None = None
        self.state = job.state

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")

    def poll(self) -> list:
        """New :class:`~BrainAgeLib.runner.Progress` reports; shows the result when finished."""
        if self.done:
            return []
        reports = self.job.poll()
        if self.job.done:
            self._finish()
        return reports

    def _finish(self) -> None:
        try:
            if self.job.state != "finished":
                self.state, self.error = self.job.state, self.job.error
                return
            volume = self.scene.GetNodeByID(self.volumeID) if self.volumeID else None
            if volume is None:
                self.state, self.error = "failed", "the input volume was removed from the scene during the run"
                return
            seg = self.scene.GetNodeByID(self.segmentationID) if self.segmentationID else None
            table = self.scene.GetNodeByID(self.tableID) if self.tableID else None
            try:
                self.output = show_result(self.scene, volume, self.job.result(), seg, table)
                self.state = "finished"
            except Exception as e:      # the result could not be shown: say so, keep the log
                self.state, self.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.job.close()

    def cancel(self) -> float:
        """Stop the worker; the scene is left as it was. Returns the seconds it took."""
        if self.done:
            return 0.0
        seconds = self.job.cancel()
        self.state = "cancelled"
        self.job.close()
        return seconds

    def wait(self, timeout: float | None = None, interval: float = 0.1, progress=None) -> ProcessResult:
        """Block until finished (scripts, tests); returns the output or raises WorkerError."""
        import time
        from .runner import WorkerError
        t_end = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            for p in self.poll():
                if progress:
                    progress(p)
            if not self.done:
                if t_end is not None and time.monotonic() > t_end:
                    raise TimeoutError(f"the BrainAge worker did not finish in {timeout} s")
                time.sleep(interval)
        if self.state != "finished":
            raise WorkerError(self.error or f"the run was {self.state}")
        return self.output


def start_process(scene, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
                  approach: str = "ensemble", device: str = "auto", skullStripped: bool | None = None,
                  tissues: str = "camcan", python: str | list[str] | None = None,
                  env: dict | None = None, siteCalibration=None) -> BackgroundProcess:
    """Start :func:`process` in a background worker and return at once (the input volume is
    written to a temporary folder first, a fraction of a second). Poll the returned
    :class:`BackgroundProcess` (e.g. every 0.2 s from a QTimer) until ``done``."""
    from . import runner
    _check_input(volumeNode)
    job_dir = runner.new_job_dir()
    try:
        runner.write_single_job(job_dir, volume_node_to_sitk(volumeNode), chronological_age=chronologicalAge,
                                approach=approach, tissues=tissues, device=device,
                                skull_stripped=skullStripped, site_calibration=siteCalibration)
        job = runner.start_job(job_dir, python=python, env=env)
    except Exception:
        import shutil
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return BackgroundProcess(scene, volumeNode, segmentationNode, tableNode, job)


def start_batch(inputs: list, output_csv, ages: dict[str, float] | None = None,
                approach: str = "ensemble", device: str = "auto", skullStripped: bool | None = None,
                tissues: str = "camcan", python: str | list[str] | None = None,
                env: dict | None = None, siteCalibration=None):
    """Start a batch in a background worker: ``inputs`` are paths (files or DICOM folders; expand
    folders with :func:`BrainAgeLib.io.expand_inputs`) or scalar volume nodes (written to the
    job folder; their names fill the ``input`` column). Writes ``brainage predict``'s CSV to
    ``output_csv``; ``ages`` as ``brainage predict --ages`` reads them (keys matched to the path,
    file name or node name). Returns the :class:`~BrainAgeLib.runner.BackgroundJob` to poll."""
    from . import runner
    from .cli import match_age
    if not inputs:
        raise ValueError("the batch has no input")
    job_dir = runner.new_job_dir("brainage-batch-")
    try:
        paths, names = [], []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                paths.append(str(item))
                names.append(str(item))
            else:
                _check_input(item)
                path = job_dir / f"scan{i:04d}.nrrd"
                sitk.WriteImage(volume_node_to_sitk(item), str(path), useCompression=False)
                paths.append(str(path))
                names.append(item.GetName() or f"volume {i + 1}")
        scan_ages = [match_age(ages, n) if ages else None for n in names]
        runner.write_batch_job(job_dir, paths, output_csv, names=names, ages=scan_ages, approach=approach,
                               tissues=tissues, device=device, skull_stripped=skullStripped,
                               site_calibration=siteCalibration)
        return runner.start_job(job_dir, python=python, env=env)
    except Exception:
        import shutil
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
