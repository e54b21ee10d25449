"""Segmentation benchmark: the ResUNet against a classical peer (intensity k-means, 3 classes),
on the same Cam-CAN test subjects, 2 mm volumes, this machine's CPU.

Prints median seconds per volume, peak resident memory of a process that segments one volume,
and mean Dice against the reference labels, for both methods.

    python benchmarks/segmentation.py [--data ../shared/data] [--n 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "BrainAge"))


def kmeans_segment(image, iterations: int = 50):
    """Classical peer: 3-class k-means of the brain voxels' intensities (CSF < GM < WM)."""
    import SimpleITK as sitk
    arr = sitk.GetArrayViewFromImage(image)
    brain = arr > 0
    fg = arr[brain].astype(np.float64)
    centres = np.percentile(fg, (10, 50, 90))
    for _ in range(iterations):
        cls = np.abs(fg[:, None] - centres[None]).argmin(1)
        new = np.array([fg[cls == k].mean() for k in range(3)])
        if np.allclose(new, centres):
            break
        centres = new
    lab = np.zeros(arr.shape, np.uint8)
    lab[brain] = cls + 1
    return lab


def worker(method: str, path: str, threads: int) -> None:
    """Segment one volume in this process; print seconds and peak memory as JSON."""
    import resource
    import SimpleITK as sitk
    import torch
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    from BrainAgeLib import models
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.segmentation import segment_array
    img = sitk.ReadImage(path, sitk.sitkFloat32)
    if method == "resunet":
        net = models.load_resunet()
        t0 = time.perf_counter()
        prob = segment_array(net, normalize_intensity(sitk.GetArrayViewFromImage(img)))
        lab = prob.argmax(0).astype(np.uint8)
    else:
        t0 = time.perf_counter()
        lab = kmeans_segment(img)
    sec = time.perf_counter() - t0
    out = Path(path).with_suffix("").with_suffix("")
    np.save(f"/tmp/bench_{method}_{out.name}.npy", lab)
    print(json.dumps({"seconds": sec, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker, args.threads)
    import SimpleITK as sitk
    from BrainAgeLib.training import camcan_paths, dice_scores, read_camcan_subjects
    camcan = Path(args.data) / "camcan"
    subjects = [r for r in read_camcan_subjects(camcan) if r["split"] == "test"][: args.n]
    res = {m: {"seconds": [], "peak_mb": [], "dice": []} for m in ("resunet", "kmeans")}
    for r in subjects:
        p = camcan_paths(camcan, r["subject_id"])
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"])))
        for m in res:
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                                  "--worker", m, str(p["image"])], capture_output=True, text=True, check=True)
            d = json.loads(out.stdout.strip().splitlines()[-1])
            lab = np.load(f"/tmp/bench_{m}_{r['subject_id']}_T1w.npy")
            res[m]["seconds"].append(d["seconds"])
            res[m]["peak_mb"].append(d["peak_mb"])
            res[m]["dice"].append(dice_scores(lab, ref))
    print(f"{len(subjects)} Cam-CAN test volumes (2 mm, 98x116x94), {args.threads} threads")
    print(f"{'method':10s} {'median s':>9s} {'peak MB':>8s} {'Dice CSF':>9s} {'GM':>6s} {'WM':>6s}")
    for m, v in res.items():
        d = np.mean(v["dice"], axis=0)
        print(f"{m:10s} {np.median(v['seconds']):9.2f} {np.median(v['peak_mb']):8.0f} "
              f"{d[0]:9.3f} {d[1]:6.3f} {d[2]:6.3f}")
    ratio = np.median(res["resunet"]["seconds"]) / np.median(res["kmeans"]["seconds"])
    print(f"time ratio resunet / kmeans: {ratio:.2f}")


if __name__ == "__main__":
    main()
