"""Release 12's robustness table (`docs/results/robustness_release12.*`): the runs of the
non-thick conditions (release 11's seeds and scans) and the rerun of the thick conditions with
release 12's thick-slice lines, all in `docs/results/candidates/harmonisation_off/`; checks that
the clean ages of the three runs agree.

    python scripts/robustness_release12_table.py      # from the repository root
"""
import csv, json, sys
sys.path.insert(0, "BrainAge")
from BrainAgeLib.evaluation_robustness import COLUMNS, summarise
C = "docs/results/candidates/harmonisation_off/"
parts = [C + "robustness_gamma_motion_ghosting.csv", C + "robustness_other.csv", C + "robustness_thick.csv"]
runs = [list(csv.DictReader(open(p, newline="", encoding="utf-8"))) for p in parts]
cleans = [{r["subject_id"]: float(r["predicted_age"]) for r in rows if r["condition"] == "clean"} for rows in runs]
assert all(c.keys() == cleans[0].keys() for c in cleans)
diff = max(abs(c[k] - cleans[0][k]) for c in cleans for k in c)
print(f"clean ages of the three runs: max |difference| {diff:.3f} years")
order = json.load(open("docs/results/robustness_release11.json"))["settings"]
by = {(r["subject_id"], r["condition"]): r for rows in runs for r in rows}
old = list(csv.DictReader(open("docs/results/robustness_release11.csv", newline="", encoding="utf-8")))
rows = [by[(r["subject_id"], r["condition"])] for r in old]
assert len(rows) == 288
with open("docs/results/robustness_release12.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
summary = summarise(rows)
settings = dict(order)
from BrainAgeLib.evaluation_robustness import _model_versions
settings["models"] = _model_versions()
settings["note"] = ("release 12 (registered scans not harmonised): three runs of `brainage evaluate-robustness "
                    "--n-camcan 6 --n-ixi 6` with release 11's seeds and scans: gamma, motion and ghosting; the "
                    "other non-thick conditions; the 12 thick conditions with release 12's thick-slice lines "
                    f"(clean ages of the three runs agree within {diff:.3f} years)")
summary["settings"] = settings
open("docs/results/robustness_release12.json", "w").write(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary["targets"], indent=1))
