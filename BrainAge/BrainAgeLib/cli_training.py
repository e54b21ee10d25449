"""``brainage`` subcommands that train the shipped models and evaluate them on ``../shared/data``
(``build-template``, ``train-*``, ``evaluate-*``): one ``cmd_*`` per command, registered on the
main parser by :func:`add_training_commands`. The commands for scans and cohorts are in
:mod:`BrainAgeLib.cli`."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

DEFAULT_DATA = Path("..") / "shared" / "data"


def _ship(files: dict[str, Path], info: dict) -> None:
    from . import models
    info = {"command": "brainage " + " ".join(sys.argv[1:]), **info}
    for name, src in files.items():
        shutil.copyfile(src, models.models_dir() / name)
        models.update_manifest(name, info)
        print(f"shipped {name} into {models.models_dir()}")


def cmd_train_segmentation(args) -> int:
    import json
    from .cli import ArgumentError
    from .training import SegmentationConfig, train_segmentation
    if args.consistency_weight > 0 and not (args.init and args.consistency_cache):
        raise ArgumentError("--consistency-weight needs --init (the teacher) and --consistency-cache")
    cfg = SegmentationConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, lr=args.lr,
                             p_real=args.p_real, p_synth=args.p_synth,
                             init_weights=args.init, thick_slice_profile=args.thick_slice_profile,
                             consistency_cache=args.consistency_cache,
                             consistency_weight=args.consistency_weight,
                             consistency_anchor=args.consistency_anchor)
    out = Path(args.out)
    weights = train_segmentation(Path(args.data) / "camcan", out, cfg, resume=args.resume,
                                 log=lambda m: print(m, flush=True))
    if args.ship:
        metrics = (out / "segmentation_metrics.csv").read_text().strip().splitlines()
        _ship({"resunet.safetensors": weights},
              {"training": "camcan seg_train + reg_train" + (
                  "; unlabelled ixi120 heads for the teacher-consistency term" if cfg.consistency_weight > 0 else ""),
               "config": json.loads(
                  (out / "segmentation_config.json").read_text()), "last_epoch_metrics": metrics[-1],
               "metrics_columns": metrics[0]})
    return 0


def _sites(text: str) -> tuple[str, ...]:
    from .cli import ArgumentError
    sites = tuple(s.strip() for s in text.split(",") if s.strip())
    if not sites or any(s not in ("camcan", "ixi") for s in sites):
        raise ArgumentError(f"--sites: expected camcan and/or ixi, got {text!r}")
    return sites


def _copies(text: str, option: str = "--copies") -> tuple[str, ...]:
    from .cli import ArgumentError
    from .training.features import COPY_KINDS
    kinds = tuple(s.strip() for s in text.split(",") if s.strip())
    if not kinds or any(k not in COPY_KINDS for k in kinds):
        raise ArgumentError(f"{option}: expected {' and/or '.join(COPY_KINDS)}, got {text!r}")
    return kinds


def cmd_train_cnn(args) -> int:
    import json
    from .cli import ArgumentError
    from .training import CNNConfig, train_cnn
    if args.site_adversarial > 0 and len(_sites(args.sites)) < 2:
        raise ArgumentError("--site-adversarial needs both sites (--sites camcan,ixi)")
    if args.second_copies and args.contrast_consistency <= 0:
        raise ArgumentError("--second-copies needs --contrast-consistency above 0")
    if (args.second_anchored or args.second_weight is not None) and not args.second_copies:
        raise ArgumentError("--second-anchored and --second-weight need --second-copies")
    cfg = CNNConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, lr=args.lr,
                    init_weights=args.init, sites=_sites(args.sites),
                    contrast_consistency=args.contrast_consistency, consistency_copies=_copies(args.copies),
                    consistency_copies_second=(_copies(args.second_copies, "--second-copies")
                                               if args.second_copies else ()),
                    consistency_second_anchored=args.second_anchored, consistency_second_weight=args.second_weight,
                    consistency_ixi_weight=args.consistency_ixi_weight, export=args.export,
                    site_adversarial=args.site_adversarial, max_zoom=args.max_zoom)
    weights = train_cnn(Path(args.data) / "camcan", args.out, cfg, cache_path=args.cache,
                        resume=args.resume, log=lambda m: print(m, flush=True))
    if args.ship:
        metrics = (Path(args.out) / "cnn_metrics.csv").read_text().strip().splitlines()
        _ship({"age_cnn.safetensors": weights},
              {"training": f"{cfg.sites} (Cam-CAN reg_train, ixi120) minus validation parts", "config": json.loads(
                  (Path(args.out) / "cnn_config.json").read_text()), "last_epoch_metrics": metrics[-1],
               "metrics_columns": metrics[0],
               "exported": json.loads((Path(args.out) / "cnn_export.json").read_text())})
    return 0


def _ensemble_weight(value: str | None) -> tuple[float | None, str]:
    """``--ensemble-weight``: (A's weight or None, the rule that chose it)."""
    import json
    from .site_evaluation import site_cv_weight
    if value is None:
        return None, "validation"
    try:
        weight = float(value)
    except ValueError:
        weight = None
    if weight is not None:
        if not 0.0 <= weight <= 1.0:
            raise SystemExit(f"--ensemble-weight: A's weight must lie in [0, 1], got {value}")
        return weight, "given"
    path = Path(value)
    if not path.is_file():
        raise SystemExit(f"--ensemble-weight: {value} is neither a number nor a sites_summary.json")
    by_weight = json.loads(path.read_text()).get("leave_one_site_out_by_weight")
    if not by_weight:
        raise SystemExit(f"--ensemble-weight: {value} holds no leave_one_site_out_by_weight "
                         "(run brainage evaluate-sites with both one-site CNNs)")
    try:
        return site_cv_weight(by_weight), f"site-level cross-validation ({path.name})"
    except ValueError as e:
        raise SystemExit(f"--ensemble-weight: {value}: {e}") from None


def cmd_train_age_model(args) -> int:
    import json
    from .training import fit_age_model
    cnn = Path(args.cnn_dir) / "age_cnn.safetensors" if args.cnn_dir else None
    weight, rule = _ensemble_weight(args.ensemble_weight)
    if weight is not None and cnn is None:
        raise SystemExit("--ensemble-weight needs --cnn-dir (the ensemble mixes A with the CNN)")
    path = fit_age_model(Path(args.data) / "camcan", args.out, Path(args.cache), cnn_weights=cnn,
                         seed=args.seed, degraded_augment=args.degraded_augment, sites=_sites(args.sites),
                         invariance=args.invariance, copies=_copies(args.copies), selection=args.select,
                         ensemble_weight=weight, weight_rule=rule, log=lambda m: print(m, flush=True))
    if args.ship:
        m = json.loads(path.read_text())
        info = {"training": m["training"]["data"] + " (features from predicted segmentations)",
                "selected": m["volumes"]["selected"], "cv": m["volumes"]["cv"],
                "selection": m["volumes"].get("selection", "cv"),
                "degraded_augment": m["training"]["degraded_augment"],
                "invariance": m["training"].get("invariance", 0.0),
                "invariance_copies": m["training"].get("invariance_copies", [])}
        if "ensemble" in m:
            info["ensemble"] = {"weight_volumes": m["ensemble"]["weight_volumes"],
                                "weight_rule": m["ensemble"].get("weight_rule", "validation"),
                                "validation_mae": m["ensemble"]["validation"]["mae"],
                                "validation_n": m["ensemble"]["validation_n"]}
        _ship({"age_model.json": path, "feature_reference.json": path.with_name("feature_reference.json")}, info)
    return 0


def cmd_train_thick_slice_weights(args) -> int:
    from .cli import ArgumentError
    from .training.thick_slices import train_thick_slice_weights
    if args.from_arrays and (args.from_csv or args.resume or args.arrays):
        raise ArgumentError("--from-arrays reads stored maps: not with --from-csv, --resume or --arrays")
    if args.resegment_from:
        if not args.from_arrays:
            raise ArgumentError("--resegment-from needs --from-arrays (where the new maps go)")
        from .training.thick_slices import resegment_arrays
        n = resegment_arrays(args.resegment_from, args.from_arrays, log=lambda m: print(m, flush=True))
        print(f"{n} scans of {args.resegment_from} segmented again into {args.from_arrays}")
    path = train_thick_slice_weights(args.data, args.out, n_subjects=args.n, n_ixi=args.n_ixi,
                                     measured_csv=args.from_csv, resume=args.resume,
                                     arrays_dir=args.from_arrays or args.arrays, from_arrays=bool(args.from_arrays),
                                     log=lambda m: print(m, flush=True))
    print(f"wrote {path}")
    if args.ship:
        import json
        doc = json.loads(path.read_text())
        _ship({path.name: path}, {"training": ", ".join(doc["subjects"]) + " (thick-slice copies)",
                                  "weight_volumes": doc["weight_volumes"], "fitted_for": doc["fitted_for"],
                                  "fit": doc["fit"]})
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
    from .cli import ArgumentError
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
                   log=lambda m: print(m, flush=True), reread_resunet=args.reread_resunet,
                   camcan_dir=Path(args.data) / "camcan")
    return 0


def add_training_commands(sub) -> None:
    """Register the training and evaluation commands on ``sub`` (argparse subparsers)."""
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
    ts.add_argument("--thick-slice-profile", action="store_true",
                    help="thick slices averaged over their slab, as scanners acquire them (default: "
                         "TorchIO's RandomAnisotropy alone, which keeps thin samples)")
    ts.add_argument("--consistency-cache", metavar="NPZ",
                    help="the feature cache's ixi_model_space.npz: unlabelled ixi120 heads (minus the "
                         "CNN's validation draw) for the teacher-consistency term")
    ts.add_argument("--consistency-weight", type=float, default=0.0,
                    help="weight of the teacher-consistency term: the --init network reads each "
                         "unlabelled crop as it is, the trained one must read it the same with "
                         "another contrast (gamma, bias, noise); 0: off")
    ts.add_argument("--consistency-anchor", action="store_true",
                    help="half of the unlabelled crops are also read as they are, with the teacher's "
                         "reading as the target, so that the clean reading does not drift")
    tc = training("train-cnn", cmd_train_cnn, "train approach B's CNN", "runs/cnn", 60)
    tc.add_argument("--init", metavar="SAFETENSORS", help="fine-tune these weights instead of starting afresh")
    tc.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    tc.add_argument("--cache", default="runs/features/features.npz", help="model-space feature cache")
    tc.add_argument("--contrast-consistency", type=float, default=0.0, metavar="WEIGHT",
                    help="penalise the age difference (years²) between each scan and its acquisition copy "
                         "(--copies; <kind>_copies.npz beside the cache, built when missing); 0: off")
    tc.add_argument("--second-copies", default=None, metavar="KINDS",
                    help="a second consistency partner of every sample, from these kinds of copy "
                         "(comma-separated, one drawn at random), beside the --copies one; default: none")
    tc.add_argument("--second-anchored", action="store_true",
                    help="the second partner only learns to read as its scan does (the scan's age held fixed, "
                         "no age loss of its own); default: it learns as the --copies partner does")
    tc.add_argument("--second-weight", type=float, default=None, metavar="WEIGHT",
                    help="weight of the second partner's age difference (years²); default: --contrast-consistency")
    tc.add_argument("--consistency-ixi-weight", type=float, default=1.0, metavar="FACTOR",
                    help="the consistency term of IXI subjects counts FACTOR times (default 1)")
    tc.add_argument("--site-adversarial", type=float, default=0.0, metavar="WEIGHT",
                    help="train a site classifier on the CNN's pooled features through gradient reversal, so "
                         "that they stop telling Cam-CAN from IXI (needs both sites); 0: off (default)")
    tc.add_argument("--max-zoom", type=float, default=0.0, metavar="Z",
                    help="zoom each training input isotropically by a random factor in [1 - Z, 1 + Z] "
                         "(so that brain size in model space is not read as age); 0: off (default)")
    tc.add_argument("--export", choices=("best", "ema", "final"), default="best",
                    help="weights written: the moving average (ema), the last step's (final), or whichever "
                         "reads the validation subjects better (best, default; cnn_export.json says which)")
    ta = training("train-age-model", cmd_train_age_model,
                  "select and fit approach A, calibrate B and the ensemble", "runs/age")
    ta.add_argument("--cache", default="runs/features/features.npz", help="model-space feature cache")
    ta.add_argument("--cnn-dir", default=None, help="folder of the trained CNN (with cnn_config.json)")
    ta.add_argument("--invariance", type=float, default=0.0, metavar="WEIGHT",
                    help="penalise approach A's age difference between each subject and its degraded and "
                         "acquisition copies (--copies; <kind>_copies.npz beside the cache, built when missing); 0: off")
    ta.add_argument("--select", choices=("cv", "cv+sites"), default="cv",
                    help="approach A's ridge: lowest pooled CV MAE (default), or lowest mean of the CV MAE and "
                         "the site-transfer MAE (each training site predicted by a fit on the other alone)")
    ta.add_argument("--ensemble-weight", default=None, metavar="W|SITES_SUMMARY",
                    help="A's weight in the ensemble: a number in [0, 1], or a sites_summary.json of "
                         "brainage evaluate-sites, whose leave-one-site-out sweep chooses it (site-level "
                         "cross-validation); default: the weight with the lowest validation MAE")
    ta.add_argument("--degraded-augment", action=argparse.BooleanOptionalAction, default=True,
                    help="approach A also learns from each subject's degraded copy (default: yes)")
    for t in (tc, ta):
        t.add_argument("--copies", default="contrast", metavar="KINDS",
                       help="the acquisition copies of --contrast-consistency / --invariance, comma-separated: "
                            "contrast (gamma 0.6-1.6), motion (TorchIO RandomMotion), thick (3-6 mm slices, any axis)")
        t.add_argument("--sites", default="camcan,ixi",
                       help="training sites, comma-separated: camcan (reg_train), ixi (ixi120)")
    tn = sub.add_parser("train-normative", help="fit the centile curves of the healthy cohort "
                        "(tissue fractions and brain-age gap against age) from the normative table")
    tn.add_argument("--table", default="runs/age/normative_table.csv",
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
    tw = training("train-thick-slice-weights", cmd_train_thick_slice_weights,
                  "lines and weights of A and B for thick-slice scans, per slice orientation and thickness (after train-age-model)",
                  "runs/thick-slices")
    tw.add_argument("--n", type=int, default=52, help="Cam-CAN seg_train/seg_val subjects (never seen by "
                    "the age models; 52 in all), spread over the ages")
    tw.add_argument("--n-ixi", type=int, default=None, help="ixi120 validation heads (never trained on; "
                    "20 in all, the default), youngest first")
    tw.add_argument("--from-csv", metavar="CSV", help="refit from an earlier run's thick_slices.csv "
                    "(the same models) instead of measuring again (~1.5 min a subject on 2 cores)")
    tw.add_argument("--arrays", metavar="DIR", help="also keep each scan's model-space T1 and tissue "
                    "probabilities in DIR (~5 MB a scan), for --from-arrays")
    tw.add_argument("--from-arrays", metavar="DIR", help="read the ages of the age models in use from the "
                    "arrays an earlier --arrays run kept (same ResUNet and template) instead of running the scans "
                    "again: minutes, for a retrained A or B")
    tw.add_argument("--resegment-from", metavar="DIR", help="with --from-arrays NEW: first segment the kept "
                    "model-space T1s of DIR again with the ResUNet in use, into NEW (~1 s a scan): for a new ResUNet")
    tw.add_argument("--resume", action="store_true", help="keep the subjects that OUT/thick_slices.csv "
                    "already holds in full (measured with the same models, or refused) and measure the rest")
    es = sub.add_parser("evaluate-sites", help="leave-one-site-out ages, calibration to a new site "
                        "from k controls, and how distinguishable the sites' features are")
    es.add_argument("--cache", default="runs/features/features.npz", help="model-space feature cache")
    es.add_argument("--age-dir", default="runs/age", help="train-age-model output (selected regressor, weight)")
    es.add_argument("--cnn-camcan", default="runs/cnn-camcan", help="run folder of a CNN trained on Cam-CAN only")
    es.add_argument("--cnn-ixi", default="runs/cnn-ixi", help="run folder of a CNN trained on IXI only")
    es.add_argument("--out", default="runs/evaluate-sites")
    es.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding camcan/ (for --reread-resunet)")
    es.add_argument("--reread-resunet", metavar="SAFETENSORS", help="read the unseen site's scans with "
                    "this ResUNet (the models still trained on the cache): a new ResUNet shipped with "
                    "age models trained on the old one's maps")
    es.set_defaults(func=cmd_evaluate_sites)
