"""Why the focal check misses most lesions of the robustness run's ixi10 heads: each head's
``lesion_45ml`` copy (the run's own seeded draw, placed by DLMUSE's tissues in native space) read
through ``predict``; per head the share of the lesion in the cerebellum (DLMUSE), how much of it
the ResUNet calls CSF in model space, and where that CSF fails the focal check's atlas rule (more
than ``FOCAL_ATLAS_CSF_MAX`` of the old with CSF there, or less than ``FOCAL_ATLAS_TISSUE_MIN`` of
all with tissue). Volumes in ml.

    PYTHONPATH=BrainAge .venv/bin/python scripts/lesion_raw_path.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import SimpleITK as sitk

CEREBELLUM = {38, 39, 40, 41, 71, 72, 73}     # MUSE: cerebellum exterior and white matter, vermis


def main() -> None:
    from BrainAgeLib import degrade, qc
    from BrainAgeLib.evaluation_robustness import _labels, _subjects, condition_draw
    from BrainAgeLib.qc import MODEL_VOXEL_ML as VOXEL_ML
    from BrainAgeLib.io import read_image
    from BrainAgeLib.pipeline import predict
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seed", type=int, default=20261123, help="evaluate-robustness's --seed")
    args = ap.parse_args()
    atlas = qc.load_normative_atlas()
    old_csf = atlas[..., 0] > qc.FOCAL_ATLAS_CSF_MAX + 1e-3
    no_tissue = atlas[..., 1] < qc.FOCAL_ATLAS_TISSUE_MIN - 1e-3
    print("| head | lesion in the cerebellum | lesion (model space) | called CSF | of it: where the old have CSF "
          "| where tissue is not the rule | eligible | focal (ml) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in _subjects(args.data, 0, 6, args.seed):
        image = read_image(s["image"])
        labels = _labels(s, args.data, image)
        lesioned = degrade.lesion(image, labels, 45.0, condition_draw(args.seed, s["subject_id"], "lesion_45ml"))
        native = np.abs(sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
                        - sitk.GetArrayFromImage(lesioned)) > 1e-3
        muse = sitk.GetArrayFromImage(sitk.ReadImage(str(s["labels"])))
        counts = collections.Counter(muse[native].tolist())
        cerebellum = sum(n for k, n in counts.items() if k in CEREBELLUM) / native.sum()
        clean, les = predict(image, device="cpu"), predict(lesioned, device="cpu")
        a, b = (sitk.GetArrayFromImage(r.model_space_image) for r in (clean, les))
        lab_clean, lab = (r.model_space_probabilities.argmax(0) for r in (clean, les))
        contrast = np.median(a[lab_clean == 3]) - np.median(a[lab_clean == 1])
        region = (a - b) > 0.3 * contrast                  # where the lesion darkened the scan
        csf = region & (lab == 1)
        print(f"| {s['subject_id']} | {cerebellum:.0%} | {region.sum() * VOXEL_ML:.1f} | {csf.sum() * VOXEL_ML:.1f} | "
              f"{(csf & old_csf).sum() * VOXEL_ML:.1f} | {(csf & no_tissue).sum() * VOXEL_ML:.1f} | "
              f"{(csf & ~old_csf & ~no_tissue).sum() * VOXEL_ML:.1f} | {les.qc_measures['unexpected_csf_ml']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
