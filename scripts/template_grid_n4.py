"""Bias correction of scans already on the template grid (``preprocessing.template_grid_array``).

``python scripts/template_grid_n4.py fields`` (from the repository root): the SD of the N4 bias
field (``preprocessing.bias_field_sd``) of every Cam-CAN ``reg_train`` and ``test`` scan, and of
the 6 Cam-CAN scans of ``evaluate-robustness`` clean and under each intensity degradation;
writes ``docs/results/n4/bias_field_sd_{camcan,degraded}.csv``. ``BIAS_FIELD_MAX_SD`` was set
from the 60 held-out ``reg_train`` scans of ``qc.atlas_held_out`` (twice their maximum).

``python scripts/template_grid_n4.py robust|test``: ages with N4 never and always applied
(``BIAS_FIELD_MAX_SD`` = inf / -1), the same models, in one run: ``robust`` = the 6 scans clean
and with their bias field, ``test`` = the 100 Cam-CAN ``test`` scans; writes
``docs/results/n4/template_grid_n4_{robust,test}.csv``. The committed CSVs were measured with
release 5's models.
"""
import csv
import sys
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import BrainAgeLib.preprocessing as pp
from BrainAgeLib import degrade, qc
from BrainAgeLib.evaluation_robustness import _subjects
from BrainAgeLib.io import read_image
from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects

DATA = Path("../shared/data")
OUT = Path("docs/results/n4")
SEED = 20261123


def field_sd(image: sitk.Image) -> float:
    """The bias-field SD that ``predict`` measures on a template-grid scan."""
    return round(pp.template_grid_array(image)[1], 4)


def degraded(s: dict, img: sitk.Image) -> dict:
    out = {"clean": img}
    for name, fn in (("motion", degrade.motion), ("ghosting", degrade.ghosting),
                     ("bias_field", degrade.bias_field),
                     ("noise_snr20", lambda im, d: degrade.rician_noise(im, 20, d))):
        draw = int(np.random.SeedSequence([SEED, zlib.crc32(s["subject_id"].encode()),
                                           zlib.crc32(name.encode())]).generate_state(1)[0])
        out[name] = degrade.keep_zero_background(fn(img, draw), img)
    for g in (0.7, 1.4):
        out[f"gamma_{g}"] = degrade.keep_zero_background(degrade.gamma(img, g), img)
    return out


def fields() -> None:
    held_out = set(qc.atlas_held_out(DATA / "camcan"))
    with open(OUT / "bias_field_sd_camcan.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "split", "threshold_set", "bias_field_sd"])
        for i, r in enumerate(read_camcan_subjects(DATA / "camcan")):
            if r["split"] in ("reg_train", "test"):
                sd = field_sd(read_image(camcan_paths(DATA / "camcan", r["subject_id"])["image"]))
                w.writerow([r["subject_id"], r["split"], r["subject_id"] in held_out, sd])
                f.flush()
    with open(OUT / "bias_field_sd_degraded.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "condition", "bias_field_sd"])
        for s in _subjects(DATA, 6, 0, SEED):
            for name, im in degraded(s, read_image(s["image"])).items():
                w.writerow([s["subject_id"], name, field_sd(im)])
                print(s["subject_id"], name, flush=True)


def ages(which: str) -> None:
    from BrainAgeLib.pipeline import predict
    with open(OUT / f"template_grid_n4_{which}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sid", "age", "cond", "n4", "ens", "A", "B", "seconds", "qc"])

        def run(sid, age, cond, im):
            for n4 in (False, True):
                pp.BIAS_FIELD_MAX_SD = -1.0 if n4 else float("inf")
                r = predict(im, device="cpu")
                w.writerow([sid, age, cond, n4, round(r.predicted_age, 2), round(r.predicted_age_volumes, 2),
                            round(r.predicted_age_cnn, 2), round(r.seconds, 2), r.qc_text[:60]])
                f.flush()
        if which == "robust":
            for s in _subjects(DATA, 6, 0, SEED):
                ims = degraded(s, read_image(s["image"]))
                for cond in ("clean", "bias_field"):
                    run(s["subject_id"], s["age"], cond, ims[cond])
        else:
            for r in read_camcan_subjects(DATA / "camcan"):
                if r["split"] == "test":
                    run(r["subject_id"], r["age"], "clean",
                        read_image(camcan_paths(DATA / "camcan", r["subject_id"])["image"]))


if __name__ == "__main__":
    fields() if sys.argv[1] == "fields" else ages(sys.argv[1])
