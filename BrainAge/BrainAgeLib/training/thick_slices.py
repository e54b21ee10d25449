"""Ensemble weights for thick-slice scans (``brainage train-thick-slice-weights``).

Thick slices (3-6 mm) move approaches A and B differently: A reads the ResUNet's tissue
probabilities, and the ResUNet learned from thick-slice crops (TorchIO ``RandomAnisotropy``);
B reads the image itself and met thick slices only in some of its degraded training copies.
Which one holds depends on the slices' orientation. For each orientation (sagittal, coronal,
axial), A's weight in the ensemble is chosen so that the thick-slice copies of subjects that
neither age model saw (Cam-CAN ``seg_train``/``seg_val``, :func:`held_out_subjects`; never
``test`` or ``ixi10``) keep the age their clean scan gets: the weight minimising the mean
absolute change over 3, 4, 5 and 6 mm slices, shipped only where its gain over the usual
ensemble is clear across those subjects.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..qc import SLICE_ORIENTATIONS as ORIENTATIONS

THICKNESSES_MM = (3.0, 4.0, 5.0, 6.0)
WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
COLUMNS = ["set", "subject_id", "age", "orientation", "thickness_mm", "ensemble", "volumes", "cnn", "qc"]


def held_out_subjects(data_dir, n: int = 12) -> list[dict]:
    """``n`` Cam-CAN subjects that neither age model saw, spread over the age range: the
    ``seg_train`` and ``seg_val`` subjects (52, ages 22-84; the ResUNet learned from ``seg_train``,
    A and B only from ``reg_train`` and ``ixi120``). Never ``test``. Subjects the age models
    trained on would not do: A reads its own training subjects at MAE 2.5 years (5.7 on ``test``),
    so their thick-slice copies stay near an age A memorised and the fit favours A."""
    from .data import camcan_paths, read_camcan_subjects
    data_dir = Path(data_dir)
    pool = sorted((r for r in read_camcan_subjects(data_dir / "camcan") if r["split"] in ("seg_train", "seg_val")),
                  key=lambda r: (float(r["age"]), r["subject_id"]))
    picks = np.unique(np.round(np.linspace(0, len(pool) - 1, min(n, len(pool)))).astype(int))
    return [{"set": "camcan", "subject_id": pool[i]["subject_id"], "age": float(pool[i]["age"]),
             "image": camcan_paths(data_dir / "camcan", pool[i]["subject_id"])["image"]} for i in picks]


def measure_thick_slices(subjects: list[dict], out_csv, log: Callable[[str], None] = print) -> list[dict]:
    """The shipped models' ensemble, A and B ages (years) of each subject's clean scan and of
    its thick-slice copies (:func:`~BrainAgeLib.degrade.thick_slices`, every orientation and
    thickness), the ensemble with its usual weight (whatever thick-slice weights are shipped);
    one CSV row each, written as it goes."""
    from .. import degrade, pipeline
    from ..io import read_image
    rows = []
    t0 = time.time()
    with open(out_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for i, s in enumerate(subjects):
            image = read_image(s["image"])
            acquisitions = [("clean", 0.0)] + [(o, t) for o in ORIENTATIONS for t in THICKNESSES_MM]
            for orientation, mm in acquisitions:
                scan = image if orientation == "clean" else degrade.thick_slices(image, mm, orientation)
                r = pipeline.predict(scan, device="cpu")
                usual = r.age_details.get("thick_slices", {}).get("usual_ensemble", r.predicted_age)
                row = {"set": s["set"], "subject_id": s["subject_id"], "age": s["age"],
                       "orientation": orientation, "thickness_mm": mm,
                       "ensemble": round(usual, 3), "volumes": round(r.predicted_age_volumes, 3),
                       "cnn": round(r.predicted_age_cnn, 3), "qc": r.qc_text}
                rows.append(row)
                writer.writerow(row)
                f.flush()
            log(f"{i + 1}/{len(subjects)} {s['set']} {s['subject_id']} ({time.time() - t0:.0f} s)")
    return rows


def fit_thick_slice_weights(rows: list[dict], n_boot: int = 5000, seed: int = 0) -> dict:
    """Per orientation, A's weight in the ensemble of bias-corrected ages (``w * A + (1 - w) * B``)
    that keeps thick-slice copies closest to their clean scan's ensemble age (least mean absolute
    change over :data:`WEIGHT_GRID`), with the mean absolute change at that weight and with the
    usual ensemble, and the gain's 95 % bootstrap interval over subjects (``n_boot`` resamples).
    ``apply`` is True only when that interval lies above 0: a gain the subjects cannot tell from
    chance is not worth changing the ensemble for (the same rule as a site offset within two
    standard errors of 0)."""
    clean = {r["subject_id"]: float(r["ensemble"]) for r in rows if r["orientation"] == "clean"}
    rng = np.random.default_rng(seed)
    out = {}
    for o in ORIENTATIONS:
        sel = [r for r in rows if r["orientation"] == o and r["subject_id"] in clean]
        if not sel:
            continue
        a = np.array([float(r["volumes"]) for r in sel])
        b = np.array([float(r["cnn"]) for r in sel])
        ref = np.array([clean[r["subject_id"]] for r in sel])
        usual = np.abs(np.array([float(r["ensemble"]) for r in sel]) - ref)
        losses = [float(np.mean(np.abs(w * a + (1 - w) * b - ref))) for w in WEIGHT_GRID]
        best = int(np.argmin(losses))
        w = float(WEIGHT_GRID[best])
        gain = usual - np.abs(w * a + (1 - w) * b - ref)
        ids = np.array([r["subject_id"] for r in sel])
        per_subject = np.array([gain[ids == s].mean() for s in dict.fromkeys(ids)])
        boots = [per_subject[rng.integers(0, per_subject.size, per_subject.size)].mean() for _ in range(n_boot)]
        ci = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
        out[o] = {"weight_volumes": w, "mean_abs_change": round(losses[best], 3),
                  "mean_abs_change_usual_ensemble": round(float(usual.mean()), 3),
                  "gain_ci95": [round(c, 3) for c in ci], "apply": bool(ci[0] > 0),
                  "n_scans": len(sel), "n_subjects": int(per_subject.size)}
    return out


def train_thick_slice_weights(data_dir, out_dir, n_subjects: int = 12,
                              measured_csv=None, log: Callable[[str], None] = print) -> Path:
    """Measure (:func:`measure_thick_slices`) and fit (:func:`fit_thick_slice_weights`); writes
    ``thick_slices.csv`` and ``thick_slice_weights.json`` (the weights, the slice thickness from
    which they apply, and the SHA256 of the age models they were fitted for) into ``out_dir``.
    ``measured_csv``: refit from an earlier measurement of the same models instead (its rows)."""
    from .. import models
    from ..qc import MAX_SLICE_MM
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if measured_csv is not None:
        with open(measured_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        subjects = [{"set": k.split(":")[0], "subject_id": k.split(":")[1]}
                    for k in dict.fromkeys(f"{r['set']}:{r['subject_id']}" for r in rows)]
        log(f"{measured_csv}: {len(rows)} scans of {len(subjects)} subjects")
    else:
        subjects = held_out_subjects(data_dir, n_subjects)
        rows = measure_thick_slices(subjects, out / "thick_slices.csv", log)
    fit = fit_thick_slice_weights(rows)
    for o, v in fit.items():
        log(f"{o}: weight of A {v['weight_volumes']:.2f}, mean |age change| {v['mean_abs_change']:.2f} "
            f"(usual ensemble {v['mean_abs_change_usual_ensemble']:.2f}; gain 95 % interval "
            f"{v['gain_ci95'][0]:+.2f} to {v['gain_ci95'][1]:+.2f}: {'applied' if v['apply'] else 'not applied'}), "
            f"{v['n_scans']} scans")
    manifest = models.read_manifest()["files"]
    doc = {"created": time.strftime("%Y-%m-%d"),
           "applies_above_mm": MAX_SLICE_MM,
           "weight_volumes": {o: v["weight_volumes"] for o, v in fit.items() if v["apply"]},
           "fit": fit,
           "fitted_for": {name: manifest[name]["sha256"] for name in ("age_model.json", "age_cnn.safetensors")},
           "subjects": [f"{s['set']}:{s['subject_id']}" for s in subjects],
           "thicknesses_mm": list(THICKNESSES_MM)}
    path = out / "thick_slice_weights.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
