"""Would a different label rule reach issue 11's Dice targets (0.85 / 0.93 / 0.95) without
retraining? The labels are the arg-max of the ResUNet's probabilities; adding a constant to each
class's log-probability before the arg-max moves the borders between classes (the age models read
the probabilities, so their ages would not change). The offsets are chosen on ``seg_val`` (the
network's validation split; grid -0.6..0.6 every 0.1, highest mean Dice over the three tissues)
and then read on ``test`` once.

    PYTHONPATH=BrainAge .venv/bin/python scripts/segmentation_label_rule.py [CACHE_DIR]

CACHE_DIR (default ``runs/labelrule``) keeps each split's probabilities (float16) between runs.
Prints a Markdown table (``docs/results/candidates/label_rule/summary.md``).
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import models
from BrainAgeLib.io import read_image
from BrainAgeLib.preprocessing import preprocess
from BrainAgeLib.segmentation import segment_array
from BrainAgeLib.training import camcan_paths, read_camcan_subjects

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camcan"
GRID = np.round(np.arange(-0.6, 0.61, 0.1), 2)
DECIDED = 0.9   # voxels whose top probability is at least this keep their class for every offset tried


def probabilities(split: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"{split}.npz"
    if path.exists():
        d = np.load(path)
        return d["prob"], d["ref"]
    net = models.load_resunet()
    probs, refs = [], []
    for r in (r for r in read_camcan_subjects(DATA) if r["split"] == split):
        p = camcan_paths(DATA, r["subject_id"])
        image = preprocess(read_image(p["image"])).image
        probs.append(segment_array(net, sitk.GetArrayViewFromImage(image)).astype(np.float16))
        refs.append(sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"]))).astype(np.uint8))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, prob=np.stack(probs), ref=np.stack(refs))
    return np.stack(probs), np.stack(refs)


def _undecided(prob: np.ndarray, ref: np.ndarray) -> list:
    """Per subject: log-probabilities and reference labels of the voxels an offset can move, and
    the Dice numerator and denominator counts of the others."""
    out = []
    for p, r in zip(prob, ref):
        p, r = p.astype(np.float32).reshape(4, -1), r.ravel()
        open_ = p.max(0) < DECIDED
        lab, fr = p[:, ~open_].argmax(0), r[~open_]
        fixed = [(2 * np.sum((lab == c) & (fr == c)), np.sum(lab == c) + np.sum(fr == c)) for c in (1, 2, 3)]
        out.append((np.log(np.clip(p[:, open_], 1e-6, 1.0)), r[open_], fixed))
    return out


def dice(subjects: list, offsets: np.ndarray) -> np.ndarray:
    """Mean Dice (CSF, GM, WM) over subjects with ``offsets`` added to the log-probabilities."""
    rows = []
    for logp, r, fixed in subjects:
        lab = (logp + offsets[:, None]).argmax(0)
        rows.append([(2 * np.sum((lab == c) & (r == c)) + fixed[c - 1][0])
                     / (np.sum(lab == c) + np.sum(r == c) + fixed[c - 1][1]) for c in (1, 2, 3)])
    return np.mean(rows, axis=0)


def main(cache: Path) -> None:
    val = _undecided(*probabilities("seg_val", cache))
    best, best_score = np.zeros(4), dice(val, np.zeros(4)).mean()
    for b in itertools.product(GRID, GRID, GRID):
        offsets = np.array([0.0, *b])
        score = dice(val, offsets).mean()
        if score > best_score + 1e-9:
            best, best_score = offsets, score
    test = _undecided(*probabilities("test", cache))
    print("| label rule | offsets (CSF, GM, WM) | seg_val Dice CSF / GM / WM | test Dice CSF / GM / WM |")
    print("| --- | --- | --- | --- |")
    for name, offsets in (("arg-max (shipped)", np.zeros(4)), ("offsets chosen on seg_val", best)):
        v, t = dice(val, offsets), dice(test, offsets)
        print(f"| {name} | {', '.join(f'{x:+.1f}' for x in offsets[1:])} | "
              f"{' / '.join(f'{x:.4f}' for x in v)} | {' / '.join(f'{x:.4f}' for x in t)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/labelrule"))
