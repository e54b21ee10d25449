"""Packaging of the Slicer module, checked without the Slicer application: the .ui file,
BrainAge.py (compiles, lazy core import, parameters bound to widgets), the CMakeLists files,
the ExtensionsIndex catalog entry and the icon."""
from __future__ import annotations

import ast
import inspect
import json
import py_compile
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "BrainAge"
MODULE_PY = MODULE / "BrainAge.py"
UI = MODULE / "Resources" / "UI" / "BrainAge.ui"

# Slicer's ExtensionsIndex catalog-entry schema v1.0.2 (Slicer/Slicer, Schemas/
# slicer-extension-catalog-entry-schema-v1.0.2.json), restated: its required keys, and for every
# allowed key the JSON type and constraints; no other key is allowed (additionalProperties false).
CATALOG_SCHEMA_ID = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                     "slicer-extension-catalog-entry-schema-v1.0.2.json#")
CATALOG_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
_JSON_TYPES = {"string": str, "array": list, "boolean": bool, "integer": int, "object": dict}


def _module_ast() -> ast.Module:
    return ast.parse(MODULE_PY.read_text())


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


# --------------------------------------------------------------------------- BrainAge.py and the .ui

def test_module_compiles(tmp_path):
    py_compile.compile(str(MODULE_PY), cfile=str(tmp_path / "BrainAge.pyc"), doraise=True)


def test_ui_parses_and_holds_every_widget_the_code_uses():
    tree = ET.parse(UI)
    assert tree.getroot().tag == "ui"
    names = {w.get("name") for w in tree.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text()))
    assert {"applyButton", "progressBar", "resultLabel"} <= used
    assert used <= names, f"missing in BrainAge.ui: {sorted(used - names)}"


def test_every_parameter_is_bound_to_one_widget():
    tree = ET.parse(UI)
    bound = {}
    for w in tree.iter("widget"):
        prop = w.find("property[@name='SlicerParameterName']")
        if prop is not None:
            bound.setdefault(prop.find("string").text, []).append((w.get("class"), w.get("name")))
    params = {n.target.id for n in _class(_module_ast(), "BrainAgeParameterNode").body
              if isinstance(n, ast.AnnAssign)}
    assert params == {"inputVolume", "outputSegmentation", "outputTable", "chronologicalAge",
                      "approach", "device", "tissues", "skullStripped", "siteCalibration"}
    assert set(bound) == params
    assert all(len(v) == 1 for v in bound.values()), bound
    classes = {k: v[0][0] for k, v in bound.items()}
    assert classes["inputVolume"] == classes["outputSegmentation"] == classes["outputTable"] == "qMRMLNodeComboBox"
    assert classes["approach"] == classes["device"] == classes["tissues"] == "QComboBox"
    assert classes["skullStripped"] == "QCheckBox" and classes["chronologicalAge"] == "QDoubleSpinBox"
    assert classes["siteCalibration"] == "ctkPathLineEdit"


def test_node_selectors_take_the_right_node_types():
    tree = ET.parse(UI)
    types = {w.get("name"): [s.text for s in w.find("property[@name='nodeTypes']").iter("string")]
             for w in tree.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    assert types == {"inputVolumeSelector": ["vtkMRMLScalarVolumeNode"],
                     "outputSegmentationSelector": ["vtkMRMLSegmentationNode"],
                     "outputTableSelector": ["vtkMRMLTableNode"]}
    # outputs are new by default: "None" means "create"
    for name in ("outputSegmentationSelector", "outputTableSelector"):
        w = next(w for w in tree.iter("widget") if w.get("name") == name)
        assert w.find("property[@name='noneEnabled']/bool").text == "true"
    # every qMRMLNodeComboBox gets the scene
    receivers = {c.find("receiver").text for c in tree.iter("connection")
                 if c.find("slot").text.startswith("setMRMLScene")}
    assert receivers == set(types)


def test_enum_choices_match_the_core():
    """The approach and device choices of the parameter node are those predict() accepts."""
    from BrainAgeLib.pipeline import APPROACHES
    tree = _module_ast()

    def values(cls):
        return {n.value.value for n in _class(tree, cls).body
                if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)}
    assert values("Approach") == set(APPROACHES)
    assert values("Device") == {"auto", "cpu", "cuda"}
    from BrainAgeLib.segmentation import TISSUE_DEFINITIONS
    assert values("Tissues") == set(TISSUE_DEFINITIONS)


def test_module_imports_core_lazily_and_has_the_template_classes():
    tree = _module_ast()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for mod in mods:
                assert not mod.startswith(("BrainAgeLib", "torch", "sklearn", "safetensors", "deepbet",
                                           "PyTorchUtils", "SampleData")), mod
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"BrainAge", "BrainAgeWidget", "BrainAgeLogic", "BrainAgeTest", "BrainAgeParameterNode"} <= classes
    # no pip install or PyTorch install at import time: only inside BrainAgeLogic methods
    src = MODULE_PY.read_text()
    for call in ("pip_install", "pip_ensure", "installTorch"):
        for m in re.finditer(call, src):
            line = src[:m.start()].count("\n") + 1
            owner = [n.name for n in tree.body if isinstance(n, ast.ClassDef)
                     and n.lineno <= line <= n.end_lineno]
            assert owner == ["BrainAgeLogic"], (call, line)


def test_logic_process_has_the_console_signature():
    """logic.process(volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None, ...)
    and BrainAgeLib.mrml.process takes the same parameters after the scene."""
    from BrainAgeLib import mrml
    fn = next(n for n in _class(_module_ast(), "BrainAgeLogic").body
              if isinstance(n, ast.FunctionDef) and n.name == "process")
    logic_params = [a.arg for a in fn.args.args][1:]
    assert logic_params[:4] == ["volumeNode", "segmentationNode", "tableNode", "chronologicalAge"]
    mrml_params = list(inspect.signature(mrml.process).parameters)
    assert mrml_params[0] == "scene" and mrml_params[1:] == logic_params


def test_sample_data_is_bundled_and_registered_locally():
    src = MODULE_PY.read_text()
    m = re.search(r'SAMPLE_FILE = "([^"]+)"', src)
    assert m and (MODULE / "Resources" / "SampleData" / m.group(1)).is_file()
    assert "registerCustomSampleDataSource" in src and "pathname2url" in src
    assert "http" not in src[src.index("def registerSampleData"):src.index("# Parameters")]


# --------------------------------------------------------------------------- CMake

def _cmake_list(text: str, var: str) -> list[str]:
    m = re.search(rf"set\({var}\s+(.*?)\)", text, re.S)
    assert m, var
    return [t.replace("${MODULE_NAME}", "BrainAge") for t in m.group(1).split()]


def test_cmakelists_lists_every_file_and_only_existing_ones():
    text = (MODULE / "CMakeLists.txt").read_text()
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert all(s.endswith(".py") for s in scripts) and not any(r.endswith(".py") for r in resources)
    assert len(set(scripts + resources)) == len(scripts + resources), "listed twice"
    listed = set(scripts) | set(resources)
    for f in listed:
        assert (MODULE / f).is_file(), f"listed but missing: {f}"
    present = {p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*") if p.is_file()
               and "__pycache__" not in p.parts and not any(x.endswith(".egg-info") for x in p.parts)
               and p.name != "CMakeLists.txt"}
    assert present <= listed, f"not listed in BrainAge/CMakeLists.txt: {sorted(present - listed)}"
    assert "slicerMacroBuildScriptedModule" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_cmakelists():
    text = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf"set\({key} \".+\"\)", text), key
    assert re.search(r'set\(EXTENSION_CATEGORY "Quantification"\)', text)
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    assert re.search(r'set\(EXTENSION_HOMEPAGE "https://github.com/brainage/SlicerBrainAge', text)
    order = ["project(BrainAge)", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
             "add_subdirectory(BrainAge)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
             "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)


# --------------------------------------------------------------------------- catalog entry

def _validate(instance, schema) -> list[str]:
    """The subset of JSON-schema draft 7 that the catalog schema uses."""
    errors = []
    if not isinstance(instance, _JSON_TYPES[schema["type"]]) or (
            schema["type"] == "integer" and isinstance(instance, bool)):
        return [f"{instance!r} is not of type {schema['type']}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{instance!r} not in {schema['enum']}")
    if "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{instance} < {schema['minimum']}")
    if "maximum" in schema and instance > schema["maximum"]:
        errors.append(f"{instance} > {schema['maximum']}")
    if schema["type"] == "array":
        for item in instance:
            errors += _validate(item, schema["items"])
    if schema["type"] == "object":
        errors += [f"missing {k}" for k in schema["required"] if k not in instance]
        if schema.get("additionalProperties") is False:
            errors += [f"unknown key {k}" for k in instance if k not in schema["properties"]]
        for k, v in instance.items():
            if k in schema["properties"]:
                errors += [f"{k}: {e}" for e in _validate(v, schema["properties"][k])]
    return errors


def _catalog_entry() -> dict:
    return json.loads((ROOT / "BrainAge.json").read_text())


def test_catalog_entry_validates_against_schema():
    entry = _catalog_entry()
    assert _validate(entry, CATALOG_SCHEMA) == []
    assert entry["$schema"] == CATALOG_SCHEMA_ID
    assert entry["category"] == "Quantification"
    assert entry["scm_url"] == "https://github.com/brainage/SlicerBrainAge"
    assert "PyTorch" in entry["build_dependencies"]


def test_catalog_validator_rejects_bad_entries():
    good = _catalog_entry()
    for bad in ({k: v for k, v in good.items() if k != "scm_url"}, {**good, "homepage": "x"},
                {**good, "tier": 7}, {**good, "tier": "1"}, {**good, "scm_type": "svn"},
                {**good, "build_dependencies": "PyTorch"}):
        assert _validate(bad, CATALOG_SCHEMA)


def test_catalog_entry_validates_with_jsonschema():
    import jsonschema
    jsonschema.Draft7Validator.check_schema(CATALOG_SCHEMA)
    jsonschema.validate(_catalog_entry(), CATALOG_SCHEMA, cls=jsonschema.Draft7Validator)


# --------------------------------------------------------------------------- icon

def test_icon_is_128_png():
    data = (MODULE / "Resources" / "Icons" / "BrainAge.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (128, 128)


# --------------------------------------------------------------------------- ExtensionsIndex checker

# The offline rules of Slicer/ExtensionsIndex scripts/check_description_files.py, restated (the
# online ones, schema download, GitHub topics and image URLs, need the network): the catalog
# entry's file name is the extension name, has LF line endings, does not start with "Slicer";
# the category is one of ACCEPTED_EXTENSION_CATEGORIES (these two are in it); scm_url is
# https/git and its repository name starts with "Slicer"; the top-level CMakeLists.txt's
# project() is the extension name and sets EXTENSION_ICONURL and EXTENSION_SCREENSHOTURLS (the
# checker's regular expressions); a LICENSE file in the root; the repository under 100 MB.
ACCEPTED_CATEGORIES_WE_USE = {"Quantification", "Neuroimaging"}


def test_extensions_index_checker_rules():
    from urllib.parse import urlsplit
    extension_name = "BrainAge"
    path = ROOT / f"{extension_name}.json"
    raw = path.read_bytes()
    json.loads(raw)
    assert b"\r" not in raw
    assert not extension_name.lower().startswith("slicer")
    entry = _catalog_entry()
    assert entry["category"] in ACCEPTED_CATEGORIES_WE_USE
    url = urlsplit(entry["scm_url"])
    assert "://" in entry["scm_url"] and url.scheme in ("git", "https")
    repo_name = Path(url.path.strip("/")).stem
    assert repo_name.startswith(("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_"))
    cmake = (ROOT / "CMakeLists.txt").read_text()
    project = re.findall(r'project\s*\(\s*([^\s\)\n\r]+)', cmake, re.IGNORECASE | re.MULTILINE)
    assert project and project[0] == extension_name
    icon = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', cmake, re.IGNORECASE | re.MULTILINE)
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', cmake, re.IGNORECASE | re.MULTILINE)
    assert icon and icon[0].startswith("https://") and icon[0].endswith(".png")
    assert shots and all(u.startswith("https://") and u.endswith(".png") for u in shots[0].split())
    # the pictures the URLs name are in the repository (on main once merged)
    for u in [icon[0], *shots[0].split()]:
        assert (ROOT / u.split("/main/", 1)[1]).is_file(), u
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "IXI" in license_text and "Cam-CAN" in license_text
    import subprocess
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / p for p in files.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):       # not a git checkout
        paths = [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]
    size_mb = sum(p.stat().st_size for p in paths if p.is_file()) / 2 ** 20
    assert size_mb < 100


def test_module_metadata_is_real():
    """Contributors are not a placeholder; the acknowledgement names the data sources; the
    version comments name the Slicer release that brought the API (5.12)."""
    src = MODULE_PY.read_text()
    contributors = re.search(r"self\.parent\.contributors = \[(.+)\]", src).group(1)
    assert "BrainAge developers" not in contributors and "(" in contributors
    ack = src[src.index("acknowledgementText"):src.index("slicer.app.connect")]
    for source in ("Cam-CAN", "IXI", "CC BY-SA 3.0", "deepbet"):
        assert source in ack, source
    assert "5.10" not in src and "Slicer 5.12" in src
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "BrainAge developers" not in cmake


def test_results_layout_has_slice_3d_plot_and_table_views():
    consts = {t.id: n.value.value for n in _module_ast().body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    layout = ET.fromstring(consts["RESULTS_LAYOUT"].strip())
    assert layout.tag == "layout"
    views = {v.get("class"): v.get("singletontag") for v in layout.iter("view")}
    assert views == {"vtkMRMLSliceNode": "Red", "vtkMRMLViewNode": "1", "vtkMRMLPlotViewNode": "PlotView1",
                     "vtkMRMLTableViewNode": "TableView1"}
    assert isinstance(consts["RESULTS_LAYOUT_ID"], int) and consts["RESULTS_LAYOUT_ID"] > 1000
    # Apply becomes Cancel while a job runs, and the widget polls nothing itself: the logic's timer does
    src = MODULE_PY.read_text()
    assert '_("Cancel")' in src and "QTimer" in src and "time.sleep" not in src[:src.index("class BrainAgeTest")]
