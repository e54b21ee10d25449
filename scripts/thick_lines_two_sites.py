"""Thick-slice lines (release 15): Cam-CAN only (shipped) vs Cam-CAN + 20 ixi120 validation heads, judged
out of fold per subject (leave-one-subject-out), separately on each site's subjects. The Cam-CAN-only
lines are read out of fold on the Cam-CAN subjects and fitted on all 52 for the IXI heads (which they
never saw). Prints mean |age change| against the clean scan (years) and the mean change, and the
mean |change| of each site's subjects read with lines fitted on the other site alone.

    python scripts/thick_lines_two_sites.py > docs/results/thick_slice_lines_two_sites.txt
"""
import csv, json, sys
import numpy as np
sys.path.insert(0, "BrainAge")
from BrainAgeLib.training.thick_slices import ORIENTATIONS, out_of_fold_ages, usual_ensemble_column
from BrainAgeLib import models
age_model = json.loads((models.models_dir() / "age_model.json").read_text())
# the committed measurement: 52 Cam-CAN seg_train/seg_val subjects and 20 ixi120 validation heads,
# each clean and thick (3-6 mm, 3 orientations), read by the shipped A and B
rows = usual_ensemble_column(list(csv.DictReader(open("docs/results/thick_slice_weights_fit.csv"))), age_model)
clean = {r["subject_id"]: r for r in rows if r["orientation"] == "clean"}
site = {r["subject_id"]: r["set"] for r in rows}
res = {}
for o in ORIENTATIONS:
    sel = [r for r in rows if r["orientation"] == o and r["subject_id"] in clean]
    ids = np.array([r["subject_id"] for r in sel])
    mm = np.array([float(r["thickness_mm"]) for r in sel])
    ref = np.array([float(clean[r["subject_id"]]["ensemble"]) for r in sel])
    usual = np.array([float(r["ensemble"]) for r in sel])
    is_cam = np.array([site[i] == "camcan" for i in ids])
    # Cam-CAN-only lines: out of fold for Cam-CAN subjects, fitted on all 52 for the IXI ones
    camonly = out_of_fold_ages(sel, clean, fit_on=is_cam)
    pooled = out_of_fold_ages(sel, clean)
    # leave-one-site-out: each site's subjects read with lines fitted on the other site alone
    loso = np.where(is_cam, out_of_fold_ages(sel, clean, fit_on=~is_cam), camonly)
    for name, m in (("camcan", is_cam), ("ixi120", ~is_cam)):
        for t in (3.0, 4.0, 5.0, 6.0):
            k = m & (mm == t)
            res[(o, name, t)] = [np.mean(np.abs(x[k] - ref[k])) for x in (usual, camonly, pooled)] + [np.mean(x[k] - ref[k]) for x in (camonly, pooled)] + [np.mean(np.abs(loso[k] - ref[k]))]
print("orientation site mm: usual / Cam-CAN lines / pooled lines (out of fold); mean change Cam-CAN lines / pooled; "
      "mean |change| with the other site's lines alone (leave-one-site-out)")
for k, v in res.items():
    print(*k, " ".join(f"{x:.2f}" for x in v))
for o in ORIENTATIONS:
    for name in ("camcan", "ixi120"):
        v = np.mean([res[(o, name, t)] for t in (3.0, 4.0, 5.0)], axis=0)
        print("3-5 mm mean", o, name, " ".join(f"{x:.2f}" for x in v))
