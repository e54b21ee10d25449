"""Evaluation on the held-out Cam-CAN ``test`` split, through the shipped models only."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .training import age_metrics, camcan_paths, dice_scores, dlmuse_case, read_camcan_subjects


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def evaluate_segmentation(data_dir, out_dir, split: str = "test", log=print) -> dict:
    """Dice of the shipped ResUNet against the reference labels of every ``split`` subject.

    Writes ``dice.csv`` (per subject), ``summary.json`` (mean and SD per tissue) and
    ``example.png`` (one subject's slices, reference beside prediction).
    """
    from .io import read_image
    from .pipeline import segment_image
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    subjects = [r for r in read_camcan_subjects(data_dir) if r["split"] == split]
    example = None
    for i, r in enumerate(subjects):
        p = camcan_paths(data_dir, r["subject_id"])
        t0 = time.perf_counter()
        _, _, labels = segment_image(read_image(p["image"]))
        seconds = time.perf_counter() - t0
        pred = sitk.GetArrayFromImage(labels)
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"])))
        d = dice_scores(pred, ref)
        rows.append({"subject_id": r["subject_id"], "dice_csf": round(d[0], 4),
                     "dice_gm": round(d[1], 4), "dice_wm": round(d[2], 4),
                     "seconds": round(seconds, 2)})
        if example is None:
            example = (r["subject_id"], sitk.GetArrayFromImage(sitk.ReadImage(str(p["image"]))), ref, pred)
        if (i + 1) % 20 == 0:
            log(f"{i + 1}/{len(subjects)} subjects")
    _write_csv(out / "dice.csv", rows)
    summary = {"split": split, "n": len(rows)}
    for t in ("csf", "gm", "wm"):
        v = np.array([r[f"dice_{t}"] for r in rows])
        summary[t] = {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_segmentation(*example, out / "example.png")
    log(f"Dice on {split} (n={len(rows)}): " + ", ".join(
        f"{t.upper()} {summary[t]['mean']:.3f} ± {summary[t]['sd']:.3f}" for t in ("csf", "gm", "wm")))
    return summary


def plot_segmentation(subject_id, image, ref, pred, path) -> None:
    """Axial, coronal and sagittal mid-slices: T1, reference labels, predicted labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    cmap = ListedColormap([(0, 0, 0, 0), (0.33, 0.67, 1.0, 1), (0.9, 0.6, 0.3, 1), (0.95, 0.95, 0.9, 1)])
    z, y, x = (s // 2 for s in image.shape)
    cuts = [lambda a: a[z], lambda a: np.flipud(a[:, y]), lambda a: np.flipud(a[:, :, x])]
    fig, axes = plt.subplots(3, 3, figsize=(9, 9))
    for row, cut in enumerate(cuts):
        for col, (title, lab) in enumerate((("T1", None), ("reference", ref), ("ResUNet", pred))):
            ax = axes[row, col]
            ax.imshow(cut(image), cmap="gray")
            if lab is not None:
                ax.imshow(cut(lab), cmap=cmap, vmin=0, vmax=3, alpha=0.6, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    fig.suptitle(f"{subject_id}: CSF blue, GM orange, WM white")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate_age(data_dir, out_dir, split: str = "test", log=print) -> dict:
    """Age metrics of approaches A, B and the ensemble on ``split``, through :func:`predict`.

    Writes ``predictions.csv``, ``metrics.json`` and ``scatter.png``.
    """
    from .pipeline import predict
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subjects = [r for r in read_camcan_subjects(data_dir) if r["split"] == split]
    rows, halfwidths = [], {}
    t0 = time.time()
    for i, r in enumerate(subjects):
        res = predict(str(camcan_paths(data_dir, r["subject_id"])["image"]))
        ages = res.age_details
        lo, hi = res.interval
        rows.append({"subject_id": r["subject_id"], "age": r["age"],
                     "ensemble": res.predicted_age, "volumes": res.predicted_age_volumes,
                     "cnn": res.predicted_age_cnn, "volumes_raw": ages["volumes_raw"],
                     "cnn_raw": ages["cnn_raw"], "interval_low": lo, "interval_high": hi,
                     "qc": res.qc_text, "seconds": round(res.seconds, 2)})
        halfwidths = ages.get("interval_halfwidths", {})    # the same for every subject
        if (i + 1) % 20 == 0:
            log(f"{i + 1}/{len(subjects)} subjects ({time.time() - t0:.0f} s)")
    _write_csv(out / "predictions.csv", rows)
    age = np.array([r["age"] for r in rows])
    metrics = {"split": split, "n": len(rows)}
    for name in ("volumes_raw", "volumes", "cnn_raw", "cnn", "ensemble"):
        vals = [r[name] for r in rows]
        if any(v is None for v in vals):
            continue
        metrics[name] = {k: round(v, 3) for k, v in age_metrics(vals, age).items()}
    lo = np.array([r["interval_low"] for r in rows])
    hi = np.array([r["interval_high"] for r in rows])
    metrics["interval_coverage"] = round(float(((age >= lo) & (age <= hi)).mean()), 3)
    metrics["interval_mean_width"] = round(float((hi - lo).mean()), 2)
    for name, half in halfwidths.items():      # each approach's own 90% interval
        if name in metrics:
            p = np.array([r[name] for r in rows], float)
            metrics[name]["interval_coverage"] = round(float((np.abs(age - p) <= half).mean()), 3)
            metrics[name]["interval_width"] = round(2 * half, 2)
    metrics["median_seconds"] = float(np.median([r["seconds"] for r in rows]))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_ages(rows, metrics, out / "scatter.png")
    for name in ("volumes", "cnn", "ensemble"):
        if name in metrics:
            m = metrics[name]
            log(f"{name:9s} MAE {m['mae']:.2f} RMSE {m['rmse']:.2f} R2 {m['r2']:.3f} r {m['r']:.3f} "
                f"r(gap,age) {m['r_gap_age']:+.3f}"
                + (f", 90% interval coverage {m['interval_coverage']:.2f}" if "interval_coverage" in m else ""))
    log(f"90% interval coverage {metrics['interval_coverage']:.2f}")
    return metrics


def plot_ages(rows, metrics, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in ("volumes", "cnn", "ensemble") if n in metrics]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    age = np.array([r["age"] for r in rows])
    for ax, name in zip(axes[0], names):
        pred = np.array([r[name] for r in rows])
        ax.scatter(age, pred, s=12, alpha=0.7)
        ax.plot([15, 95], [15, 95], "k--", lw=1)
        m = metrics[name]
        ax.set_title(f"{name}: MAE {m['mae']:.2f}, R² {m['r2']:.2f}")
        ax.set_xlabel("chronological age (years)")
        ax.set_ylabel("predicted age (years)")
        ax.set_xlim(15, 95)
        ax.set_ylim(15, 95)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def random_pose(image: sitk.Image, rng: np.random.Generator, spacing: float = 1.0,
                 max_degrees: float = 10.0, max_mm: float = 10.0) -> tuple[sitk.Image, sitk.Transform]:
    """A grid of ``spacing`` mm covering ``image`` and a random rigid transform (rotation up
    to ``max_degrees`` about each axis, translation up to ``max_mm``) that places ``image``
    in it: resample ``image`` with them to get the scan as another scanner might have stored it."""
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    t = sitk.Euler3DTransform(centre, *np.deg2rad(rng.uniform(-max_degrees, max_degrees, 3)),
                              tuple(rng.uniform(-max_mm, max_mm, 3)))
    size = [int(round(n * s / spacing)) + 16 for n, s in zip(image.GetSize(), image.GetSpacing())]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing((spacing,) * 3)
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin(tuple(np.array(centre) - np.array(image.GetDirection()).reshape(3, 3)
                         @ (np.array(size) - 1) / 2 * spacing))
    return grid, t


def at_1mm(image: sitk.Image) -> sitk.Image:
    """``image`` resampled (cubic B-spline) to 1 mm isotropic over the same field of view,
    clamped at 0 and stored as int16, as a 1 mm scanner export would be."""
    size = [int(round(n * s)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    out = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), size, sitk.Transform(), sitk.sitkBSpline,
                        image.GetOrigin(), (1.0, 1.0, 1.0), image.GetDirection(), 0.0, sitk.sitkFloat32)
    return sitk.Cast(sitk.Clamp(out, lowerBound=0), sitk.sitkInt16)


ROUNDTRIP_BLUR_MM = (1.0, 1.6)   # Gaussian sigmas (mm) of the blurred copies evaluate-roundtrip adds


def evaluate_native_roundtrip(data_dir, out_dir, n: int = 10, seed: int = 20261123, log=print) -> dict:
    """Cam-CAN ``test`` scans moved to a random pose on a 1 mm grid, then through the raw-scan
    path (registration back to the model space, labels back to the 1 mm grid): Dice against the
    reference labels moved the same way, beside the ceiling of carrying the unmoved scan's
    segmentation with the true pose; and the age change. Measures what registration and
    resampling cost, with the same label definition as training. Also the age change of the
    unmoved scan blurred by a Gaussian of ``ROUNDTRIP_BLUR_MM`` (sharpness sensitivity; ensemble,
    A and B) and whether QC flags it. Writes ``roundtrip.csv`` and ``summary.json``."""
    from .pipeline import predict
    from .preprocessing import Preprocessed, to_input_grid
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for r in [r for r in read_camcan_subjects(data_dir) if r["split"] == "test"][:n]:
        paths = camcan_paths(data_dir, r["subject_id"])
        image = sitk.ReadImage(str(paths["image"]), sitk.sitkFloat32)
        ref = sitk.ReadImage(str(paths["seg"]), sitk.sitkUInt8)
        grid, t = random_pose(image, rng)
        moved = sitk.Resample(image, grid, t.GetInverse(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        moved_ref = sitk.Resample(ref, grid, t.GetInverse(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        res = predict(moved, device="cpu")
        d = dice_scores(sitk.GetArrayFromImage(res.labels), sitk.GetArrayFromImage(moved_ref))
        # ceiling: the model-space segmentation of the unmoved scan carried with the true pose,
        # i.e. what resampling the labels alone costs, without registration
        direct = predict(image, device="cpu")
        carried = to_input_grid(direct.model_space_probabilities, Preprocessed(direct.model_space_image, t, True), grid)
        c = dice_scores(sitk.GetArrayFromImage(carried), sitk.GetArrayFromImage(moved_ref))
        rows.append({"subject_id": r["subject_id"], "dice_csf": round(d[0], 4), "dice_gm": round(d[1], 4),
                     "dice_wm": round(d[2], 4), "ceiling_dice_csf": round(c[0], 4),
                     "ceiling_dice_gm": round(c[1], 4), "ceiling_dice_wm": round(c[2], 4),
                     "age_moved": round(res.predicted_age, 2), "age_unmoved": round(direct.predicted_age, 2),
                     "similarity": round(res.template_similarity or 0.0, 4),
                     "qc": res.qc_text, "seconds": round(res.seconds, 2),
                     "age_volumes_moved": round(res.predicted_age_volumes, 2),
                     "age_volumes_unmoved": round(direct.predicted_age_volumes, 2),
                     "age_cnn_moved": round(res.predicted_age_cnn, 2),
                     "age_cnn_unmoved": round(direct.predicted_age_cnn, 2),
                     "sharpness_unmoved": round(direct.edge_sharpness, 3)})
        for mm in ROUNDTRIP_BLUR_MM:
            soft = sitk.Mask(sitk.SmoothingRecursiveGaussian(image, mm), sitk.Cast(image > 0, sitk.sitkUInt8))
            b = predict(soft, device="cpu")
            rows[-1].update({f"age_blur{mm}": round(b.predicted_age, 2),
                             f"age_volumes_blur{mm}": round(b.predicted_age_volumes, 2),
                             f"age_cnn_blur{mm}": round(b.predicted_age_cnn, 2),
                             f"sharpness_blur{mm}": round(b.edge_sharpness, 3),
                             f"flagged_blur{mm}": any("softer" in q for q in b.qc)})
        log(f"{r['subject_id']}: Dice CSF {d[0]:.3f} GM {d[1]:.3f} WM {d[2]:.3f} ({res.seconds:.1f} s, {res.qc_text})")
    _write_csv(out / "roundtrip.csv", rows)
    summary = {"n": len(rows)}
    for k in ("dice_csf", "dice_gm", "dice_wm", "ceiling_dice_csf", "ceiling_dice_gm", "ceiling_dice_wm",
              "seconds"):
        v = np.array([row[k] for row in rows], float)
        summary[k] = {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4)}
    diff = np.array([row["age_moved"] - row["age_unmoved"] for row in rows])
    summary["age_moved_minus_unmoved"] = {"mean": round(float(diff.mean()), 2),
                                          "mean_abs": round(float(np.abs(diff).mean()), 2)}
    for name, key in (("volumes", "age_volumes"), ("cnn", "age_cnn")):
        diff = np.array([row[f"{key}_moved"] - row[f"{key}_unmoved"] for row in rows])
        summary[f"age_{name}_moved_minus_unmoved"] = round(float(diff.mean()), 2)
    for mm in ROUNDTRIP_BLUR_MM:
        for name, key in (("ensemble", "age"), ("volumes", "age_volumes"), ("cnn", "age_cnn")):
            diff = np.array([row[f"{key}_blur{mm}"] - row[f"{key}_unmoved"] for row in rows])
            summary[f"age_{name}_blur{mm}mm_minus_sharp"] = {"mean": round(float(diff.mean()), 2),
                                                            "sd": round(float(diff.std(ddof=1)), 2)}
        summary[f"qc_flagged_blur{mm}mm"] = int(sum(row[f"flagged_blur{mm}"] for row in rows))
    summary["qc_flagged_softer_moved"] = int(sum("softer" in row["qc"] for row in rows))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(json.dumps(summary))
    return summary


def evaluate_ixi(data_dir, out_dir, log=print) -> dict:
    """Raw whole-head scans of another site (ixi10): Dice and volumes against DLMUSE's tissues,
    TIV against DLMUSE's brain volume, and the age error. Writes ``ixi.csv`` and ``summary.json``.

    Dice and volumes are given twice: in the default ("camcan") tissue definition and in
    DLMUSE's, the latter through a :class:`~BrainAgeLib.segmentation.TissueDefinitionMap`
    fitted leave-one-subject-out (never on the subject it is scored on)."""
    from .pipeline import predict
    from .preprocessing import Preprocessed, to_input_grid
    from .segmentation import TissueDefinitionMap
    d = Path(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(d / "subjects.csv", newline="") as f:
        subjects = list(csv.DictReader(f))
    rows, cases = [], []
    for s in subjects:
        sid, age = s["subject_id"], float(s["age"])
        res, ref, ref_model = dlmuse_case(d, sid, chronological_age=age)
        cases.append((res.model_space_probabilities, ref_model, res.model_to_input, res.labels, ref))
        # the same head given at 1 mm: the age should not depend on the grid it comes on
        fine = predict(at_1mm(sitk.ReadImage(str(d / "t1" / f"{sid}_T1.nii.gz"))))
        ours = sitk.GetArrayFromImage(res.labels)
        vox = float(np.prod(res.labels.GetSpacing())) / 1000
        dsc = dice_scores(ours, ref)
        dl_brain = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "dlmuse" / f"{sid}_DLMUSE.nii.gz"))) > 0
        mask_dice = None
        if res.brain_mask is not None:
            m = sitk.GetArrayViewFromImage(res.brain_mask) > 0
            mask_dice = round(dice_scores(m, dl_brain, labels=(1,))[0], 4)
        row = {"subject_id": sid, "age": age, "dice_brain_mask": mask_dice,
               "similarity": None if res.template_similarity is None else round(res.template_similarity, 4),
               "predicted_age": round(res.predicted_age, 2),
               "predicted_age_volumes": round(res.predicted_age_volumes, 2),
               "predicted_age_cnn": None if res.predicted_age_cnn is None else round(res.predicted_age_cnn, 2),
               "dice_csf": round(dsc[0], 4), "dice_gm": round(dsc[1], 4), "dice_wm": round(dsc[2], 4)}
        for t, lab in (("csf", 1), ("gm", 2), ("wm", 3)):
            row[f"{t}_ml"] = round(res.volumes_ml[t], 1)
            row[f"{t}_ml_dlmuse"] = round(float((ref == lab).sum()) * vox, 1)
        brain_ml = float(dl_brain.sum()) * vox
        row["tiv_ml"] = round(res.volumes_ml["tiv"], 1)
        row["brain_ml_dlmuse"] = round(brain_ml, 1)
        row["tiv_diff_pct"] = round(100 * (res.volumes_ml["tiv"] - brain_ml) / brain_ml, 2)
        row["predicted_age_1mm"] = round(fine.predicted_age, 2)
        row["tiv_ml_1mm"] = round(fine.volumes_ml["tiv"], 1)
        row["qc"] = res.qc_text
        row["seconds"] = round(res.seconds, 2)
        rows.append(row)
        log(f"{sid}: brain-mask Dice {mask_dice}, similarity {row['similarity']}, Dice CSF {dsc[0]:.3f} "
            f"GM {dsc[1]:.3f} WM {dsc[2]:.3f}, TIV {row['tiv_diff_pct']:+.1f}% "
            f"vs DLMUSE brain, age {age:.1f} -> {res.predicted_age:.1f} ({res.qc_text})")
    # DLMUSE's tissue definition, leave-one-subject-out
    for i, (row, (prob, _, transform, grid, ref)) in enumerate(zip(rows, cases)):
        others = [c for j, c in enumerate(cases) if j != i]
        m = TissueDefinitionMap("dlmuse").fit([c[0] for c in others], [c[1] for c in others])
        lab = to_input_grid(m.predict_proba(prob), Preprocessed(grid, transform, False), grid)
        arr = sitk.GetArrayViewFromImage(lab)
        dsc = dice_scores(arr, ref)
        vox = float(np.prod(grid.GetSpacing())) / 1000
        for t, lab_value, dv in zip(("csf", "gm", "wm"), (1, 2, 3), dsc):
            row[f"dice_{t}_dlmuse_definition"] = round(dv, 4)
            row[f"{t}_ml_dlmuse_definition"] = round(float((arr == lab_value).sum()) * vox, 1)
        log(f"{row['subject_id']}: DLMUSE definition (leave-one-out) Dice CSF {dsc[0]:.3f} "
            f"GM {dsc[1]:.3f} WM {dsc[2]:.3f}")
    _write_csv(out / "ixi.csv", rows)
    summary = {"n": len(rows)}
    for k in ("dice_brain_mask", "similarity", "dice_csf", "dice_gm", "dice_wm",
              "dice_csf_dlmuse_definition", "dice_gm_dlmuse_definition",
              "dice_wm_dlmuse_definition", "tiv_diff_pct"):
        v = np.array([np.nan if r[k] is None else r[k] for r in rows], float)
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        summary[k] = {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)), 4)}
    summary["abs_tiv_diff_pct_max"] = round(float(max(abs(r["tiv_diff_pct"]) for r in rows)), 2)
    for name in ("predicted_age", "predicted_age_volumes", "predicted_age_cnn"):
        vals = [r[name] for r in rows]
        if None not in vals:
            summary[f"mae_{name}"] = round(float(np.mean([abs(v - r["age"]) for v, r in zip(vals, rows)])), 2)
    # a site offset fitted on the other subjects of this scanner (leave-one-out), as
    # `brainage site-offset` would from a site's healthy controls
    from .regression import SiteOffset
    pred = np.array([r["predicted_age"] for r in rows], float)
    ages = np.array([r["age"] for r in rows], float)
    if len(rows) > SiteOffset.MIN_CONTROLS:
        loo = [pred[i] - SiteOffset().fit(np.delete(pred, i), np.delete(ages, i)).offset
               for i in range(len(rows))]
        summary["mae_predicted_age_loo_site_offset"] = round(float(np.mean(np.abs(np.array(loo) - ages))), 2)
    for t in ("csf", "gm", "wm"):
        a = np.array([r[f"{t}_ml"] for r in rows])
        b = np.array([r[f"{t}_ml_dlmuse"] for r in rows])
        summary[f"{t}_volume"] = {"mean_diff_pct": round(float(np.mean(100 * (a - b) / b)), 2),
                                  "r": round(float(np.corrcoef(a, b)[0, 1]), 3)}
        a = np.array([r[f"{t}_ml_dlmuse_definition"] for r in rows])
        summary[f"{t}_volume_dlmuse_definition"] = {
            "mean_diff_pct": round(float(np.mean(100 * (a - b) / b)), 2),
            "r": round(float(np.corrcoef(a, b)[0, 1]), 3)}
    diff = np.array([r["predicted_age_1mm"] - r["predicted_age"] for r in rows])
    summary["age_1mm_minus_2mm"] = {"mean": round(float(diff.mean()), 2), "sd": round(float(diff.std(ddof=1)), 2),
                                    "max_abs": round(float(np.abs(diff).max()), 2)}
    tiv = np.array([100 * (r["tiv_ml_1mm"] - r["tiv_ml"]) / r["tiv_ml"] for r in rows])
    summary["tiv_1mm_minus_2mm_pct"] = {"mean": round(float(tiv.mean()), 2), "sd": round(float(tiv.std(ddof=1)), 2)}
    summary["qc_flagged"] = sum(r["qc"] != "ok" for r in rows)
    summary["median_seconds"] = float(np.median([r["seconds"] for r in rows]))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(json.dumps(summary))
    return summary
