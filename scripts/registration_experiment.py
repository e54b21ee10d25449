"""Experiment: does the raw-scan path's affine registration cost the age on other scanners?

``scripts/registration_path_switch.py`` found that the affine registration (12 degrees of
freedom, intensity correlation with the mean template) rescales already-aligned Cam-CAN brains
by 0.78-1.12 in volume and moves their age by several years, old brains younger and young ones
older. This tests a rigid registration (6 degrees of freedom: the brain keeps its size, so
atrophy stays visible) leave-one-site-out: the IXI heads are brought into model space with each
registration, and the Cam-CAN-only models (which never saw IXI, and whose training features do
not go through registration) read them. Nothing is retrained; only Cam-CAN -> IXI is measured.
It led release 9 to make the rigid registration the pipeline's (``preprocessing.register_to_template``).

    python scripts/registration_experiment.py build affine     # IXI heads, ~22 min on 2 cores
    python scripts/registration_experiment.py build rigid      # (the training cache's own, since release 9)
    python scripts/registration_experiment.py measure rigid    # both registrations, ~10 min
    python scripts/registration_experiment.py thick rigid      # thick-slice robustness scans, ~5 min

Needs the caches of a training run (runs/features/features.npz and its copies), an age model's
recipe (--age-dir) and the Cam-CAN-only CNN (--cnn-camcan).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import preprocessing as pp

CACHE = Path("runs/features/features.npz")
PIPELINE_REGISTRATION = pp.register_to_template


def affine_registration(moving: sitk.Image, template: sitk.Image) -> sitk.AffineTransform:
    """The pipeline's metric, sampling and optimiser with an affine transform (release 8)."""
    return PIPELINE_REGISTRATION(moving, template, sitk.AffineTransform(3))


def rigid_registration(moving: sitk.Image, template: sitk.Image) -> sitk.AffineTransform:
    """The pipeline's metric, sampling and optimiser with a rigid transform (release 9)."""
    return PIPELINE_REGISTRATION(moving, template, sitk.Euler3DTransform())


VARIANTS = {"affine": affine_registration, "rigid": rigid_registration}


def space_path(variant: str) -> Path:
    return CACHE.with_name(f"ixi_model_space_{variant}.npz")


def build(variant: str, data: Path) -> None:
    from BrainAgeLib.training.features import ixi_model_space
    pipeline_name, pp.REGISTRATION = pp.REGISTRATION, variant    # the default transform and the cache's label
    try:
        ixi_model_space(data, space_path(variant), log=lambda m: print(m, flush=True))
    finally:
        pp.REGISTRATION = pipeline_name


def measure(variant: str, age_dir: Path, cnn_camcan: Path) -> None:
    from BrainAgeLib.models import load_resunet
    from BrainAgeLib.site_evaluation import leave_one_site_out
    from BrainAgeLib.training.features import acquisition_copies, model_space_features, rescan_rows
    f = model_space_features(None, CACHE)
    m = json.loads((age_dir / "age_model.json").read_text())
    name, w = m["volumes"]["selected"], m["ensemble"]["weight_volumes"]
    recipe = {"invariance": float(m["training"].get("invariance", 0.0))}
    if recipe["invariance"] > 0:      # copies of training (Cam-CAN) rows only are used below
        recipe["copies"] = {k: acquisition_copies(None, f, CACHE, k) for k in m["training"]["invariance_copies"]}
    net = load_resunet()
    results, similarity = {}, {}
    for v in ("affine", variant):
        ixi = dict(np.load(space_path(v)))
        rescan_rows(f, ixi, net)
        r = leave_one_site_out(f, name, {"camcan": str(cnn_camcan)}, w, recipe=recipe)["train camcan -> test ixi"]
        results[v] = {k: x for k, x in r.items() if not k.startswith("_")}
        similarity[v] = float(np.mean(ixi["similarity"]))
    print(f"Cam-CAN -> IXI ({results['affine']['ensemble']['n']} IXI heads), Cam-CAN-only models of {age_dir} and {cnn_camcan}:")
    print("| IXI registration | A: MAE (gap) | B: MAE (gap) | ensemble: MAE, gap, r(gap, age) |")
    print("| --- | --- | --- | --- |")
    for label, r in results.items():
        a, b, e = r["A"], r["B"], r["ensemble"]
        print(f"| {label} | {a['mae']:.2f} ({a['mean_gap']:+.1f}) | {b['mae']:.2f} ({b['mean_gap']:+.1f}) | "
              f"{e['mae']:.2f}, {e['mean_gap']:+.1f}, {e['r_gap_age']:+.2f} |")
    for v, sim in similarity.items():
        print(f"template similarity of the IXI heads: {sim:.3f} ({v})")


def thick(variant: str, data: Path, subjects: list[str], thickness: float = 5.0) -> None:
    """The robustness run's thick-slice scans of Cam-CAN ``subjects`` (``degrade.thick_slices``,
    each orientation) read with the affine and the ``variant`` registration: age change against
    the clean scan on the template grid (which needs no registration), shipped models."""
    from BrainAgeLib.degrade import ORIENTATIONS, thick_slices
    from BrainAgeLib.pipeline import predict
    from BrainAgeLib.training.data import camcan_paths
    changes = {(reg, o): [] for reg in ("affine", variant) for o in ORIENTATIONS}
    for sid in subjects:
        img = sitk.ReadImage(str(camcan_paths(data / "camcan", sid)["image"]))
        clean = predict(img).predicted_age
        for o in ORIENTATIONS:
            degraded = thick_slices(img, thickness, o)
            for reg in ("affine", variant):
                pp.register_to_template = VARIANTS[reg]
                try:
                    changes[reg, o].append(predict(degraded).predicted_age - clean)
                finally:
                    pp.register_to_template = PIPELINE_REGISTRATION
        print(sid, {f"{r} {o}": round(v[-1], 1) for (r, o), v in changes.items()}, flush=True)
    print(f"\n{len(subjects)} Cam-CAN test scans with {thickness:g} mm slices, ensemble age change against the "
          "clean scan (mean (mean |change|), years):\n")
    print("| registration | " + " | ".join(ORIENTATIONS) + " |")
    print("| --- |" + " --- |" * len(ORIENTATIONS))
    for reg in ("affine", variant):
        cells = [f"{np.mean(changes[reg, o]):+.1f} ({np.mean(np.abs(changes[reg, o])):.1f})" for o in ORIENTATIONS]
        print(f"| {reg} | " + " | ".join(cells) + " |")


ROBUSTNESS_CAMCAN = ("CC120640", "CC120987", "CC221954", "CC510115", "CC710214", "CC710429")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("build", "measure", "thick"))
    ap.add_argument("variant", choices=tuple(VARIANTS))
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--age-dir", default="runs/age")
    ap.add_argument("--cnn-camcan", default="runs/cnn-camcan")
    args = ap.parse_args()
    if args.step == "build":
        build(args.variant, Path(args.data))
    elif args.step == "thick":
        thick(args.variant, Path(args.data), list(ROBUSTNESS_CAMCAN))
    else:
        measure(args.variant, Path(args.age_dir), Path(args.cnn_camcan))


if __name__ == "__main__":
    main()
