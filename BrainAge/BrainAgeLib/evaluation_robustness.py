"""``brainage evaluate-robustness``: how far each simulated acquisition moves the age, and whether
QC says so. Clean scans (Cam-CAN ``test``, skull-stripped in model space; ixi10 whole heads of
another scanner) are degraded by each condition of :func:`BrainAgeLib.degrade.conditions` and
run through :func:`~BrainAgeLib.pipeline.predict` like any input; each degraded age is compared
with the same subject's clean age."""
from __future__ import annotations

import csv
import json
import re
import time
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

LARGE_ERROR_YEARS = 5.0        # an age moved further than this while qc says "ok" is a silent large error
COLUMNS = ["set", "subject_id", "age", "condition", "processed", "predicted_age", "clean_age",
           "age_change", "flagged", "silent_large_error", "qc", "warnings", "wm_snr",
           "unexpected_csf_ml", "mirror_excess", "seconds", "error"]

# short keys of the QC warnings, by the start of their text (others: their first words)
WARNING_KEYS = {"not a T1": "not_t1", "registration": "registration", "unusual grey/white": "gm_wm_contrast",
                "image much softer": "sharpness", "noisy image": "noise", "intensity wrap-around": "wraparound",
                "focal abnormality": "focal", "thick slices": "thick_slices", "implausible TIV": "tiv",
                "implausible": "tissue_fraction", "tissue pattern unlike": "out_of_distribution",
                "the two age models disagree": "ab_disagreement", "unstable segmentation": "mirror",
                "predicted age": "age_range", "chronological age": "age_range"}


def warning_key(text: str) -> str:
    """A short name for a QC warning (e.g. ``noise``), for counting warnings by kind."""
    for prefix, key in WARNING_KEYS.items():
        if text.startswith(prefix):
            return key
    return re.sub(r"[^a-z0-9]+", "_", " ".join(text.lower().split()[:3])).strip("_") or "other"


def condition_draw(seed: int, subject_id: str, condition: str) -> int:
    """The random draw of one scan's degraded copy: the same for a subject and condition in every
    run with ``seed``, whatever else the run does."""
    return int(np.random.SeedSequence([seed, zlib.crc32(subject_id.encode()),
                                       zlib.crc32(condition.encode())]).generate_state(1)[0])


def _subjects(data_dir: Path, n_camcan: int, n_ixi: int, seed: int) -> list[dict]:
    """Seeded draws of Cam-CAN ``test`` subjects and ixi10 subjects, with image and labels paths."""
    from .training.data import camcan_paths, read_camcan_subjects
    out = []
    camcan = data_dir / "camcan"
    if n_camcan > 0:
        test = [r for r in read_camcan_subjects(camcan) if r["split"] == "test"]
        rng = np.random.default_rng([seed, 0])     # one stream per set: the same draw alone or together
        for i in sorted(rng.choice(len(test), min(n_camcan, len(test)), replace=False)):
            p = camcan_paths(camcan, test[i]["subject_id"])
            out.append({"set": "camcan", "subject_id": test[i]["subject_id"], "age": test[i]["age"],
                        "image": p["image"], "labels": p["seg"], "skull_stripped": True})
    ixi = data_dir / "ixi10"
    if n_ixi > 0:
        with open(ixi / "subjects.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        rng = np.random.default_rng([seed, 1])
        for i in sorted(rng.choice(len(rows), min(n_ixi, len(rows)), replace=False)):
            sid = rows[i]["subject_id"]
            out.append({"set": "ixi10", "subject_id": sid, "age": float(rows[i]["age"]),
                        "image": ixi / "t1" / f"{sid}_T1.nii.gz",
                        "labels": ixi / "dlmuse" / f"{sid}_DLMUSE.nii.gz", "skull_stripped": False})
    return out


def _labels(subject: dict, data_dir: Path, image: sitk.Image) -> sitk.Image:
    """Tissue labels (0 bg, 1 CSF, 2 GM, 3 WM) on the image's grid: Cam-CAN's reference, or
    DLMUSE's tissues for ixi10 (only the lesion uses them, to place it in tissue)."""
    if subject["set"] == "camcan":
        lab = sitk.ReadImage(str(subject["labels"]), sitk.sitkUInt8)
    else:
        from .training.data import read_dlmuse_tissues
        arr = read_dlmuse_tissues(subject["labels"], data_dir / "ixi10" / "dlmuse_tissue_map.csv")
        lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(image)
    return lab


def _run(image: sitk.Image) -> dict:
    from .pipeline import predict
    t0 = time.perf_counter()
    try:
        res = predict(image, device="cpu")
    except Exception as e:     # a refused or failed scan is a result here, not a crash
        return {"processed": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300],
                "seconds": round(time.perf_counter() - t0, 2)}
    return {"processed": True, "predicted_age": round(res.predicted_age, 2), "qc": res.qc_text,
            "warnings": "|".join(sorted({warning_key(q) for q in res.qc})),
            "wm_snr": round(res.qc_measures.get("wm_snr", float("nan")), 2),
            "unexpected_csf_ml": round(res.qc_measures.get("unexpected_csf_ml", float("nan")), 2),
            "mirror_excess": round(res.qc_measures.get("mirror_excess", float("nan")), 4),
            "seconds": round(res.seconds, 2), "error": ""}


def evaluate_robustness(data_dir, out_dir, n_camcan: int = 6, n_ixi: int = 6,
                        conditions: list[str] | None = None, seed: int = 20261123, log=print) -> dict:
    """Degrade ``n_camcan`` Cam-CAN ``test`` and ``n_ixi`` ixi10 scans (seeded draws) by each
    condition (default: all of :func:`~BrainAgeLib.degrade.conditions`), predict, and compare
    with the clean scan. Writes ``robustness.csv`` (one row per scan and condition, ``clean``
    included, written as it goes) and ``summary.json`` (:func:`summarise`); returns the summary."""
    from . import degrade
    from .io import read_image
    available = degrade.conditions()
    names = list(available) if not conditions else list(conditions)
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; choose from {list(available)}")
    data_dir, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subjects = _subjects(data_dir, n_camcan, n_ixi, seed)
    if not subjects:
        raise ValueError("no subjects: give --n-camcan or --n-ixi above 0")
    rows = []
    t_start = time.time()
    with open(out / "robustness.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for si, s in enumerate(subjects):
            image = read_image(s["image"])
            labels = _labels(s, data_dir, image)
            base = {"set": s["set"], "subject_id": s["subject_id"], "age": s["age"]}
            clean = {**base, "condition": "clean", **_run(image)}
            clean_age = clean.get("predicted_age")
            for ci, name in enumerate(["clean"] + names):
                if name == "clean":
                    row = clean
                else:
                    draw = condition_draw(seed, s["subject_id"], name)
                    degraded = available[name](image, labels, draw)
                    if s["skull_stripped"] and degraded.GetSize() == image.GetSize() and name != "offset_-1024":
                        degraded = degrade.keep_zero_background(degraded, image)   # acquired before extraction
                    row = {**base, "condition": name, **_run(degraded)}
                row["clean_age"] = clean_age
                if row["processed"] and clean_age is not None:
                    row["age_change"] = round(row["predicted_age"] - clean_age, 2)
                    row["flagged"] = row["qc"] != "ok"
                    row["silent_large_error"] = (abs(row["age_change"]) > LARGE_ERROR_YEARS and not row["flagged"])
                rows.append(row)
                writer.writerow(row)
                f.flush()
            log(f"{si + 1}/{len(subjects)} {s['set']} {s['subject_id']}: clean age {clean_age}, "
                f"{clean.get('qc', clean.get('error'))} ({time.time() - t_start:.0f} s)")
    summary = summarise(rows)
    summary["settings"] = {"n_camcan": n_camcan, "n_ixi": n_ixi, "seed": seed, "conditions": names,
                           "subjects": [f"{s['set']}:{s['subject_id']}" for s in subjects],
                           "models": _model_versions()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(format_table(summary))
    return summary


def _model_versions() -> dict[str, str]:
    """The first 12 hex digits of each shipped model file's SHA256: which models were measured."""
    from . import models
    return {k: v["sha256"][:12] for k, v in sorted(models.read_manifest().get("files", {}).items())}


def _stats(values) -> dict:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": round(float(v.mean()), 2),
            "sd": round(float(v.std(ddof=1)), 2) if v.size > 1 else 0.0,
            "mean_abs": round(float(np.abs(v).mean()), 2), "max_abs": round(float(np.abs(v).max()), 2)}


def _ab_message_pattern() -> re.Pattern:
    """``qc.AB_MESSAGE`` as a pattern whose groups are the disagreement and the limit (years)."""
    from .qc import AB_MESSAGE
    number = r"([\d.]+)"
    return re.compile(re.escape(AB_MESSAGE).replace(r"\{diff:\.1f\}", number).replace(r"\{limit:\.1f\}", number))


def reapply_ab_limit(row: dict, limit: float) -> dict:
    """A ``robustness.csv`` row as a run with A/B disagreement limit ``limit`` (years) would have
    written it; ages do not depend on the limit. A flagged row's qc text holds its disagreement
    (rounded to 0.1 year): within the new limit the warning is dropped and ``flagged`` and
    ``silent_large_error`` follow. Unflagged rows do not record theirs, so a limit below the run's
    own, or too close to a recorded value to tell, raises ValueError: rerun evaluate-robustness."""
    warnings = [w for w in str(row.get("warnings") or "").split("|") if w]
    if "ab_disagreement" not in warnings:
        return row
    ab = _ab_message_pattern().search(row["qc"])
    if ab is None:
        raise ValueError(f"{row['subject_id']} {row['condition']}: warned of A/B disagreement, but its "
                         "qc text does not hold the message this version writes")
    value, old_limit = float(ab.group(1)), float(ab.group(2))
    if limit < old_limit:
        raise ValueError(f"A/B limit {limit} is below the run's own {old_limit}: unflagged rows do not "
                         "record their disagreement, so rerun evaluate-robustness")
    if abs(value - limit) <= 0.05:
        raise ValueError(f"{row['subject_id']} {row['condition']}: disagreement {value} is too close to "
                         f"{limit} to tell from the rounded text: rerun evaluate-robustness")
    if value > limit:
        return {**row, "qc": row["qc"].replace(f"< {ab.group(2)})", f"< {limit:.1f})")}
    others = [m.strip(";") for m in (row["qc"][:ab.start()], row["qc"][ab.end():]) if m.strip(";")]
    qc = ";".join(others) or "ok"
    as_text = isinstance(row.get("flagged"), str)
    flagged, silent = qc != "ok", qc == "ok" and abs(float(row["age_change"])) > 5.0
    return {**row, "qc": qc, "warnings": "|".join(w for w in warnings if w != "ab_disagreement"),
            "flagged": str(flagged) if as_text else flagged,
            "silent_large_error": str(silent) if as_text else silent}


def summarise(rows: list[dict]) -> dict:
    """Per condition: share processed, age change against the clean scan (years: mean, SD, mean
    and max absolute), share flagged by QC, silent large errors (|change| > 5 years with qc "ok");
    per QC warning: false-alarm rate on the clean scans and hit rate on each degraded condition;
    and the issue's targets, met or not. ``rows`` as in ``robustness.csv`` (strings allowed)."""
    def truth(v):
        return v is True or str(v) == "True"

    def num(v):
        return None if v in (None, "") else float(v)
    by_cond: dict[str, list[dict]] = {}
    for r in rows:
        by_cond.setdefault(r["condition"], []).append(r)
    conds = {}
    for name, rs in by_cond.items():
        done = [r for r in rs if truth(r["processed"])]
        changes = [num(r.get("age_change")) for r in done if name != "clean"]
        entry = {"n": len(rs), "processed": round(len(done) / len(rs), 3),
                 "flagged": round(sum(r.get("qc", "ok") != "ok" for r in done) / max(1, len(done)), 3)}
        if name != "clean":
            entry["age_change"] = _stats(changes)
            entry["silent_large_errors"] = sum(truth(r.get("silent_large_error")) for r in done)
            for s in sorted({r["set"] for r in rs}):
                entry[f"age_change_{s}"] = _stats([num(r.get("age_change")) for r in done if r["set"] == s])
        errors = sorted({r.get("error", "") for r in rs if not truth(r["processed"])})
        if errors:
            entry["errors"] = errors
        conds[name] = entry
    keys = sorted({w for r in rows for w in str(r.get("warnings") or "").split("|") if w})
    clean = [r for r in by_cond.get("clean", []) if truth(r["processed"])]
    warnings = {}
    for k in keys:
        w = {"false_alarm_rate": round(sum(k in str(r.get("warnings") or "").split("|") for r in clean)
                                       / max(1, len(clean)), 3), "hit_rate": {}}
        for name, rs in by_cond.items():
            done = [r for r in rs if truth(r["processed"])]
            if name != "clean" and done:
                w["hit_rate"][name] = round(sum(k in str(r.get("warnings") or "").split("|") for r in done)
                                            / len(done), 3)
        warnings[k] = w
    degraded = [r for r in rows if r["condition"] != "clean"]
    silent = sum(truth(r.get("silent_large_error")) for r in degraded)
    mild = [n for n in conds if re.fullmatch(r"thick[345]mm_\w+|noise_snr(20|40)|bias_field|gamma_.*", n)]
    targets = {
        "no_valid_mri_refused": all(conds[n]["processed"] == 1.0 for n in conds),
        "mean_abs_change_le_2.5y_mild_conditions": {n: conds[n].get("age_change", {}).get("mean_abs")
                                                    for n in mild},
        "mild_conditions_all_within_2.5y": all((conds[n].get("age_change", {}).get("mean_abs") or 0) <= 2.5
                                               for n in mild),
        "silent_large_errors_share": round(silent / max(1, len(degraded)), 4),
        "silent_large_errors_le_2pct": silent / max(1, len(degraded)) <= 0.02,
        "clean_false_alarm_rate": round(sum(r.get("qc", "ok") != "ok" for r in clean) / max(1, len(clean)), 3),
        "clean_false_alarms_le_5pct": sum(r.get("qc", "ok") != "ok" for r in clean) / max(1, len(clean)) <= 0.05,
    }
    return {"large_error_years": LARGE_ERROR_YEARS, "conditions": conds, "qc_warnings": warnings,
            "targets": targets}


def format_table(summary: dict) -> str:
    """The summary as a plain-text table (one line per condition, then the QC warnings)."""
    lines = ["age change = degraded minus clean predicted age of the same scan (years); flagged = "
             "any QC warning; silent = |change| > "
             f"{summary['large_error_years']:.0f} years with qc ok",
             f"{'condition':22s} {'n':>3s} {'processed':>9s} {'mean±SD change':>16s} {'mean|chg|':>9s} "
             f"{'max|chg|':>8s} {'flagged':>7s} {'silent':>6s}"]
    for name, c in summary["conditions"].items():
        a = c.get("age_change", {})
        change = f"{a['mean']:+.1f} ± {a['sd']:.1f}" if a.get("n") else "-"
        lines.append(f"{name:22s} {c['n']:3d} {100 * c['processed']:8.0f}% {change:>16s} "
                     f"{a.get('mean_abs', float('nan')):9.1f} {a.get('max_abs', float('nan')):8.1f} "
                     f"{100 * c['flagged']:6.0f}% {c.get('silent_large_errors', 0):6d}")
    lines.append("QC warning: false alarms on clean scans; hit rate on the conditions where it fires most")
    for k, w in summary["qc_warnings"].items():
        top = sorted(w["hit_rate"].items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"  {k:18s} false alarms {100 * w['false_alarm_rate']:3.0f}%; hits "
                     + ", ".join(f"{n} {100 * v:.0f}%" for n, v in top if v > 0))
    t = summary["targets"]
    lines.append(f"targets: no valid MRI refused {t['no_valid_mri_refused']}; mild conditions within 2.5 y "
                 f"{t['mild_conditions_all_within_2.5y']}; silent large errors "
                 f"{100 * t['silent_large_errors_share']:.1f}% "
                 f"(<= 2%: {t['silent_large_errors_le_2pct']}); clean false alarms "
                 f"{100 * t['clean_false_alarm_rate']:.0f}% (<= 5%: {t['clean_false_alarms_le_5pct']})")
    return "\n".join(lines)


def summarise_csv(csv_path, out_json=None) -> dict:
    """:func:`summarise` of an existing ``robustness.csv`` (e.g. of a stopped run)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        summary = summarise(list(csv.DictReader(f)))
    if out_json:
        Path(out_json).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def markdown_tables(before: dict, after: dict | None = None) -> str:
    """README tables from one or two summaries (``summary.json``): per condition the age change
    and QC outcome, "before" beside "after" when given; then each QC warning's false-alarm rate
    on the clean scans and hit rate on the conditions it targets (and its best other ones)."""
    runs = [("before", before)] + ([("after", after)] if after else [])

    def cell(c):
        if c is None:
            return "–"
        a = c.get("age_change", {})
        change = f"{a['mean']:+.1f} ± {a['sd']:.1f} ({a['mean_abs']:.1f})" if a.get("n") else "–"
        return (f"{change} | {100 * c['processed']:.0f} % | {100 * c['flagged']:.0f} % | "
                f"{c.get('silent_large_errors', 0)}")
    head = "| condition | n" + (" (before / after)" if after else "") + " | " + " | ".join(
        f"age change, mean ± SD (mean abs), {k} | processed | flagged | silent > 5 y" for k, _ in runs) + " |"
    lines = [head, "|" + " --- |" * (2 + 4 * len(runs))]
    for name, c in before["conditions"].items():
        cells = " | ".join(cell(s["conditions"].get(name)) for _, s in runs)
        n = " / ".join(str(s["conditions"].get(name, {}).get("n", "–")) for _, s in runs)
        lines.append(f"| {name} | {n} | {cells} |")
    lines += ["", "| QC warning | " + " | ".join(f"false alarms on clean ({k}) | hit rate ({k})" for k, _ in runs)
              + " |", "|" + " --- |" * (1 + 2 * len(runs))]
    keys = sorted(set(before["qc_warnings"]) | set((after or {}).get("qc_warnings", {})))
    for k in keys:
        cells = []
        for _, s in runs:
            w = s["qc_warnings"].get(k)
            if w is None:
                cells.append("– | –")
                continue
            top = [(n, v) for n, v in sorted(w["hit_rate"].items(), key=lambda kv: -kv[1]) if v > 0][:3]
            cells.append(f"{100 * w['false_alarm_rate']:.0f} % | "
                         + (", ".join(f"{n} {100 * v:.0f} %" for n, v in top) or "none"))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m BrainAgeLib.evaluation_robustness BEFORE_summary.json [AFTER_summary.json]")
    loaded = [json.loads(Path(p).read_text()) for p in sys.argv[1:]]
    print(markdown_tables(*loaded))
