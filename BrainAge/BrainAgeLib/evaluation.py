"""Evaluation on the held-out Cam-CAN ``test`` split, through the shipped models only."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .training import age_metrics, camcan_paths, dice_scores, read_camcan_subjects


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def evaluate_segmentation(data_dir, out_dir, split: str = "test", log=print) -> dict:
    """Dice of the shipped ResUNet against the reference labels of every ``split`` subject.

    Writes ``dice.csv`` (per subject), ``summary.json`` (mean and SD per tissue) and
    ``example.png`` (one subject's slices, reference beside prediction).
    """
    from .pipeline import predict
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    subjects = [r for r in read_camcan_subjects(data_dir) if r["split"] == split]
    example = None
    for i, r in enumerate(subjects):
        p = camcan_paths(data_dir, r["subject_id"])
        res = predict(str(p["image"]), approach="volumes")
        pred = sitk.GetArrayFromImage(res.labels)
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"])))
        d = dice_scores(pred, ref)
        rows.append({"subject_id": r["subject_id"], "dice_csf": round(d[0], 4),
                     "dice_gm": round(d[1], 4), "dice_wm": round(d[2], 4),
                     "seconds": round(res.seconds, 2)})
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
    rows = []
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
    metrics["median_seconds"] = float(np.median([r["seconds"] for r in rows]))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_ages(rows, metrics, out / "scatter.png")
    for name in ("volumes", "cnn", "ensemble"):
        if name in metrics:
            m = metrics[name]
            log(f"{name:9s} MAE {m['mae']:.2f} RMSE {m['rmse']:.2f} R2 {m['r2']:.3f} r {m['r']:.3f} "
                f"r(gap,age) {m['r_gap_age']:+.3f}")
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
