"""End-to-end benchmark on a 1 mm whole-head T1 (an ixi10 head resampled to 1 mm), side by
side with brain extraction alone (deepbet as a stand-alone tool: its default settings on the
1 mm image), on this machine's CPU.

Measured: (a) deepbet alone, (b) preprocess() (resampling, brain extraction, N4, registration,
normalisation), (c) predict() end to end (reading the file included), (d) the same with the
dlmuse tissue definition, (e) without release 14's mirror check (``pipeline.MIRROR_CHECK``, its
second ResUNet pass) and (f) with release 11's GM/WM harmonisation and second ResUNet pass
switched back on (``pipeline.HARMONIZE_RAW_SCANS``; off since release 12). Each measurement runs in a
fresh process (models loaded, then one warm-up run, then timed runs); peak memory is that
process's maximum resident set size (ru_maxrss), which counts torch's allocations too.

    python benchmarks/pipeline.py [--data ../shared/data] [--runs 3] [--threads 2] [--compare-with DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "BrainAge"))


def make_1mm(src: Path, dst: Path) -> None:
    import SimpleITK as sitk
    from BrainAgeLib.evaluation import at_1mm
    sitk.WriteImage(at_1mm(sitk.ReadImage(str(src))), str(dst))


def worker(what: str, path: str, runs: int, threads: int) -> None:
    import resource
    import warnings
    import SimpleITK as sitk
    import torch
    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    from BrainAgeLib.io import read_image
    img = read_image(path)
    if what == "bet":
        from deepbet import BrainExtraction
        from BrainAgeLib.preprocessing import sitk_to_nibabel
        bet = BrainExtraction(no_gpu=True)
        nii = sitk_to_nibabel(img)
        fn = lambda: bet.run(nii)                           # noqa: E731
    elif what == "preprocess":
        from BrainAgeLib.preprocessing import preprocess
        fn = lambda: preprocess(img)                        # noqa: E731
    else:
        from BrainAgeLib import pipeline
        from BrainAgeLib.pipeline import predict
        pipeline.HARMONIZE_RAW_SCANS = what == "predict-harmonised"
        pipeline.MIRROR_CHECK = what != "predict-nomirror"
        tissues = "dlmuse" if what == "predict-dlmuse" else "camcan"
        fn = lambda: predict(path, device="cpu", tissues=tissues)   # noqa: E731
    fn()                                        # warm-up: loads the networks
    secs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": secs, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "size": img.GetSize()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--subject", default="IXI012-HH-1211")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare-with", metavar="DIR", help="another checkout of BrainAge (e.g. a git worktree of "
                    "an earlier release): its predict() is measured in the same run, as a peer")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.runs, args.threads)
    src = Path(args.data) / "ixi10" / "t1" / f"{args.subject}_T1.nii.gz"
    if not src.exists():
        src = ROOT / "BrainAge" / "Resources" / "SampleData" / f"{args.subject}_T1.nii.gz"
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head_1mm.nii.gz"
        make_1mm(src, head)
        res = {}
        jobs = [(what, __file__, what) for what in ("bet", "preprocess", "predict", "predict-nomirror",
                                                    "predict-dlmuse", "predict-harmonised")]
        if args.compare_with:
            jobs.append(("predict-other", str(Path(args.compare_with) / "benchmarks" / "pipeline.py"), "predict"))
        for name, script, what in jobs:
            out = subprocess.run([sys.executable, script, "--runs", str(args.runs), "--threads",
                                  str(args.threads), "--worker", what, str(head)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
                continue
            res[name] = json.loads(out.stdout.strip().splitlines()[-1])
    size = next(iter(res.values()))["size"]
    print(f"1 mm whole-head T1 {size[0]}x{size[1]}x{size[2]} ({args.subject}), {args.threads} threads, "
          f"median of {args.runs} timed runs after a warm-up")
    names = {"bet": "brain extraction alone (deepbet)", "preprocess": "preprocess()",
             "predict": "predict() end to end",
             "predict-nomirror": "predict(), no mirror check",
             "predict-dlmuse": "predict(tissues='dlmuse')",
             "predict-harmonised": "predict(), harmonised (release 11)",
             "predict-other": f"predict(), {Path(args.compare_with or '.').resolve().name}"}
    base = np.median(res["bet"]["seconds"]) if "bet" in res else None
    print(f"{'step':34s} {'median s':>9s} {'peak MB':>8s} {'x deepbet':>10s}")
    for k, v in res.items():
        med = np.median(v["seconds"])
        ratio = f"{med / base:10.2f}" if base else f"{'':>10s}"
        print(f"{names[k]:34s} {med:9.2f} {v['peak_mb']:8.0f} {ratio}")


if __name__ == "__main__":
    main()
