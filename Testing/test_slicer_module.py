"""Packaging of the Slicer module: the .ui file, CMakeLists, the catalog entry, the icon."""
from __future__ import annotations

import ast
import json
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "BrainAge"

# Slicer's ExtensionsIndex catalog-entry schema v1.0.2 (required keys, allowed keys and types)
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                 "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
                 "enabled": bool, "tier": int}


def test_ui_parses_and_holds_every_widget_the_code_uses():
    tree = ET.parse(MODULE / "Resources" / "UI" / "BrainAge.ui")
    names = {w.get("name") for w in tree.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE / "BrainAge.py").read_text()))
    assert used, "the widget uses no ui element?"
    assert used <= names, f"missing in BrainAge.ui: {sorted(used - names)}"
    # every parameter of the parameter node is bound to a widget
    params = {p.text for w in tree.iter("widget") for p in w.iter("string")
              if w.find("property[@name='SlicerParameterName']") is not None
              and p in list(w.find("property[@name='SlicerParameterName']"))}
    src = (MODULE / "BrainAge.py").read_text()
    block = src[src.index("class BrainAgeParameterNode"):src.index("# Widget")]
    declared = set(re.findall(r"^    (\w+):", block, re.M))
    assert declared == params


def test_module_compiles_and_imports_core_lazily():
    src = (MODULE / "BrainAge.py").read_text()
    tree = ast.parse(src)
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in top_level:
        mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        assert not (mod or "").startswith(("BrainAgeLib", "torch", "sklearn")), mod
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"BrainAge", "BrainAgeWidget", "BrainAgeLogic", "BrainAgeTest", "BrainAgeParameterNode"} <= classes


def _cmake_list(text: str, var: str) -> list[str]:
    m = re.search(rf"set\({var}\s+(.*?)\)", text, re.S)
    return [t.replace("${MODULE_NAME}", "BrainAge") for t in m.group(1).split()]


def test_cmakelists_lists_every_file_and_only_existing_ones():
    text = (MODULE / "CMakeLists.txt").read_text()
    listed = set(_cmake_list(text, "MODULE_PYTHON_SCRIPTS")) | set(_cmake_list(text, "MODULE_PYTHON_RESOURCES"))
    for f in listed:
        assert (MODULE / f).is_file(), f"listed but missing: {f}"
    present = {str(p.relative_to(MODULE)) for p in MODULE.rglob("*") if p.is_file()
               and "__pycache__" not in p.parts and ".egg-info" not in str(p) and p.name != "CMakeLists.txt"}
    assert present <= listed, f"not listed in BrainAge/CMakeLists.txt: {sorted(present - listed)}"


def test_extension_cmakelists():
    text = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf"set\({key} \".+\"\)", text), key
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    assert "add_subdirectory(BrainAge)" in text


def test_catalog_entry_validates_against_schema():
    entry = json.loads((ROOT / "BrainAge.json").read_text())
    assert CATALOG_REQUIRED <= set(entry)
    assert set(entry) <= set(CATALOG_TYPES), set(entry) - set(CATALOG_TYPES)
    for k, v in entry.items():
        assert isinstance(v, CATALOG_TYPES[k]), k
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert 1 <= entry["tier"] <= 5
    assert "PyTorch" in entry["build_dependencies"]


def test_icon_is_128_png():
    data = (MODULE / "Resources" / "Icons" / "BrainAge.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
