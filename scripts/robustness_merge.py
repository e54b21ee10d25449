"""A release's robustness table from two runs of `brainage evaluate-robustness` with the same seeds and
scans: a base run, and a run of some of its conditions with the release's models (thick-slice conditions
after the thick-slice lines changed). The second run's rows of those conditions replace or join the base
run's; the clean ages of the two runs must agree, which shows that both read the same scans with the same
A, B and QC. Writes OUT.csv (one row per scan and condition) and OUT.json (`summarise`'s figures, the base
run's settings, the shipped models' SHA256 prefixes and the note).

Release 15 (release 14's full run; its 144 thick rows rerun with release 15's lines):

    python scripts/robustness_merge.py docs/results/robustness_release14 \
        docs/results/candidates/thick_lines_two_sites/robustness_thick.csv docs/results/robustness_release15 \
        --note "release 15 (thick-slice lines refitted on Cam-CAN and ixi120 validation heads): ..."

Release 16 (b2p's run of the 11 other conditions; the 12 thick conditions with release 16's lines):

    python scripts/robustness_merge.py docs/results/candidates/second_partner/robustness_non_thick/summary \
        docs/results/candidates/second_partner/release16/robustness_thick.csv docs/results/robustness_release16 --note "..."

Release 17 (release 16's models with a new A/B disagreement limit, A and B unchanged): release 16's
table with the limit re-applied (`--ab-limit`; each flagged row's qc text holds its disagreement, and
a higher limit can only lift flags, so a lower one is refused):

    python scripts/robustness_merge.py docs/results/robustness_release16 - docs/results/robustness_release17 \
        --ab-limit 14.757 --note "..."

BASE is a path without its extension when BASE.csv and BASE.json sit side by side; for a run folder
(`robustness.csv` beside `summary.json`) give the json's path without `.json`.
"""
import argparse
import csv
import json
import os
import sys

sys.path.insert(0, "BrainAge")
from BrainAgeLib.evaluation_robustness import COLUMNS, _model_versions, reapply_ab_limit, summarise


def _read(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="base run: BASE.json and BASE.csv (or robustness.csv in BASE's folder)")
    p.add_argument("new", help="robustness.csv of the run whose conditions replace or join the base's "
                               "(- for none)")
    p.add_argument("out", help="output prefix: OUT.csv and OUT.json")
    p.add_argument("--prefix", default="thick", help="conditions taken from NEW: those starting with this")
    p.add_argument("--ab-limit", type=float, help="re-apply this A/B disagreement limit (years; not below "
                                                   "the run's own)")
    p.add_argument("--note", required=True, help="what the table is, for OUT.json's settings")
    a = p.parse_args()
    base_csv = a.base + ".csv"
    if not os.path.exists(base_csv):
        base_csv = os.path.join(os.path.dirname(a.base), "robustness.csv")
    old = _read(base_csv)
    new = old if a.new == "-" else _read(a.new)
    clean_old = {r["subject_id"]: float(r["predicted_age"]) for r in old if r["condition"] == "clean"}
    clean_new = {r["subject_id"]: float(r["predicted_age"]) for r in new if r["condition"] == "clean"}
    if clean_old.keys() != clean_new.keys():
        sys.exit("the two runs read different subjects")
    diff = max(abs(clean_old[k] - clean_new[k]) for k in clean_old)
    print(f"clean ages of the two runs: max |difference| {diff:.3f} years")
    if diff > 0.01:
        sys.exit("the clean ages differ: the runs did not use the same A, B and QC")
    by = {(r["subject_id"], r["condition"]): r for r in new if r["condition"].startswith(a.prefix)}
    rows = [by.pop((r["subject_id"], r["condition"]), r) for r in old]
    rows += list(by.values())
    if a.ab_limit is not None:
        try:
            rows = [reapply_ab_limit(r, a.ab_limit) for r in rows]
        except ValueError as e:
            sys.exit(str(e))
    with open(a.out + ".csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    summary = summarise(rows)
    settings = dict(json.load(open(a.base + ".json"))["settings"])
    conditions = list(settings["conditions"])
    conditions += [c for c in dict.fromkeys(r["condition"] for r in rows) if c != "clean" and c not in conditions]
    settings.update(conditions=conditions, models=_model_versions(),
                    note=f"{a.note} (clean ages of the two runs agree within {diff:.3f} years)")
    summary["settings"] = settings
    with open(a.out + ".json", "w") as f:
        f.write(json.dumps(summary, indent=1) + "\n")
    print(f"{len(rows)} rows ({sum(r['condition'] != 'clean' for r in rows)} degraded) -> {a.out}.csv / .json")
    print(json.dumps(summary["targets"], indent=1))


if __name__ == "__main__":
    main()
