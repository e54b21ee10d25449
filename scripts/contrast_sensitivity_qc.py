"""Can a scan's own contrast sensitivity flag a contrast the models misread? (issue 11, silent
errors: 8 of the 12 are gamma 0.7 / 1.4 on IXI heads.) Each held-out scan is read in model space
at a ladder of gammas (applied before normalisation and, for IXI heads, before harmonisation, as
the contrast copies are); the ensemble's age at each. A scan acquired with gamma g0 and then
probed at g0 / 1.25 and g0 x 1.25 shows a sensitivity age(1.25 g0) - age(g0 / 1.25): if it grows
away from g0 = 1, a threshold on it is a QC that needs no knowledge of the scanner.

    .venv/bin/python scripts/contrast_sensitivity_qc.py OUT.csv          # ~40 s per scan on 2 cores
    .venv/bin/python scripts/contrast_sensitivity_qc.py --analyse OUT.csv  # the figures

Scans: the 10 ixi10 and 20 ixi120 validation heads (B never trained on them) and 10 Cam-CAN
``test`` scans. Writes one row per scan and gamma (A, B and ensemble ages, bias-corrected as
shipped).
"""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import torch

from BrainAgeLib import models
from BrainAgeLib.cnn import predict_age
from BrainAgeLib.preprocessing import normalize_intensity
from BrainAgeLib.regression import AgeBiasCorrection, VolumeAgeRegressor
from BrainAgeLib.training.age_model import feature_matrix, load_run_cnn
from BrainAgeLib.training.cnn import training_partition
from BrainAgeLib.training.features import scan_features, subject_array

GAMMAS = (0.56, 0.7, 0.8, 0.875, 1.0, 1.12, 1.25, 1.4, 1.75)


def main(out_csv: str) -> None:
    z = np.load("runs/features/features.npz")
    f = {k: z[k] for k in ("site", "split", "age", "subject_id")}
    ixi = np.load("runs/features/ixi_model_space.npz")
    ixi_images = dict(zip((str(s) for s in ixi["subject_id"]), ixi["image"]))
    _, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
    rows = list(np.flatnonzero(f["split"] == "ixi10")) + list(va[f["site"][va] == "ixi"])
    rows += list(np.flatnonzero(f["split"] == "test")[::10])
    m = json.loads(models.verify("age_model.json").read_text())
    reg = VolumeAgeRegressor.from_dict(m["volumes"]["regressor"])
    w = m["ensemble"]["weight_volumes"]
    bias_a, bias_b, bias_e = (AgeBiasCorrection(**m[k]["bias"]) for k in ("volumes", "cnn", "ensemble"))
    net = models.load_resunet()
    cnn = load_run_cnn("runs/cnn-both/age_cnn.safetensors")
    with open(out_csv, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["subject_id", "site", "age", "gamma", "age_a", "age_b", "age_ensemble"])
        for n, r in enumerate(rows):
            sid = str(f["subject_id"][r])
            arr, registered = subject_array("../shared/data/camcan", sid,
                                            ixi_images if str(f["site"][r]) == "ixi" else None)
            for g in GAMMAS:
                feats = scan_features(net, normalize_intensity(np.clip(arr, 0, None) ** g), registered)
                one = {k: v[None] for k, v in feats.items()}
                pa = float(reg.predict(feature_matrix(one, [0], f"c{reg.cell}"))[0])
                with torch.no_grad():
                    pb = float(predict_age(cnn, torch.from_numpy(one["cnn"].astype(np.float32)), True)[0])
                wr.writerow([sid, f["site"][r], f["age"][r], g, round(bias_a(pa), 2), round(bias_b(pb), 2),
                             round(bias_e(w * pa + (1 - w) * pb), 2)])
            fh.flush()
            print(f"{n + 1}/{len(rows)} {sid}", flush=True)


def analyse(csv_path: str) -> None:
    """Per site: the sensitivity of scans acquired at gamma 0.7, 1 and 1.4, and their age change."""
    from collections import defaultdict
    ladder, site = defaultdict(dict), {}
    for r in csv.DictReader(open(csv_path)):
        ladder[r["subject_id"]][float(r["gamma"])] = float(r["age_ensemble"])
        site[r["subject_id"]] = r["site"]
    probes = {0.7: (0.56, 0.875), 1.0: (0.8, 1.25), 1.4: (1.12, 1.75)}
    for st in ("ixi", "camcan"):
        ids = [k for k in ladder if site[k] == st and len(ladder[k]) == len(GAMMAS)]
        if not ids:
            continue
        print(f"{st}: {len(ids)} scans")
        for g0, (lo, hi) in probes.items():
            s = np.array([ladder[k][hi] - ladder[k][lo] for k in ids])
            ch = np.array([ladder[k][g0] - ladder[k][1.0] for k in ids])
            print(f"  acquired at gamma {g0}: sensitivity age({hi}) - age({lo}) median {np.median(s):.2f}, "
                  f"range {s.min():.2f} to {s.max():.2f}; age change against gamma 1: mean {ch.mean():+.2f}")


if __name__ == "__main__":
    analyse(sys.argv[2]) if sys.argv[1] == "--analyse" else main(sys.argv[1])
