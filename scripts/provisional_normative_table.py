"""Provisional normative table from Cam-CAN (development only; the lead's multi-site training
writes the final ``runs/age-model/normative_table.csv``).

Cam-CAN ``reg_train`` and ``test`` images are already in model space (2 mm, template grid), so
no registration: each is segmented with the shipped ResUNet and aged with the shipped models,
as in training (``training.model_space_features``). The ``reg_train`` subjects trained the
age models, so their predicted ages are IN-SAMPLE (column ``in_sample`` = 1); ``test`` ones are
out-of-sample. Columns: subject_id, site, sex, age, split, predicted_age, csf_frac, gm_frac,
wm_frac, in_sample. Run niced with one thread:

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python scripts/provisional_normative_table.py \
        --data ../shared/data/camcan --out runs/normative/provisional_table.csv [--n-train 400]
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from BrainAgeLib.models import load_resunet
from BrainAgeLib.preprocessing import normalize_intensity
from BrainAgeLib.regression import predict_ages
from BrainAgeLib.segmentation import segment_array
from BrainAgeLib.training import camcan_paths, read_camcan_subjects
from BrainAgeLib.volumes import global_fractions

COLUMNS = ["subject_id", "site", "sex", "age", "split", "predicted_age", "csf_frac", "gm_frac",
           "wm_frac", "in_sample"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/camcan")
    ap.add_argument("--out", default="runs/normative/provisional_table.csv")
    ap.add_argument("--n-train", type=int, default=500, help="reg_train subjects (seeded draw)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--reverse", action="store_true", help="work from the end of the list (a second worker)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = read_camcan_subjects(args.data)
    train = [r for r in rows if r["split"] == "reg_train"]
    rng = np.random.default_rng(args.seed)
    train = [train[i] for i in sorted(rng.choice(len(train), min(args.n_train, len(train)), replace=False))]
    todo = [r for r in rows if r["split"] == "test"] + train
    if args.reverse:
        todo = todo[::-1]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        with open(out, newline="") as f:
            done = {r["subject_id"] for r in csv.DictReader(f)}
    net = load_resunet()
    t0 = time.time()
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if not done:
            w.writeheader()
        for i, r in enumerate(todo):
            if r["subject_id"] in done:
                continue
            img = sitk.ReadImage(str(camcan_paths(args.data, r["subject_id"])["image"]))
            arr = normalize_intensity(sitk.GetArrayFromImage(img))
            prob = segment_array(net, arr)
            ages = predict_ages(prob, arr)
            frac = global_fractions(prob)
            w.writerow({"subject_id": r["subject_id"], "site": "camcan", "sex": r["sex"],
                        "age": f"{r['age']:g}", "split": "test" if r["split"] == "test" else "train",
                        "predicted_age": f"{ages['predicted_age']:.3f}",
                        "csf_frac": f"{frac[0]:.5f}", "gm_frac": f"{frac[1]:.5f}",
                        "wm_frac": f"{frac[2]:.5f}", "in_sample": int(r["split"] != "test")})
            f.flush()
            if (i + 1) % 25 == 0:
                print(f"{i + 1}/{len(todo)} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
