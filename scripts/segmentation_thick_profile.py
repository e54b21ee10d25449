"""Where do thick slices move approach B, and does a ResUNet that learned real thick slices help?

Part 1 (the diagnostic). B reads four channels: the normalised T1 and the ResUNet's CSF, GM and
WM probabilities. For held-out subjects (16 Cam-CAN ``seg_train``/``seg_val`` subjects spread
over the age range, 8 of the 20 ``ixi120`` validation heads) and thick-slice copies of their
scans (``degrade.thick_slices``: coronal and axial 4 and 5 mm, sagittal 5 mm), each run through
``predict``, B's age is read with the channels swapped between the clean and the thick scan:
the thick T1 with the clean probabilities, and the clean T1 with the thick probabilities.

Part 2 (a candidate). TorchIO's ``RandomAnisotropy``, which taught the shipped ResUNet thick
slices, keeps thin samples of the volume (nearest neighbour); a scanner's thick slice averages its
slab. ``brainage train-segmentation --thick-slice-profile`` fine-tunes the network with slab
averaging (``training.augmentation.random_thick_slices``). The candidate is read here as the
shipped one is: ``test`` and ``seg_val`` Dice, the README's invariance measure
(``site_evaluation.feature_invariance``) and part 1's thick-slice copies, with the shipped A and
B reading its probabilities (they were trained on the shipped network's, so this measures what
the segmentation gives them, not a release).

    PYTHONPATH=BrainAge .venv/bin/python scripts/segmentation_thick_profile.py CANDIDATE.safetensors OUT_DIR

    PYTHONPATH=BrainAge .venv/bin/python scripts/segmentation_thick_profile.py --age-models MODELS_DIR OUT_DIR

reads OUT_DIR's stored scans with the age models of another models folder (same ResUNet) against
the shipped ones (``OUT_DIR/age_models_summary.md``).

Writes ``OUT_DIR/summary.md`` and the CSVs beside it; the model-space arrays of each scan go to
``OUT_DIR/<network>/arrays`` (kept between runs: a rerun measures only what is missing).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
SHIPPED_MODELS = ROOT / "BrainAge" / "Resources" / "Models"
ACQUISITIONS = [("clean", 0.0), ("coronal", 5.0), ("axial", 5.0), ("coronal", 4.0), ("axial", 4.0),
                ("sagittal", 5.0)]
SEED = 20261123


def candidate_models(weights: Path, folder: Path) -> Path:
    """A copy of the shipped models folder whose ResUNet is ``weights`` (manifest updated)."""
    from candidate_models import candidate_models as replace_models
    return replace_models({"resunet.safetensors": weights}, folder, str(weights))


def subjects() -> list[dict]:
    from BrainAgeLib.training.thick_slices import held_out_ixi_subjects, held_out_subjects
    return held_out_subjects(DATA, 16) + held_out_ixi_subjects(DATA)[::2][:8]


def measure(out: Path) -> None:
    """Every subject's clean scan and thick copies through ``predict`` (the models folder of the
    environment): model-space T1 and probabilities (float16) and the uncorrected A and B ages."""
    import SimpleITK as sitk
    from BrainAgeLib import degrade, pipeline
    from BrainAgeLib.io import read_image
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for i, s in enumerate(subjects()):
        image = None
        for o, mm in ACQUISITIONS:
            f = out / f"{s['set']}_{s['subject_id']}_{o}{mm:g}.npz"
            if f.exists():
                continue
            if image is None:
                image = read_image(s["image"])
            r = pipeline.predict(image if o == "clean" else degrade.thick_slices(image, mm, o), device="cpu")
            d = r.age_details.get("thick_slices", {})
            np.savez_compressed(f, image=sitk.GetArrayFromImage(r.model_space_image).astype(np.float16),
                                prob=r.model_space_probabilities.astype(np.float16), age=s["age"],
                                cnn=d.get("cnn_uncorrected", r.predicted_age_cnn),
                                volumes=d.get("volumes_uncorrected", r.predicted_age_volumes))
        print(f"{i + 1}/{len(subjects())} {s['subject_id']} ({time.time() - t0:.0f} s)", flush=True)


def read_arrays(folder: Path) -> dict:
    out = {}
    for f in sorted(folder.glob("*.npz")):
        set_, rest = f.stem.split("_", 1)
        subject, acq = rest.rsplit("_", 1)
        z = np.load(f)
        out[(set_, subject, acq)] = {k: z[k] for k in z.files}
    return out


TISSUE_MEDIANS = np.array([0.0, 0.288, 0.717, 0.914])   # normalised T1 of bg/CSF/GM/WM, clean scans above


def renormalised(prob: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The tissue probabilities scaled to sum to 1 inside the scan's brain (background 0 there)."""
    q = prob.copy()
    tissue = q[1:].sum(0)
    inside = (image != 0) & (tissue > 0.05)
    q[1:] *= np.where(inside, 1.0 / np.maximum(tissue, 1e-6), 1.0)
    q[0] = np.where(inside, 0.0, q[0])
    return q


def sharpened(prob: np.ndarray, power: float = 2.0) -> np.ndarray:
    """The maps raised to ``power`` and renormalised (a lower softmax temperature)."""
    q = prob ** power
    return q / q.sum(0, keepdims=True)


def synthesised(prob: np.ndarray) -> np.ndarray:
    """A T1 made from the maps: each tissue's median normalised intensity, weighed by its probability."""
    return np.tensordot(TISSUE_MEDIANS, prob, axes=(0, 0)).astype(np.float32)


def leave_one_out_after_lines(rows: list[dict], cnn_column: str, models_folder: Path = SHIPPED_MODELS) -> dict:
    """Per copy: the mean |change| (years) of the ensemble once a line on A's and B's thick-scan ages
    (least squares, intercept) maps them onto the clean scan's ensemble, fitted without the subject
    read: what the thick-slice lines would leave. ``cnn_column``: B's change column to use."""
    import pandas as pd
    from BrainAgeLib.regression import _load_age_model
    w = float(_load_age_model(str(models_folder))["ensemble"]["weight_volumes"])
    out = {}
    for acq, g in pd.DataFrame(rows).groupby("acquisition"):
        y = (w * g.clean_volumes + (1 - w) * g.clean_cnn).to_numpy()
        x = np.c_[np.ones(len(g)), g.clean_volumes + g.change_volumes, g.clean_cnn + g[cnn_column]]
        err = [abs(x[i] @ np.linalg.lstsq(x[np.arange(len(y)) != i], y[np.arange(len(y)) != i], rcond=None)[0] - y[i])
               for i in range(len(y))]
        out[acq] = round(float(np.mean(err)), 2)
    return out


def age_readers(models_folder: Path):
    """A's and B's age readers of ``models_folder`` (:func:`~BrainAgeLib.training.thick_slices.model_space_age_readers`)."""
    from BrainAgeLib.training.thick_slices import model_space_age_readers
    return model_space_age_readers(models_folder)


def analyse(arrays: dict, models_folder: Path, channel_swaps: bool) -> list[dict]:
    """Per thick copy: the change (years) of A's and B's bias-corrected ages against the clean
    scan, the change of the tissue mass inside the clean brain (percentage points), and with
    ``channel_swaps`` B read with the T1 or the probabilities taken from the clean scan."""
    _, b_age = age_readers(models_folder)
    rows = []
    for (s, subject, acq), z in sorted(arrays.items()):
        c = arrays.get((s, subject, "clean0"))
        if acq == "clean0" or c is None:
            continue
        ci, cp = c["image"].astype(np.float32), c["prob"].astype(np.float32)
        ti, tp = z["image"].astype(np.float32), z["prob"].astype(np.float32)
        brain = cp[1:].sum(0) > 0.5
        mass = (tp[1:, brain].sum(1) - cp[1:, brain].sum(1)) / brain.sum() * 100
        row = {"set": s, "subject_id": subject, "age": float(c["age"]), "acquisition": acq,
               "clean_volumes": float(c["volumes"]), "clean_cnn": float(c["cnn"]),
               "change_volumes": float(z["volumes"]) - float(c["volumes"]),
               "change_cnn": float(z["cnn"]) - float(c["cnn"]),
               "mass_csf_pp": float(mass[0]), "mass_gm_pp": float(mass[1]), "mass_wm_pp": float(mass[2]),
               "confidence": float(tp[1:, brain].max(0).mean())}
        if channel_swaps:
            clean = b_age(ci, cp)
            row["change_cnn_thick_t1_clean_probabilities"] = b_age(ti, cp) - clean
            row["change_cnn_clean_t1_thick_probabilities"] = b_age(ci, tp) - clean
            # test-time fixes of the thick scan's maps, read against the clean scan as it is read
            row["change_cnn_maps_renormalised"] = b_age(ti, renormalised(tp, ti)) - clean
            row["change_cnn_maps_sharpened"] = b_age(ti, sharpened(tp)) - clean
            row["change_cnn_t1_synthesised"] = b_age(synthesised(tp) * (ti != 0), tp) - clean
        rows.append(row)
    return rows


def reread(arrays: dict, models_folder: Path) -> list[dict]:
    """:func:`analyse`'s age columns with the age models (A, B, their bias corrections) of another
    models folder reading the same model-space arrays: for age models trained anew on the shipped
    ResUNet, whose maps are what was stored, no scan needs to be run again."""
    a_age, b_age = age_readers(models_folder)

    def ages(z):
        prob, image = z["prob"].astype(np.float32), z["image"].astype(np.float32)
        return a_age(prob), b_age(image, prob)
    read = {k: ages(z) for k, z in arrays.items()}
    rows = []
    for (s, subject, acq), (a, b) in sorted(read.items()):
        if acq == "clean0" or (s, subject, "clean0") not in read:
            continue
        ca, cb = read[(s, subject, "clean0")]
        rows.append({"set": s, "subject_id": subject, "age": float(arrays[(s, subject, acq)]["age"]),
                     "acquisition": acq, "clean_volumes": ca, "clean_cnn": cb,
                     "change_volumes": a - ca, "change_cnn": b - cb})
    return rows


def compare_age_models(folder: Path, out: Path) -> None:
    """The shipped and ``folder``'s age models on the shipped network's stored arrays: SD of A's and
    B's change per copy, and the ensemble's mean |change| after leave-one-out lines."""
    arrays = read_arrays(out / "shipped" / "arrays")
    lines = [f"# Age models of `{folder}` against the shipped ones, same scans and maps\n"]
    for name, f in (("shipped", SHIPPED_MODELS), ("candidate", folder)):
        rows = reread(arrays, f)
        lines += [f"\n## {name} age models\n"] + table(rows, ["change_volumes", "change_cnn"])
        clean = [r for r in rows if r["acquisition"] == "axial4"]
        lines.append(f"\nClean scans, MAE A / B (24 subjects): "
                     f"{np.mean([abs(r['clean_volumes'] - r['age']) for r in clean]):.2f} / "
                     f"{np.mean([abs(r['clean_cnn'] - r['age']) for r in clean]):.2f}")
        lines.append("After leave-one-out lines, ensemble mean |change|: "
                     f"{leave_one_out_after_lines(rows, 'change_cnn', f)}")
    (out / "age_models_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def dice_and_invariance(weights: Path, models_folder: Path) -> dict:
    import SimpleITK as sitk
    from BrainAgeLib import models
    from BrainAgeLib.preprocessing import normalize_intensity
    from BrainAgeLib.segmentation import labels_from_probabilities, segment_array
    from BrainAgeLib.site_evaluation import feature_invariance
    from BrainAgeLib.training import camcan_paths, dice_scores, read_camcan_subjects
    net = models._load_resunet(str(models_folder))     # ``weights``, as its folder's manifest checks it
    out = {}
    rows = read_camcan_subjects(DATA / "camcan")
    for split in ("seg_val", "test"):
        d = []
        for r in (r for r in rows if r["split"] == split):
            p = camcan_paths(DATA / "camcan", r["subject_id"])
            arr = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(p["image"]))))
            ref = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"]))).astype(np.uint8)
            d.append(dice_scores(labels_from_probabilities(segment_array(net, arr)), ref))
        out[f"{split}_dice"] = [round(float(v), 4) for v in np.mean(d, axis=0)]
    inv = feature_invariance(DATA / "camcan", weights, models_folder / "age_model.json", n=8, seed=SEED)
    out["invariance"] = {r["acquisition"]: round((r["csf_pp"] + r["gm_pp"] + r["wm_pp"]) / 3, 3) for r in inv}
    out["invariance_mean_pp"] = round(float(np.mean(list(out["invariance"].values()))), 3)
    return out


def table(rows: list[dict], columns: list[str]) -> list[str]:
    import pandas as pd
    d = pd.DataFrame(rows)
    lines = ["| copy | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for acq, g in d.groupby("acquisition"):
        lines.append(f"| {acq} | " + " | ".join(f"{g[c].mean():+.2f} ± {g[c].std():.2f}" for c in columns) + " |")
    return lines


def main(candidate: Path, out: Path) -> None:
    from BrainAgeLib import models
    out.mkdir(parents=True, exist_ok=True)
    networks = {"shipped": (SHIPPED_MODELS / "resunet.safetensors", SHIPPED_MODELS),
                "candidate": (candidate, candidate_models(candidate, out / "candidate" / "models"))}
    lines = [f"# Thick slices: B's channels, and a ResUNet trained with slab-averaged thick slices\n",
             f"Candidate: `{candidate}`. Subjects: {len(subjects())} (16 Cam-CAN held out, 8 `ixi120` validation heads).\n"]
    previous = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    summary = {}
    for name, (weights, folder) in networks.items():
        env = {**os.environ, "BRAINAGE_MODELS_DIR": str(folder), "BRAINAGE_MIRROR_CHECK": "0",
               "PYTHONPATH": str(ROOT / "BrainAge")}
        subprocess.run([sys.executable, __file__, "--measure", str(out / name / "arrays")], env=env, check=True)
        rows = analyse(read_arrays(out / name / "arrays"), folder, channel_swaps=name == "shipped")
        import pandas as pd
        pd.DataFrame(rows).to_csv(out / f"{name}_thick_copies.csv", index=False)
        summary[name] = (previous[name] if previous.get(name, {}).get("weights_sha256") == models.sha256(weights)
                         else {**dice_and_invariance(weights, folder), "weights_sha256": models.sha256(weights)})
        clean = pd.DataFrame(rows).drop_duplicates("subject_id")
        summary[name]["clean_mae_volumes"] = round(float((clean.clean_volumes - clean.age).abs().mean()), 2)
        summary[name]["clean_mae_cnn"] = round(float((clean.clean_cnn - clean.age).abs().mean()), 2)
        cols = ["change_volumes", "change_cnn", "mass_csf_pp", "mass_gm_pp", "mass_wm_pp"]
        if name == "shipped":
            cols += ["change_cnn_thick_t1_clean_probabilities", "change_cnn_clean_t1_thick_probabilities",
                     "change_cnn_maps_renormalised", "change_cnn_maps_sharpened", "change_cnn_t1_synthesised"]
            loo = {c: leave_one_out_after_lines(rows, c) for c in ("change_cnn", "change_cnn_maps_sharpened")}
            summary[name]["leave_one_out_after_lines"] = loo
            lines += ["\nAfter a leave-one-out line on A's and B's thick ages (all 24 subjects), ensemble mean |change|:",
                      *(f"- B {c}: {v}" for c, v in loo.items())]
        for set_, title in (("camcan", "16 Cam-CAN subjects (clean: template grid; thick: raw-scan path)"),
                            ("ixi120", "8 IXI heads (clean and thick: raw-scan path)")):
            lines += [f"\n## {name} network, {title}: change against the clean scan (mean ± SD; years, pp)\n"]
            lines += table([r for r in rows if r["set"] == set_], cols)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines += ["\n## Dice, invariance, clean-scan MAE of these 24 subjects (shipped A and B)\n",
              "| network | `seg_val` Dice | `test` Dice | invariance (pp) | clean MAE A / B |", "| --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['seg_val_dice']} | {s['test_dice']} | {s['invariance_mean_pp']} | "
                     f"{s['clean_mae_volumes']} / {s['clean_mae_cnn']} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import torch
    torch.set_num_threads(2)
    if sys.argv[1] == "--measure":
        measure(Path(sys.argv[2]))
    elif sys.argv[1] == "--age-models":      # --age-models FOLDER OUT_DIR
        compare_age_models(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
