"""Thick-slice inputs: the orientation of their slices, and the ensemble's thick-slice weights
(``brainage train-thick-slice-weights``) on a real whole head (IXI fixture)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainAgeLib import degrade, models
from BrainAgeLib.io import read_image
from BrainAgeLib.pipeline import predict
from BrainAgeLib.qc import slice_geometry
from BrainAgeLib.training.thick_slices import fit_thick_slice_weights

T1 = Path(__file__).resolve().parent / "data" / "IXI013-HH-1212_T1.nii.gz"


@pytest.fixture(scope="module")
def image():
    return read_image(T1)


def test_slice_geometry_names_the_orientation_in_any_axis_order(image):
    """The fixture is stored PSR (2 mm): its thick copies are named by their anatomical slice
    orientation, whatever order the axes are stored in; 2 mm voxels are not thick."""
    assert slice_geometry(image) is None
    for orientation in ("sagittal", "coronal", "axial"):
        thick = degrade.thick_slices(image, 5.0, orientation)
        for stored in (thick, sitk.DICOMOrient(thick, "LPS"), sitk.DICOMOrient(thick, "IRA")):
            o, mm = slice_geometry(stored)
            assert o == orientation and mm == pytest.approx(5.0)
    assert slice_geometry(degrade.thick_slices(image, 2.4, "axial")) is None


def _measured_rows() -> list[dict]:
    """Rows as measure_thick_slices writes them: A holds under coronal slices, B under axial."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        clean = 30.0 + 8 * i
        rows.append({"subject_id": f"s{i}", "orientation": "clean", "ensemble": clean,
                     "volumes": clean, "cnn": clean})
        for mm in (3, 4, 5, 6):
            drift = -1.5 * mm + rng.normal(0, 0.3)
            rows.append({"subject_id": f"s{i}", "orientation": "coronal", "ensemble": clean + 0.8 * drift,
                         "volumes": clean + rng.normal(0, 0.2), "cnn": clean + drift})
            rows.append({"subject_id": f"s{i}", "orientation": "axial", "ensemble": clean + 0.2 * 2 * mm,
                         "volumes": clean + 2 * mm, "cnn": clean + rng.normal(0, 0.2)})
    return rows


def test_fit_picks_the_approach_that_holds_per_orientation():
    """A keeps the clean age under coronal slices, B under axial ones: the fitted weight of A is
    1 for coronal and 0 for axial, and the fit reports the usual ensemble's change beside it."""
    fit = fit_thick_slice_weights(_measured_rows())
    assert set(fit) == {"coronal", "axial"}
    assert fit["coronal"]["weight_volumes"] == 1.0 and fit["axial"]["weight_volumes"] == 0.0
    for o in fit.values():
        assert o["n_scans"] == 24 and o["mean_abs_change"] < o["mean_abs_change_usual_ensemble"]
        assert o["apply"] and o["gain_ci95"][0] > 0


def test_a_gain_the_subjects_cannot_tell_from_chance_is_not_applied():
    """When A and B err alike, the best weight gains nothing clear over the usual ensemble: its
    95 % interval over subjects includes 0 and the orientation keeps the usual ensemble."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        clean = 30.0 + 6 * i
        rows.append({"subject_id": f"s{i}", "orientation": "clean", "ensemble": clean})
        for mm in (3, 4, 5, 6):
            a, b = clean + rng.normal(0, 3), clean + rng.normal(0, 3)
            rows.append({"subject_id": f"s{i}", "orientation": "sagittal", "volumes": a, "cnn": b,
                         "ensemble": 0.2 * a + 0.8 * b})
    fit = fit_thick_slice_weights(rows)["sagittal"]
    assert fit["gain_ci95"][0] <= 0 and not fit["apply"]


def test_refit_from_a_measurement_and_ship(tmp_path, monkeypatch):
    """`brainage train-thick-slice-weights --from-csv ... --ship` refits from a measurement
    without predicting again, ships the weights checksummed, fitted for the shipped age models."""
    import csv
    import contextlib
    import io
    from BrainAgeLib import cli
    from BrainAgeLib.training.thick_slices import COLUMNS
    measured = tmp_path / "thick_slices.csv"
    with open(measured, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        for r in _measured_rows():
            writer.writerow({**r, "set": "camcan"})
    folder = tmp_path / "models"
    shutil.copytree(models.models_dir(), folder)
    monkeypatch.setenv("BRAINAGE_MODELS_DIR", str(folder))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli.main(["train-thick-slice-weights", "--from-csv", str(measured), "--out", str(tmp_path / "run"),
                         "--ship"])
    assert code == 0, out.getvalue()
    doc = models.load_thick_slice_weights()
    assert doc["weight_volumes"] == {"coronal": 1.0, "axial": 0.0}
    assert doc["subjects"] == [f"camcan:s{i}" for i in range(6)]
    assert models.read_manifest(folder)["files"][models.THICK_SLICE_WEIGHTS]["weight_volumes"] == doc["weight_volumes"]


def _models_with_weights(folder: Path, weights: dict, fitted_for: dict | None = None) -> Path:
    shutil.copytree(models.models_dir(), folder)
    (folder / models.THICK_SLICE_WEIGHTS).unlink(missing_ok=True)
    manifest = models.read_manifest(folder)["files"]
    doc = {"applies_above_mm": 2.5, "weight_volumes": weights,
           "fitted_for": fitted_for or {n: manifest[n]["sha256"] for n in ("age_model.json", "age_cnn.safetensors")}}
    (folder / models.THICK_SLICE_WEIGHTS).write_text(json.dumps(doc))
    models.update_manifest(models.THICK_SLICE_WEIGHTS, {"training": "test"}, folder)
    return folder


def test_thick_slice_weights_set_the_ensemble_of_thick_scans_only(image, tmp_path, monkeypatch):
    """With A's weight 1 for coronal slices, a coronal 5 mm copy gets A's age, the usual ensemble
    recorded beside it; the 2 mm scan keeps the usual ensemble. Weights fitted for other age
    models (another SHA256) are ignored: the usual ensemble applies."""
    thick = degrade.thick_slices(image, 5.0, "coronal")
    monkeypatch.setenv("BRAINAGE_MODELS_DIR", str(_models_with_weights(tmp_path / "m1", {"coronal": 1.0, "axial": 0.0})))
    r = predict(thick, device="cpu")
    details = r.age_details["thick_slices"]
    assert details["orientation"] == "coronal" and details["weight_volumes"] == 1.0
    assert r.predicted_age == pytest.approx(r.predicted_age_volumes)
    assert details["usual_ensemble"] != pytest.approx(r.predicted_age, abs=0.01)
    assert any(q.startswith("thick slices") for q in r.qc)          # still warned about
    clean = predict(image, device="cpu")
    assert "thick_slices" not in clean.age_details
    monkeypatch.setenv("BRAINAGE_MODELS_DIR", str(_models_with_weights(
        tmp_path / "m2", {"coronal": 1.0}, {"age_model.json": "0" * 64})))
    assert models.load_thick_slice_weights() is None
    stale = predict(thick, device="cpu")
    assert "thick_slices" not in stale.age_details
    assert stale.predicted_age == pytest.approx(details["usual_ensemble"], abs=1e-6)


def test_shipped_thick_slice_weights_belong_to_the_shipped_age_models():
    """Retraining A or B without refitting the thick-slice weights would silently drop them."""
    doc = models.load_thick_slice_weights()
    assert doc is not None
    assert set(doc["weight_volumes"]) <= {"sagittal", "coronal", "axial"}
    assert all(0.0 <= w <= 1.0 for w in doc["weight_volumes"].values())
    for o, fit in doc["fit"].items():      # shipped exactly where the gain was clear
        assert (o in doc["weight_volumes"]) == fit["apply"]
