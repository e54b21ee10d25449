"""Age-model benchmark: inference seconds of approach B (the CNN) against approach A (tissue
volume features + ridge) on the same model-space inputs, this machine's CPU.

    python benchmarks/age.py [--data ../shared/data] [--n 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "BrainAge"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import SimpleITK as sitk
    import torch
    torch.set_num_threads(args.threads)
    from BrainAgeLib import models, regression
    from BrainAgeLib.cnn import cnn_input, predict_age
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.segmentation import segment_array
    from BrainAgeLib.training import camcan_paths, read_camcan_subjects
    camcan = Path(args.data) / "camcan"
    subjects = [r for r in read_camcan_subjects(camcan) if r["split"] == "test"][: args.n]
    net = models.load_resunet()
    folder = str(models.models_dir())
    age_model = regression._load_age_model(folder)
    cnn = regression._load_cnn(folder)
    t_a, t_b, t_seg = [], [], []
    for r in subjects:
        img = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths(camcan, r["subject_id"])["image"]))))
        t0 = time.perf_counter()
        prob = segment_array(net, img)
        t_seg.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        age_model["_volumes"].predict(regression.volume_features(prob, age_model["_volumes"].cell)[None])
        t_a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        x = torch.from_numpy(cnn_input(img, prob))[None].contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            predict_age(cnn, x, mirror=age_model["cnn"].get("mirror", False))
        t_b.append(time.perf_counter() - t0)
    print(f"{len(subjects)} Cam-CAN test subjects, {args.threads} threads, median seconds per subject")
    print(f"  segmentation (ResUNet, 2 mm)          {np.median(t_seg):.3f}")
    print(f"  approach A (features + ridge)         {np.median(t_a):.3f}")
    print(f"  approach B (CNN input + CNN{', x2 mirror' if age_model['cnn'].get('mirror') else ''})  {np.median(t_b):.3f}")
    print(f"  ratio B / A                           {np.median(t_b) / np.median(t_a):.1f}")


if __name__ == "__main__":
    main()
