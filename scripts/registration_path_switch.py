"""How much the raw-scan path alone moves the age, and which of its steps does it.

A Cam-CAN ``test`` scan already lies on the template grid, so ``predict`` reads it as it is. The
same voxels stored with their axes permuted (``sitk.PermuteAxes``: no interpolation, the same
physical image) are no longer on the grid and go through the raw-scan path: reorientation, N4,
rigid registration to the template (affine until release 8), B-spline resampling (and, until
release 11, GM/WM harmonisation and a second pass).
Every change of age between the two is the path's, not the scan's. Each variant replaces one
step (monkeypatched here; the shipped code is unchanged):

- ``shipped``: the raw path as it ships;
- ``no N4``: bias correction skipped;
- ``harmonisation``: release 11's GM/WM map and second pass added (``pipeline.HARMONIZE_RAW_SCANS``);
- ``affine registration``: release 8's registration (12 degrees of freedom instead of 6);
- ``identity registration``: the registration replaced by the identity (right for these
  scans only, which are already aligned: it isolates what the registration does);
- ``mask registration``: the registration driven by the smoothed brain masks instead
  of the intensities (a candidate: the outline of the brain does not move with atrophy).

Also printed: the affine registration's volume scale (determinant of its matrix) against its
age change. Ages are the shipped models' ensemble (A, B), years.

    .venv/bin/python scripts/registration_path_switch.py [--n 20] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import pipeline
from BrainAgeLib import preprocessing as pp
from BrainAgeLib.training.data import camcan_paths, read_camcan_subjects

SHIPPED_REGISTRATION = pp.register_to_template
SHIPPED_N4 = pp.n4_bias_correct


def mask_registration(moving: sitk.Image, template: sitk.Image) -> sitk.AffineTransform:
    """The shipped registration run on the brain masks (> 0), each smoothed by 2 mm."""
    def soft(image, level):
        return sitk.SmoothingRecursiveGaussian(sitk.Cast(image > level, sitk.sitkFloat32), 2.0)
    return SHIPPED_REGISTRATION(soft(moving, 0.0), soft(template, 0.05))


def _identity(moving, template):
    return sitk.Transform(3, sitk.sitkIdentity)


def _no_n4(image, mask=None, *args, **kwargs):
    return sitk.Cast(image, sitk.sitkFloat32)


def affine_registration(moving: sitk.Image, template: sitk.Image) -> sitk.AffineTransform:
    """The shipped registration's metric and optimiser with 12 degrees of freedom (release 8)."""
    return SHIPPED_REGISTRATION(moving, template, sitk.AffineTransform(3))


VARIANTS = {"shipped": {}, "no N4": {"n4": _no_n4}, "harmonisation": {"harm": True},
            "affine registration": {"reg": affine_registration},
            "identity registration": {"reg": _identity}, "mask registration": {"reg": mask_registration}}


def _patch(reg=SHIPPED_REGISTRATION, n4=SHIPPED_N4, harm=False) -> None:
    pp.register_to_template, pp.n4_bias_correct, pipeline.HARMONIZE_RAW_SCANS = reg, n4, harm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="test scans, spread over the age range")
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    camcan = Path(args.data) / "camcan"
    test = [r for r in read_camcan_subjects(camcan) if r["split"] == "test"]
    subjects = test[::max(1, len(test) // args.n)][:args.n]
    changes = {k: [] for k in VARIANTS}
    dets, ages = [], []
    scales = []

    def recording(moving, template):
        tx = affine_registration(moving, template)
        scales.append(float(np.linalg.det(np.array(tx.GetMatrix()).reshape(3, 3))))
        return tx

    for r in subjects:
        img = sitk.ReadImage(str(camcan_paths(camcan, r["subject_id"])["image"]))
        clean = pipeline.predict(img)
        permuted = sitk.PermuteAxes(img, [2, 1, 0])
        row = []
        for name, patch in VARIANTS.items():
            _patch(**({**patch, "reg": recording} if name == "affine registration" else patch))
            try:
                out = pipeline.predict(permuted)
            finally:
                _patch()
            changes[name].append((out.predicted_age - clean.predicted_age,
                                  out.predicted_age_volumes - clean.predicted_age_volumes,
                                  out.predicted_age_cnn - clean.predicted_age_cnn))
            row.append(f"{name} {changes[name][-1][0]:+.1f}")
        dets.append(scales[-1])
        ages.append(float(r["age"]))
        print(f"{r['subject_id']} age {r['age']}: template grid {clean.predicted_age:.1f}; "
              + ", ".join(row) + f"; affine registration volume scale {dets[-1]:.3f}", flush=True)
    ages = np.array(ages)
    print(f"\n{len(subjects)} Cam-CAN test scans, the same voxels through the raw-scan path "
          "(age change against the template-grid reading, years):\n")
    print("| raw path variant | ensemble: mean (mean \\|change\\|) | A | B | r(ensemble change, age) |")
    print("| --- | --- | --- | --- | --- |")
    for name, v in changes.items():
        x = np.array(v)
        cells = [f"{x[:, i].mean():+.2f} ({np.abs(x[:, i]).mean():.2f})" for i in range(3)]
        r = np.corrcoef(x[:, 0], ages)[0, 1]
        print(f"| {name} | " + " | ".join(cells) + f" | {r:+.2f} |")
    d = np.array(dets)
    x = np.array(changes["affine registration"])[:, 0]
    print(f"\naffine registration volume scale: {d.min():.3f}-{d.max():.3f} (median {np.median(d):.3f}); "
          f"r(scale, age) {np.corrcoef(d, ages)[0, 1]:+.2f}, r(scale, ensemble change) {np.corrcoef(d, x)[0, 1]:+.2f}")


if __name__ == "__main__":
    main()
