"""Many scans at once: one task per scan on Dask distributed, from a laptop to a cluster.

``brainage predict`` batches and ``brainage bids`` both run through :func:`run_jobs`:

* no ``workers`` and no ``scheduler``: the scans run one after another in this process (what
  ``brainage predict`` always did);
* ``workers=N``: a :class:`distributed.LocalCluster` of N worker *processes*, one thread each;
* ``scheduler="tcp://host:8786"``: a running Dask cluster (``dask scheduler`` + ``dask worker``,
  or dask-jobqueue's ``SLURMCluster``; README: Cohorts).

Each scan is one task (:class:`ScanJob` in, a result row out), submitted with ``retries=2``;
results are yielded as they complete. A worker that dies mid-scan (killed, out of memory)
loses nothing: the scheduler runs its scan again on another worker, and after
:data:`ALLOWED_FAILURES` lost workers the scan becomes a failed row (``error: ...``). Every
worker limits torch and SimpleITK to :data:`THREADS_PER_WORKER` thread, so N workers do not
oversubscribe N cores.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from distributed.diagnostics.plugin import WorkerPlugin

ALLOWED_FAILURES = 2       # a scan is retried at most this often (lost workers, or exceptions)
THREADS_PER_WORKER = 1     # torch / SimpleITK threads in each worker process


class ClusterError(RuntimeError):
    """The Dask cluster cannot be started or reached."""


@dataclass
class ScanJob:
    """One scan to process. ``key`` is unique in a run (the CSV's ``input``, or the BIDS file).

    ``options``: keyword arguments of :func:`BrainAgeLib.pipeline.predict` (approach, tissues,
    skull_stripped, device). ``site_offset``: a :class:`~BrainAgeLib.regression.SiteOffset` as
    its dict. ``extra``: what the task function needs besides (output paths...)."""

    key: str
    path: str
    chronological_age: float | None = None
    options: dict = field(default_factory=dict)
    site_offset: dict | None = None
    labels_path: str | None = None
    extra: dict = field(default_factory=dict)


def predict_job(job: ScanJob):
    """Predict one scan: ``(row, result)``, where ``row`` is the CSV row (DESIGN.md columns) and
    ``result`` the :class:`~BrainAgeLib.pipeline.BrainAgeResult`, or ``None`` with an
    ``error: ...`` row when the scan could not be processed (bad input: never raises for it).
    MemoryError is raised, so that the scan is retried."""
    from .cli import error_row, result_row
    from .calibration import site_calibration_from_dict
    from .pipeline import predict
    t0 = time.perf_counter()
    try:
        site = site_calibration_from_dict(job.site_offset) if job.site_offset is not None else None
        result = predict(job.path, chronological_age=job.chronological_age, site_calibration=site,
                         **job.options)
        return result_row(job.key, result), result
    except MemoryError:
        raise
    except Exception as e:   # one bad scan must not stop a cohort (signals are not Exception)
        message = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        return error_row(job.key, message, time.perf_counter() - t0, job.chronological_age), None


def predict_scan(job: ScanJob) -> dict:
    """The ``brainage predict`` task: :func:`predict_job`, then the label map (if asked for)
    written whole or not at all; a map that cannot be written is a QC note, the age is kept.
    The row gets ``_failed`` / ``_unwritten`` flags (not CSV columns) for the summary."""
    from .outputs import atomic_write_image
    row, result = predict_job(job)
    row["_failed"] = result is None
    row["_unwritten"] = False
    if job.labels_path and result is not None:
        try:
            atomic_write_image(result.labels, job.labels_path)
        except (OSError, RuntimeError) as e:   # keep the age; say the map is missing
            row["_unwritten"] = True
            why = getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
            note = f"label map not written ({job.labels_path}: {why})".replace(";", ",")
            row["qc"] = note if row["qc"] == "ok" else row["qc"] + ";" + note
    if job.extra.get("report") and result is not None:
        from .report import write_job_report
        try:
            row["_report"] = write_job_report(result, job.path, job.extra["report"])
        except Exception as e:   # a report that cannot be written must not lose the age
            row["_report"] = f"{type(e).__name__}: {e}"
    return row


def limit_threads(n: int = THREADS_PER_WORKER) -> None:
    """Limit torch (intra- and inter-op) and SimpleITK to ``n`` threads in this process."""
    import SimpleITK as sitk
    import torch
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:   # only settable before the first parallel work; then it is already set
        pass
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


class ThreadLimit(WorkerPlugin):
    """Dask worker plugin: :func:`limit_threads` on every worker, also on one that the nanny
    restarts after a crash."""

    name = "brainage-thread-limit"

    def __init__(self, threads: int = THREADS_PER_WORKER):
        self.threads = threads

    def setup(self, worker=None) -> None:
        limit_threads(self.threads)



def _on_worker(fn: Callable[[ScanJob], dict], job: ScanJob) -> dict:
    limit_threads()   # also when the worker was started without the plugin (dask worker CLI)
    return fn(job)


def peak_memory_mb() -> float:
    """This process's peak resident memory (MB, ``ru_maxrss``)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def local_cluster(workers: int):
    """A LocalCluster of ``workers`` processes (one thread each) whose scheduler gives up on a
    scan after :data:`ALLOWED_FAILURES` lost workers. Returns the cluster (close it)."""
    import logging
    import dask
    from distributed import LocalCluster
    if workers < 1:
        raise ClusterError(f"--workers must be at least 1, not {workers}")
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        try:
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                dashboard_address=":0", silence_logs=logging.ERROR)
        except Exception as e:   # ports, permissions, a broken environment
            raise ClusterError(f"cannot start a local Dask cluster of {workers} worker(s): {e}") from e


@contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None):
    """A :class:`distributed.Client` on a new LocalCluster (``workers``) or on a running
    scheduler (``scheduler`` address); the thread limit is registered on every worker."""
    from distributed import Client
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as e:
                raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        else:
            cluster = local_cluster(workers or 1)
            client = Client(cluster)
        try:
            client.register_plugin(ThreadLimit())
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def dashboard_link(client) -> str | None:
    """The Dask dashboard's address, when the scheduler serves one (it needs bokeh)."""
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return client.dashboard_link
    except Exception:
        return None


def worker_peaks_mb(client) -> dict[str, float]:
    """Peak resident memory (MB) of each worker process now in the cluster."""
    try:
        return client.run(peak_memory_mb)
    except Exception:
        return {}


def run_jobs(fn: Callable[[ScanJob], dict], jobs: Sequence[ScanJob], *, workers: int | None = None,
             scheduler: str | None = None, log: Callable[[str], None] | None = None,
             stats: dict | None = None) -> Iterator[tuple[ScanJob, dict]]:
    """Run ``fn(job)`` for every job and yield ``(job, row)`` as each finishes (in completion
    order on Dask, in order in this process). ``fn`` must be a module-level function (workers
    import it). A scan whose task fails :data:`ALLOWED_FAILURES` + 1 times (lost workers or
    exceptions) yields ``error_row`` with the reason. ``stats`` receives ``workers``,
    ``dashboard`` and ``worker_peak_mb`` (a dict of MB per worker) on Dask."""
    from .cli import error_row
    say = log or (lambda m: print(m, file=sys.stderr))
    if not jobs:
        return
    if workers is None and not scheduler:
        for job in jobs:
            yield job, fn(job)
        return
    from distributed import as_completed
    with open_client(workers, scheduler) as client:
        n_workers = len(client.scheduler_info().get("workers", {}))
        link = dashboard_link(client)
        where = f"scheduler {scheduler}" if scheduler else "a local cluster"
        say(f"Dask: {len(jobs)} scan(s) on {n_workers} worker(s) of {where}"
            + (f"; dashboard {link}" if link else ""))
        if stats is not None:
            stats.update(workers=n_workers, dashboard=link)
        by_key = {}
        futures = []
        for i, job in enumerate(jobs):
            fut = client.submit(_on_worker, fn, job, key=f"brainage-scan-{i}",
                                retries=ALLOWED_FAILURES, pure=False)
            by_key[fut.key] = job
            futures.append(fut)
        for fut in as_completed(futures):
            job = by_key[fut.key]
            if fut.status == "finished":
                row = fut.result()
            else:
                exc = fut.exception()
                message = (f"failed {ALLOWED_FAILURES + 1} tries on the Dask cluster (a lost worker "
                           f"or an exception: {type(exc).__name__}: {exc})")
                row = error_row(job.key, message, 0.0, job.chronological_age)
                row["_failed"] = True
            fut.release()
            yield job, row
        peaks = worker_peaks_mb(client)
        if peaks:
            say("Dask workers' peak memory (MB): " + ", ".join(f"{peaks[a]:.0f}" for a in sorted(peaks)))
        if stats is not None:
            stats["worker_peak_mb"] = peaks


__all__ = ["ALLOWED_FAILURES", "THREADS_PER_WORKER", "ClusterError", "ScanJob", "predict_job",
           "predict_scan", "limit_threads", "ThreadLimit", "local_cluster", "open_client",
           "dashboard_link", "worker_peaks_mb", "run_jobs", "peak_memory_mb"]
