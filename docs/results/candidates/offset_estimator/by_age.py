"""The offset estimators of ``offset_estimators.py`` on age-restricted clinics: controls and tested
subjects of the held-out site drawn from one age band only (18-51, like ixi10's 23-51; 52-90; all),
release 18's runs (the IXI-only CNN of the default seed), 300 draws of k controls. MAE in years.

    .venv/bin/python docs/results/candidates/offset_estimator/by_age.py
"""
import json
import sys

import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from offset_estimators import ESTIMATORS, base_ages, SEED
from BrainAgeLib.training.features import acquisition_copies, model_space_features
run = Path("runs/release18"); cache = run / "features" / "features.npz"
f = model_space_features(None, cache)
m = json.loads(Path("BrainAge/Resources/Models/age_model.json").read_text())
name, w = m["volumes"]["selected"], m["ensemble"]["weight_volumes"]
recipe = {"invariance": 0.3, "copies": {k: acquisition_copies(None, f, cache, k) for k in ("contrast", "motion")}}
for held_out, cnn in (("ixi", run / "cnn-camcan"), ("camcan", run / "cnn-ixi")):
    base, y, ctrl_pool, tested = base_ages(f, name, recipe, w, cnn, held_out)
    for lo, hi in ((18, 51), (52, 90), (18, 90)):
        cp = ctrl_pool[(y[ctrl_pool] >= lo) & (y[ctrl_pool] <= hi)]
        rng = np.random.default_rng(SEED)
        for k in (10, 20):
            maes = {e: [] for e in ESTIMATORS}
            for _ in range(300):
                ctrl = rng.choice(cp, size=k, replace=False)
                rest = np.setdiff1d(np.arange(len(y)), ctrl) if tested is None else tested
                rest = rest[(y[rest] >= lo) & (y[rest] <= hi)]
                g = base[ctrl] - y[ctrl]
                for e, fn in ESTIMATORS.items():
                    maes[e].append(np.mean(np.abs(base[rest] - fn(g) - y[rest])))
            gp = base[cp] - y[cp]
            print(held_out, f"ages {lo}-{hi} (pool {len(cp)}, gap mean {gp.mean():+.1f} median {np.median(gp):+.1f})", k,
                  " | ".join(f"{e} {np.mean(v):.2f}" for e, v in maes.items()), flush=True)
