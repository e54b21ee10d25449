"""Release 15's robustness table (`docs/results/robustness_release15.*`): release 14's full run
(`robustness_release14.csv`; A, B and the QC are unchanged, so its non-thick rows stand) with the 12
thick conditions rerun with release 15's thick-slice lines (`brainage evaluate-robustness --conditions
thick3mm_sagittal ... thick6mm_axial`, same seeds and scans, `runs/r15/robustness/robustness.csv`,
committed as `docs/results/candidates/thick_lines_two_sites/robustness_thick.csv`); checks that the
clean ages of the two runs agree.

    python scripts/robustness_release15_table.py      # from the repository root
"""
import csv, json, sys
sys.path.insert(0, "BrainAge")
from BrainAgeLib.evaluation_robustness import COLUMNS, _model_versions, summarise
THICK = "docs/results/candidates/thick_lines_two_sites/robustness_thick.csv"
old = list(csv.DictReader(open("docs/results/robustness_release14.csv", newline="", encoding="utf-8")))
new = list(csv.DictReader(open(THICK, newline="", encoding="utf-8")))
clean_old = {r["subject_id"]: float(r["predicted_age"]) for r in old if r["condition"] == "clean"}
clean_new = {r["subject_id"]: float(r["predicted_age"]) for r in new if r["condition"] == "clean"}
assert clean_old.keys() == clean_new.keys()
diff = max(abs(clean_old[k] - clean_new[k]) for k in clean_old)
print(f"clean ages of the two runs: max |difference| {diff:.3f} years")
by = {(r["subject_id"], r["condition"]): r for r in new if r["condition"].startswith("thick")}
rows = [by.get((r["subject_id"], r["condition"]), r) for r in old]
assert len(rows) == 288 and sum(r["condition"].startswith("thick") for r in rows) == len(by) == 144
with open("docs/results/robustness_release15.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
summary = summarise(rows)
settings = dict(json.load(open("docs/results/robustness_release14.json"))["settings"])
settings["models"] = _model_versions()
settings["note"] = ("release 15 (thick-slice lines refitted on Cam-CAN and ixi120 validation heads): release 14's "
                    "full run with its 144 thick-slice rows rerun with the new lines, same seeds and scans "
                    f"(clean ages of the two runs agree within {diff:.3f} years)")
summary["settings"] = settings
open("docs/results/robustness_release15.json", "w").write(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary["targets"], indent=1))
