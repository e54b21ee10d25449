"""Leave-one-site-out ages by sex: the shipped recipe's one-site models (``evaluate-sites``'s
``leave_one_site_out``: A refitted on one site, the given one-site CNNs) read the other site's
scans, and the bias-corrected gap (predicted minus chronological age, years) is compared between
women and men, with a 95 % bootstrap interval of the difference (men minus women) and the gap's
correlation with age in each. Cam-CAN -> IXI reads the 130 IXI heads, IXI -> Cam-CAN the 100
``test`` scans.

    PYTHONPATH=BrainAge .venv/bin/python scripts/loso_by_sex.py CAMCAN_CNN_DIR IXI_CNN_DIR [--cache PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def sex_gap(gap: np.ndarray, sex: np.ndarray, seed: int = 0, n_boot: int = 5000) -> dict:
    """Mean gap of women and men, and men minus women with its 95 % bootstrap interval (years)."""
    women, men = gap[sex == "F"], gap[sex == "M"]
    rng = np.random.default_rng(seed)
    boot = [rng.choice(men, len(men)).mean() - rng.choice(women, len(women)).mean() for _ in range(n_boot)]
    return {"n_women": int(len(women)), "n_men": int(len(men)), "women": round(float(women.mean()), 2),
            "men": round(float(men.mean()), 2), "men_minus_women": round(float(men.mean() - women.mean()), 2),
            "ci95": [round(float(v), 2) for v in np.percentile(boot, [2.5, 97.5])]}


def age_adjusted_sex_gap(gap: np.ndarray, sex: np.ndarray, age: np.ndarray) -> float:
    """Men minus women (years) at the same age: the sex coefficient of gap ~ 1 + age + men."""
    X = np.column_stack([np.ones_like(age), age, (sex == "M").astype(float)])
    return float(np.linalg.lstsq(X, gap, rcond=None)[0][2])


def main() -> None:
    from BrainAgeLib.site_evaluation import a_recipe, leave_one_site_out
    from BrainAgeLib.training.features import model_space_features
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("camcan_cnn", type=Path)
    ap.add_argument("ixi_cnn", type=Path)
    ap.add_argument("--cache", default="runs/features/features.npz")
    ap.add_argument("--age-model", default="BrainAge/Resources/Models/age_model.json")
    args = ap.parse_args()
    f = model_space_features(None, args.cache)
    m = json.loads(Path(args.age_model).read_text())
    loso = leave_one_site_out(f, m["volumes"]["selected"], {"camcan": args.camcan_cnn, "ixi": args.ixi_cnn},
                              m["ensemble"]["weight_volumes"], recipe=a_recipe(m, f, args.cache))
    sex = np.asarray(f["sex"]).astype(str)
    for direction, r in loso.items():
        rows = r["_test_rows"]
        age = f["age"][rows].astype(float)
        gap = r["_ensemble_ages"] - age
        s = sex[rows]
        out = sex_gap(gap, s)
        by_approach = "; ".join(
            f"{k} {sex_gap(r[f'_{k}_ages'] - age, s)['men_minus_women']:+.2f} "
            f"(same age {age_adjusted_sex_gap(r[f'_{k}_ages'] - age, s, age):+.2f})" for k in ("A", "B"))
        print(f"{direction}: ensemble MAE {r['ensemble']['mae']:.2f}; mean gap women {out['women']:+.2f} "
              f"(n {out['n_women']}), men {out['men']:+.2f} (n {out['n_men']}); men - women "
              f"{out['men_minus_women']:+.2f} (95 % interval {out['ci95'][0]:+.2f} to {out['ci95'][1]:+.2f}; "
              f"at the same age {age_adjusted_sex_gap(gap, s, age):+.2f}; mean age women "
              f"{age[s == 'F'].mean():.1f}, men {age[s == 'M'].mean():.1f}); "
              f"r(gap, age) women {np.corrcoef(gap[s == 'F'], age[s == 'F'])[0, 1]:+.2f}, "
              f"men {np.corrcoef(gap[s == 'M'], age[s == 'M'])[0, 1]:+.2f}; men - women by approach: {by_approach}",
              flush=True)


if __name__ == "__main__":
    main()
