"""The ``brainage`` command: predict brain age for files and cohorts (``predict``, ``bids``),
calibrate to a site; the training and evaluation commands are in :mod:`BrainAgeLib.cli_training`."""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path

from . import models
from .ages import match_age
from .cli_training import add_training_commands
from .outputs import Interrupted, catch_signals, restore_signals, signal_name
from .outputs import input_stem  # noqa: F401  (kept: part of the module's old API)

COLUMNS = ["input", "predicted_age", "predicted_age_volumes", "predicted_age_cnn", "interval_low",
           "interval_high", "chronological_age", "brain_age_gap", "gm_ml", "wm_ml", "csf_ml",
           "tiv_ml", "qc", "seconds"]

SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData" / "IXI012-HH-1211_T1.nii.gz"
SAMPLE_AGE = 38.78   # years, from the IXI demographics
SAMPLE_SEX = "M"


class ArgumentError(Exception):
    """Bad command-line arguments (exit status 2)."""


def read_ages(path: str) -> dict[str, float]:
    """Chronological ages (years) by id from ``--ages`` (rules in :mod:`BrainAgeLib.ages`)."""
    from .ages import AgesError, read_ages as _read
    try:
        return _read(path)
    except AgesError as e:
        raise ArgumentError(f"--ages: {e}") from None


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


def _prepare_outputs(args, inputs: list[str]):
    """Check every output against the inputs and open the results CSV, before any work.
    Returns ``(label paths or None, ResultsCSV or None)``; OutputError becomes exit 2."""
    from .outputs import OutputError, ResultsCSV, check_outputs_do_not_touch_inputs, label_paths
    if (args.resume or args.overwrite) and not args.output:
        raise ArgumentError("--resume and --overwrite need --output")
    labels = None
    try:
        written = []
        if args.labels_dir:
            if Path(args.labels_dir).exists() and not Path(args.labels_dir).is_dir():
                raise OutputError(f"--labels-dir {args.labels_dir} is a file, not a folder")
            labels = label_paths(inputs, args.labels_dir)
            written += list(labels.values())
        results = None
        if args.output:
            results = ResultsCSV(args.output, COLUMNS,
                                 mode="resume" if args.resume else "overwrite" if args.overwrite else "new")
            written += [args.output, results.lock_path]
        check_outputs_do_not_touch_inputs(inputs, written, input_patterns=args.inputs)
        if args.labels_dir:
            try:
                Path(args.labels_dir).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"--labels-dir: cannot create {args.labels_dir}: {e.strerror}") from None
        if results is not None:
            results.open()
    except OutputError as e:
        raise ArgumentError(str(e)) from None
    return labels, results


def _unique(inputs: list[str]) -> list[str]:
    """Inputs in order, each file once (the same path given twice, or by a glob and by name)."""
    seen, out = set(), []
    for p in inputs:
        key = os.path.normcase(os.path.abspath(p.rstrip("/\\") or p))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _log_line(bar):
    """Print a line to stderr without breaking the progress bar."""
    return (lambda m: bar.write(m, file=sys.stderr)) if bar else (lambda m: print(m, file=sys.stderr))


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--workers / --scheduler (README: Cohorts)."""
    def positive(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
        return n
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--workers", type=positive, metavar="N", help="run the scans on a local Dask cluster "
                   "of N worker processes (one torch thread each); default: one after another in "
                   "this process")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run the scans on a running Dask cluster "
                   "(e.g. tcp://10.0.0.5:8786, or a dask-jobqueue SLURMCluster's scheduler)")


def _import_torch_first() -> None:
    """Import PyTorch (through the pipeline) before :func:`catch_signals`: a Ctrl-C that arrives
    while torch's extension modules are being imported, turned into an exception there, aborts
    the process from C++ ("terminate called ...", exit -6) instead of a clean exit 130."""
    from . import pipeline  # noqa: F401


def cmd_predict(args) -> int:
    """Predict every input; rows are appended as inputs finish (see README: Batches and safety)."""
    _import_torch_first()
    old_handlers = catch_signals()
    results = bar = path = None
    done = total = 0
    try:
        from .io import expand_inputs
        if args.sample:
            if args.inputs:
                raise ArgumentError("--sample takes no INPUT")
            inputs = [str(SAMPLE)]
        else:
            if not args.inputs:
                raise ArgumentError("give at least one INPUT (file, DICOM folder, folder or glob) or --sample")
            inputs = _unique(expand_inputs(args.inputs))
            if not inputs:
                raise ArgumentError("no input matched")
        ages = read_ages(args.ages) if args.ages else {}
        site = read_site_offset(args.site_offset) if args.site_offset else None
        models.verify_all()          # a damaged installation stops here, before any output
        if args.sample and not ages:
            ages = {str(SAMPLE): SAMPLE_AGE}
        labels, results = _prepare_outputs(args, inputs)
        total = len(inputs)
        if ages:
            unmatched = [p for p in inputs if match_age(ages, p) is None]
            if unmatched:
                print(f"{len(unmatched)} of {len(inputs)} input(s) have no age in {args.ages} (an id "
                      "must be the whole path, the file name with or without its suffix, or the BIDS "
                      f"sub-<label>), e.g. {unmatched[0]}", file=sys.stderr)
        if site is not None:
            print(f"applying the site offset of {args.site_offset}: {site.offset:+.2f} years "
                  f"({site.n} controls)", file=sys.stderr)
        todo = [p for p in inputs if results is None or not results.is_done(p)]
        done = len(inputs) - len(todo)
        if done:
            print(f"resuming {args.output}: {done} of {len(inputs)} input(s) already done", file=sys.stderr)
        if len(todo) > 1 and not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="scan", desc="brainage", file=sys.stderr)
        # the exit status describes the whole CSV, rows of an earlier run included
        failed = sum(r["qc"].startswith("error") for r in results.rows) if results else 0
        unwritten = sum("label map not written" in r["qc"] for r in results.rows) if results else 0
        from .cohort import ScanJob, predict_scan, run_jobs
        options = dict(skull_stripped=True if args.skull_stripped else None, approach=args.approach,
                       tissues=args.tissues, device=args.device)
        reporter = _reporter(args, ages) if args.report else None
        jobs = [ScanJob(key=p, path=p, chronological_age=match_age(ages, p), options=options,
                        site_offset=site.to_dict() if site is not None else None,
                        labels_path=str(labels[p]) if labels is not None else None,
                        extra={"report": reporter.subject_job(p)} if reporter is not None else {})
                for p in todo]
        path = None if (args.workers or args.scheduler) else (todo[0] if todo else None)
        for i, (job, row) in enumerate(run_jobs(predict_scan, jobs, workers=args.workers,
                                                scheduler=args.scheduler, log=_log_line(bar))):
            failed += row.pop("_failed")
            unwritten += row.pop("_unwritten")
            if reporter is not None:
                failed += _add_report(reporter, job.path, row, row.pop("_report", None))
            if results is not None:
                results.append(row)
            else:
                (bar.write if bar else print)(summary(row))
            done += 1
            if path is not None:   # in this process, scans run in order: the next one starts
                path = todo[i + 1] if i + 1 < len(todo) else None
            if bar:
                bar.update(1)
        if bar:
            bar.close()
            bar = None
        if reporter is not None:
            failed += _add_report(reporter, None, None, None)
        if results is not None:
            print(f"wrote {len(todo)} row(s) to {args.output} ({total} in all)"
                  + (f"; {failed} failed" if failed else "")
                  + (f"; {unwritten} label map(s) not written" if unwritten else ""), file=sys.stderr)
        return 1 if failed or unwritten else 0
    except Interrupted as sig:
        if bar:
            bar.close()
        where = f" during {path}" if path else ""
        more = f"; {done} of {total} input(s) done" if total else ""
        hint = "; run the same command with --resume to continue" if results is not None else ""
        print(f"brainage: stopped by {signal_name(sig.signum)}{where}{more}{hint}", file=sys.stderr)
        return 128 + sig.signum
    finally:
        if results is not None:
            results.close()
        restore_signals(old_handlers)


def cmd_bids(args) -> int:
    """The BIDS App: participant level (scans -> derivative), group level (cohort table, figures)."""
    from . import bids, bids_group
    try:
        if args.analysis_level == "group":
            if args.participant_label or args.session_label or args.bids_filter_file:
                raise ArgumentError("the group level takes every scan in OUTPUT_DIR: no labels or filter")
            bids.prepare_output(args.bids_dir, args.output_dir)
            s = bids_group.write_group(args.output_dir, args.bids_dir, report=not args.no_report)
            qc = ", ".join(f"{k} {v}" for k, v in s["qc"].items() if v)
            gap = (f"; mean gap {s['mean_gap']:+.2f} y, MAE {s['mae']:.2f} y over {s['with_age']} "
                   "scans with an age" if "mean_gap" in s else "")
            print(f"{s['scans']} scan(s) in {Path(args.output_dir) / 'brainage.tsv'} (QC: {qc}){gap}; "
                  f"figures in {Path(args.output_dir) / 'figures'}"
                  + (f"; cohort report {s['report']['html']}" if "report" in s else ""), file=sys.stderr)
            return 0
        scans = bids.find_scans(args.bids_dir, args.participant_label, args.session_label,
                                args.bids_filter_file)
        models.verify_all()          # a damaged installation stops here, before any output
        out = bids.prepare_output(args.bids_dir, args.output_dir)
        options = dict(skull_stripped=True if args.skull_stripped else None, approach=args.approach,
                       tissues=args.tissues, device=args.device)
        todo = scans if args.overwrite else [
            s for s in scans if not bids.is_done(out, s, options)
            or (args.report and not bids.report_path(out, s).exists())]
    except bids.BidsError as e:
        raise ArgumentError(str(e)) from None
    print(f"{len(scans)} T1w scan(s) in {args.bids_dir}; {len(scans) - len(todo)} already in "
          f"{args.output_dir}, {len(todo)} to do", file=sys.stderr)
    _import_torch_first()
    old_handlers = catch_signals()
    bar = None
    done = failed = 0
    try:
        from .cohort import run_jobs
        if len(todo) > 1 and not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="scan", desc="brainage bids", file=sys.stderr)
        for job, row in run_jobs(bids.process_scan, bids.scan_jobs(todo, out, options, report=args.report),
                                 workers=args.workers, scheduler=args.scheduler, log=_log_line(bar)):
            failed += row.pop("_failed")
            if row.get("_report_error"):
                (bar.write if bar else print)(f"{job.key}: report not written ({row.pop('_report_error')})",
                                              file=sys.stderr)
            done += 1
            if row["qc"].startswith("error"):
                (bar.write if bar else print)(f"{job.key}: {row['qc']}", file=sys.stderr)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
            bar = None
        print(f"wrote {done} scan(s) to {args.output_dir}" + (f"; {failed} failed" if failed else ""),
              file=sys.stderr)
        return 1 if failed else 0
    except Interrupted as sig:
        if bar:
            bar.close()
        print(f"brainage: stopped by {signal_name(sig.signum)}; {done} of {len(todo)} scan(s) done; "
              "run the same command again to continue", file=sys.stderr)
        return 128 + sig.signum
    finally:
        restore_signals(old_handlers)


def _reporter(args, ages: dict):
    """The report writer of ``--report DIR`` (sex from a ``sex`` column of ``--ages``)."""
    from .report import BatchReporter, read_sexes
    sexes = read_sexes(args.ages) if args.ages else ({str(SAMPLE): SAMPLE_SEX} if args.sample else {})
    try:
        return BatchReporter(args.report, sex_of=lambda p: match_age(sexes, p))
    except OSError as e:
        raise ArgumentError(f"--report: cannot write to {args.report}: {e.strerror}") from None


def _add_report(reporter, path, row, report) -> int:
    """Record one input's report, written by its task (``report``: its paths, or an error
    message), or, with ``path`` None, write the cohort report; 1 if that failed."""
    if isinstance(report, str):
        print(f"brainage: error: report for {path} not written: {report}", file=sys.stderr)
        reporter.add(path, row)
        return 1
    try:
        paths = reporter.add(path, row, report=report) if path is not None else reporter.finish()
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
                               log=lambda m: print(m, file=sys.stderr, flush=True), offset_only=args.offset_only)
    Path(args.output).write_text(json.dumps(cal.to_dict()) + "\n")
    if args.offset_only:
        print(f"site offset {cal.offset:+.2f} ± {cal.standard_error:.2f} years (Hodges-Lehmann gap of {cal.n} "
              f"controls, MAD {cal.mad:.2f}); wrote {args.output}")
        _warn_small_offset(cal.offset, cal.standard_error, cal.n)
        return 0
    print(f"site calibration from {cal.n} controls (ages {cal.age_range[0]:.0f}-{cal.age_range[1]:.0f}): "
          f"age slope {cal.slope:.2f}, offset {cal.offset:+.2f} ± {cal.offset_se:.2f} years at their mean age; "
          f"wrote {args.output}")
    _warn_small_offset(cal.offset, cal.offset_se, cal.n)
    print("note: with each training site held out in turn, the offset alone (--offset-only) was more "
          "accurate than this calibration at every number of controls measured (5-40; "
          "docs/generalisation.md: Both directions)", file=sys.stderr)
    return 0


def _warn_small_offset(offset: float, se: float, n: int) -> None:
    """A warning (stderr) when a fitted site offset lies within two standard errors of 0."""
    if abs(offset) < 2 * se:
        print(f"warning: the offset ({offset:+.2f} years) is within two standard errors ({se:.2f}) of 0: "
              f"with {n} controls it is mostly sampling error, and on held-out scans such an offset "
              "costs more accuracy than it gains. Add controls, or predict without it "
              "(docs/generalisation.md: How many controls)", file=sys.stderr)


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
    print(f"site offset {site.offset:+.2f} ± {site.standard_error:.2f} years (Hodges-Lehmann gap of {site.n} controls, "
          f"MAD {site.mad:.2f}); wrote {args.output}")
    _warn_small_offset(site.offset, site.standard_error, site.n)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brainage", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="brain age of T1 images (files, DICOM folders, folders, globs)")
    pr.add_argument("inputs", nargs="*", metavar="INPUT")
    pr.add_argument("--sample", action="store_true", help="run on the bundled sample T1")
    pr.add_argument("--output", "-o", help="write a CSV, one row appended per finished input "
                    "(default: print a summary, write nothing); an existing file needs --resume or "
                    "--overwrite")
    mode = pr.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="keep the rows already in --output and "
                      "process only the inputs missing from it (a stopped batch continues)")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    pr.add_argument("--labels-dir", help="write <input>_tissues.nii.gz label maps here (inputs "
                    "from several folders keep their folders below it; see README)")
    pr.add_argument("--skull-stripped", action="store_true", help="inputs are already brain-extracted")
    pr.add_argument("--ages", help="CSV/TSV of chronological ages: an age column and an id column "
                    "(input|subject_id|participant_id|id) matching the whole path, file name, name "
                    "without suffix or BIDS sub-<label> exactly")
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
    add_cluster_options(pr)
    pr.set_defaults(func=cmd_predict)
    cs = sub.add_parser("calibrate-site", help="calibrate BrainAge to a scanner from its healthy "
                        "controls' scans and ages (features and ages); use with predict --site-offset")
    cs.add_argument("inputs", nargs="+", metavar="INPUT", help="the controls' T1 scans (files, folders, globs)")
    cs.add_argument("--ages", required=True, help="CSV with the controls' ages (as for predict --ages)")
    cs.add_argument("--offset-only", action="store_true", help="fit only the age offset of the controls' "
                    "predictions (as brainage site-offset does from their predict CSV); measured more "
                    "accurate than features + age on held-out sites (advised: 40 controls, 20 at least)")
    cs.add_argument("--output", "-o", required=True, help="the site-calibration JSON to write")
    cs.set_defaults(func=cmd_calibrate_site)
    bd = sub.add_parser("bids", help="BIDS App: brain age of every T1w scan of a BIDS dataset, "
                        "written as a BIDS derivative (participant), then the cohort table (group)")
    bd.add_argument("bids_dir", help="the BIDS dataset (read only)")
    bd.add_argument("output_dir", help="the derivative to write, e.g. BIDS_DIR/derivatives/brainage")
    bd.add_argument("analysis_level", choices=["participant", "group"])
    bd.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                    help="only these subjects (with or without sub-)")
    bd.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                    help="only these sessions (with or without ses-)")
    bd.add_argument("--bids-filter-file", metavar="JSON", help='select the T1w images as fMRIPrep '
                    'does: {"t1w": {"acquisition": "mprage", "run": 1}}')
    bd.add_argument("--skull-stripped", action="store_true", help="scans are already brain-extracted")
    bd.add_argument("--approach", choices=["ensemble", "volumes", "image"], default="ensemble")
    bd.add_argument("--tissues", choices=["camcan", "dlmuse"], default="camcan")
    bd.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    bd.add_argument("--overwrite", action="store_true", help="redo the scans already in OUTPUT_DIR "
                    "(default: skip them, so that a stopped run continues)")
    bd.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    bd.add_argument("--report", action="store_true", help="participant level: also write each scan's "
                    "one-page report (HTML + PDF) into OUTPUT_DIR/reports/")
    bd.add_argument("--no-report", action="store_true", help="group level: no cohort report "
                    "(default: OUTPUT_DIR/reports/cohort_report.html + .pdf)")
    add_cluster_options(bd)
    bd.set_defaults(func=cmd_bids)
    so = sub.add_parser("site-offset", help="fit a scanner's brain-age offset from its healthy "
                        "controls (a predict CSV made with --ages)")
    so.add_argument("results", help="CSV written by brainage predict --output ... --ages ...")
    so.add_argument("--output", "-o", required=True, help="the site-offset JSON to write")
    so.set_defaults(func=cmd_site_offset)

    add_training_commands(sub)
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
    except (KeyboardInterrupt, Interrupted) as e:
        signum = getattr(e, "signum", 2)
        print(f"brainage: stopped by {signal_name(signum)}", file=sys.stderr)
        return 128 + signum
    return 2


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: the training commands raise
    # BrainAgeLib.cli.ArgumentError, which must be the class main() catches (exit 2)
    from BrainAgeLib.cli import main as _main
    sys.exit(_main())
