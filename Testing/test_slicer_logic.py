"""BrainAge.py's module, logic and dependency installer, run without the Slicer application.

The Qt-only parts of Slicer (ScriptedLoadableModule, parameterNodeWrapper, i18n, dialogs,
PyTorchUtils, slicer.packaging) are replaced by small stand-ins; the MRML scene is the real
one from slicer-core and ``predict`` is replaced by a hand-made result on a real label map, so
that these tests need neither Qt nor the trained models. The full logic on the bundled sample
is BrainAgeTest inside Slicer, and ``mrml.process`` with the real predict is Testing/test_mrml.py.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import pytest
import SimpleITK as sitk

import slicer

from BrainAgeLib import mrml, pipeline
from BrainAgeLib.volumes import tissue_volumes_ml

ROOT = Path(__file__).resolve().parent.parent
MODULE_PY = ROOT / "BrainAge" / "BrainAge.py"
DATA = Path(__file__).resolve().parent / "data"


def _stub_modules() -> dict[str, types.ModuleType]:
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text

    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    slm.ScriptedLoadableModule = ScriptedLoadableModule
    slm.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    slm.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleTest = unittest.TestCase

    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls

    class WithinRange:
        def __init__(self, lo, hi):
            self.lo, self.hi = lo, hi

    pnw.WithinRange = WithinRange
    return {"slicer.i18n": i18n, "slicer.ScriptedLoadableModule": slm, "slicer.parameterNodeWrapper": pnw}


@pytest.fixture()
def app(monkeypatch):
    """BrainAge.py loaded against a headless scene standing in for slicer.mrmlScene."""
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    scene, app_logic = mrml.setup_headless_scene()
    connected = []
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(connect=lambda *a: connected.append(a)),
                        raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    dialogs = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: dialogs.append(("error", text)))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, **kw: dialogs.append(("confirm", text)) or False)
    spec = importlib.util.spec_from_file_location("BrainAge", MODULE_PY)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "BrainAge", module)
    spec.loader.exec_module(module)
    return types.SimpleNamespace(module=module, scene=scene, app_logic=app_logic, connected=connected,
                                 dialogs=dialogs)


def _fake_predict(calls):
    labels = sitk.ReadImage(str(DATA / "IXI013-HH-1212_DLMUSE_tissues.nii.gz"), sitk.sitkUInt8)

    def predict(image, *, skull_stripped=None, chronological_age=None, approach="ensemble",
                tissues="camcan", device="auto", progress=None):
        calls.append(dict(skull_stripped=skull_stripped, chronological_age=chronological_age,
                          approach=approach, tissues=tissues, device=device, size=image.GetSize()))
        if progress:
            progress(1.0, "done")
        return pipeline.BrainAgeResult(
            predicted_age=47.0, predicted_age_volumes=48.0, predicted_age_cnn=46.0, interval=(38.0, 56.0),
            volumes_ml=tissue_volumes_ml(labels), labels=labels, qc=["implausible CSF fraction 0.60 of TIV"],
            seconds=0.1, chronological_age=chronological_age, approach=approach, tissues=tissues)
    return predict


def test_module_metadata_and_sample_registration_hook(app):
    parent = types.SimpleNamespace()
    app.module.BrainAge(parent)
    assert parent.title == "Brain Age" and parent.categories == ["Quantification"]
    assert app.module.README_URL in parent.helpText and "{url}" not in parent.helpText
    assert app.connected == [("startupCompleted()", app.module.registerSampleData)]


def test_parameter_choices_have_labels(app):
    m = app.module
    assert [e.value for e in m.Approach] == list(pipeline.APPROACHES)
    assert all(isinstance(e.label(), str) and e.label() for e in (*m.Approach, *m.Device, *m.Tissues))
    assert m.Device.CUDA.label() == "GPU (CUDA)"


def test_logic_process_from_the_console(app, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "predict", _fake_predict(calls))
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "missingDependencies", lambda: [])
    volume = mrml.add_volume_node(app.scene, sitk.ReadImage(str(DATA / "IXI013-HH-1212_T1.nii.gz")), "T1")
    out = logic.process(volume, chronologicalAge=40.0, approach="volumes", device="cpu", skullStripped=True,
                        tissues="dlmuse")
    assert calls == [dict(skull_stripped=True, chronological_age=40.0, approach="volumes", tissues="dlmuse",
                          device="cpu", size=(120, 120, 90))]
    assert out.predicted_age == 47.0
    assert out.segmentationNode.GetScene() is app.scene and out.tableNode.GetScene() is app.scene
    assert out.segmentationNode.GetSegmentation().GetNumberOfSegments() == 3
    again = logic.process(volume, out.segmentationNode, out.tableNode)
    assert again.segmentationNode is out.segmentationNode and again.tableNode is out.tableNode
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    text = logic.resultText(out.result)
    assert "47.0" in text and "38.0" in text and "56.0" in text and "+7.0" in text
    assert "implausible CSF" in text
    assert "gap" not in logic.resultText(again.result).lower()


def test_logic_refuses_to_run_without_dependencies(app, monkeypatch):
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "missingDependencies", lambda: ["torch"])
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)      # no PyTorch extension
    volume = mrml.add_volume_node(app.scene, sitk.Image(8, 8, 8, sitk.sitkFloat32), "T1")
    with pytest.raises(RuntimeError, match="dependencies"):
        logic.process(volume)
    assert app.dialogs and app.dialogs[0][0] == "error" and "PyTorch extension" in app.dialogs[0][1]


class _Installer:
    """Stand-ins for PyTorchUtils and slicer.packaging that record what they are asked."""

    def __init__(self, torch_ok=True, pip_ok=True):
        self.calls, self.torch_ok, self.pip_ok = [], torch_ok, pip_ok
        self.installed = False
        installer = self

        class PyTorchUtilsLogic:
            @staticmethod
            def torchInstalled():
                return False

            def installTorch(self, askConfirmation=False, torchVersionRequirement=None, **kw):
                installer.calls.append(("torch", askConfirmation, torchVersionRequirement))
                return object() if installer.torch_ok else None

        self.pytorchutils = types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic)

        def pip_ensure(requirements, prompt_install=True, requester=None, **kw):
            installer.calls.append(("pip", list(requirements), prompt_install, requester))
            if not installer.pip_ok:
                raise RuntimeError("declined")
            installer.installed = True

        self.packaging = types.ModuleType("slicer.packaging")
        self.packaging.pip_ensure = pip_ensure


def _with_installer(monkeypatch, logic, installer, missing=("torch", "deepbet")):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", installer.pytorchutils)
    monkeypatch.setitem(sys.modules, "slicer.packaging", installer.packaging)
    monkeypatch.setattr(slicer, "packaging", installer.packaging, raising=False)
    monkeypatch.setattr(logic, "missingDependencies", lambda: [] if installer.installed else list(missing))


def test_dependencies_install_after_confirmation(app, monkeypatch):
    m = app.module
    logic = m.BrainAgeLogic()
    installer = _Installer()
    _with_installer(monkeypatch, logic, installer)
    assert logic.ensureDependencies() is True
    assert installer.calls == [("torch", True, m.TORCH_REQUIREMENT),
                               ("pip", m.REQUIREMENTS, True, "BrainAge")]


def test_declined_installs_return_false(app, monkeypatch):
    logic = app.module.BrainAgeLogic()
    installer = _Installer(torch_ok=False)
    _with_installer(monkeypatch, logic, installer)
    assert logic.ensureDependencies() is False
    assert [c[0] for c in installer.calls] == ["torch"]          # no pip after a declined torch
    installer = _Installer(pip_ok=False)
    _with_installer(monkeypatch, logic, installer, missing=("deepbet",))
    assert logic.ensureDependencies() is False
    assert [c[0] for c in installer.calls] == ["pip"]


def test_old_slicer_falls_back_to_pip_install_after_asking(app, monkeypatch):
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "missingDependencies", lambda: ["safetensors"])
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)     # Slicer without slicer.packaging
    monkeypatch.delattr(slicer, "packaging", raising=False)
    installs = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda req, **kw: installs.append(req), raising=False)
    assert logic.ensureDependencies() is False                    # the stand-in dialog says Cancel
    assert installs == [] and app.dialogs[-1][0] == "confirm"
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: True)
    logic.ensureDependencies()
    assert installs == [" ".join(app.module.REQUIREMENTS)]


def test_nothing_is_installed_at_import(app):
    """Loading the module (the fixture did) asked nothing and installed nothing."""
    assert app.dialogs == []


def test_sample_data_source_is_the_bundled_file(app, monkeypatch):
    import hashlib
    import urllib.parse
    import urllib.request
    registered = []

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(**kw):
            registered.append(kw)

    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=SampleDataLogic))
    app.module.registerSampleData()
    assert len(registered) == 1
    kw = registered[0]
    assert kw["sampleName"] == app.module.SAMPLE_NAME and kw["nodeNames"] == app.module.SAMPLE_NAME
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(kw["uris"]).path))
    assert kw["uris"].startswith("file:") and path.is_file() and path.name == kw["fileNames"]
    assert kw["checksums"] == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(kw["thumbnailFileName"]).is_file()
