"""Was the raw-scan path's GM/WM harmonisation what made IXI heads so sensitive to contrast?
(issue 11: gamma 1.4 moves the IXI heads of the robustness run by 6.5 years against 1.5 for
Cam-CAN scans; 8 of the 12 silent large errors are gamma on IXI heads.)

``pipeline.HARMONIZE_RAW_SCANS`` switches it; this script measured what switching it off does.

``build``: from release 11's feature cache (``runs/features/``, harmonised IXI rows), a copy in
``runs/features_noharm/`` whose IXI rows (``ixi120``, ``ixi10``) are segmented without the
harmonisation and second pass (everything else as ``training.features``: the scan, a degraded
copy (a new draw), the contrast copy with the cache's own gamma, the motion copy with its own
seed); Cam-CAN rows are copied unchanged (they are never harmonised); each file records
``harmonised = False``, so that the training commands use it only with the switch off. ~15 min.

``ladder``: the ixi10 heads read at gammas 0.8 / 1 / 1.25 / 1.4 with and without the
harmonisation by the models in ``runs/cnn-both`` and Resources/Models (prints the ages;
release 11's models for the README's figures).

``loso``: Cam-CAN -> IXI with the Cam-CAN-only models (A refitted by the shipped recipe, the CNN of
``runs/cnn-camcan``) on both caches, and the IXI heads against their contrast and motion copies.

``models [DIR]``: the candidate's models folder (default ``runs/cand-noharm/models``).

``thick MODELS_DIR PART``: the thick-slice measurement of ``train-thick-slice-weights`` for the
models of ``MODELS_DIR`` (a copy of Resources/Models with the candidate's files) with the switch
off, half ``PART`` (0 or 1) of the 52 subjects, one thread, into
``docs/results/candidates/harmonisation_off/thick_slices_part<PART>.csv``; subjects already
there in full are kept and skipped (``measure_thick_slices(resume=True)``), so that an
interrupted run resumes. Refit with ``brainage
train-thick-slice-weights --from-csv`` on the two parts joined.

Then the usual commands with ``--cache runs/features_noharm/features.npz`` and the switch off
train and judge the candidate (docs/generalisation.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from BrainAgeLib import pipeline

SRC, DST = Path("runs/features"), Path("runs/features_noharm")


def build() -> None:
    from BrainAgeLib import models
    from BrainAgeLib.degrade import motion_transform
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.training.augmentation import degrade_image
    from BrainAgeLib.training.features import motion_copy, scan_features
    pipeline.HARMONIZE_RAW_SCANS = False
    DST.mkdir(parents=True, exist_ok=True)
    if not (DST / "ixi_model_space.npz").exists():
        (DST / "ixi_model_space.npz").symlink_to((SRC / "ixi_model_space.npz").resolve())
    f = dict(np.load(SRC / "features.npz"))
    gam = dict(np.load(SRC / "contrast_copies.npz"))
    mot = dict(np.load(SRC / "motion_copies.npz"))
    ixi = np.load(SRC / "ixi_model_space.npz")
    images = dict(zip((str(s) for s in ixi["subject_id"]), ixi["image"]))
    net = models.load_resunet()
    motion = motion_transform()
    gen = torch.Generator().manual_seed(20261125)
    torch.manual_seed(20261125)
    rows = np.flatnonzero(f["site"] == "ixi")
    for i, n in enumerate(rows):
        arr = images[str(f["subject_id"][n])].astype(np.float32)
        for k, v in scan_features(net, arr, True).items():
            f[k][n] = v
        for k, v in scan_features(net, degrade_image(arr, gen), True).items():
            f[f"{k}_deg"][n] = v
        for k, v in scan_features(net, normalize_intensity(arr ** gam["gamma"][n]), True).items():
            gam[f"{k}_gam"][n] = v
        for k, v in scan_features(net, motion_copy(arr, int(n), motion), True).items():   # motion_copies' seed 0 + row
            mot[f"{k}_mot"][n] = v
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(rows)} IXI heads", flush=True)
    for d in (f, gam, mot):
        d["harmonised"] = np.asarray(False)
    np.savez(DST / "features.npz", **f)
    np.savez(DST / "contrast_copies.npz", **gam)
    np.savez(DST / "motion_copies.npz", **mot)


def ladder() -> None:
    """The 10 ixi10 heads at gammas 0.8 / 1 / 1.25 / 1.4, harmonised (as shipped) and not, read by
    the shipped A and B (bias-corrected ages, years)."""
    import json
    from BrainAgeLib import models
    from BrainAgeLib.cnn import predict_age
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.regression import AgeBiasCorrection, VolumeAgeRegressor
    from BrainAgeLib.training.age_model import feature_matrix, load_run_cnn
    from BrainAgeLib.training.features import scan_features
    z = np.load(SRC / "features.npz")
    ixi = np.load(SRC / "ixi_model_space.npz")
    images = dict(zip((str(s) for s in ixi["subject_id"]), ixi["image"]))
    m = json.loads(models.verify("age_model.json").read_text())
    reg = VolumeAgeRegressor.from_dict(m["volumes"]["regressor"])
    bias_a, bias_b = AgeBiasCorrection(**m["volumes"]["bias"]), AgeBiasCorrection(**m["cnn"]["bias"])
    net, cnn = models.load_resunet(), load_run_cnn("runs/cnn-both/age_cnn.safetensors")
    for sid in [str(s) for s, sp in zip(z["subject_id"], z["split"]) if sp == "ixi10"]:
        arr = images[sid].astype(np.float32)
        out = {}
        for label, harmonise in (("harmonised", True), ("not harmonised", False)):
            pipeline.HARMONIZE_RAW_SCANS = harmonise
            ages = []
            for g in (0.8, 1.0, 1.25, 1.4):
                one = {k: v[None] for k, v in scan_features(net, normalize_intensity(np.clip(arr, 0, None) ** g), True).items()}
                a = float(bias_a(reg.predict(feature_matrix(one, [0], f"c{reg.cell}"))[0]))
                with torch.no_grad():
                    b = float(bias_b(predict_age(cnn, torch.from_numpy(one["cnn"].astype(np.float32)), True)[0]))
                ages.append((round(a, 1), round(b, 1)))
            out[label] = ages
        print(sid, "(A, B) at gamma 0.8 / 1 / 1.25 / 1.4:", out, flush=True)


def loso() -> None:
    """Leave-one-site-out on release 11's cache and on the one without harmonisation."""
    from BrainAgeLib.regression import AgeBiasCorrection
    from BrainAgeLib.site_evaluation import _fit_a, leave_one_site_out
    from BrainAgeLib.training.age_model import cnn_predictions, feature_matrix
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.features import COPY_SUFFIX, acquisition_copies, model_space_features
    name, cnn = "ridge on regional 12 mm, sqrt, alpha 3e-1", "runs/cnn-camcan/age_cnn.safetensors"
    for harmonise, folder in ((True, SRC), (False, DST)):
        pipeline.HARMONIZE_RAW_SCANS = harmonise          # the cache must match the switch
        cache = folder / "features.npz"
        f = model_space_features(None, cache)
        copies = {k: acquisition_copies(None, f, cache, k) for k in ("contrast", "motion")}
        recipe = {"invariance": 0.3, "copies": copies}
        print(cache)
        for k, r in leave_one_site_out(f, name, {"camcan": "runs/cnn-camcan"}, 0.2, recipe=recipe).items():
            print(" ", k, {a: v for a, v in r.items() if not a.startswith("_")})
            if "_by_weight" in r:
                print("   by weight", {w: (v["mae"], v["mean_gap"], v["r_gap_age"]) for w, v in r["_by_weight"].items()})
        tr, va = training_partition(f, ("camcan",), 60, 20, 20261123)
        pool = np.sort(np.concatenate([tr, va]))
        model, _, feats, oof = _fit_a(f, pool, name, 20261123, **recipe)
        pos = {int(j): k for k, j in enumerate(pool)}
        pb_val = cnn_predictions(f, va, cnn)
        bias = AgeBiasCorrection().fit(0.2 * oof[[pos[int(j)] for j in va]] + 0.8 * pb_val, f["age"][va])
        ixi = np.flatnonzero(f["site"] == "ixi")

        def ensemble(src, sfx):
            return bias(0.2 * model.predict(feature_matrix(src, ixi, feats, suffix=sfx))
                        + 0.8 * cnn_predictions({"cnn": src["cnn" + sfx]}, ixi, cnn))
        base = ensemble(f, "")
        for k, c in copies.items():
            d = ensemble(c, COPY_SUFFIX[k]) - base
            msg = f"  IXI heads ({len(ixi)}) vs {k} copy: ensemble mean |change| {np.abs(d).mean():.2f}"
            if k == "contrast":
                g = c["gamma"][ixi]
                msg += (f"; gamma<0.8: {d[g < 0.8].mean():+.2f} ({(g < 0.8).sum()}), "
                        f"gamma>1.25: {d[g > 1.25].mean():+.2f} ({(g > 1.25).sum()})")
            print(msg, flush=True)


def candidate_models(out_dir: str = "runs/cand-noharm/models") -> None:
    """``out_dir``: Resources/Models with the candidate's CNN, age model and feature reference
    (``docs/results/candidates/harmonisation_off/models/``), the manifest updated, for
    ``BRAINAGE_MODELS_DIR``."""
    import json
    from candidate_models import candidate_models as replace_models
    src = Path("docs/results/candidates/harmonisation_off/models")
    files = {n: src / n for n in ("age_cnn.safetensors", "age_model.json", "feature_reference.json")}
    config = json.loads((src / "cnn_config.json").read_text())
    print("candidate models in", replace_models(files, Path(out_dir), "registered scans not harmonised", config))


def thick(models_dir: str, part: str) -> None:
    """Half ``part`` of the thick-slice measurement for the candidate (see the module docstring)."""
    import os
    os.environ["BRAINAGE_MODELS_DIR"] = models_dir
    torch.set_num_threads(1)
    pipeline.HARMONIZE_RAW_SCANS = False
    from BrainAgeLib.training.thick_slices import held_out_subjects, measure_thick_slices
    out = Path(f"docs/results/candidates/harmonisation_off/thick_slices_part{part}.csv")
    measure_thick_slices(held_out_subjects("../shared/data", 52)[int(part)::2], out,
                         log=lambda m: print(m, flush=True), resume=True)


if __name__ == "__main__":
    {"build": build, "ladder": ladder, "loso": loso, "models": candidate_models, "thick": thick}[sys.argv[1]](*sys.argv[2:])
