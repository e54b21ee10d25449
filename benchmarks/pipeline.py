"""End-to-end benchmark on a 1 mm whole-head T1 (an ixi10 head resampled to 1 mm), side by
side with brain extraction alone (deepbet), on this machine's CPU.

Each measurement runs in a fresh process (models loaded, then one warm-up run, then timed
runs); peak memory is that process's maximum resident set size.

    python benchmarks/pipeline.py [--data ../shared/data] [--runs 3] [--threads 2]
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
    img = sitk.ReadImage(str(src), sitk.sitkFloat32)
    size = [int(round(n * s)) for n, s in zip(img.GetSize(), img.GetSpacing())]
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkBSpline, img.GetOrigin(), (1.0, 1.0, 1.0),
                        img.GetDirection(), 0.0, sitk.sitkFloat32)
    sitk.WriteImage(sitk.Cast(sitk.Clamp(out, lowerBound=0), sitk.sitkInt16), str(dst))


def worker(what: str, path: str, runs: int, threads: int) -> None:
    import resource
    import SimpleITK as sitk
    import torch
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    from BrainAgeLib.io import read_image
    from BrainAgeLib.pipeline import predict
    from BrainAgeLib.preprocessing import extract_brain
    img = read_image(path)
    fn = (lambda: extract_brain(img)) if what == "bet" else (lambda: predict(path))
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
        for what in ("bet", "predict"):
            out = subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--threads",
                                  str(args.threads), "--worker", what, str(head)],
                                 capture_output=True, text=True, check=True)
            res[what] = json.loads(out.stdout.strip().splitlines()[-1])
    size = res["predict"]["size"]
    print(f"1 mm whole-head T1 {size[0]}x{size[1]}x{size[2]} ({args.subject}), {args.threads} threads, "
          f"{args.runs} timed runs after a warm-up")
    print(f"{'step':34s} {'median s':>9s} {'peak MB':>8s}")
    names = {"bet": "brain extraction alone (deepbet)", "predict": "end to end (predict)"}
    for k, v in res.items():
        print(f"{names[k]:34s} {np.median(v['seconds']):9.2f} {v['peak_mb']:8.0f}")
    print(f"ratio end-to-end / brain extraction: "
          f"{np.median(res['predict']['seconds']) / np.median(res['bet']['seconds']):.2f}")


if __name__ == "__main__":
    main()
