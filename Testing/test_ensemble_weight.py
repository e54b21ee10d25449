"""A's weight in the ensemble: chosen by site-level cross-validation (leave-one-site-out)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from BrainAgeLib import models
from BrainAgeLib.cli_training import _ensemble_weight
from BrainAgeLib.site_evaluation import WEIGHT_SWEEP, site_cv_weight

SITES_SUMMARY = Path(__file__).resolve().parents[1] / "docs" / "results" / "sites_summary.json"


def _sweep(maes: dict[str, list[float]]) -> dict:
    return {d: {f"{w:.2f}": {"mae": m} for w, m in zip((0.0, 0.1, 0.2, 0.3), v)} for d, v in maes.items()}


def test_the_weight_with_the_lowest_mean_unseen_site_mae_wins():
    """Averaged over both directions: 0.1 (5.5) beats 0 (5.6) though each direction alone would
    choose otherwise; a tie goes to the smaller weight."""
    by_weight = _sweep({"train camcan -> test ixi": [5.0, 5.2, 5.4, 5.6],
                        "train ixi -> test camcan": [6.2, 5.8, 5.7, 5.9]})
    assert site_cv_weight(by_weight) == 0.1
    tie = _sweep({"a": [5.0, 4.0, 4.0, 6.0], "b": [5.0, 4.0, 4.0, 6.0]})
    assert site_cv_weight(tie) == 0.1


def test_one_direction_is_not_site_level_cross_validation():
    with pytest.raises(ValueError, match="both directions"):
        site_cv_weight(_sweep({"train camcan -> test ixi": [5.0, 5.2, 5.4, 5.6]}))


def test_the_shipped_weight_is_the_site_level_choice_of_the_committed_sweep():
    """The shipped ensemble's weight is what the committed leave-one-site-out sweep chooses, and
    the manifest says which rule chose it; the sweep covers the grid evaluate-sites measures."""
    summary = json.loads(SITES_SUMMARY.read_text())
    by_weight = summary["leave_one_site_out_by_weight"]
    assert len(by_weight) == 2 and all(set(d) == {f"{w:.2f}" for w in WEIGHT_SWEEP} for d in by_weight.values())
    ensemble = models.load_json("age_model.json")["ensemble"]
    assert ensemble["weight_volumes"] == site_cv_weight(by_weight) == summary["site_cv_weight"]
    assert ensemble["weight_rule"].startswith("site-level cross-validation")
    assert models.read_manifest()["files"]["age_model.json"]["ensemble"]["weight_rule"] == ensemble["weight_rule"]


def test_the_ensemble_weight_option(tmp_path):
    """--ensemble-weight takes a number or a sites_summary.json; anything else is a clear error,
    and a weight outside [0, 1] is refused before the cache is read."""
    from BrainAgeLib.training import fit_age_model
    assert _ensemble_weight(None) == (None, "validation")
    assert _ensemble_weight("0.3") == (0.3, "given")
    w, rule = _ensemble_weight(str(SITES_SUMMARY))
    assert 0.0 <= w <= 0.5 and rule == "site-level cross-validation (sites_summary.json)"
    with pytest.raises(SystemExit, match=r"\[0, 1\]"):
        _ensemble_weight("1.5")
    with pytest.raises(SystemExit, match=r"\[0, 1\]"):
        _ensemble_weight("nan")
    with pytest.raises(SystemExit, match="neither a number"):
        _ensemble_weight(str(tmp_path / "missing.json"))
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(SystemExit, match="no leave_one_site_out_by_weight"):
        _ensemble_weight(str(tmp_path / "empty.json"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_age_model(tmp_path, tmp_path / "out", tmp_path / "no-cache.npz", ensemble_weight=1.5)
