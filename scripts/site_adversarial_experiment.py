"""Experiment: does site-adversarial training (``train-cnn --site-adversarial``) take the site
out of approach B's features, and at what cost?

For each CNN run folder: B alone on Cam-CAN ``test`` (mirror reading, bias correction fitted on
its validation subjects; years), the mean |age change| of held-out scans (Cam-CAN ``test``,
``ixi10``) to their contrast and motion copies, and how well the site can be read from the
pooled 64 features of subjects no CNN trained on (the 80 validation subjects, Cam-CAN ``test``
and ``ixi10``: 160 Cam-CAN, 30 IXI): 5-fold cross-validated AUC of a logistic regression
(0.5 = the features do not tell the scanners apart).

    .venv/bin/python scripts/site_adversarial_experiment.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CACHE = "runs/features/features.npz"


def embeddings(x: np.ndarray, weights: Path) -> np.ndarray:
    import torch
    from BrainAgeLib.training.age_model import load_run_cnn
    net = load_run_cnn(weights)
    with torch.no_grad():
        return torch.cat([0.5 * (net.embed(b) + net.embed(b.flip(-1)))
                          for b in torch.from_numpy(x.astype(np.float32)).split(32)]).numpy()


def main(runs: list[str]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from BrainAgeLib.regression import AgeBiasCorrection
    from BrainAgeLib.training.age_model import cnn_predictions
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.features import COPY_SUFFIX, copies_path
    z = np.load(CACHE)
    f = {k: z[k] for k in ("cnn", "site", "split", "age", "subject_id")}
    copies = {k: np.load(copies_path(CACHE, k))["cnn" + COPY_SUFFIX[k]] for k in ("contrast", "motion")}
    _, va = training_partition(f, ("camcan", "ixi"), 60, 20, 20261123)
    test, ixi10 = np.flatnonzero(f["split"] == "test"), np.flatnonzero(f["split"] == "ixi10")
    held = np.concatenate([va, test, ixi10])
    is_ixi = (f["site"][held] == "ixi").astype(int)
    for run in runs:
        w = Path(run) / "age_cnn.safetensors"
        bias = AgeBiasCorrection().fit(cnn_predictions(f, va, w), f["age"][va])
        val_mae = float(np.abs(bias(cnn_predictions(f, va, w)) - f["age"][va]).mean())
        test_mae = float(np.abs(bias(cnn_predictions(f, test, w)) - f["age"][test]).mean())
        line = f"{run}: validation B {val_mae:.2f}, test B {test_mae:.2f}"
        for name, c in copies.items():
            for label, rows in (("test", test), ("ixi10", ixi10)):
                d = cnn_predictions({"cnn": c}, rows, w) - cnn_predictions(f, rows, w)
                line += f"; {label} {name} |change| {np.abs(d).mean():.2f}"
        emb = embeddings(f["cnn"][held], w)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        p = cross_val_predict(clf, emb, is_ixi, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")[:, 1]
        line += f"; site AUC of the features {roc_auc_score(is_ixi, p):.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
