"""Ensemble corrections for thick-slice scans (``brainage train-thick-slice-weights``).

Thick slices (3-6 mm) move approaches A and B differently: A reads the ResUNet's tissue
probabilities, and the ResUNet learned from thick-slice crops (TorchIO ``RandomAnisotropy``);
B reads the image itself and met thick slices only in some of its degraded training copies.
Much of what they do is systematic (B reads coronal 5 mm slices about 15 years younger, and
squeezes the ages toward the middle), and which approach holds depends on the slices'
orientation. For each orientation (sagittal, coronal, axial), on the thick-slice copies of
subjects that neither age model trained on (Cam-CAN ``seg_train``/``seg_val``,
:func:`held_out_subjects`, and since release 15 the 20 ``ixi120`` validation heads of a second
scanner, :func:`held_out_ixi_subjects`; never ``test`` or ``ixi10``): a line per thickness maps
A's and B's thick-slice ages back onto their clean-scan ages, and A's weight in the ensemble of the mapped ages is the one that keeps the
copies closest to their clean scan's age. Shipped only where the gain over the usual ensemble,
measured out of fold, is clear across those subjects.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..qc import SLICE_ORIENTATIONS as ORIENTATIONS
from ..regression import thick_slice_age_array

THICKNESSES_MM = (3.0, 4.0, 5.0, 6.0)
WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
COLUMNS = ["set", "subject_id", "age", "orientation", "thickness_mm", "ensemble", "volumes", "cnn", "qc"]
ACQUISITIONS = (("clean", 0.0),) + tuple((o, t) for o in ORIENTATIONS for t in THICKNESSES_MM)


def held_out_subjects(data_dir, n: int = 52) -> list[dict]:
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


def held_out_ixi_subjects(data_dir, n: int | None = None) -> list[dict]:
    """The ``ixi120`` whole heads that the shipped age models kept for validation (never trained
    on; their seeded draw, :func:`~BrainAgeLib.training.cnn.training_partition`, with the seed and
    size recorded in the manifest: 20 heads, ages 21-79), youngest first, at most ``n`` of them.
    They are read through the raw-scan path (brain extraction, N4, rigid registration), so their
    thick-slice copies carry a second scanner's acquisition into the fit."""
    import csv as _csv
    from .. import models
    from .features import split_validation
    config = models.read_manifest()["files"]["age_cnn.safetensors"]["config"]
    folder = Path(data_dir) / "ixi120"
    with open(folder / "subjects.csv", newline="", encoding="utf-8") as f:
        rows = {r["subject_id"]: float(r["age"]) for r in _csv.DictReader(f)}
    _, val = split_validation(list(rows), int(config["n_val_ixi"]), int(config["seed"]))
    picks = sorted(val, key=lambda s: (rows[s], s))[:n]
    return [{"set": "ixi120", "subject_id": s, "age": rows[s], "image": folder / "t1" / f"{s}_T1.nii.gz"}
            for s in picks]


def _subject_key(row: dict) -> tuple[str, str]:
    return str(row["set"]), str(row["subject_id"])


def complete_subjects(rows: list[dict], acquisitions: list[tuple[str, float]] | None = None) -> set[tuple[str, str]]:
    """The (set, subject_id) of every subject that ``rows`` (:func:`measure_thick_slices`'s CSV
    rows) hold with each of ``acquisitions`` (default: the clean scan and every orientation and
    thickness)."""
    acquisitions = acquisitions or ACQUISITIONS
    per: dict[tuple[str, str], set] = {}
    for r in rows:
        per.setdefault(_subject_key(r), set()).add((r["orientation"], float(r["thickness_mm"])))
    wanted = {(o, float(mm)) for o, mm in acquisitions}
    return {k for k, v in per.items() if v >= wanted}


def bootstrap_ci95(per_subject: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of ``per_subject`` (one value per subject, resampled
    ``n_boot`` times with ``rng``)."""
    boots = [per_subject[rng.integers(0, per_subject.size, per_subject.size)].mean() for _ in range(n_boot)]
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def measure_thick_slices(subjects: list[dict], out_csv, log: Callable[[str], None] = print,
                         acquisitions: list[tuple[str, float]] | None = None, resume: bool = False,
                         arrays_dir=None) -> list[dict]:
    """The shipped models' ensemble, A and B ages (years) of each subject's clean scan and of
    its thick-slice copies (:func:`~BrainAgeLib.degrade.thick_slices`, every orientation and
    thickness), uncorrected, and the ensemble with its usual weight (whatever thick-slice
    corrections are shipped); one CSV row each, written as it goes. ``resume``: the subjects
    that ``out_csv`` already holds with every acquisition are kept as they are and not measured
    again (a subject cut off half-way is measured anew), so that a run of hours can stop and go
    on; the caller makes sure they were measured with the same models. ``arrays_dir``: each scan's
    model-space T1 and tissue probabilities are also kept there (float16, :func:`array_path`), from
    which :func:`read_thick_slices` reads other age models' ages without running a scan again."""
    from .. import degrade, pipeline
    from ..io import read_image
    acquisitions = acquisitions or ACQUISITIONS
    if arrays_dir is not None:
        Path(arrays_dir).mkdir(parents=True, exist_ok=True)
        stamp, now = Path(arrays_dir) / "arrays_models.json", models_fingerprint(ARRAYS_MEASURED_WITH)
        if stamp.exists() and json.loads(stamp.read_text()) != now:
            raise ValueError(f"{arrays_dir} holds the maps of another ResUNet or template; keep them elsewhere")
        stamp.write_text(json.dumps(now, indent=1) + "\n")
    kept: list[dict] = []
    if resume and Path(out_csv).exists():
        with open(out_csv, newline="", encoding="utf-8") as f:
            old = list(csv.DictReader(f))
        done = complete_subjects(old, acquisitions)
        kept = [r for r in old if _subject_key(r) in done]
        subjects = [s for s in subjects if _subject_key(s) not in done]
        log(f"resuming {out_csv}: {len(done)} subjects already measured, {len(subjects)} to go")
    rows = list(kept)
    t0 = time.time()
    with open(out_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in kept)
        f.flush()
        for i, s in enumerate(subjects):
            image = read_image(s["image"])
            for orientation, mm in acquisitions:
                scan = image if orientation == "clean" else degrade.thick_slices(image, mm, orientation)
                r = pipeline.predict(scan, device="cpu")
                if arrays_dir is not None:
                    save_model_space_arrays(r, array_path(arrays_dir, s, orientation, mm))
                shipped = r.age_details.get("thick_slices", {})   # what the shipped correction changed
                row = {"set": s["set"], "subject_id": s["subject_id"], "age": s["age"],
                       "orientation": orientation, "thickness_mm": mm,
                       "ensemble": round(shipped.get("usual_ensemble", r.predicted_age), 3),
                       "volumes": round(shipped.get("volumes_uncorrected", r.predicted_age_volumes), 3),
                       "cnn": round(shipped.get("cnn_uncorrected", r.predicted_age_cnn), 3), "qc": r.qc_text}
                rows.append(row)
                writer.writerow(row)
                f.flush()
            log(f"{i + 1}/{len(subjects)} {s['set']} {s['subject_id']} ({time.time() - t0:.0f} s)")
    return rows


MEASURED_WITH = ("resunet.safetensors", "template_T1.nii.gz", "age_model.json", "age_cnn.safetensors")


def models_fingerprint(names: tuple[str, ...] = MEASURED_WITH) -> dict[str, str]:
    """The SHA256 of the model files that a thick-slice measurement's ages depend on (``names``,
    by default :data:`MEASURED_WITH`, from the manifest of the models folder in use)."""
    from .. import models
    files = models.read_manifest()["files"]
    return {name: files[name]["sha256"] for name in names}


ARRAYS_MEASURED_WITH = ("resunet.safetensors", "template_T1.nii.gz")


def array_path(arrays_dir, subject: dict, orientation: str, mm: float) -> Path:
    """Where :func:`measure_thick_slices` keeps a scan's model-space arrays."""
    return Path(arrays_dir) / f"{subject['set']}_{subject['subject_id']}_{orientation}{float(mm):g}.npz"


def save_model_space_arrays(result, path) -> None:
    """A prediction's model-space T1 and tissue probabilities (float16), what A and B read."""
    import SimpleITK as sitk
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, image=sitk.GetArrayFromImage(result.model_space_image).astype(np.float16),
                        prob=result.model_space_probabilities.astype(np.float16))


def resegment_arrays(arrays_dir, out_dir, log: Callable[[str], None] = print) -> int:
    """Another ResUNet's reading of a kept measurement: every scan's model-space T1 in
    ``arrays_dir`` (an earlier :func:`measure_thick_slices` ``arrays_dir``, same template) segmented
    again by the ResUNet in use, written with its probabilities to ``out_dir`` and stamped with the
    models in use, for :func:`read_thick_slices`. The model-space T1 does not depend on the ResUNet
    (brain extraction, N4 and the registration come before it), so this replaces measuring the
    scans again (~1 s a scan instead of ~6). Returns the number of scans."""
    from .. import models, pipeline
    from ..segmentation import segment_array
    if pipeline.HARMONIZE_RAW_SCANS:
        raise ValueError("the harmonised model-space T1 depends on the ResUNet: measure the scans again")
    src, out = Path(arrays_dir), Path(out_dir)
    kept = json.loads((src / "arrays_models.json").read_text())
    now = models_fingerprint(ARRAYS_MEASURED_WITH)
    if kept["template_T1.nii.gz"] != now["template_T1.nii.gz"]:
        raise ValueError(f"{src} was registered to another template: measure the scans again")
    if out.resolve() == src.resolve():
        raise ValueError("write the new maps to another folder than the kept ones")
    out.mkdir(parents=True, exist_ok=True)
    net, paths, t0 = models.load_resunet(), sorted(src.glob("*.npz")), time.time()
    for i, path in enumerate(paths):
        with np.load(path) as z:
            image = z["image"]
        prob = segment_array(net, image.astype(np.float32))
        np.savez_compressed(out / path.name, image=image, prob=prob.astype(np.float16))
        if (i + 1) % 100 == 0:
            log(f"{i + 1}/{len(paths)} scans segmented again ({time.time() - t0:.0f} s)")
    (out / "arrays_models.json").write_text(json.dumps(now, indent=1) + "\n")
    return len(paths)


def model_space_age_readers(models_folder=None):
    """``(a_age(prob), b_age(image, prob))``: approach A's and B's bias-corrected ages (years) from
    model-space arrays, with the age models of ``models_folder`` (default: the one in use), as
    :func:`~BrainAgeLib.regression.predict_ages` reads them before any thick-slice line."""
    import torch
    from .. import models
    from ..cnn import cnn_input, predict_age
    from ..regression import AgeBiasCorrection, _load_age_model, _load_cnn, volume_features
    folder = str(models_folder or models.models_dir())
    m = _load_age_model(folder)
    reg, net = m["_volumes"], _load_cnn(folder)
    bias_a, bias_b = AgeBiasCorrection(**m["volumes"]["bias"]), AgeBiasCorrection(**m["cnn"]["bias"])

    def a_age(prob: np.ndarray) -> float:
        return float(bias_a(reg.predict(volume_features(prob, reg.cell)[None])[0]))

    def b_age(image: np.ndarray, prob: np.ndarray) -> float:
        with torch.inference_mode():
            x = torch.from_numpy(cnn_input(image, prob))[None]
            return float(bias_b(float(predict_age(net, x, mirror=m["cnn"].get("mirror", False))[0])))
    return a_age, b_age


def read_thick_slices(subjects: list[dict], arrays_dir, acquisitions: list[tuple[str, float]] | None = None,
                      log: Callable[[str], None] = print) -> list[dict]:
    """:func:`measure_thick_slices`' rows for the age models in use, read from the model-space
    arrays that an earlier measurement kept (``arrays_dir``; the same ResUNet and template,
    ``arrays_models.json``) instead of running every scan again: minutes instead of hours, for
    age models (A, B) trained anew. ``qc`` is left empty (it was not run)."""
    from .. import models
    stamp = Path(arrays_dir) / "arrays_models.json"
    kept = json.loads(stamp.read_text()) if stamp.exists() else None
    if kept != models_fingerprint(ARRAYS_MEASURED_WITH):
        raise ValueError(f"{arrays_dir} holds the maps of another ResUNet or template ({stamp.name}: {kept}); "
                         "measure again with --arrays")
    acquisitions = acquisitions or ACQUISITIONS
    missing = [str(array_path(arrays_dir, s, o, mm)) for s in subjects for o, mm in acquisitions
               if not array_path(arrays_dir, s, o, mm).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} scans have no stored arrays, e.g. {missing[0]}")
    a_age, b_age = model_space_age_readers()
    age_model = json.loads((models.models_dir() / "age_model.json").read_text())
    rows, t0 = [], time.time()
    for s in subjects:
        for orientation, mm in acquisitions:
            with np.load(array_path(arrays_dir, s, orientation, mm)) as z:
                prob, image = z["prob"].astype(np.float32), z["image"].astype(np.float32)
            rows.append({"set": s["set"], "subject_id": s["subject_id"], "age": s["age"],
                         "orientation": orientation, "thickness_mm": mm, "volumes": round(a_age(prob), 3),
                         "cnn": round(b_age(image, prob), 3), "qc": ""})
    log(f"{len(rows)} scans of {len(subjects)} subjects read from {arrays_dir} ({time.time() - t0:.0f} s)")
    return usual_ensemble_column(rows, age_model)


def usual_ensemble_column(rows: list[dict], age_model: dict) -> list[dict]:
    """The rows of a thick-slice measurement with their ``ensemble`` column recomputed for
    ``age_model`` (an ``age_model.json``) from their ``volumes`` and ``cnn`` columns (A's and B's
    bias-corrected ages before any thick-slice line, years): each age is taken back to its raw
    value through its bias correction, weighed by the model's ensemble weight and corrected by
    the ensemble's. Exactly what :func:`~BrainAgeLib.regression.predict_ages` gives when A and B
    are those the rows were measured with, so a refit after a change of the ensemble alone
    (its weight) needs no new measurement."""
    from ..regression import AgeBiasCorrection
    e = age_model["ensemble"]
    w = float(e["weight_volumes"])
    bias_a, bias_b, bias_e = (AgeBiasCorrection(**m["bias"]) for m in (age_model["volumes"], age_model["cnn"], e))
    out = []
    for r in rows:
        pe = w * bias_a.raw(float(r["volumes"])) + (1 - w) * bias_b.raw(float(r["cnn"]))
        out.append({**r, "ensemble": round(float(bias_e(pe)), 3)})
    return out


def _fit_orientation(sel: list[dict], clean: dict[str, dict]) -> dict:
    """Per slice thickness, the line (slope, intercept in years) that maps A's and B's thick-slice
    ages onto their clean-scan ages (least squares), and A's weight in the ensemble of the
    mapped ages, fitted on the rows ``sel`` of one orientation."""
    mm = np.array([float(r["thickness_mm"]) for r in sel])
    a = np.array([float(r["volumes"]) for r in sel])
    b = np.array([float(r["cnn"]) for r in sel])
    clean_a = np.array([float(clean[r["subject_id"]]["volumes"]) for r in sel])
    clean_b = np.array([float(clean[r["subject_id"]]["cnn"]) for r in sel])
    ref = np.array([float(clean[r["subject_id"]]["ensemble"]) for r in sel])
    thicknesses = sorted(set(mm.tolist()))
    lines_a = [np.polyfit(a[mm == t], clean_a[mm == t], 1) for t in thicknesses]
    lines_b = [np.polyfit(b[mm == t], clean_b[mm == t], 1) for t in thicknesses]
    fit = {"thicknesses_mm": thicknesses,
           "slopes_volumes": [round(float(p[0]), 4) for p in lines_a],
           "intercepts_volumes": [round(float(p[1]), 3) for p in lines_a],
           "slopes_cnn": [round(float(p[0]), 4) for p in lines_b],
           "intercepts_cnn": [round(float(p[1]), 3) for p in lines_b]}
    losses = [float(np.mean(np.abs(thick_slice_age_array(a, b, mm, {**fit, "weight_volumes": w}) - ref)))
              for w in WEIGHT_GRID]
    best = int(np.argmin(losses))
    return {"weight_volumes": float(WEIGHT_GRID[best]), **fit, "mean_abs_change": round(losses[best], 3)}


def out_of_fold_ages(sel: list[dict], clean: dict[str, dict], fit_on: np.ndarray | None = None) -> np.ndarray:
    """Each thick-slice row of ``sel`` (one orientation) read with lines and weight
    (:func:`_fit_orientation`) fitted without its subject (leave-one-subject-out), on the rows
    where ``fit_on`` (bool per row; default all) is True: the corrected ensemble age, years."""
    ids = np.array([r["subject_id"] for r in sel])
    fit_on = np.ones(len(sel), bool) if fit_on is None else np.asarray(fit_on, bool)
    a, b, mm = (np.array([float(r[k]) for r in sel]) for k in ("volumes", "cnn", "thickness_mm"))
    oof = np.empty(len(sel))
    for s in dict.fromkeys(ids):
        inner = _fit_orientation([r for r, i, f in zip(sel, ids, fit_on) if f and i != s], clean)
        k = ids == s
        oof[k] = thick_slice_age_array(a[k], b[k], mm[k], inner)
    return oof


def fit_thick_slice_weights(rows: list[dict], n_boot: int = 5000, seed: int = 0) -> dict:
    """Per orientation, how to read a thick-slice scan so that it keeps the age of the clean scan:
    per slice thickness a line mapping A's and B's thick-slice ages (bias-corrected) onto their
    clean-scan ages, and A's weight in the ensemble of the mapped ages (least mean absolute change
    over :data:`WEIGHT_GRID`). Reported with the mean absolute change of the usual ensemble, the same
    change out of fold (lines and weight fitted without the subject, leave-one-subject-out) and
    the out-of-fold gain's 95 % bootstrap interval over subjects (``n_boot`` resamples), and the
    residual SD (years) out of fold. ``apply`` is True only when that interval lies above 0: a
    gain the subjects cannot tell from chance is not worth changing the ensemble for (the same
    rule as a site offset within two standard errors of 0)."""
    clean = {r["subject_id"]: r for r in rows if r["orientation"] == "clean"}
    rng = np.random.default_rng(seed)
    out = {}
    for o in ORIENTATIONS:
        sel = [r for r in rows if r["orientation"] == o and r["subject_id"] in clean]
        if not sel:
            continue
        fit = _fit_orientation(sel, clean)
        ids = np.array([r["subject_id"] for r in sel])
        a, b, mm = (np.array([float(r[k]) for r in sel]) for k in ("volumes", "cnn", "thickness_mm"))
        ref = np.array([float(clean[r["subject_id"]]["ensemble"]) for r in sel])
        usual = np.abs(np.array([float(r["ensemble"]) for r in sel]) - ref)
        oof = out_of_fold_ages(sel, clean)
        gain = usual - np.abs(oof - ref)
        per_subject = np.array([gain[ids == s].mean() for s in dict.fromkeys(ids)])
        ci = bootstrap_ci95(per_subject, n_boot, rng)
        out[o] = {**fit, "mean_abs_change_out_of_fold": round(float(np.mean(np.abs(oof - ref))), 3),
                  "residual_sd_out_of_fold": round(float(np.std(oof - ref)), 3),
                  "mean_abs_change_usual_ensemble": round(float(usual.mean()), 3),
                  "gain_ci95": [round(c, 3) for c in ci], "apply": bool(ci[0] > 0),
                  "n_scans": len(sel), "n_subjects": int(per_subject.size)}
    return out


def _write_rows(path, rows: list[dict]) -> None:
    """A thick-slice measurement's rows as ``thick_slices.csv`` (:data:`COLUMNS`)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in rows)


def train_thick_slice_weights(data_dir, out_dir, n_subjects: int = 52, n_ixi: int | None = None,
                              measured_csv=None, resume: bool = False, arrays_dir=None,
                              from_arrays: bool = False, log: Callable[[str], None] = print) -> Path:
    """Measure (:func:`measure_thick_slices`; the Cam-CAN subjects of :func:`held_out_subjects` and
    the IXI heads of :func:`held_out_ixi_subjects`, ``n_ixi`` of them, all by default) and fit
    (:func:`fit_thick_slice_weights`); writes
    ``thick_slices.csv`` and ``thick_slice_weights.json`` (the weights, the slice thickness from
    which they apply, and the SHA256 of the age models they were fitted for) into ``out_dir``.
    ``measured_csv``: refit from an earlier measurement of the same models instead (its rows).
    ``resume``: keep the subjects that ``out_dir``'s ``thick_slices.csv`` already holds in full, if
    it was measured with the same models (``thick_slices_models.json``: :func:`models_fingerprint`),
    and measure only the others (~1.5 min a subject on 2 cores: 87 s on 2026-11-28).
    ``arrays_dir``: keep each scan's model-space arrays there while measuring; with
    ``from_arrays``, read the ages from them instead (:func:`read_thick_slices`)."""
    from .. import models
    from ..qc import MAX_SLICE_MM
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if measured_csv is not None:
        with open(measured_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        age_model = json.loads((models.models_dir() / "age_model.json").read_text())
        fresh = usual_ensemble_column(rows, age_model)
        moved = [abs(float(a["ensemble"]) - float(b["ensemble"])) for a, b in zip(rows, fresh)]
        log(f"usual ensemble recomputed for the shipped age model (A's weight "
            f"{age_model['ensemble']['weight_volumes']:.2f}): {sum(m > 0.01 for m in moved)} of {len(rows)} "
            f"rows moved, by up to {max(moved):.2f} y")
        rows = fresh
        _write_rows(out / "thick_slices.csv", rows)
        subjects = [{"set": k.split(":")[0], "subject_id": k.split(":")[1]}
                    for k in dict.fromkeys(f"{r['set']}:{r['subject_id']}" for r in rows)]
        log(f"{measured_csv}: {len(rows)} scans of {len(subjects)} subjects")
    elif from_arrays:
        if arrays_dir is None:
            raise ValueError("from_arrays needs arrays_dir")
        subjects = held_out_subjects(data_dir, n_subjects) + held_out_ixi_subjects(data_dir, n_ixi)
        rows = read_thick_slices(subjects, arrays_dir, log=log)
        (out / "thick_slices_models.json").write_text(json.dumps(models_fingerprint(), indent=1) + "\n")
        _write_rows(out / "thick_slices.csv", rows)
    else:
        stamp, fingerprint = out / "thick_slices_models.json", models_fingerprint()
        if resume and (out / "thick_slices.csv").exists():
            earlier = json.loads(stamp.read_text()) if stamp.exists() else None
            if earlier != fingerprint:
                raise ValueError(f"{out / 'thick_slices.csv'} was measured with other models "
                                 f"({stamp.name}: {earlier}); measure into another --out, or remove it")
        subjects = held_out_subjects(data_dir, n_subjects) + held_out_ixi_subjects(data_dir, n_ixi)
        stamp.write_text(json.dumps(fingerprint, indent=1) + "\n")
        rows = measure_thick_slices(subjects, out / "thick_slices.csv", log, resume=resume, arrays_dir=arrays_dir)
    fit = fit_thick_slice_weights(rows)
    for o, v in fit.items():
        log(f"{o}: at {v['thicknesses_mm']} mm, A's slopes {v['slopes_volumes']} intercepts {v['intercepts_volumes']}, "
            f"B's slopes {v['slopes_cnn']} intercepts {v['intercepts_cnn']}, "
            f"weight of A {v['weight_volumes']:.2f}; mean |age change| {v['mean_abs_change_out_of_fold']:.2f} "
            f"out of fold (usual ensemble {v['mean_abs_change_usual_ensemble']:.2f}; gain 95 % interval "
            f"{v['gain_ci95'][0]:+.2f} to {v['gain_ci95'][1]:+.2f}: {'applied' if v['apply'] else 'not applied'}), "
            f"{v['n_scans']} scans of {v['n_subjects']} subjects")
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
