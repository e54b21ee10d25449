"""Cohort throughput: the same scans through serial ``brainage predict`` (the baseline), then
``--workers 1`` and ``--workers 2`` (a Dask LocalCluster, one torch thread per worker).

Each run is a fresh ``brainage predict FOLDER -o CSV`` process, timed from start to exit (model
loading and cluster start-up included, as a user sees it). Reported: scans per hour, the
speed-up of 2 workers over 1 (target >= 1.6x on 2 cores), peak resident memory (the serial
process; each Dask worker, as the CLI reports it), the largest age difference from the serial
run, and the projection for 10,000 scans. The load average is printed before and after: the
figures only mean something on an otherwise idle machine.

    python benchmarks/cohort.py [--scans 16] [--data ../shared/data] [--runs serial,1,2]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COHORT = 10_000


def sources(data: Path) -> list[Path]:
    """ixi10's whole-head T1s when ../shared/data is there, else the committed fixtures."""
    found = sorted((data / "ixi10" / "t1").glob("*_T1.nii.gz")) if data.exists() else []
    return found or sorted((ROOT / "Testing" / "data").glob("IXI*_T1.nii.gz")) + [
        ROOT / "BrainAge" / "Resources" / "SampleData" / "IXI012-HH-1211_T1.nii.gz"]


def run(folder: Path, csv_path: Path, workers: int | None) -> dict:
    cmd = [str(Path(sys.executable).parent / "brainage"), "predict", str(folder), "-o", str(csv_path), "-q"]
    if workers:
        cmd += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(f)}
    m = re.search(r"workers' peak memory \(MB\): ([\d., ]+)", proc.stderr)
    worker_peaks = [float(x) for x in m.group(1).split(",")] if m else []
    return {"wall": wall, "rows": rows, "process_peak_mb": peak / 1024 if peak > before else None,
            "worker_peaks_mb": worker_peaks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=16, help="number of scans (default 16)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--runs", default="serial,1,2", help="which runs, comma-separated")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "benchmark_cohort.txt"))
    args = ap.parse_args()
    src = sources(Path(args.data))
    lines = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scans"
        folder.mkdir()
        for i in range(args.scans):       # the same files, each under its own name
            s = src[i % len(src)]
            shutil.copy(s, folder / f"scan{i:03d}_{s.name}")
        load0 = os.getloadavg()
        origin = src[0].parent.parent.name if src[0].parent.name == "t1" else src[0].parent.name
        say(f"Cohort benchmark: {args.scans} scans ({len(src)} distinct T1s from {origin}), "
            f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"load average before {load0[0]:.1f}")
        results = {}
        for name in args.runs.split(","):
            workers = None if name == "serial" else int(name)
            label = "serial brainage predict" if workers is None else f"--workers {workers}"
            print(f"running {label} ...", file=sys.stderr, flush=True)
            results[name] = run(folder, Path(tmp) / f"{name}.csv", workers)
            results[name]["label"] = label
        load1 = os.getloadavg()
    say()
    say(f"{'run':<26}{'wall (s)':>10}{'scans/hour':>12}{'s/scan':>9}{'10,000 scans (h)':>18}  peak memory (MB)")
    for name, r in results.items():
        per_hour = args.scans / r["wall"] * 3600
        mem = (f"{r['process_peak_mb']:.0f} (process)" if not r["worker_peaks_mb"] and r["process_peak_mb"]
               else ", ".join(f"{m:.0f}" for m in r["worker_peaks_mb"]) + " (per worker)")
        r["per_hour"] = per_hour
        say(f"{r['label']:<26}{r['wall']:>10.1f}{per_hour:>12.0f}{r['wall'] / args.scans:>9.1f}"
            f"{COHORT / per_hour:>18.1f}  {mem}")
    say()
    if "1" in results and "2" in results:
        ratio = results["2"]["per_hour"] / results["1"]["per_hour"]
        say(f"speed-up, 2 workers over 1 worker: {ratio:.2f}x (target >= 1.6x: "
            f"{'met' if ratio >= 1.6 else 'NOT met'})")
    if "serial" in results:
        for name in [n for n in results if n != "serial"]:
            ratio = results[name]["per_hour"] / results["serial"]["per_hour"]
            diffs = [abs(float(r["predicted_age"]) - float(results["serial"]["rows"][k]["predicted_age"]))
                     for k, r in results[name]["rows"].items() if r["predicted_age"]]
            say(f"{results[name]['label']} vs serial: {ratio:.2f}x the throughput; largest age "
                f"difference {max(diffs):.3f} years over {len(diffs)} scans")
    say(f"load average before the runs: {load0[0]:.1f} on {os.cpu_count()} cores "
        f"({'a busy machine, rerun on a quiet one' if load0[0] > 0.5 else 'quiet'}); after: {load1[0]:.1f}, "
        f"the benchmark's own load")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
