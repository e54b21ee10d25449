"""Brain age in a background process: a child Python process works on files, the caller polls.

No Qt and no ``slicer`` here, so that all of it runs, and is tested, headless. The Slicer module
writes the input volume into a job folder, starts :class:`BackgroundJob`, and polls it from a
``QTimer``; the widget never waits. The protocol, all in the job folder:

* ``job.json`` (written by the caller): ``kind`` ("single" or "batch") and the options;
  ``input.nrrd``: the image of a single job (exact voxels and geometry, uncompressed);
* ``progress.jsonl`` (written by the worker): one JSON object a line, ``{"fraction": 0..1,
  "message": str}`` (batch: also ``"scan"`` and ``"n_scans"``), and at the end
  ``{"done": true}`` or ``{"error": "readable message"}``;
* ``log.txt``: the worker's stdout and stderr (tracebacks land here);
* ``result/`` (single): the ``BrainAgeResult``, moved into place only when complete
  (see :func:`save_result`); a batch writes the same CSV as ``brainage predict``.

Cancel kills the worker's whole process group (PythonSlicer is a launcher with a child), so the
work stops at once; a worker that dies without reporting an error becomes a clear
:class:`WorkerError` with the last lines of its log. The worker runs
``python -m BrainAgeLib.runner JOB_DIR``; models leave the GPU when it exits.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

JOB_FILE = "job.json"
INPUT_FILE = "input.nrrd"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "log.txt"
RESULT_DIR = "result"
PACKAGE_PARENT = Path(__file__).resolve().parent.parent   # the folder that holds BrainAgeLib

# BrainAgeResult fields stored as images or arrays beside result.json
_IMAGES = ("labels", "brain_mask", "model_space_image")


class WorkerError(RuntimeError):
    """The background worker failed; the message says why in words."""


@dataclass
class Progress:
    """One progress report of the worker: ``fraction`` of the whole job (0..1)."""

    fraction: float
    message: str
    scan: int | None = None        # batch: 0-based index of the scan being processed
    n_scans: int | None = None


# --------------------------------------------------------------------------- job files

def new_job_dir(prefix: str = "brainage-") -> Path:
    """A fresh, empty job folder in the system's temporary directory."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def _options(chronological_age, approach, tissues, device, skull_stripped, site_calibration=None) -> dict:
    if site_calibration:     # a bad file is refused here, before the worker starts
        from .calibration import read_site_calibration
        read_site_calibration(site_calibration)
    return {"chronological_age": chronological_age, "approach": approach, "tissues": tissues,
            "device": device, "skull_stripped": skull_stripped,
            "site_calibration": str(site_calibration) if site_calibration else None}


def write_single_job(job_dir: str | os.PathLike, image: sitk.Image, *,
                     chronological_age: float | None = None, approach: str = "ensemble",
                     tissues: str = "camcan", device: str = "auto",
                     skull_stripped: bool | None = None, site_calibration=None) -> Path:
    """Write the input ``image`` and the options of one prediction into ``job_dir``
    (``site_calibration``: the path of a site-calibration or site-offset JSON, or None)."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(job_dir / INPUT_FILE), useCompression=False)
    job = {"kind": "single", **_options(chronological_age, approach, tissues, device, skull_stripped,
                                        site_calibration)}
    (job_dir / JOB_FILE).write_text(json.dumps(job, indent=1))
    return job_dir


def write_batch_job(job_dir: str | os.PathLike, inputs: list[str], output_csv: str | os.PathLike, *,
                    names: list[str] | None = None, ages: list[float | None] | None = None,
                    approach: str = "ensemble", tissues: str = "camcan", device: str = "auto",
                    skull_stripped: bool | None = None, site_calibration=None) -> Path:
    """A batch: every path of ``inputs`` (file or DICOM folder) into one CSV row of
    ``output_csv`` (``brainage predict``'s columns). ``names`` go into the ``input`` column
    (default: the paths); ``ages`` are chronological ages in years (None: unknown)."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    n = len(inputs)
    names = list(names) if names is not None else [str(p) for p in inputs]
    ages = list(ages) if ages is not None else [None] * n
    if len(names) != n or len(ages) != n:
        raise ValueError("names and ages must have one entry per input")
    job = {"kind": "batch", "inputs": [str(p) for p in inputs], "names": names, "ages": ages,
           "output_csv": str(output_csv),
           **_options(None, approach, tissues, device, skull_stripped, site_calibration)}
    (job_dir / JOB_FILE).write_text(json.dumps(job, indent=1))
    return job_dir


# --------------------------------------------------------------------------- results on disk

def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def save_result(result, folder: str | os.PathLike) -> Path:
    """Write a ``BrainAgeResult`` into ``folder`` (created whole: written beside it, then
    renamed): scalars in ``result.json``, images as NRRD, probabilities as ``.npy`` (no pickle)."""
    folder = Path(folder)
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    scalars = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if f.name in _IMAGES:
            if value is not None:
                sitk.WriteImage(value, str(part / f"{f.name}.nrrd"), useCompression=True)
        elif f.name == "model_space_probabilities":
            if value is not None:
                np.save(part / "probabilities.npy", np.ascontiguousarray(value), allow_pickle=False)
        elif f.name == "model_to_input":
            if value is not None:
                sitk.WriteTransform(value, str(part / "model_to_input.tfm"))
        else:
            scalars[f.name] = _jsonable(value)
    (part / "result.json").write_text(json.dumps(scalars, indent=1))
    os.replace(part, folder)
    return folder


def load_result(folder: str | os.PathLike):
    """The ``BrainAgeResult`` that :func:`save_result` wrote."""
    from .pipeline import BrainAgeResult
    folder = Path(folder)
    data = json.loads((folder / "result.json").read_text())
    data["interval"] = tuple(data["interval"])
    if isinstance(data.get("age_details", {}).get("interval"), list):
        data["age_details"]["interval"] = tuple(data["age_details"]["interval"])
    for name in _IMAGES:
        path = folder / f"{name}.nrrd"
        data[name] = sitk.ReadImage(str(path)) if path.is_file() else None
    prob = folder / "probabilities.npy"
    data["model_space_probabilities"] = np.load(prob, allow_pickle=False) if prob.is_file() else None
    tfm = folder / "model_to_input.tfm"
    data["model_to_input"] = sitk.ReadTransform(str(tfm)) if tfm.is_file() else None
    return BrainAgeResult(**data)


# --------------------------------------------------------------------------- the parent side

def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the worker and its children (the worker leads its own process group)."""
    if proc.poll() is not None:
        return
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    else:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
        if proc.poll() is None:
            proc.kill()


class BackgroundJob:
    """A worker process on one job folder; :meth:`poll` it, never blocks (except :meth:`wait`).

    ``state``: "created", "running", "finished", "failed" or "cancelled". ``python`` is the
    interpreter command (default ``sys.executable``; in Slicer, PythonSlicer) and ``env`` its
    environment (default: this process's). The folder is removed by :meth:`close`.
    """

    def __init__(self, job_dir: str | os.PathLike, python: str | list[str] | None = None,
                 env: dict | None = None) -> None:
        self.job_dir = Path(job_dir)
        job = json.loads((self.job_dir / JOB_FILE).read_text())
        self.kind = job["kind"]
        self.output_csv: str | None = job.get("output_csv")     # a batch's CSV
        self.python = [python] if isinstance(python, str) else list(python or [sys.executable])
        self.env = dict(os.environ if env is None else env)
        self.state = "created"
        self.error: str | None = None
        self.last: Progress | None = None
        self.started = self.ended = None
        self._proc: subprocess.Popen | None = None
        self._offset = 0
        self._log = None

    def start(self) -> "BackgroundJob":
        """Start the worker (returns at once)."""
        if self.state != "created":
            raise RuntimeError("a BackgroundJob starts once")
        env = self.env
        env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT)] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.job_dir / LOG_FILE, "wb")
        kw = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        self._proc = subprocess.Popen(self.python + ["-m", "BrainAgeLib.runner", str(self.job_dir)],
                                      stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=str(self.job_dir), **kw)
        self.started = time.monotonic()
        self.state = "running"
        return self

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _read_lines(self) -> list[dict]:
        path = self.job_dir / PROGRESS_FILE
        if not path.is_file():
            return []
        with open(path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1          # a line still being written waits for the next poll
        self._offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def poll(self) -> list[Progress]:
        """The progress reported since the last poll; updates ``state`` when the worker ended."""
        if self.state != "running":
            return []
        code = self._proc.poll()           # before reading: lines written before the exit are seen
        reports = []
        for item in self._read_lines():
            if "error" in item:
                self.error = str(item["error"])
            elif "fraction" in item:
                self.last = Progress(float(item["fraction"]), str(item.get("message", "")),
                                     item.get("scan"), item.get("n_scans"))
                reports.append(self.last)
        if code is not None:
            self._finish(code)
        return reports

    def _finish(self, code: int) -> None:
        self.ended = time.monotonic()
        if self._log:
            self._log.close()
        ok = code == 0 and (self.kind == "batch" or (self.job_dir / RESULT_DIR / "result.json").is_file())
        if ok:
            self.state = "finished"
            return
        self.state = "failed"
        if self.error is None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.error = f"the BrainAge worker stopped unexpectedly (it {how})"
            tail = self.log_tail()
            if tail:
                self.error += "; its last output:\n" + tail

    def cancel(self) -> float:
        """Stop the worker now; returns the seconds it took until the process was gone."""
        t0 = time.monotonic()
        if self.state != "running":
            return 0.0
        _kill_tree(self._proc)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self.ended = time.monotonic()
        if self._log:
            self._log.close()
        self.state = "cancelled"
        return time.monotonic() - t0

    def wait(self, timeout: float | None = None, interval: float = 0.1,
             progress: Callable[[Progress], None] | None = None) -> str:
        """Poll until the worker ends (blocking; for scripts and tests). Returns ``state``."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            for p in self.poll():
                if progress:
                    progress(p)
            if self.done:
                break
            if t_end is not None and time.monotonic() > t_end:
                raise TimeoutError(f"the BrainAge worker did not finish in {timeout} s")
            time.sleep(interval)
        return self.state

    def result(self):
        """The ``BrainAgeResult`` of a finished single job (WorkerError if it failed)."""
        if self.state == "failed":
            raise WorkerError(self.error)
        if self.state != "finished" or self.kind != "single":
            raise RuntimeError(f"no result: the job is {self.state}")
        return load_result(self.job_dir / RESULT_DIR)

    def log_tail(self, lines: int = 12) -> str:
        """The last lines of the worker's output."""
        path = self.job_dir / LOG_FILE
        if not path.is_file():
            return ""
        text = path.read_bytes()[-20000:].decode("utf-8", "replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def close(self) -> None:
        """Stop the worker if it still runs, and remove the job folder."""
        if self.state == "running":
            self.cancel()
        shutil.rmtree(self.job_dir, ignore_errors=True)

    def __del__(self):
        try:
            if self.state == "running":
                _kill_tree(self._proc)
        except Exception:
            pass


def start_job(job_dir: str | os.PathLike, python: str | list[str] | None = None,
              env: dict | None = None) -> BackgroundJob:
    """Start the worker on a job folder written by :func:`write_single_job` or
    :func:`write_batch_job`."""
    return BackgroundJob(job_dir, python, env).start()


# --------------------------------------------------------------------------- the worker side

class _Reporter:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "a", encoding="utf-8")

    def __call__(self, **item) -> None:
        self._f.write(json.dumps(item) + "\n")
        self._f.flush()


def _run_single(job_dir: Path, job: dict, report: _Reporter) -> None:
    from .pipeline import predict
    image = sitk.ReadImage(str(job_dir / INPUT_FILE))
    result = predict(image, skull_stripped=job["skull_stripped"], chronological_age=job["chronological_age"],
                     approach=job["approach"], tissues=job["tissues"], device=job["device"],
                     site_calibration=job.get("site_calibration"),
                     progress=lambda f, m: report(fraction=0.95 * f, message=m if f < 1 else "finishing"))
    report(fraction=0.96, message="saving the result")
    save_result(result, job_dir / RESULT_DIR)
    report(fraction=1.0, message="done")


def _run_batch(job: dict, report: _Reporter) -> None:
    import csv
    from .cli import COLUMNS, error_row, result_row
    from .pipeline import predict
    inputs, names, ages = job["inputs"], job["names"], job["ages"]
    n = len(inputs)
    out = Path(job["output_csv"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for i, (path, name, age) in enumerate(zip(inputs, names, ages)):
            def step(frac, msg, i=i, name=name):
                report(fraction=(i + frac) / n, message=f"{name}: {msg}", scan=i, n_scans=n)
            step(0.0, "starting")
            t0 = time.perf_counter()
            try:
                result = predict(path, skull_stripped=job["skull_stripped"], chronological_age=age,
                                 approach=job["approach"], tissues=job["tissues"], device=job["device"],
                                 site_calibration=job.get("site_calibration"), progress=step)
                row = result_row(name, result)
            except Exception as e:   # one bad scan must not stop the batch (as the CLI)
                traceback.print_exc()
                row = error_row(name, str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}",
                                time.perf_counter() - t0, age)
            writer.writerow(row)
            f.flush()
            step(1.0, "done" if not row["qc"].startswith("error") else row["qc"])


def main(argv: list[str] | None = None) -> int:
    """Worker entry: ``python -m BrainAgeLib.runner JOB_DIR``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m BrainAgeLib.runner JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    report = _Reporter(job_dir / PROGRESS_FILE)
    try:
        job = json.loads((job_dir / JOB_FILE).read_text())
        report(fraction=0.0, message="starting")
        if job["kind"] == "single":
            _run_single(job_dir, job, report)
        elif job["kind"] == "batch":
            _run_batch(job, report)
        else:
            raise ValueError(f"unknown job kind {job['kind']!r}")
    except Exception as e:
        traceback.print_exc()
        from .io import InputError
        readable = isinstance(e, (ValueError, InputError, RuntimeError, OSError))
        report(error=str(e) if readable else f"{type(e).__name__}: {e}")
        return 1
    report(done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
