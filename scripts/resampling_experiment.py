"""How much the raw-scan path's own interpolation moves the age of scans finer or thicker than
its 2 mm working copy, with the model-space image resampled from the working copy (release 9:
``preprocessing.RESAMPLE_FROM = "work"``, a 1 mm scan interpolated twice) or from the input on its
own grid (``"input"``: anti-aliased, bias-corrected with the same field, interpolated once).

Cam-CAN ``test`` scans, each read on the template grid (the reference age), then as:

- ``1 mm``: upsampled to 1 mm in place (cubic B-spline, int16; ``evaluation.at_1mm``);
- ``1 mm, random pose``: moved to a random pose (±10°, ±10 mm) on a 1 mm grid by linear
  interpolation, as ``brainage evaluate-roundtrip`` does;
- ``5 mm coronal`` / ``5 mm axial``: thick slices (``degrade.thick_slices``).

Prints the age change against the template-grid reading (ensemble, A, B; years) for each
source. The 2 mm inputs on the working grid (IXI heads) are not affected by the choice.

    .venv/bin/python scripts/resampling_experiment.py [--n 20] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import degrade, pipeline
from BrainAgeLib import preprocessing as pp
from BrainAgeLib.evaluation import at_1mm, random_pose
from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects

SOURCES = ("work", "input")


def inputs(image: sitk.Image, rng: np.random.Generator) -> dict[str, sitk.Image]:
    """The same scan as each acquisition of the experiment."""
    grid, t = random_pose(image, rng)
    return {"1 mm": at_1mm(image),
            "1 mm, random pose": sitk.Resample(image, grid, t.GetInverse(), sitk.sitkLinear, 0.0,
                                               sitk.sitkFloat32),
            "5 mm coronal": degrade.thick_slices(image, 5.0, "coronal"),
            "5 mm axial": degrade.thick_slices(image, 5.0, "axial")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="test scans, spread over the age range")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--seed", type=int, default=20261123)
    args = ap.parse_args()
    camcan = Path(args.data) / "camcan"
    test = [r for r in read_camcan_subjects(camcan) if r["split"] == "test"]
    subjects = test[::max(1, len(test) // args.n)][:args.n]
    rng = np.random.default_rng(args.seed)
    changes: dict[tuple[str, str], list] = {}
    sharp: dict[tuple[str, str], list] = {}
    for r in subjects:
        img = sitk.ReadImage(str(camcan_paths(camcan, r["subject_id"])["image"]), sitk.sitkFloat32)
        clean = pipeline.predict(img)
        row = []
        for name, scan in inputs(img, rng).items():
            for source in SOURCES:
                pp.RESAMPLE_FROM = source
                try:
                    out = pipeline.predict(scan)
                finally:
                    pp.RESAMPLE_FROM = "input"
                changes.setdefault((name, source), []).append(
                    (out.predicted_age - clean.predicted_age, out.predicted_age_volumes - clean.predicted_age_volumes,
                     out.predicted_age_cnn - clean.predicted_age_cnn))
                sharp.setdefault((name, source), []).append(out.edge_sharpness - clean.edge_sharpness)
                row.append(f"{name} [{source}] {changes[(name, source)][-1][0]:+.1f} ({out.seconds:.1f} s)")
        print(f"{r['subject_id']} age {r['age']}: template grid {clean.predicted_age:.1f}; " + ", ".join(row),
              flush=True)
    print(f"\n{len(subjects)} Cam-CAN test scans against their template-grid reading (age change, years: "
          "mean (mean |change|)); edge sharpness change:\n")
    print("| input | resampled from | ensemble | A | B | edge sharpness |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, source), v in changes.items():
        x = np.array(v)
        cells = [f"{x[:, i].mean():+.2f} ({np.abs(x[:, i]).mean():.2f})" for i in range(3)]
        print(f"| {name} | {source} | " + " | ".join(cells) + f" | {np.mean(sharp[(name, source)]):+.3f} |")


if __name__ == "__main__":
    main()
