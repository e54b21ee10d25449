"""CUDA against CPU for the two networks, on the same saved inputs and the shipped weights.

Prepared for a machine with a GPU, which has torch and safetensors but not SimpleITK:

    python benchmarks/cuda_check.py --save [--data ../shared/data] [--n 5]   # here: write the inputs
    python benchmarks/cuda_check.py [--devices cpu,cuda]                      # there: compare, time

``--save`` writes ``runs/cuda_check/inputs.npz``: ``n`` Cam-CAN ``test`` scans, normalised in
model space (2 mm), as ``predict`` hands them to the ResUNet. The check verifies the shipped
weights' SHA256, segments each scan and reads B's age (the ResUNet's probabilities, the CNN
input built from them, the scan and its mirror as ``predict`` does) on each device, and prints
per device the median seconds per scan, for each network and both together (after a warm-up; CUDA synchronised) and, against the
first device, the largest probability difference, the share of voxels whose label changes, and
the largest difference of B's raw age (years). JSON on the last line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "BrainAge"))
INPUTS = ROOT / "runs" / "cuda_check" / "inputs.npz"


def save(data: Path, n: int) -> None:
    import SimpleITK as sitk
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.training import camcan_paths, read_camcan_subjects
    camcan = data / "camcan"
    subjects = [r for r in read_camcan_subjects(camcan) if r["split"] == "test"][:n]
    arrays = {r["subject_id"]: normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(
        str(camcan_paths(camcan, r["subject_id"])["image"])))).astype(np.float32) for r in subjects}
    INPUTS.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(INPUTS, **arrays)
    print(f"wrote {len(arrays)} scans to {INPUTS} ({INPUTS.stat().st_size / 1e6:.1f} MB)")


def load_networks(device: str):
    from safetensors import safe_open
    from safetensors.torch import load_file
    from BrainAgeLib import models
    from BrainAgeLib.cnn import AgeCNN
    from BrainAgeLib.resunet import ResUNet3D
    nets = {}
    for name, cls in (("resunet.safetensors", ResUNet3D), ("age_cnn.safetensors", AgeCNN)):
        path = models.verify(name)                    # SHA256 against manifest.json
        with safe_open(str(path), "pt") as f:
            widths = tuple(json.loads(f.metadata()["widths"]))
        net = cls(widths=widths)
        net.load_state_dict(load_file(str(path)))
        nets[name.split(".")[0]] = net.eval().to(device)
    mirror = json.loads(models.verify("age_model.json").read_text())["cnn"].get("mirror", False)
    return nets["resunet"], nets["age_cnn"], mirror


def run(device: str, scans: dict, threads: int) -> dict:
    import torch
    from BrainAgeLib.cnn import cnn_input, predict_age
    from BrainAgeLib.segmentation import segment_array
    torch.set_num_threads(threads)
    resunet, cnn, mirror = load_networks(device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def one(array):
        t0 = time.perf_counter()
        prob = segment_array(resunet, array, device=device)
        sync()
        t1 = time.perf_counter()
        x = torch.from_numpy(cnn_input(array, prob))[None].to(device)
        with torch.inference_mode():
            age = float(predict_age(cnn, x, mirror)[0])
        sync()
        t2 = time.perf_counter()
        return prob, age, t1 - t0, t2 - t1

    one(next(iter(scans.values())))                  # warm-up (kernels, allocator)
    out = {"probs": {}, "ages": {}, "seconds": [], "resunet_seconds": [], "cnn_seconds": []}
    for sid, array in scans.items():
        out["probs"][sid], out["ages"][sid], t_seg, t_cnn = one(array)
        out["resunet_seconds"].append(t_seg)
        out["cnn_seconds"].append(t_cnn)
        out["seconds"].append(t_seg + t_cnn)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", action="store_true", help="write the inputs (needs SimpleITK and ../shared/data)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated; the first is the reference")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (as on the 2-core machine)")
    args = ap.parse_args()
    if args.save:
        save(Path(args.data), args.n)
        return
    import torch
    scans = dict(np.load(INPUTS))
    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices and not torch.cuda.is_available():
        sys.exit("CUDA is not available on this machine: run with --devices cpu, or on the GPU machine")
    results = [(d, run(d, scans, args.threads)) for d in devices]     # "cpu,cpu" checks the check
    ref = results[0][1]
    summary = {"scans": len(scans), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"{len(scans)} Cam-CAN test scans, 2 mm model space; torch {torch.__version__}")
    for i, (d, r) in enumerate(results):
        row = {"median_seconds_per_scan": round(statistics.median(r["seconds"]), 4),
               "resunet_median_seconds": round(statistics.median(r["resunet_seconds"]), 4),
               "cnn_median_seconds": round(statistics.median(r["cnn_seconds"]), 4)}
        if i > 0:
            row["max_abs_probability_difference"] = float(max(np.abs(r["probs"][s] - ref["probs"][s]).max() for s in scans))
            row["label_change_share"] = float(np.mean([(r["probs"][s].argmax(0) != ref["probs"][s].argmax(0)).mean()
                                                       for s in scans]))
            row["max_abs_cnn_age_difference_years"] = float(max(abs(r["ages"][s] - ref["ages"][s]) for s in scans))
            row["speed_ratio_vs_" + devices[0]] = round(statistics.median(ref["seconds"]) / statistics.median(r["seconds"]), 1)
        summary[d if i == 0 or d != devices[0] else f"{d} (again)"] = row
        print(f"  {d:<6} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
