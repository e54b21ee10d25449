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
from BrainAgeLib.regression import thick_slice_age
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


def _measured_rows(n: int = 10) -> list[dict]:
    """Rows as measure_thick_slices writes them: under coronal slices B drifts younger by 1.5
    years per mm but holds its rank, A scatters; under axial slices A drifts older by 2 years per
    mm, B scatters. The usual ensemble (half and half) carries both."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        clean = 25.0 + 5 * i
        rows.append({"subject_id": f"s{i}", "orientation": "clean", "thickness_mm": 0.0,
                     "ensemble": clean, "volumes": clean, "cnn": clean})
        for mm in (3, 4, 5, 6):
            a, b = clean + rng.normal(0, 2), clean - 1.5 * mm + rng.normal(0, 0.2)
            rows.append({"subject_id": f"s{i}", "orientation": "coronal", "thickness_mm": mm,
                         "ensemble": (a + b) / 2, "volumes": a, "cnn": b})
            a, b = clean + 2 * mm + rng.normal(0, 0.2), clean + rng.normal(0, 2)
            rows.append({"subject_id": f"s{i}", "orientation": "axial", "thickness_mm": mm,
                         "ensemble": (a + b) / 2, "volumes": a, "cnn": b})
    return rows


def test_fit_removes_the_drift_and_picks_the_approach_that_holds_per_orientation():
    """Each approach's drift is undone by its line per thickness (slope 1, the drift as
    intercept); after it, B holds under coronal slices and A under axial ones, so A's weight is
    near 0 and near 1, and the change measured out of fold (each subject left out of its own fit)
    beats the usual ensemble's."""
    fit = fit_thick_slice_weights(_measured_rows())
    assert set(fit) == {"coronal", "axial"}
    assert fit["coronal"]["weight_volumes"] <= 0.1 and fit["axial"]["weight_volumes"] >= 0.9
    assert fit["coronal"]["intercepts_cnn"] == pytest.approx([4.5, 6, 7.5, 9], abs=0.5)
    assert fit["coronal"]["slopes_cnn"] == pytest.approx([1] * 4, abs=0.02)
    assert fit["axial"]["intercepts_volumes"] == pytest.approx([-6, -8, -10, -12], abs=0.5)
    assert fit["coronal"]["thicknesses_mm"] == [3.0, 4.0, 5.0, 6.0]
    for o in fit.values():
        assert o["n_scans"] == 40 and o["n_subjects"] == 10
        assert o["mean_abs_change"] <= o["mean_abs_change_out_of_fold"] < 1.0 < o["mean_abs_change_usual_ensemble"]
        assert o["apply"] and o["gain_ci95"][0] > 0 and 0 < o["residual_sd_out_of_fold"] < 1.0


def test_thick_slice_age_interpolates_the_lines_in_thickness():
    """Slopes and intercepts go linearly from the identity at the thickness where correction
    starts, and hold beyond the thickest fitted; A's weight mixes the mapped ages."""
    fit = {"weight_volumes": 0.25, "thicknesses_mm": [3.0, 5.0],
           "slopes_volumes": [1.0, 1.2], "intercepts_volumes": [-2.0, -6.0],
           "slopes_cnn": [1.0, 1.0], "intercepts_cnn": [4.0, 8.0]}
    assert thick_slice_age(50, 50, 4.0, fit, 2.5) == pytest.approx(0.25 * (1.1 * 50 - 4) + 0.75 * 56)
    assert thick_slice_age(50, 50, 2.75, fit, 2.5) == pytest.approx(0.25 * 49 + 0.75 * 52)
    assert thick_slice_age(50, 50, 9.0, fit, 2.5) == pytest.approx(0.25 * (1.2 * 50 - 6) + 0.75 * 58)
    assert thick_slice_age(40, 60, 4.0, {"weight_volumes": 1.0}, 2.5) == 40     # weight only


def test_a_gain_the_subjects_cannot_tell_from_chance_is_not_applied():
    """When A and B neither drift nor differ, lines and weight gain nothing clear over the usual
    ensemble out of fold: the interval includes 0 and the orientation keeps the usual ensemble."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        clean = 30.0 + 6 * i
        rows.append({"subject_id": f"s{i}", "orientation": "clean", "ensemble": clean, "volumes": clean, "cnn": clean})
        for mm in (3, 4, 5, 6):
            a, b = clean + rng.normal(0, 3), clean + rng.normal(0, 3)
            rows.append({"subject_id": f"s{i}", "orientation": "sagittal", "thickness_mm": mm,
                         "volumes": a, "cnn": b, "ensemble": 0.5 * a + 0.5 * b})
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
    assert set(doc["weight_volumes"]) == {"coronal", "axial"}
    assert doc["fit"]["coronal"]["intercepts_cnn"][2] == pytest.approx(7.5, abs=0.5)
    assert doc["subjects"] == [f"camcan:s{i}" for i in range(10)]
    assert models.read_manifest(folder)["files"][models.THICK_SLICE_WEIGHTS]["weight_volumes"] == doc["weight_volumes"]


def test_the_usual_ensemble_is_recomputed_for_a_new_weight():
    """Release 11's thick-slice measurement (A's weight 0.2; docs/results) holds A's, B's and the
    usual ensemble's ages as predict gave them: recomputed from A's and B's columns with release
    11's bias corrections and weight, every ensemble age comes back to its rounding; with A's
    weight 0 the ensemble is B's raw age through the ensemble's correction, which differs."""
    import csv
    from BrainAgeLib.training.thick_slices import usual_ensemble_column
    path = Path(__file__).resolve().parents[1] / "docs" / "results" / "thick_slice_weights_fit_release11.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))[:130]
    release11 = {"volumes": {"bias": {"slope": 0.829481101204412, "intercept": 8.983337596952627}},
                 "cnn": {"bias": {"slope": 0.8346946483232104, "intercept": 9.966822436228572}},
                 "ensemble": {"weight_volumes": 0.2,
                              "bias": {"slope": 0.8225186562948441, "intercept": 10.340512998154578}}}
    again = usual_ensemble_column(rows, release11)
    assert [float(r["ensemble"]) for r in again] == pytest.approx([float(r["ensemble"]) for r in rows], abs=0.002)
    assert again[0]["volumes"] == rows[0]["volumes"] and again[0]["qc"] == rows[0]["qc"]
    b_only = usual_ensemble_column(rows, {**release11, "ensemble": {**release11["ensemble"], "weight_volumes": 0.0}})
    moved = np.abs(np.array([float(r["ensemble"]) for r in b_only]) - [float(r["ensemble"]) for r in rows])
    assert moved.mean() > 0.3


def _models_with_weights(folder: Path, weights: dict, fitted_for: dict | None = None,
                         fit: dict | None = None) -> Path:
    shutil.copytree(models.models_dir(), folder)
    (folder / models.THICK_SLICE_WEIGHTS).unlink(missing_ok=True)
    manifest = models.read_manifest(folder)["files"]
    doc = {"applies_above_mm": 2.5, "weight_volumes": weights, "fit": fit or {},
           "fitted_for": fitted_for or {n: manifest[n]["sha256"] for n in ("age_model.json", "age_cnn.safetensors")}}
    (folder / models.THICK_SLICE_WEIGHTS).write_text(json.dumps(doc))
    models.update_manifest(models.THICK_SLICE_WEIGHTS, {"training": "test"}, folder)
    return folder


def test_thick_slice_weights_set_the_ensemble_of_thick_scans_only(image, tmp_path, monkeypatch):
    """With A's weight 1 and A's line at 5 mm of coronal slices 1.1 x age - 8, a coronal 5 mm
    copy gets that of A's age and a wider interval, the usual ensemble recorded beside it; the
    2 mm scan keeps the usual ensemble. Weights fitted for other age models (another SHA256) are
    ignored: the usual ensemble applies."""
    thick = degrade.thick_slices(image, 5.0, "coronal")
    fit = {"coronal": {"thicknesses_mm": [3.0, 5.0], "slopes_volumes": [1.0, 1.1], "intercepts_volumes": [-1.0, -8.0],
                       "slopes_cnn": [1.0, 1.0], "intercepts_cnn": [2.0, 9.0], "residual_sd_out_of_fold": 4.0}}
    monkeypatch.setenv("BRAINAGE_MODELS_DIR", str(_models_with_weights(
        tmp_path / "m1", {"coronal": 1.0, "axial": 0.0}, fit=fit)))
    r = predict(thick, device="cpu")
    details = r.age_details["thick_slices"]
    assert details["orientation"] == "coronal" and details["weight_volumes"] == 1.0
    assert r.predicted_age == pytest.approx(r.predicted_age_volumes)              # A's weight 1
    assert r.predicted_age_volumes == pytest.approx(1.1 * details["volumes_uncorrected"] - 8.0)
    assert r.predicted_age_cnn == pytest.approx(details["cnn_uncorrected"] + 9.0)
    usual_half = models.load_json("age_model.json")["ensemble"]["interval_halfwidth"]
    assert details["interval_halfwidth"] == pytest.approx(np.hypot(usual_half, 1.645 * 4.0))
    assert r.interval[1] - r.interval[0] == pytest.approx(2 * details["interval_halfwidth"])
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
        n = len(fit["thicknesses_mm"])
        assert len(fit["slopes_volumes"]) == len(fit["intercepts_cnn"]) == n
        assert all(0.8 < v < 1.3 for v in fit["slopes_volumes"] + fit["slopes_cnn"])   # no wild lines


def test_a_measurement_records_the_uncorrected_ages(image, tmp_path):
    """Refitting reads what the shipped correction changed: a measured thick-slice copy holds A's
    and B's uncorrected ages and the usual ensemble, which the shipped lines map onto the age
    that predict gives the same copy."""
    from BrainAgeLib.regression import thick_slice_age
    from BrainAgeLib.training.thick_slices import measure_thick_slices, read_thick_slices
    subject = {"set": "ixi", "subject_id": "IXI013", "age": 0.0, "image": T1}
    rows = measure_thick_slices([subject], tmp_path / "m.csv", log=lambda m: None, acquisitions=[("coronal", 5.0)],
                                arrays_dir=tmp_path / "arrays")
    doc = models.load_thick_slice_weights()
    r = predict(degrade.thick_slices(image, 5.0, "coronal"), device="cpu")
    details = r.age_details["thick_slices"]
    assert rows[0]["volumes"] == pytest.approx(details["volumes_uncorrected"], abs=1e-3)
    assert rows[0]["cnn"] == pytest.approx(details["cnn_uncorrected"], abs=1e-3)
    assert rows[0]["ensemble"] == pytest.approx(details["usual_ensemble"], abs=1e-3)
    fit = {**doc["fit"]["coronal"], "weight_volumes": doc["weight_volumes"]["coronal"]}
    assert thick_slice_age(rows[0]["volumes"], rows[0]["cnn"], 5.0, fit, doc["applies_above_mm"]) == \
        pytest.approx(r.predicted_age, abs=0.01)
    assert abs(r.predicted_age - details["usual_ensemble"]) > 0.5        # the correction is not a no-op
    # the kept model-space arrays give the same ages without running the scan again (float16 maps)
    again = read_thick_slices([subject], tmp_path / "arrays", acquisitions=[("coronal", 5.0)], log=lambda m: None)
    for column in ("volumes", "cnn", "ensemble"):
        assert again[0][column] == pytest.approx(rows[0][column], abs=0.05)
    # segmented again from the kept T1s (a new ResUNet's route; here the same one): the same ages
    from BrainAgeLib.training.thick_slices import resegment_arrays
    assert resegment_arrays(tmp_path / "arrays", tmp_path / "again", log=lambda m: None) == 1
    with np.load(next((tmp_path / "arrays").glob("*.npz"))) as a, np.load(next((tmp_path / "again").glob("*.npz"))) as b:
        assert np.array_equal(a["image"], b["image"])
        assert np.abs(a["prob"].astype(np.float32) - b["prob"].astype(np.float32)).max() < 0.02
    third = read_thick_slices([subject], tmp_path / "again", acquisitions=[("coronal", 5.0)], log=lambda m: None)
    for column in ("volumes", "cnn", "ensemble"):
        assert third[0][column] == pytest.approx(rows[0][column], abs=0.1)
    with pytest.raises(ValueError, match="another folder"):
        resegment_arrays(tmp_path / "again", tmp_path / "again", log=lambda m: None)
    stamp = tmp_path / "arrays" / "arrays_models.json"
    stamp.write_text(json.dumps({**json.loads(stamp.read_text()), "resunet.safetensors": "0" * 64}))
    with pytest.raises(ValueError, match="another ResUNet"):      # maps of another network are not read
        read_thick_slices([subject], tmp_path / "arrays", acquisitions=[("coronal", 5.0)], log=lambda m: None)


def test_ixi_heads_for_the_fit_are_the_age_models_validation_draw(tmp_path):
    """The IXI heads measured for the thick-slice fit are those the shipped age models kept for
    validation (the seed and size in the manifest), youngest first, never their training heads."""
    import csv
    from BrainAgeLib.training.cnn import training_partition
    from BrainAgeLib.training.thick_slices import held_out_ixi_subjects
    (tmp_path / "ixi120").mkdir()
    ids = [f"IXI{i:03d}-HH-{1000 + i}" for i in range(120)]
    ages = {s: 20.0 + (i * 37) % 62 for i, s in enumerate(ids)}
    with open(tmp_path / "ixi120" / "subjects.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "age", "sex"])
        w.writerows([s, ages[s], "F"] for s in ids)
    picks = held_out_ixi_subjects(tmp_path)
    config = models.read_manifest()["files"]["age_cnn.safetensors"]["config"]
    feats = {"subject_id": np.array(ids), "split": np.array(["ixi120"] * 120)}
    train, val = training_partition(feats, ("ixi",), 0, config["n_val_ixi"], config["seed"])
    assert sorted(p["subject_id"] for p in picks) == sorted(ids[i] for i in val)
    assert not {p["subject_id"] for p in picks} & {ids[i] for i in train}
    assert [p["age"] for p in picks] == sorted(p["age"] for p in picks) and len(picks) == 20
    assert str(picks[0]["image"]).endswith(f"ixi120/t1/{picks[0]['subject_id']}_T1.nii.gz")
    assert len(held_out_ixi_subjects(tmp_path, 5)) == 5


def test_a_resumed_measurement_keeps_finished_subjects_and_redoes_a_cut_off_one(tmp_path, monkeypatch):
    """A measurement of hours goes on where it stopped: a subject whose every acquisition is in
    the CSV is kept as written and not read again; one cut off half-way is measured anew (both
    of its acquisitions), its stale row dropped."""
    import csv
    from BrainAgeLib import pipeline
    from BrainAgeLib.training import thick_slices
    calls = []
    real_predict = pipeline.predict
    monkeypatch.setattr(pipeline, "predict", lambda scan, **kw: calls.append(1) or real_predict(scan, **kw))
    acquisitions = [("clean", 0.0), ("coronal", 5.0)]
    out = tmp_path / "thick_slices.csv"
    old = [{"set": "ixi", "subject_id": "done", "age": 30.0, "orientation": "clean", "thickness_mm": 0.0,
            "ensemble": 11.0, "volumes": 12.0, "cnn": 13.0, "qc": "ok"},
           {"set": "ixi", "subject_id": "done", "age": 30.0, "orientation": "coronal", "thickness_mm": 5.0,
            "ensemble": 21.0, "volumes": 22.0, "cnn": 23.0, "qc": "ok"},
           {"set": "ixi", "subject_id": "cut", "age": 40.0, "orientation": "clean", "thickness_mm": 0.0,
            "ensemble": 99.0, "volumes": 99.0, "cnn": 99.0, "qc": "ok"}]
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=thick_slices.COLUMNS)
        w.writeheader()
        w.writerows(old)
    subjects = [{"set": "ixi", "subject_id": s, "age": a, "image": T1} for s, a in (("done", 30.0), ("cut", 40.0))]
    rows = thick_slices.measure_thick_slices(subjects, out, log=lambda m: None, acquisitions=acquisitions,
                                             resume=True)
    assert len(calls) == 2                                   # only the cut-off subject, both acquisitions
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert [(r["subject_id"], r["orientation"]) for r in written] == \
        [("done", "clean"), ("done", "coronal"), ("cut", "clean"), ("cut", "coronal")]
    assert [float(r["ensemble"]) for r in written[:2]] == [11.0, 21.0]
    assert 99.0 not in {float(r["ensemble"]) for r in written}
    assert len(rows) == 4 and float(rows[3]["cnn"]) == pytest.approx(float(written[3]["cnn"]))
    assert float(written[3]["cnn"]) != float(written[2]["cnn"])       # the thick copy was really read


def test_a_measurement_of_other_models_is_not_resumed(tmp_path):
    """Rows measured with other age models or another ResUNet would bend the lines: resuming
    over them is refused, and the measurement is left as it was."""
    from BrainAgeLib.training.thick_slices import models_fingerprint, train_thick_slice_weights
    (tmp_path / "thick_slices.csv").write_text("set,subject_id\n")
    stamp = tmp_path / "thick_slices_models.json"
    stamp.write_text(json.dumps({**models_fingerprint(), "age_cnn.safetensors": "0" * 64}))
    with pytest.raises(ValueError, match="measured with other models"):
        train_thick_slice_weights(tmp_path / "no-data", tmp_path, resume=True, log=lambda m: None)
    assert (tmp_path / "thick_slices.csv").read_text() == "set,subject_id\n"
    assert json.loads(stamp.read_text())["age_cnn.safetensors"] == "0" * 64
