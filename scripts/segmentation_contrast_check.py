"""Does a ResUNet read another contrast of the same brain the same? Compares ResUNets (the shipped
one and candidates) on held-out model-space scans: the 10 ``ixi10`` heads and the 20 ``ixi120``
heads that approach B validates on (both never trained on, with or without labels), and 20
Cam-CAN ``test`` subjects; each clean and under fixed TorchIO draws of gamma 0.7, gamma 1.4, a bias
field and noise (model space, background kept 0, as ``site_evaluation.ACQUISITIONS``). Prints, per
network, set and condition, the mean change against the clean scan of the CSF/GM/WM fractions
(percentage points of TIV) and of the shipped A's and B's ages (years, as
``training.thick_slices.model_space_age_readers`` reads them, before any thick-slice line), and
for candidates the change of the clean ages against the shipped network (what the age models,
trained on the shipped network's maps, would see).

    PYTHONPATH=BrainAge .venv/bin/python scripts/segmentation_contrast_check.py \\
        runs/segcons/w3/resunet.safetensors [more.safetensors] --out runs/segcons/contrast_check.csv
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "BrainAge" / "Resources" / "Models" / "resunet.safetensors"
CONDITIONS = {"gamma 0.7": ("RandomGamma", {"log_gamma": (np.log(0.7), np.log(0.7))}),
              "gamma 1.4": ("RandomGamma", {"log_gamma": (np.log(1.4), np.log(1.4))}),
              "bias field": ("RandomBiasField", {"coefficients": (0.4, 0.4)}),
              "noise (SD 4 % of WM)": ("RandomNoise", {"std": (0.04, 0.04)})}
SEED = 20261123


def scans(data: Path, cache: Path, n_camcan: int) -> list[tuple[str, str, np.ndarray, bool]]:
    """(set, subject_id, model-space array, registered) of the held-out scans."""
    from BrainAgeLib.training import CNNConfig, read_camcan_subjects, split_validation
    from BrainAgeLib.training.data import read_camcan_image
    z = np.load(cache)
    ids, sets = [str(s) for s in z["subject_id"]], [str(s) for s in z["set"]]
    _, val = split_validation([s for s, t in zip(ids, sets) if t == "ixi120"], CNNConfig.n_val_ixi,
                              CNNConfig.split_seed)
    out = [("ixi10", s, z["image"][i].astype(np.float32), True) for i, (s, t) in enumerate(zip(ids, sets)) if t == "ixi10"]
    out += [("ixi120 validation", s, z["image"][ids.index(s)].astype(np.float32), True) for s in sorted(val)]
    test = [r["subject_id"] for r in read_camcan_subjects(data / "camcan") if r["split"] == "test"]
    for sid in sorted(np.random.default_rng(SEED).choice(test, n_camcan, replace=False)):
        out.append(("camcan test", sid, read_camcan_image(data / "camcan", sid).astype(np.float32), False))
    return out


def read(net, array: np.ndarray, registered: bool, a_age, b_age) -> dict:
    from BrainAgeLib.pipeline import read_registered
    from BrainAgeLib.segmentation import segment_array
    from BrainAgeLib.volumes import global_fractions
    prob = segment_array(net, array)
    if registered:
        array, prob, _ = read_registered(net, array, prob)
    g = global_fractions(prob) * 100
    return {"csf": float(g[0]), "gm": float(g[1]), "wm": float(g[2]), "a": a_age(prob), "b": b_age(array, prob)}


def main() -> None:
    import torch
    import torchio as tio
    from BrainAgeLib.resunet import load_resunet_weights
    from BrainAgeLib.training.thick_slices import model_space_age_readers
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("candidates", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "features_noharm" / "ixi_model_space.npz")
    p.add_argument("--n-camcan", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "segcons" / "contrast_check.csv")
    p.add_argument("--shipped-from", type=Path, help="an earlier run's CSV (same scans and draws): its "
                   "shipped rows are taken instead of reading the scans with the shipped network again")
    a = p.parse_args()
    torch.set_num_threads(2)
    a_age, b_age = model_space_age_readers()
    w = json.loads((SHIPPED.parent / "age_model.json").read_text())["ensemble"]["weight_volumes"]
    items = scans(a.data, a.cache, a.n_camcan)
    degraded = {}          # the same draw of each condition for every network
    for k, (st, sid, arr, reg) in enumerate(items):
        for c, (cls, kw) in CONDITIONS.items():
            torch.manual_seed(SEED + k)
            out = getattr(tio, cls)(**kw)(tio.ScalarImage(tensor=torch.from_numpy(arr)[None])).data[0]
            degraded[sid, c] = (out.clamp(0, 2).numpy() * (arr > 0)).astype(np.float32)
    rows = []
    networks = [("shipped", SHIPPED)] + [(str(c), c) for c in a.candidates]
    if a.shipped_from:
        with open(a.shipped_from, newline="") as fh:
            rows = [{k: (v if k in ("network", "set", "subject_id", "condition") else float(v)) for k, v in r.items()
                     if k != "ens"} for r in csv.DictReader(fh) if r["network"] == "shipped"]
        assert len(rows) == len(items) * (1 + len(CONDITIONS)), "not the same scans"
        networks = networks[1:]
    for name, path in networks:
        net = load_resunet_weights(path)
        for st, sid, arr, reg in items:
            clean = read(net, arr, reg, a_age, b_age)
            rows.append({"network": name, "set": st, "subject_id": sid, "condition": "clean", **clean})
            for c in CONDITIONS:
                rows.append({"network": name, "set": st, "subject_id": sid, "condition": c,
                             **read(net, degraded[sid, c], reg, a_age, b_age)})
        print(f"{name}: {len(items)} scans read", flush=True)
    for r in rows:
        r["ens"] = w * r["a"] + (1 - w) * r["b"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    import pandas as pd
    d = pd.DataFrame(rows)
    clean = d[d.condition == "clean"].set_index(["network", "subject_id"])
    lines = []
    for (net, st, c), g in d[d.condition != "clean"].groupby(["network", "set", "condition"], sort=False):
        base = clean.loc[[(net, s) for s in g.subject_id]]
        ch = {k: g[k].to_numpy() - base[k].to_numpy() for k in ("csf", "gm", "a", "b", "ens")}
        lines.append(f"{net[-40:]:>40} | {st:<18} | {c:<20} | CSF {ch['csf'].mean():+.2f} GM {ch['gm'].mean():+.2f} pp"
                     f" | A {ch['a'].mean():+.2f} B {ch['b'].mean():+.2f} ens {ch['ens'].mean():+.2f}"
                     f" (|ens| {np.abs(ch['ens']).mean():.2f}, max {np.abs(ch['ens']).max():.2f})")
    ship = clean.loc["shipped"]
    for net in d.network.unique()[1:]:
        for st in d.set.unique():
            ids = d[(d.set == st) & (d.condition == "clean") & (d.network == net)].subject_id
            diff = {k: clean.loc[net].loc[ids, k].to_numpy() - ship.loc[ids, k].to_numpy() for k in ("csf", "gm", "a", "b", "ens")}
            lines.append(f"{net[-40:]:>40} | {st:<18} | clean vs shipped     | CSF {diff['csf'].mean():+.2f} GM {diff['gm'].mean():+.2f} pp"
                         f" | A {diff['a'].mean():+.2f} B {diff['b'].mean():+.2f} ens {diff['ens'].mean():+.2f}"
                         f" (SD {diff['ens'].std():.2f}, max |{np.abs(diff['ens']).max():.2f}|)")
    text = "\n".join(lines)
    print(text)
    a.out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
