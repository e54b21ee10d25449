"""Experiment: does approach A's model selection by pooled CV pick what transfers to another site?

Each candidate regressor of ``brainage train-age-model`` is
fitted by the shipped recipe (degraded copies, invariance 0.3 on contrast and motion pairs)
on one site and tested on the other (leave-one-site-out, as ``brainage evaluate-sites``):
Cam-CAN (``reg_train``) -> IXI (``ixi120`` + ``ixi10``) and IXI (``ixi120``) -> Cam-CAN ``test``.
Prints MAE / mean gap / r(gap, age) per direction, years.

    .venv/bin/python scripts/regressor_loso.py [--invariance 0.3] [--copies contrast,motion]
"""
from __future__ import annotations

import argparse

import numpy as np

CACHE = "runs/features/features.npz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invariance", type=float, default=0.3)
    ap.add_argument("--copies", default="contrast,motion")
    ap.add_argument("--only", default="", help="substring of the regressor names to run")
    args = ap.parse_args()
    from BrainAgeLib.site_evaluation import _fit_a, _summary
    from BrainAgeLib.training import age_model
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.features import acquisition_copies, model_space_features
    f = model_space_features(None, CACHE)
    kinds = [k for k in args.copies.split(",") if k]
    copies = {k: acquisition_copies(None, f, CACHE, k) for k in kinds}
    cands = age_model.candidate_regressors(20261123, args.invariance)
    print(f"invariance {args.invariance}, copies {kinds}")
    print("regressor | Cam-CAN -> IXI: MAE, gap, r(gap,age) | IXI -> Cam-CAN: MAE, gap, r(gap,age)")
    for name in cands:
        if args.only not in name:
            continue
        line = name
        for site, rows in (("camcan", np.flatnonzero(f["site"] == "ixi")),
                           ("ixi", np.flatnonzero(f["split"] == "test"))):
            tr, va = training_partition(f, (site,), 60, 20, 20261123)
            pool = np.sort(np.concatenate([tr, va]))
            model, bias, feats, _ = _fit_a(f, pool, name, 20261123, invariance=args.invariance, copies=copies)
            s = _summary(bias(model.predict(age_model.feature_matrix(f, rows, feats))), f["age"][rows].astype(float))
            line += f" | {s['mae']:.2f}, {s['mean_gap']:+.2f}, {s['r_gap_age']:+.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
