"""The normative model: centile curves of the healthy cohort (shipped JSON, checksummed), their
fit from the normative table (`brainage train-normative`), and the reference cohort."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from BrainAgeLib import cli, models, normative

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "results" / "normative_table_provisional.csv"


@pytest.fixture(scope="module")
def shipped():
    return normative.load()


@pytest.fixture(scope="module")
def table():
    return normative.read_table(TABLE)


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    """`brainage train-normative --table TABLE --ship` into a copy of the models folder."""
    tmp = tmp_path_factory.mktemp("normative")
    models_tmp = tmp / "models"
    models_tmp.mkdir()
    shutil.copy(models.models_dir() / "manifest.json", models_tmp / "manifest.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINAGE_MODELS_DIR", str(models_tmp))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = cli.main(["train-normative", "--table", str(TABLE), "--out", str(tmp / "run"), "--ship"])
    return {"code": code, "out": buf.getvalue(), "models": models_tmp}


@pytest.fixture(scope="module")
def fitted(shipped_run):
    return json.loads((shipped_run["models"] / normative.FILE_NAME).read_text())


def test_shipped_model_is_checksummed_json(shipped):
    entry = models.read_manifest()["files"][normative.FILE_NAME]
    path = models.verify(normative.FILE_NAME)
    assert entry["sha256"] == models.sha256(path)
    data = json.loads(path.read_text())          # plain JSON: no pickle anywhere
    assert set(data["variables"]) == set(normative.VARIABLES)
    assert data["centiles"] == list(normative.CENTILES)
    lo, hi = shipped.age_range
    assert 15 <= lo < 30 and 75 < hi <= 100


def test_centile_curves_ordered_and_invertible(shipped):
    ages = np.linspace(*shipped.age_range, 25)
    for var in normative.VARIABLES:
        for sex in (None, "F", "M"):
            q = shipped.centile_curves(var, ages, None if sex is None else [sex] * len(ages))
            assert np.all(np.diff(q, axis=1) >= 0), var
            assert np.all(q[:, 4] > q[:, 0]), var
            # a value on a curve is at that curve's centile; values in between fall in between
            for a, row in zip(ages[::6], q[::6]):
                for c, v in zip(normative.CENTILES, row):
                    if np.sum(np.isclose(row, v)) == 1:
                        assert shipped.centile_of(var, v, a, sex) == pytest.approx(c, abs=0.5)
                vals = np.linspace(row[0] - (row[4] - row[0]), row[4] + (row[4] - row[0]), 9)
                cents = [shipped.centile_of(var, v, a, sex) for v in vals]
                assert np.all(np.diff(cents) >= 0) and 0 < cents[0] < 5 and 95 < cents[-1] < 100


def test_ages_outside_the_training_range_are_not_extrapolated(shipped):
    lo, hi = shipped.age_range
    q = shipped.centile_curves("gm_frac", [lo + 10])[0]
    assert shipped.centile_of("gm_frac", q[2], lo + 10) == pytest.approx(50, abs=0.5)
    assert shipped.centile_of("gm_frac", q[2], hi + 5) is None
    assert shipped.centile_of("gm_frac", q[2], lo - 5) is None
    assert shipped.centile_of("gm_frac", q[2], None) is None
    assert not shipped.in_range(hi + 0.01) and shipped.in_range(hi)


def test_reference_cohort_points_and_band(shipped):
    ref = normative.reference_cohort()
    n = shipped.data["training"]["n"]
    assert len(ref["age"]) == len(ref["predicted_age"]) == len(ref["sex"]) == n >= 100
    band = {k: np.asarray(v) for k, v in ref["band"].items()}
    assert np.all(band["low"] < band["median"]) and np.all(band["median"] < band["high"])
    # about 90% of the reference cohort lies inside its own 90% band
    age, pred = np.asarray(ref["age"]), np.asarray(ref["predicted_age"])
    low, high = np.interp(age, band["age"], band["low"]), np.interp(age, band["age"], band["high"])
    inside = np.mean((pred >= low) & (pred <= high))
    assert 0.8 <= inside <= 0.97, inside


def test_fit_from_table_is_calibrated_on_its_training_rows(table, fitted):
    tr = table["split"] == "train"
    model = normative.NormativeModel(fitted)
    for var in normative.VARIABLES:
        shares = normative.calibration(model.curves[var], table["age"][tr], table[var][tr], table["sex"][tr])
        assert np.allclose(shares, normative.CENTILES, atol=6), (var, shares)


def test_recorded_calibration_is_the_test_rows_share(table, fitted):
    te = table["split"] == "test"
    model = normative.NormativeModel(fitted)
    rows = {r["variable"]: r for r in fitted["calibration"] if r.get("selected")}
    assert set(rows) == set(normative.VARIABLES)
    for var, row in rows.items():
        shares = normative.calibration(model.curves[var], table["age"][te], table[var][te], table["sex"][te])
        assert [row[f"below_{c}"] for c in normative.CENTILES] == [round(s, 1) for s in shares]
        assert row["max_abs_dev"] == min(r["max_abs_dev"] for r in fitted["calibration"] if r["variable"] == var)


def test_json_round_trip(fitted):
    again = normative.NormativeModel(json.loads(json.dumps(fitted, allow_nan=False)))
    model = normative.NormativeModel(fitted)
    ages = np.linspace(20, 80, 7)
    for var in normative.VARIABLES:
        assert np.array_equal(model.centile_curves(var, ages), again.centile_curves(var, ages))


def test_sex_term_moves_the_curves(table):
    tr = table["split"] == "train"
    male = np.asarray([normative.sex_code(s) for s in table["sex"][tr]])
    c = normative.fit_curves("gm_frac", table["age"][tr], table["gm_frac"][tr], male, "quantreg", 5, True)
    f, m, u = (c.predict([50.0], [s])[0] for s in ("F", "M", ""))
    # rearrangement may reorder crossing centiles but keeps each row's sum
    assert np.sum(m - f) == pytest.approx(sum(c.sex_coef.values()))
    assert abs(sum(c.sex_coef.values())) > 1e-4
    assert np.all((np.minimum(f, m) <= u + 1e-12) & (u <= np.maximum(f, m) + 1e-12))


def test_train_normative_command_ships_with_checksum(shipped_run):
    models_tmp = shipped_run["models"]
    assert shipped_run["code"] == 0
    out = shipped_run["out"]
    assert "| variable | model |" in out and "**gap**" in out
    entry = models.read_manifest(models_tmp)["files"][normative.FILE_NAME]
    assert entry["sha256"] == models.sha256(models_tmp / normative.FILE_NAME)
    assert set(entry["max_abs_dev_points"]) == set(normative.VARIABLES)
    models.verify(normative.FILE_NAME, models_tmp)
    assert normative.load(models_tmp / normative.FILE_NAME).data["training"]["n"] > 100


def test_bad_tables_give_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,age,sex\nA,30,F\n")
    assert cli.main(["train-normative", "--table", str(bad), "--out", str(tmp_path)]) == 1
    assert "missing column(s) site, split, predicted_age" in capsys.readouterr().err
    assert cli.main(["train-normative", "--table", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 1
    assert "cannot read the normative table" in capsys.readouterr().err
    lines = TABLE.read_text().splitlines()
    only_train = tmp_path / "train.csv"
    only_train.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ",test," not in ln]) + "\n")
    assert cli.main(["train-normative", "--table", str(only_train), "--out", str(tmp_path)]) == 1
    assert "no subject with split 'test'" in capsys.readouterr().err
