"""The map to DLMUSE's tissue definition, learnt on ixi10 (``brainage train-tissue-definition``)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import SimpleITK as sitk

from .data import read_dlmuse_tissues


def dlmuse_case(ixi_dir, subject_id: str, **predict_kwargs):
    """One ixi10 subject through :func:`~BrainAgeLib.pipeline.predict`: returns ``(result,
    reference, reference_in_model_space)``, DLMUSE's tissue labels on the input grid and
    carried (nearest neighbour) into model space with the result's registration."""
    from ..models import load_template
    from ..pipeline import predict
    d = Path(ixi_dir)
    result = predict(str(d / "t1" / f"{subject_id}_T1.nii.gz"), **predict_kwargs)
    ref = read_dlmuse_tissues(d / "dlmuse" / f"{subject_id}_DLMUSE.nii.gz", d / "dlmuse_tissue_map.csv")
    ref_img = sitk.GetImageFromArray(ref)
    ref_img.CopyInformation(result.labels)
    in_model = sitk.Resample(ref_img, load_template(), result.model_to_input,
                             sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return result, ref, sitk.GetArrayFromImage(in_model)


def fit_tissue_definition(ixi_dir, out_path, log=print) -> Path:
    """Fit the :class:`~BrainAgeLib.segmentation.TissueDefinitionMap` to DLMUSE's tissues on
    all ixi10 subjects and write it as JSON (its leave-one-subject-out Dice comes from
    ``brainage evaluate-ixi``)."""
    from ..segmentation import TissueDefinitionMap
    with open(Path(ixi_dir) / "subjects.csv", newline="") as f:
        ids = [r["subject_id"] for r in csv.DictReader(f)]
    probs, targets = [], []
    for i, sid in enumerate(ids):
        result, _, target = dlmuse_case(ixi_dir, sid, approach="volumes")
        probs.append(result.model_space_probabilities)
        targets.append(target)
        log(f"[{i + 1}/{len(ids)}] {sid}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    m = TissueDefinitionMap("dlmuse").fit(probs, targets)
    out.write_text(json.dumps(m.to_dict()) + "\n")
    log(f"wrote {out}")
    return out
