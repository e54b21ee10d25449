"""Why gamma 1.4 moves the ixi10 whole heads (+3.8 years in the robustness run) much more than the
skull-stripped Cam-CAN scans (+0.4): the same six heads read several ways, clean or with gamma 1.4 on
the raw head (TorchIO RandomGamma, as `evaluate-robustness`), each either through the whole raw-scan
path (deepbet brain extraction on the degraded head) or skull-stripped beforehand by the clean
head's own brain mask (so the mask cannot move); and the clean head's normalised model-space T1 read
as a template-grid scan (Cam-CAN's path), as it is and with gamma 1.4; the robustness run's six Cam-CAN
scans read the last way too, for comparison. Prints A's and B's ages, TIV and tissue fractions.

    PYTHONPATH=BrainAge .venv/bin/python scripts/gamma_raw_path.py [--out runs/gamma_raw_path.csv]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import SimpleITK as sitk

from BrainAgeLib import degrade
from BrainAgeLib.evaluation_robustness import _subjects
from BrainAgeLib.pipeline import predict


def _row(subject: dict, way: str, r) -> dict:
    v = r.volumes_ml
    return {"set": subject["set"], "subject_id": subject["subject_id"], "way": way, "age": round(r.predicted_age, 2),
            "volumes": round(r.predicted_age_volumes, 2), "cnn": round(r.predicted_age_cnn, 2),
            "tiv_ml": round(v["tiv"], 1), **{f"{k}_frac": round(v[k] / v["tiv"], 4) for k in ("csf", "gm", "wm")},
            "qc": ";".join(r.qc) or "ok"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data", help="folder with camcan/ and ixi10/")
    p.add_argument("--out", default="runs/gamma_raw_path.csv")
    a = p.parse_args()
    rows = []
    # the robustness run's draws (seed 20261123): six Cam-CAN test scans, six ixi10 heads
    for subject in _subjects(Path(a.data), 6, 6, 20261123):
        clean = sitk.ReadImage(str(subject["image"]))
        r_clean = predict(clean, skull_stripped=subject["skull_stripped"])
        if subject["set"] == "ixi10":
            g = degrade.gamma(clean, 1.4)
            mask = sitk.Cast(r_clean.brain_mask > 0, sitk.sitkFloat32)
            rows.append(_row(subject, "raw clean", r_clean))
            rows.append(_row(subject, "raw gamma 1.4", predict(g, skull_stripped=False)))
            masked = sitk.Cast(clean, sitk.sitkFloat32) * mask
            rows.append(_row(subject, "clean mask, clean", predict(masked, skull_stripped=True)))
            gm = sitk.Cast(g, sitk.sitkFloat32) * mask
            rows.append(_row(subject, "clean mask, gamma 1.4", predict(gm, skull_stripped=True)))
        # the clean scan's normalised model-space T1 read as a template-grid scan (no N4, registration
        # or brain extraction), then the same with gamma 1.4 applied to it
        ms = r_clean.model_space_image
        rows.append(_row(subject, "model space, clean", predict(ms, skull_stripped=True)))
        rows.append(_row(subject, "model space, gamma 1.4", predict(degrade.gamma(ms, 1.4), skull_stripped=True)))
        for r in rows[-6 if subject["set"] == "ixi10" else -2:]:
            print(r, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for site, way, base in (("ixi10", "raw gamma 1.4", "raw clean"),
                            ("ixi10", "clean mask, gamma 1.4", "clean mask, clean"),
                            ("ixi10", "model space, gamma 1.4", "model space, clean"),
                            ("camcan", "model space, gamma 1.4", "model space, clean")):
        d = {k: [] for k in ("age", "volumes", "cnn", "tiv_ml", "csf_frac", "gm_frac")}
        for sid in dict.fromkeys(r["subject_id"] for r in rows if r["set"] == site):
            x = next(r for r in rows if r["subject_id"] == sid and r["way"] == way)
            y = next(r for r in rows if r["subject_id"] == sid and r["way"] == base)
            for k in d:
                d[k].append(x[k] - y[k])
        print(site, way, "minus", base, {k: round(sum(v) / len(v), 3) for k, v in d.items()})


if __name__ == "__main__":
    main()
