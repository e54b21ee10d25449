"""The release scripts' check that the shipped model files are the ones measured
(``scripts/shipped_equals_measured.py``), on the real shipped files."""
import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "BrainAge" / "Resources" / "Models"


def _script():
    spec = importlib.util.spec_from_file_location("shipped_equals_measured", ROOT / "scripts" / "shipped_equals_measured.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_files_equal_themselves_and_a_change_is_named(tmp_path):
    check = _script()
    for name in ("age_cnn.safetensors", "age_model.json", "thick_slice_weights.json"):
        shutil.copy(MODELS / name, tmp_path / name)
    docs = ["age_model.json", "thick_slice_weights.json"]
    assert check.differing(tmp_path, ["age_cnn.safetensors"], docs, shipped=MODELS) == []
    model = json.loads((tmp_path / "age_model.json").read_text())
    model["ensemble"]["weight_volumes"] += 0.05                     # what would change an age
    model["ensemble"]["weight_rule"] = "another file"               # provenance text only
    (tmp_path / "age_model.json").write_text(json.dumps(model))
    bad = check.differing(tmp_path, [], docs, shipped=MODELS)
    assert [d.split(": ")[:2] for d in bad] == [["age_model.json", "ensemble.weight_rule"],
                                                 ["age_model.json", "ensemble.weight_volumes"]]
    ignored = check.differing(tmp_path, [], docs, shipped=MODELS, ignore=frozenset({"ensemble.weight_rule"}))
    assert ignored == [bad[1]]
    assert check.differing(tmp_path, [], docs, shipped=MODELS, tolerance=0.06,
                           ignore=frozenset({"ensemble.weight_rule"})) == []
    assert check.main([str(tmp_path), "--json", "age_model.json"]) == 1


def test_json_differences_are_paths_and_respect_the_tolerance():
    check = _script()
    a = {"fit": {"axial": {"slopes": [1.0, 2.0], "sd": 3.828}}, "note": "x"}
    b = {"fit": {"axial": {"slopes": [1.0, 2.5], "sd": 3.827}}, "extra": 1, "note": "x"}
    assert check.json_differences(a, b) == ["extra: only in measured", "fit.axial.sd: 3.828 against 3.827",
                                            "fit.axial.slopes[1]: 2.0 against 2.5"]
    assert check.json_differences(a, b, tolerance=0.001) == ["extra: only in measured",
                                                             "fit.axial.slopes[1]: 2.0 against 2.5"]
    assert check.json_differences({"flag": True}, {"flag": 1}, tolerance=1) == ["flag: True against 1"]
