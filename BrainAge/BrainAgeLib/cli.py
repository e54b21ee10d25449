"""The ``brainage`` command: predict brain age for files and cohorts; train and evaluate."""
from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys
from pathlib import Path

COLUMNS = ["input", "predicted_age", "predicted_age_volumes", "predicted_age_cnn", "interval_low",
           "interval_high", "chronological_age", "brain_age_gap", "gm_ml", "wm_ml", "csf_ml",
           "tiv_ml", "qc", "seconds"]

SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData" / "IXI012-HH-1211_T1.nii.gz"
SAMPLE_AGE = 38.78   # years, from the IXI demographics
SAMPLE_SEX = "M"
DEFAULT_DATA = Path("..") / "shared" / "data"


class ArgumentError(Exception):
    """Bad command-line arguments (exit status 2)."""


def input_stem(path: str) -> str:
    """File name without its image suffix (``a/b/sub01_T1.nii.gz`` -> ``sub01_T1``)."""
    name = Path(path.rstrip("/\\")).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_ages(path: str) -> dict[str, float]:
    """Chronological ages from a CSV with an ``age`` column and one of ``input``,
    ``subject_id`` or ``id``; keys are matched to inputs by path, file name or stem prefix."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise ArgumentError(f"--ages: cannot read {path}: {e.strerror}") from None
    if not rows or "age" not in rows[0]:
        raise ArgumentError(f"--ages: {path} needs an 'age' column")
    key = next((k for k in ("input", "subject_id", "id") if k in rows[0]), None)
    if key is None:
        raise ArgumentError(f"--ages: {path} needs an 'input', 'subject_id' or 'id' column")
    out = {}
    for r in rows:
        try:
            out[r[key]] = float(r["age"])
        except ValueError:
            raise ArgumentError(f"--ages: age {r['age']!r} of {r[key]} is not a number") from None
    return out


def match_age(ages: dict[str, float], path: str) -> float | None:
    if path in ages:
        return ages[path]
    stem = input_stem(path)
    if Path(path).name in ages:
        return ages[Path(path).name]
    if stem in ages:
        return ages[stem]
    hits = [k for k in ages if stem.startswith(k)]
    return ages[max(hits, key=len)] if hits else None


def _fmt(v, digits=2):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def result_row(path: str, result) -> dict:
    """One CSV row (DESIGN.md column order) of a BrainAgeResult."""
    v = result.volumes_ml
    return {"input": path, "predicted_age": _fmt(result.predicted_age),
            "predicted_age_volumes": _fmt(result.predicted_age_volumes),
            "predicted_age_cnn": _fmt(result.predicted_age_cnn),
            "interval_low": _fmt(result.interval[0]), "interval_high": _fmt(result.interval[1]),
            "chronological_age": _fmt(result.chronological_age),
            "brain_age_gap": _fmt(result.brain_age_gap),
            "gm_ml": _fmt(v["gm"], 1), "wm_ml": _fmt(v["wm"], 1), "csf_ml": _fmt(v["csf"], 1),
            "tiv_ml": _fmt(v["tiv"], 1), "qc": result.qc_text, "seconds": _fmt(result.seconds, 1)}


def error_row(path: str, message: str, seconds: float, age: float | None) -> dict:
    row = {c: "" for c in COLUMNS}
    row.update(input=path, qc="error: " + " ".join(message.replace(";", ",").split()),
               seconds=_fmt(seconds, 1), chronological_age=_fmt(age))
    return row


def summary(row: dict) -> str:
    if row["qc"].startswith("error"):
        return f"{row['input']}\n  FAILED: {row['qc'][7:]}"
    lines = [f"{row['input']}",
             f"  brain age       {row['predicted_age']} years "
             f"(90% interval {row['interval_low']}-{row['interval_high']})",
             f"  from volumes    {row['predicted_age_volumes']} years"]
    if row["predicted_age_cnn"]:
        lines.append(f"  from the image  {row['predicted_age_cnn']} years")
    if row["chronological_age"]:
        lines.append(f"  chronological   {row['chronological_age']} years, gap {row['brain_age_gap']} years")
    lines.append(f"  volumes (ml)    GM {row['gm_ml']}  WM {row['wm_ml']}  CSF {row['csf_ml']}  "
                 f"TIV {row['tiv_ml']}")
    lines.append(f"  QC              {row['qc']}   ({row['seconds']} s)")
    return "\n".join(lines)


def cmd_predict(args) -> int:
    import time
    import SimpleITK as sitk
    from .io import expand_inputs
    from .pipeline import apply_site_offset, predict
    if args.sample:
        if args.inputs:
            raise ArgumentError("--sample takes no INPUT")
        inputs = [str(SAMPLE)]
    else:
        if not args.inputs:
            raise ArgumentError("give at least one INPUT (file, DICOM folder, folder or glob) or --sample")
        inputs = expand_inputs(args.inputs)
        if not inputs:
            raise ArgumentError("no input matched")
    ages = read_ages(args.ages) if args.ages else {}
    site = read_site_offset(args.site_offset) if args.site_offset else None
    from .calibration import SiteCalibration
    calibration = site if isinstance(site, SiteCalibration) else None
    if site is not None:
        print(f"applying the site offset of {args.site_offset}: {site.offset:+.2f} years "
              f"({site.n} controls)", file=sys.stderr)
    if args.sample and not ages:
        ages = {str(SAMPLE): SAMPLE_AGE}
    if args.labels_dir:
        Path(args.labels_dir).mkdir(parents=True, exist_ok=True)
    if args.output:
        try:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            out_f = open(args.output, "w", newline="", encoding="utf-8")
        except OSError as e:
            raise ArgumentError(f"--output: cannot write {args.output}: {e.strerror}") from None
        writer = csv.DictWriter(out_f, fieldnames=COLUMNS)
        writer.writeheader()
    reporter = _reporter(args, ages) if args.report else None
    bar = None
    if len(inputs) > 1 and not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=len(inputs), unit="scan", desc="brainage", file=sys.stderr)
    failed = 0
    for path in inputs:
        t0 = time.perf_counter()
        age = match_age(ages, path)
        try:
            result = predict(path, skull_stripped=True if args.skull_stripped else None,
                             chronological_age=age, approach=args.approach, tissues=args.tissues,
                             device=args.device, site_calibration=calibration)
            if site is not None and calibration is None:
                result = apply_site_offset(result, site)
            row = result_row(path, result)
            if args.labels_dir:
                sitk.WriteImage(result.labels,
                                str(Path(args.labels_dir) / f"{input_stem(path)}_tissues.nii.gz"),
                                useCompression=True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:   # one bad scan must not stop a cohort
            failed += 1
            row = error_row(path, f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e),
                            time.perf_counter() - t0, age)
        if reporter is not None:
            failed += _add_report(reporter, path, row, None if row["qc"].startswith("error") else result)
        if args.output:
            writer.writerow(row)
            out_f.flush()
        else:
            (bar.write if bar else print)(summary(row))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    if reporter is not None:
        failed += _add_report(reporter, None, None, None)
    if args.output:
        out_f.close()
        print(f"wrote {len(inputs)} row(s) to {args.output}" + (f"; {failed} failed" if failed else ""),
              file=sys.stderr)
    return 1 if failed else 0


def _reporter(args, ages: dict):
    """The report writer of ``--report DIR`` (sex from a ``sex`` column of ``--ages``)."""
    from .report import BatchReporter, read_sexes
    sexes = read_sexes(args.ages) if args.ages else ({str(SAMPLE): SAMPLE_SEX} if args.sample else {})
    try:
        return BatchReporter(args.report, sex_of=lambda p: match_age(sexes, p))
    except OSError as e:
        raise ArgumentError(f"--report: cannot write to {args.report}: {e.strerror}") from None


def _add_report(reporter, path, row, result) -> int:
    """Write one input's report (or, with ``path`` None, the cohort report); 1 if that failed."""
    try:
        paths = reporter.add(path, row, result) if path is not None else reporter.finish()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:   # a report that cannot be written must not stop the batch
        print(f"brainage: error: report for {path or 'the cohort'} not written: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    for p in paths.values():
        print(f"wrote {p}", file=sys.stderr)
    return 0


def read_site_offset(path: str):
    """A scanner's :class:`~BrainAgeLib.calibration.SiteCalibration` (``brainage calibrate-site``)
    or :class:`~BrainAgeLib.regression.SiteOffset` (``brainage site-offset``) from its JSON file,
    validated (ArgumentError if unusable)."""
    from .calibration import load_site_calibration
    try:
        return load_site_calibration(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArgumentError(f"--site-offset: cannot use {path}: {e}") from None


def cmd_calibrate_site(args) -> int:
    """Fit a scanner's calibration (features and ages) from its healthy controls' scans."""
    import json
    from .calibration import calibrate_from_scans
    from .io import expand_inputs
    inputs = expand_inputs(args.inputs)
    ages = read_ages(args.ages)
    matched = [(p, match_age(ages, p)) for p in inputs]
    missing = [p for p, a in matched if a is None]
    if missing:
        raise ArgumentError(f"--ages has no age for {len(missing)} control(s), e.g. {missing[0]}")
    cal = calibrate_from_scans([p for p, _ in matched], [a for _, a in matched],
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    Path(args.output).write_text(json.dumps(cal.to_dict()) + "\n")
    print(f"site calibration from {cal.n} controls (ages {cal.age_range[0]:.0f}-{cal.age_range[1]:.0f}): "
          f"age slope {cal.slope:.2f}, offset {cal.offset:+.2f} years at their mean age; wrote {args.output}")
    return 0


def cmd_site_offset(args) -> int:
    """Fit a scanner's offset from a `brainage predict` CSV of its healthy controls."""
    import json
    from .regression import SiteOffset
    try:
        with open(args.results, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.DictReader(f) if r.get("predicted_age") and r.get("chronological_age")]
    except OSError as e:
        raise ArgumentError(f"cannot read {args.results}: {e.strerror}") from None
    site = SiteOffset().fit([float(r["predicted_age"]) for r in rows],
                           [float(r["chronological_age"]) for r in rows])
    Path(args.output).write_text(json.dumps(site.to_dict(), indent=1) + "\n")
    print(f"site offset {site.offset:+.2f} years (median gap of {site.n} controls, MAD {site.mad:.2f}); "
          f"wrote {args.output}")
    return 0


def _ship(files: dict[str, Path], info: dict) -> None:
    from . import models
    info = {"command": "brainage " + " ".join(sys.argv[1:]), **info}
    for name, src in files.items():
        shutil.copyfile(src, models.models_dir() / name)
        models.update_manifest(name, info)
        print(f"shipped {name} into {models.models_dir()}")


def cmd_train_segmentation(args) -> int:
    import json
    from .training import SegmentationConfig, train_segmentation
    cfg = SegmentationConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, lr=args.lr,
                             p_real=args.p_real, p_synth=args.p_synth,
                             init_weights=args.init)
    out = Path(args.out)
    weights = train_segmentation(Path(args.data) / "camcan", out, cfg, resume=args.resume,
                                 log=lambda m: print(m, flush=True))
    if args.ship:
        metrics = (out / "segmentation_metrics.csv").read_text().strip().splitlines()
        _ship({"resunet.safetensors": weights},
              {"training": "camcan seg_train + reg_train", "config": json.loads(
                  (out / "segmentation_config.json").read_text()), "last_epoch_metrics": metrics[-1],
               "metrics_columns": metrics[0]})
    return 0


def _sites(text: str) -> tuple[str, ...]:
    sites = tuple(s.strip() for s in text.split(",") if s.strip())
    if not sites or any(s not in ("camcan", "ixi") for s in sites):
        raise ArgumentError(f"--sites: expected camcan and/or ixi, got {text!r}")
    return sites


def cmd_train_cnn(args) -> int:
    import json
    from .training import CNNConfig, train_cnn
    cfg = CNNConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, lr=args.lr,
                    init_weights=args.init, sites=_sites(args.sites))
    weights = train_cnn(Path(args.data) / "camcan", args.out, cfg, cache_path=args.cache,
                        resume=args.resume, log=lambda m: print(m, flush=True))
    if args.ship:
        metrics = (Path(args.out) / "cnn_metrics.csv").read_text().strip().splitlines()
        _ship({"age_cnn.safetensors": weights},
              {"training": f"{cfg.sites} (Cam-CAN reg_train, ixi120) minus validation parts", "config": json.loads(
                  (Path(args.out) / "cnn_config.json").read_text()), "last_epoch_metrics": metrics[-1],
               "metrics_columns": metrics[0]})
    return 0


def cmd_train_age_model(args) -> int:
    import json
    from .training import fit_age_model
    cnn = Path(args.cnn_dir) / "age_cnn.safetensors" if args.cnn_dir else None
    path = fit_age_model(Path(args.data) / "camcan", args.out, Path(args.cache), cnn_weights=cnn,
                         seed=args.seed, degraded_augment=args.degraded_augment, sites=_sites(args.sites),
                         log=lambda m: print(m, flush=True))
    if args.ship:
        m = json.loads(path.read_text())
        info = {"training": m["training"]["data"] + " (features from predicted segmentations)",
                "selected": m["volumes"]["selected"], "cv": m["volumes"]["cv"],
                "degraded_augment": m["training"]["degraded_augment"]}
        if "ensemble" in m:
            info["ensemble"] = {"weight_volumes": m["ensemble"]["weight_volumes"],
                                "validation_mae": m["ensemble"]["validation"]["mae"],
                                "validation_n": m["ensemble"]["validation_n"]}
        _ship({"age_model.json": path, "feature_reference.json": path.with_name("feature_reference.json")}, info)
    return 0


def cmd_build_template(args) -> int:
    from .training import build_template
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = build_template(Path(args.data) / "camcan", out / "template_T1.nii.gz")
    if args.ship:
        _ship({"template_T1.nii.gz": path},
              {"training": "camcan seg_train + reg_train (547 subjects)",
               "description": "registration template: mean normalised T1 of the training subjects, "
                              "model space LPS 2 mm 98x116x94"})
    return 0


def cmd_train_tissue_definition(args) -> int:
    from .training import fit_tissue_definition
    path = fit_tissue_definition(Path(args.data) / "ixi10", Path(args.out) / "tissues_dlmuse.json",
                                 log=lambda m: print(m, flush=True))
    if args.ship:
        _ship({"tissues_dlmuse.json": path},
              {"training": "ixi10 (10 subjects), DLMUSE tissues (dlmuse_tissue_map.csv) carried into "
                           "model space; leave-one-out Dice from brainage evaluate-ixi",
               "description": "maps the ResUNet's Cam-CAN tissue probabilities to DLMUSE's tissue "
                              "definition (--tissues dlmuse)"})
    return 0


def cmd_train_normative(args) -> int:
    """Centile curves of the healthy cohort from the normative table; prints the calibration."""
    from .normative import FILE_NAME, calibration_markdown, train_normative
    path = Path(args.out) / FILE_NAME
    model = train_normative(args.table, path, log=lambda m: print(m, flush=True))
    print("share of test subjects (%) below each centile curve (selected model in bold):")
    print(calibration_markdown(model))
    print(f"wrote {path}")
    if args.ship:
        t = model["training"]
        _ship({FILE_NAME: path}, {"training": f"{args.table}: {t['n']} healthy training subjects "
                                  f"({', '.join(t['sites'])}), ages {t['age_range'][0]:g}-{t['age_range'][1]:g}",
                                  "calibration_test_n": t["n_test"],
                                  "selected": {k: v["method"] for k, v in model["variables"].items()},
                                  "max_abs_dev_points": {r["variable"]: r["max_abs_dev"]
                                                         for r in model["calibration"] if r.get("selected")}})
    return 0


def cmd_evaluate_segmentation(args) -> int:
    from .evaluation import evaluate_segmentation
    evaluate_segmentation(Path(args.data) / "camcan", args.out, split=args.split)
    return 0


def cmd_evaluate_roundtrip(args) -> int:
    from .evaluation import evaluate_native_roundtrip
    evaluate_native_roundtrip(Path(args.data) / "camcan", args.out, n=args.n)
    return 0


def cmd_evaluate_age(args) -> int:
    from .evaluation import evaluate_age
    evaluate_age(Path(args.data) / "camcan", args.out, split=args.split)
    return 0


def cmd_evaluate_ixi(args) -> int:
    from .evaluation import evaluate_ixi
    evaluate_ixi(Path(args.data) / "ixi10", args.out)
    return 0


def cmd_evaluate_robustness(args) -> int:
    from .degrade import conditions
    from .evaluation_robustness import evaluate_robustness
    unknown = [c for c in args.conditions or [] if c not in conditions()]
    if unknown:
        raise ArgumentError(f"--conditions: unknown {', '.join(unknown)}; choose from {', '.join(conditions())}")
    evaluate_robustness(args.data, args.out, n_camcan=args.n_camcan, n_ixi=args.n_ixi,
                        conditions=args.conditions, seed=args.seed, log=lambda m: print(m, flush=True))
    return 0


def cmd_evaluate_sites(args) -> int:
    from .site_evaluation import evaluate_sites
    evaluate_sites(args.cache, args.out, args.age_dir,
                   {"camcan": args.cnn_camcan, "ixi": args.cnn_ixi},
                   log=lambda m: print(m, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brainage", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="brain age of T1 images (files, DICOM folders, folders, globs)")
    pr.add_argument("inputs", nargs="*", metavar="INPUT")
    pr.add_argument("--sample", action="store_true", help="run on the bundled sample T1")
    pr.add_argument("--output", "-o", help="write a CSV (default: print a summary, write nothing)")
    pr.add_argument("--labels-dir", help="write <input>_tissues.nii.gz label maps here")
    pr.add_argument("--skull-stripped", action="store_true", help="inputs are already brain-extracted")
    pr.add_argument("--ages", help="CSV of chronological ages (columns input|subject_id|id, age)")
    pr.add_argument("--approach", choices=["ensemble", "volumes", "image"], default="ensemble")
    pr.add_argument("--tissues", choices=["camcan", "dlmuse"], default="camcan",
                    help="tissue definition of the labels and volumes: camcan (the training labels': "
                         "sulcal CSF counted as CSF) or dlmuse (CSF = ventricles, as DLMUSE); "
                         "ages do not depend on it")
    pr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    pr.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pr.add_argument("--site-offset", metavar="JSON",
                    help="a scanner's calibration from its healthy controls (brainage calibrate-site) or "
                         "its age offset (brainage site-offset)")
    pr.add_argument("--report", metavar="DIR", help="write a report per input (HTML and PDF) and, for "
                    "several inputs, a cohort report into DIR")
    pr.set_defaults(func=cmd_predict)
    cs = sub.add_parser("calibrate-site", help="calibrate BrainAge to a scanner from its healthy "
                        "controls' scans and ages (features and ages); use with predict --site-offset")
    cs.add_argument("inputs", nargs="+", metavar="INPUT", help="the controls' T1 scans (files, folders, globs)")
    cs.add_argument("--ages", required=True, help="CSV with the controls' ages (as for predict --ages)")
    cs.add_argument("--output", "-o", required=True, help="the site-calibration JSON to write")
    cs.set_defaults(func=cmd_calibrate_site)
    so = sub.add_parser("site-offset", help="fit a scanner's brain-age offset from its healthy "
                        "controls (a predict CSV made with --ages)")
    so.add_argument("results", help="CSV written by brainage predict --output ... --ages ...")
    so.add_argument("--output", "-o", required=True, help="the site-offset JSON to write")
    so.set_defaults(func=cmd_site_offset)

    def training(name, func, hlp, default_out, epochs=None):
        t = sub.add_parser(name, help=hlp)
        t.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding camcan/ (default ../shared/data)")
        t.add_argument("--out", default=default_out)
        t.add_argument("--seed", type=int, default=20261123)
        t.add_argument("--ship", action="store_true", help="copy the result into Resources/Models "
                       "and update manifest.json")
        if epochs is not None:
            t.add_argument("--epochs", type=int, default=epochs)
            t.add_argument("--threads", type=int, default=2)
            t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        t.set_defaults(func=func)
        return t
    training("build-template", cmd_build_template, "build the registration template", "runs/template")
    ts = training("train-segmentation", cmd_train_segmentation, "train the tissue ResUNet", "runs/segmentation", 14)
    ts.add_argument("--init", metavar="SAFETENSORS", help="fine-tune these weights instead of starting afresh")
    ts.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    ts.add_argument("--p-real", type=float, default=0.0,
                    help="share of training crops given another acquisition (TorchIO: thick slices, "
                         "noise, bias, gamma, blur, motion, ghosting)")
    ts.add_argument("--p-synth", type=float, default=0.0,
                    help="share of training crops synthesised from their labels with random "
                         "contrast (domain randomisation)")
    tc = training("train-cnn", cmd_train_cnn, "train approach B's CNN", "runs/cnn", 60)
    tc.add_argument("--init", metavar="SAFETENSORS", help="fine-tune these weights instead of starting afresh")
    tc.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    tc.add_argument("--cache", default="runs/features/features.npz", help="model-space feature cache")
    ta = training("train-age-model", cmd_train_age_model,
                  "select and fit approach A, calibrate B and the ensemble", "runs/age")
    ta.add_argument("--cache", default="runs/features/features.npz", help="model-space feature cache")
    ta.add_argument("--cnn-dir", default=None, help="folder of the trained CNN (with cnn_config.json)")
    ta.add_argument("--degraded-augment", action=argparse.BooleanOptionalAction, default=True,
                    help="approach A also learns from each subject's degraded copy (default: yes)")
    for t in (tc, ta):
        t.add_argument("--sites", default="camcan,ixi",
                       help="training sites, comma-separated: camcan (reg_train), ixi (ixi120)")
    tn = sub.add_parser("train-normative", help="fit the centile curves of the healthy cohort "
                        "(tissue fractions and brain-age gap against age) from the normative table")
    tn.add_argument("--table", default="runs/age-model/normative_table.csv",
                    help="CSV: subject_id, site, sex, age, split (train|test), predicted_age, csf_frac, "
                         "gm_frac, wm_frac")
    tn.add_argument("--out", default="runs/normative")
    tn.add_argument("--ship", action="store_true", help="copy normative.json into Resources/Models "
                    "and record it in manifest.json")
    tn.set_defaults(func=cmd_train_normative)
    for name, func in (("evaluate-segmentation", cmd_evaluate_segmentation),
                       ("evaluate-age", cmd_evaluate_age)):
        e = sub.add_parser(name, help=f"{name.split('-')[1]} metrics on the held-out test split")
        e.add_argument("--data", default=str(DEFAULT_DATA))
        e.add_argument("--out", default=f"runs/{name}")
        e.add_argument("--split", default="test")
        e.set_defaults(func=func)
    rt = sub.add_parser("evaluate-roundtrip", help="test scans in a random pose on a 1 mm grid "
                        "through the raw-scan path, Dice on that grid")
    rt.add_argument("--data", default=str(DEFAULT_DATA))
    rt.add_argument("--out", default="runs/evaluate-roundtrip")
    rt.add_argument("--n", type=int, default=10, help="number of test subjects")
    rt.set_defaults(func=cmd_evaluate_roundtrip)
    td = sub.add_parser("train-tissue-definition", help="fit the map to DLMUSE's tissue definition "
                        "(--tissues dlmuse) on ixi10")
    td.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding ixi10/ (default ../shared/data)")
    td.add_argument("--out", default="runs/tissue-definition")
    td.add_argument("--ship", action="store_true", help="copy the result into Resources/Models "
                    "and update the manifest")
    td.set_defaults(func=cmd_train_tissue_definition)
    ix = sub.add_parser("evaluate-ixi", help="raw whole-head scans of another site (ixi10) against DLMUSE")
    ix.add_argument("--data", default=str(DEFAULT_DATA))
    ix.add_argument("--out", default="runs/evaluate-ixi")
    ix.set_defaults(func=cmd_evaluate_ixi)
    rb = sub.add_parser("evaluate-robustness", help="Cam-CAN test and ixi10 scans degraded by simulated "
                        "acquisitions (thick slices, noise, bias, gamma, motion, ghosting, lesion, wrap-around, "
                        "offset): age change against the clean scan, QC flags, silent large errors")
    rb.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding camcan/ and ixi10/")
    rb.add_argument("--out", default="runs/evaluate-robustness")
    rb.add_argument("--n-camcan", type=int, default=6, help="Cam-CAN test subjects (seeded draw)")
    rb.add_argument("--n-ixi", type=int, default=6, help="ixi10 subjects (seeded draw)")
    rb.add_argument("--conditions", nargs="+", metavar="NAME", help="only these conditions (default: all; "
                    "e.g. noise_snr20 thick5mm_axial lesion_45ml)")
    rb.add_argument("--seed", type=int, default=20261123)
    rb.set_defaults(func=cmd_evaluate_robustness)
    es = sub.add_parser("evaluate-sites", help="leave-one-site-out ages, calibration to a new site "
                        "from k controls, and how distinguishable the sites' features are")
    es.add_argument("--cache", default="runs/features/features.npz", help="model-space feature cache")
    es.add_argument("--age-dir", default="runs/age", help="train-age-model output (selected regressor, weight)")
    es.add_argument("--cnn-camcan", default="runs/cnn-camcan", help="run folder of a CNN trained on Cam-CAN only")
    es.add_argument("--cnn-ixi", default="runs/cnn-ixi", help="run folder of a CNN trained on IXI only")
    es.add_argument("--out", default="runs/evaluate-sites")
    es.set_defaults(func=cmd_evaluate_sites)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ArgumentError as e:
        parser.error(str(e))   # exits with status 2
    except (ValueError, FileNotFoundError, RuntimeError) as e:   # e.g. a mismatched --resume
        print(f"brainage: error: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
