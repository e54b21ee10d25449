"""Build the feature cache that ``train-cnn``, ``train-age-model`` and ``evaluate-sites`` read
(``runs/features/``), without training anything: the IXI whole heads in model space (raw-scan
path, ~13 min), every Cam-CAN ``reg_train``/``test`` and IXI subject segmented with the shipped
ResUNet together with its degraded copy (``features.npz``), then the contrast and motion copies
(``contrast_copies.npz``, ``motion_copies.npz``). Each stage writes its file when it is done, and a
stage already on disk (of the current feature version) is reused, so an interrupted build goes on
from the last finished stage. About 1 h on 2 cores; start it in the background first:

    nohup .venv/bin/python scripts/build_feature_cache.py > runs/build_cache.log 2>&1 &
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from BrainAgeLib.training.features import acquisition_copies, model_space_features


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding camcan, ixi120 and ixi10")
    ap.add_argument("--cache", default="runs/features/features.npz")
    ap.add_argument("--copies", nargs="*", default=["contrast", "motion"], help="acquisition copies to build")
    args = ap.parse_args(argv)
    data, cache = Path(args.data) / "camcan", Path(args.cache)
    cache.parent.mkdir(parents=True, exist_ok=True)

    def log(m: str) -> None:
        print(time.strftime("%H:%M:%S"), m, flush=True)

    feats = model_space_features(data, cache, log=log, ixi_root=data.parent)
    log(f"{cache}: {len(feats['age'])} subjects")
    for kind in args.copies:
        acquisition_copies(data, feats, cache, kind, log=log)
        log(f"{kind} copies done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
