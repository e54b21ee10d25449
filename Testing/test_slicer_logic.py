"""BrainAge.py's module, logic and dependency installer, run without the Slicer application.

The Qt-only parts of Slicer (ScriptedLoadableModule, parameterNodeWrapper, i18n, dialogs,
PyTorchUtils, slicer.packaging) are replaced by small stand-ins; the MRML scene is the real
one from slicer-core and ``predict`` is replaced by a hand-made result on a real label map, so
that these tests need neither Qt nor the trained models. The full logic on the bundled sample
is BrainAgeTest inside Slicer, and ``mrml.process`` with the real predict is Testing/test_mrml.py.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
import types
import unittest
from pathlib import Path

import pytest
import SimpleITK as sitk

import slicer

from BrainAgeLib import mrml, pipeline
from BrainAgeLib.volumes import tissue_volumes_ml
from slicer_stubs import QTimer, _stub_modules

ROOT = Path(__file__).resolve().parent.parent
MODULE_PY = ROOT / "BrainAge" / "BrainAge.py"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture()
def app(monkeypatch):
    """BrainAge.py loaded against a headless scene standing in for slicer.mrmlScene."""
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    scene, app_logic = mrml.setup_headless_scene()
    connected = []
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(
        connect=lambda *a: connected.append(a), setOverrideCursor=lambda *a: None,
        restoreOverrideCursor=lambda: None, testingEnabled=lambda: False, layoutManager=lambda: None),
        raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    dialogs = []
    monkeypatch.setattr(slicer.util, "errorDisplay",
                        lambda text, **kw: dialogs.append(("error", text, kw.get("detailedText", ""))))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, *a, **kw: dialogs.append(("confirm", text, kw.get("detailedText", ""))) or False)
    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: dict(os.environ))
    QTimer.created.clear()
    spec = importlib.util.spec_from_file_location("BrainAge", MODULE_PY)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "BrainAge", module)
    spec.loader.exec_module(module)
    return types.SimpleNamespace(module=module, scene=scene, app_logic=app_logic, connected=connected,
                                 dialogs=dialogs)


def _fake_predict(calls):
    labels = sitk.ReadImage(str(DATA / "IXI013-HH-1212_DLMUSE_tissues.nii.gz"), sitk.sitkUInt8)

    def predict(image, *, skull_stripped=None, chronological_age=None, approach="ensemble",
                tissues="camcan", device="auto", site_calibration=None, progress=None):
        calls.append(dict(skull_stripped=skull_stripped, chronological_age=chronological_age,
                          approach=approach, tissues=tissues, device=device, size=image.GetSize(),
                          site_calibration=site_calibration))
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
    monkeypatch.setattr(logic, "unmetRequirements", lambda: [])
    volume = mrml.add_volume_node(app.scene, sitk.ReadImage(str(DATA / "IXI013-HH-1212_T1.nii.gz")), "T1")
    out = logic.process(volume, chronologicalAge=40.0, approach="volumes", device="cpu", skullStripped=True,
                        tissues="dlmuse", siteCalibration="site.json")
    assert calls == [dict(skull_stripped=True, chronological_age=40.0, approach="volumes", tissues="dlmuse",
                          device="cpu", size=(120, 120, 90), site_calibration="site.json")]
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
    status = logic.statusText(out.result)
    assert "Check the segments" in status and "implausible CSF fraction 0.60 of TIV" in status
    out.result.qc = []
    assert "Quality checks passed" in logic.statusText(out.result)
    # outputs follow the input; the chart is one per input volume, reused
    other = mrml.add_volume_node(app.scene, sitk.ReadImage(str(DATA / "IXI014-HH-1236_T1.nii.gz")), "T1 b")
    assert logic.outputsForInput(other, out.segmentationNode, out.tableNode) == (None, None)
    assert logic.outputsForInput(volume, None, None) == (out.segmentationNode, out.tableNode)
    chartNode = logic.updateChart(out)
    assert chartNode.GetAttribute(mrml.INPUT_ATTRIBUTE) == volume.GetID() and chartNode.GetName() == "T1 chart"
    assert logic.updateChart(again) is chartNode
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1


def test_logic_refuses_to_run_without_dependencies(app, monkeypatch):
    from BrainAgeLib.dependencies import Requirement
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "unmetRequirements", lambda: [Requirement("torch>=2.1", "torch", None)])
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)      # no PyTorch extension
    volume = mrml.add_volume_node(app.scene, sitk.Image(8, 8, 8, sitk.sitkFloat32), "T1")
    with pytest.raises(RuntimeError, match="dependencies"):
        logic.process(volume)
    with pytest.raises(RuntimeError, match="dependencies"):
        logic.processInBackground(volume)
    assert app.dialogs and app.dialogs[0][0] == "error" and "PyTorch extension" in app.dialogs[0][1]
    assert logic.missingDependencies() == ["torch"]


class _Installer:
    """Stand-ins for PyTorchUtils and slicer.packaging that record what they are asked."""

    def __init__(self, torch_ok=True, pip_error=None):
        self.calls, self.torch_ok, self.pip_error = [], torch_ok, pip_error
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

        def pip_ensure(requirements, prompt_install=True, requester=None, skip_packages=None, **kw):
            installer.calls.append(("pip", list(requirements), prompt_install, requester, skip_packages))
            if installer.pip_error:
                raise installer.pip_error
            installer.installed = True

        self.packaging = types.ModuleType("slicer.packaging")
        self.packaging.pip_ensure = pip_ensure


def _todo(*names):
    from BrainAgeLib import dependencies as deps
    reqs = {"torch": deps.Requirement(deps.TORCH_REQUIREMENT, "torch", None),
            "deepbet": deps.Requirement("deepbet>=1.0.2,<2", "deepbet", None),
            "scikit-learn": deps.Requirement("scikit-learn>=1.3", "scikit-learn", "1.2.0")}
    return [reqs[n] for n in names]


def _with_installer(monkeypatch, logic, installer, missing=("torch", "deepbet", "scikit-learn")):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", installer.pytorchutils)
    monkeypatch.setitem(sys.modules, "slicer.packaging", installer.packaging)
    monkeypatch.setattr(slicer, "packaging", installer.packaging, raising=False)
    monkeypatch.setattr(logic, "unmetRequirements", lambda: [] if installer.installed else _todo(*missing))


def _say_ok(app, monkeypatch):
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, *a, **kw: app.dialogs.append(("confirm", text, kw.get("detailedText"))) or True)


def test_one_confirmation_lists_everything_then_installs(app, monkeypatch):
    from BrainAgeLib import dependencies as deps
    logic = app.module.BrainAgeLogic()
    installer = _Installer()
    _with_installer(monkeypatch, logic, installer)
    _say_ok(app, monkeypatch)
    assert logic.ensureDependencies() is True
    confirms = [d for d in app.dialogs if d[0] == "confirm"]
    assert len(confirms) == 1                        # one dialog, not one per installer
    details = confirms[0][2]
    assert "torch>=2.1 (not installed)" in details and "PyTorch extension" in details
    assert "deepbet>=1.0.2,<2 (not installed)" in details and "customtkinter" in details
    assert "scikit-learn>=1.3 (installed 1.2.0: will be updated)" in details
    # the installers themselves do not ask again; deepbet comes without its GUI dependencies
    assert installer.calls == [("torch", False, ">=2.1"),
                               ("pip", ["deepbet>=1.0.2,<2", "scikit-learn>=1.3"], False, "BrainAge",
                                deps.SKIP_PACKAGES)]
    assert not [d for d in app.dialogs if d[0] == "error"]


def test_declined_confirmation_installs_nothing(app, monkeypatch):
    logic = app.module.BrainAgeLogic()
    installer = _Installer()
    _with_installer(monkeypatch, logic, installer)
    assert logic.ensureDependencies() is False       # the stand-in dialog says Cancel
    assert installer.calls == [] and [d[0] for d in app.dialogs] == ["confirm"]


def test_install_errors_are_shown_with_the_log(app, monkeypatch):
    from subprocess import CalledProcessError
    logic = app.module.BrainAgeLogic()
    _say_ok(app, monkeypatch)
    installer = _Installer(torch_ok=False)
    _with_installer(monkeypatch, logic, installer)
    assert logic.ensureDependencies() is False
    assert [c[0] for c in installer.calls] == ["torch"]          # no pip after a failed torch
    error = app.dialogs[-1]
    assert error[0] == "error" and "PyTorch was not installed" in error[1] and "Traceback" in error[2]
    log = "Collecting deepbet\nERROR: No matching distribution found for deepbet"
    installer = _Installer(pip_error=CalledProcessError(1, ["pip"], output=log))
    _with_installer(monkeypatch, logic, installer, missing=("deepbet",))
    assert logic.ensureDependencies() is False
    assert app.dialogs[-1][0] == "error" and app.dialogs[-1][2] == log


def test_too_old_torch_is_not_replaced(app, monkeypatch):
    from BrainAgeLib.dependencies import Requirement
    logic = app.module.BrainAgeLogic()
    installer = _Installer()
    _with_installer(monkeypatch, logic, installer)
    monkeypatch.setattr(logic, "unmetRequirements", lambda: [Requirement("torch>=2.1", "torch", "1.13.1")])
    assert logic.ensureDependencies() is False
    assert installer.calls == [] and "PyTorch 1.13.1" in app.dialogs[-1][1] and "PyTorch Util" in app.dialogs[-1][1]


def test_old_slicer_installs_deepbet_without_its_gui(app, monkeypatch):
    from BrainAgeLib import dependencies as deps
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "unmetRequirements", lambda: _todo("deepbet", "scikit-learn"))
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)     # Slicer without slicer.packaging
    monkeypatch.delattr(slicer, "packaging", raising=False)
    installs = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda req, **kw: installs.append(req), raising=False)
    assert logic.ensureDependencies() is False and installs == []  # declined
    _say_ok(app, monkeypatch)
    logic.ensureDependencies()
    assert installs == [" ".join(f'"{r}"' for r in ["scikit-learn>=1.3", *deps.DEEPBET_DEPENDENCIES]),
                        '"deepbet>=1.0.2,<2" --no-deps']


def test_requirement_checks_of_installed_packages(monkeypatch):
    from BrainAgeLib import dependencies as deps
    assert deps.unmet() == []                     # this environment has everything, in versions that fit
    torch = deps.check(deps.TORCH_REQUIREMENT)
    assert torch.ok and torch.installed.startswith("2.13")
    assert deps.check("no-such-package-brainage>=1").installed is None
    for version, req, ok in (("1.2.0", "scikit-learn>=1.3", False), ("2.13.0+cpu", "torch>=2.1", True),
                             ("1.0.2", "deepbet>=1.0.2,<2", True), ("2.0", "deepbet>=1.0.2,<2", False),
                             ("0.8.0", "safetensors", True)):
        assert deps.satisfies(version, req) is ok, (version, req)
        monkeypatch.setitem(sys.modules, "packaging.specifiers", None)   # no 'packaging' either
        assert deps.satisfies(version, req) is ok, (version, req)
        monkeypatch.delitem(sys.modules, "packaging.specifiers")
    # what deepbet needs at run time, without its GUI, is what the fallback installs
    import importlib.metadata
    required = {r.split(";")[0].split()[0].split("=")[0].split(">")[0].lower()
                for r in importlib.metadata.requires("deepbet")}
    assert required - {"torch", "tqdm", "nibabel"} - set(deps.SKIP_PACKAGES) == \
        {d.lower() for d in deps.DEEPBET_DEPENDENCIES}
    import deepbet  # noqa: F401  imports without customtkinter
    assert "customtkinter" not in sys.modules


def _job_dir_gone(job):
    inner = getattr(job, "job", job)
    return not inner.job_dir.exists()


def test_background_run_reports_progress_and_failure(app, monkeypatch):
    """processInBackground with the real worker, polled by the logic's timer: an input the core
    refuses ends in onFinished with a readable error, the scene untouched."""
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "unmetRequirements", lambda: [])
    volume = mrml.add_volume_node(app.scene, sitk.Image(6, 6, 6, sitk.sitkFloat32), "tiny")
    n_nodes = app.scene.GetNumberOfNodes()
    progress, finished = [], []
    job = logic.processInBackground(volume, chronologicalAge=30.0, onProgress=lambda f, m: progress.append((f, m)),
                                    onFinished=finished.append)
    timer = QTimer.created[-1]
    assert timer.active and timer.interval == app.module.POLL_MS
    timer.fire_until_stopped()
    assert finished == [job] and job.state == "failed"
    assert job.error and "Traceback" not in job.error
    assert progress and progress[0][1] == "starting"
    assert app.scene.GetNumberOfNodes() == n_nodes and _job_dir_gone(job)


def test_background_run_cancel(app, monkeypatch):
    logic = app.module.BrainAgeLogic()
    monkeypatch.setattr(logic, "unmetRequirements", lambda: [])
    volume = mrml.add_volume_node(app.scene, sitk.ReadImage(str(DATA / "IXI013-HH-1212_T1.nii.gz")), "T1")
    n_nodes = app.scene.GetNumberOfNodes()
    progress, finished = [], []
    job = logic.processInBackground(volume, onProgress=lambda f, m: progress.append(m), onFinished=finished.append)
    timer = QTimer.created[-1]

    def cancel_once_busy():
        if progress and not job.done:         # the worker reported: it is running
            t0 = time.monotonic()
            logic.cancel(job)
            assert time.monotonic() - t0 < 2.0
    timer.fire_until_stopped(between=cancel_once_busy)
    assert finished == [job] and job.state == "cancelled"
    assert app.scene.GetNumberOfNodes() == n_nodes and _job_dir_gone(job)


def test_batch_in_background(app, monkeypatch, tmp_path):
    logic = app.module.BrainAgeLogic()
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a_T1.nii.gz").write_bytes(b"not an image")
    (folder / "b_T1.nrrd").write_bytes(b"NRRD0004\nnot an image\n")
    inputs = logic.folderInputs(str(folder))
    assert [os.path.basename(p) for p in inputs] == ["a_T1.nii.gz", "b_T1.nrrd"]
    with pytest.raises(ValueError, match="folder"):
        logic.folderInputs(str(tmp_path / "nowhere"))
    ages = tmp_path / "ages.csv"
    ages.write_text("subject_id,age\na_T1,50.5\n")
    finished = []
    out_csv = tmp_path / "out.csv"
    job = logic.batchInBackground(inputs, str(out_csv), agesCsv=str(ages), onFinished=finished.append)
    QTimer.created[-1].fire_until_stopped()
    assert finished == [job] and job.state == "finished" and _job_dir_gone(job)
    assert logic.batchSummary(job) == f"2 scans written to {out_csv}; 2 failed."
    assert "50.50" in out_csv.read_text().splitlines()[1]
    with pytest.raises(ValueError, match="CSV"):
        logic.batchInBackground(inputs, "")
    ages.write_text("name\nx\n")
    with pytest.raises(ValueError, match="age"):
        logic.batchInBackground(inputs, str(out_csv), agesCsv=str(ages))
    volume = mrml.add_volume_node(app.scene, sitk.Image(6, 6, 6, sitk.sitkFloat32), "v")
    mrml.add_volume_node(app.scene, sitk.Image(6, 6, 6, sitk.sitkUInt8), "labels", labelmap=True)
    assert logic.sceneVolumes() == [volume]


def test_report_button_follows_the_report_module(app, monkeypatch, tmp_path):
    logic = app.module.BrainAgeLogic()
    ok, tip = logic.reportAvailable()
    if not ok:                                         # before BrainAgeLib.report lands
        assert "BrainAgeLib.report" in tip
    written = []
    report = types.ModuleType("BrainAgeLib.report")
    report.write_subject_report = lambda result, out_dir: written.append((result, out_dir)) or str(out_dir)
    monkeypatch.setitem(sys.modules, "BrainAgeLib.report", report)
    assert logic.reportAvailable()[0] is True
    assert logic.saveReport("result", str(tmp_path)) == str(tmp_path) and written == [("result", str(tmp_path))]


def test_reload_forgets_brainagelib(app):
    import BrainAgeLib.chart  # noqa: F401
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "BrainAgeLib"}
    try:
        names = app.module.forgetBrainAgeLib()
        assert "BrainAgeLib" in names and "BrainAgeLib.chart" in names
        assert not [k for k in sys.modules if k.split(".")[0] == "BrainAgeLib"]
        import BrainAgeLib.chart as fresh
        assert fresh is not saved["BrainAgeLib.chart"]          # read from the file again
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == "BrainAgeLib"]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_self_test_sample_part_is_skipped_without_dependencies(app, monkeypatch):
    from BrainAgeLib.dependencies import Requirement
    monkeypatch.setattr(app.module.BrainAgeLogic, "unmetRequirements",
                        staticmethod(lambda: [Requirement("torch>=2.1", "torch", None)]))
    test = app.module.BrainAgeTest()
    test.test_BrainAgeSample()
    assert test.displayed == ["Full pipeline not run: missing torch"]


def test_self_test_fast_part_runs_without_torch(tmp_path):
    """BrainAgeTest.test_BrainAgeFast in a fresh Python where ``import torch`` fails (the
    Extensions Index factory without the PyTorch packages): it passes and loads no torch."""
    import subprocess
    script = f"""
import sys, types
sys.modules["torch"] = None                      # import torch raises ImportError
sys.path.insert(0, {str(Path(__file__).parent)!r})
import slicer_stubs as t
for name, module in t._stub_modules().items():
    sys.modules[name] = module
import slicer
from BrainAgeLib import mrml
scene, app = mrml.setup_headless_scene()
slicer.mrmlScene = scene
slicer.app = types.SimpleNamespace(connect=lambda *a: None)
registered = {{}}
class SampleDataLogic:
    @staticmethod
    def registerCustomSampleDataSource(**kw):
        registered[kw["sampleName"]] = kw
    def sourceForSampleName(self, name):
        return registered.get(name)
sys.modules["SampleData"] = types.SimpleNamespace(SampleDataLogic=SampleDataLogic)
slicer.util.getModule = lambda name: object() if name == "BrainAge" else None
import importlib.util
spec = importlib.util.spec_from_file_location("BrainAge", {str(MODULE_PY)!r})
module = importlib.util.module_from_spec(spec)
sys.modules["BrainAge"] = module
spec.loader.exec_module(module)
test = module.BrainAgeTest()
test.setUp()
test.test_BrainAgeFast()
assert sys.modules["torch"] is None
print("FAST PART PASSED", test.displayed)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "FAST PART PASSED ['Fast part passed']" in run.stdout


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


class _FakeWidget(types.SimpleNamespace):
    """What the widget code sets on a Qt widget (the real ones need the Slicer application)."""

    def setValue(self, value):
        self.value = value

    def setFormat(self, text):
        self.format = text

    def setVisible(self, visible):
        self.visible = visible


def _widget(app, monkeypatch, volume):
    m = app.module
    w = m.BrainAgeWidget()
    w.logic = m.BrainAgeLogic()
    monkeypatch.setattr(w.logic, "unmetRequirements", lambda: [])
    w.ui = types.SimpleNamespace(**{name: _FakeWidget(text="", enabled=True, toolTip="") for name in (
        "applyButton", "progressBar", "resultLabel", "statusLabel", "inputsCollapsibleButton",
        "show3DButton", "saveReportButton")})
    w._canReport = False
    w._parameterNode = m.BrainAgeParameterNode()
    w._parameterNode.inputVolume = volume
    w._updateApplyButton()
    return w


def test_widget_apply_becomes_cancel_and_back(app, monkeypatch):
    volume = mrml.add_volume_node(app.scene, sitk.ReadImage(str(DATA / "IXI013-HH-1212_T1.nii.gz")), "T1")
    n_nodes = app.scene.GetNumberOfNodes()
    w = _widget(app, monkeypatch, volume)
    assert w.ui.applyButton.text == "Apply" and w.ui.applyButton.enabled
    w.onApplyButton()
    assert w._job is not None, app.dialogs
    assert w.ui.applyButton.text == "Cancel" and w.ui.applyButton.enabled
    assert w.ui.progressBar.visible and not w.ui.inputsCollapsibleButton.enabled
    timer = QTimer.created[-1]
    w.onApplyButton()                                 # Cancel
    timer.fire_until_stopped()
    assert w._job is None and w.ui.applyButton.text == "Apply"
    assert w.ui.statusLabel.text == "Cancelled; the scene is as it was."
    assert not w.ui.progressBar.visible and w.ui.inputsCollapsibleButton.enabled
    assert app.scene.GetNumberOfNodes() == n_nodes


def test_widget_shows_a_failed_run_in_a_dialog(app, monkeypatch):
    volume = mrml.add_volume_node(app.scene, sitk.Image(6, 6, 6, sitk.sitkFloat32), "tiny")
    w = _widget(app, monkeypatch, volume)
    w.onApplyButton()
    QTimer.created[-1].fire_until_stopped()
    assert w._job is None and w.ui.applyButton.text == "Apply"
    assert w.ui.statusLabel.text.startswith("Failed")
    error = app.dialogs[-1]
    assert error[0] == "error" and error[1].startswith("Brain age estimation failed: ")
    w._parameterNode.inputVolume = None
    w._updateApplyButton()
    assert not w.ui.applyButton.enabled and w.ui.applyButton.toolTip == "Select a T1 volume"


def test_widget_shows_a_finished_run(app, monkeypatch):
    volume = mrml.add_volume_node(app.scene, sitk.ReadImage(str(DATA / "IXI013-HH-1212_T1.nii.gz")), "T1")
    w = _widget(app, monkeypatch, volume)
    result = _fake_predict([])(mrml.volume_node_to_sitk(volume), chronological_age=40.0)
    out = mrml.show_result(app.scene, volume, result)
    w._onFinished(types.SimpleNamespace(state="finished", output=out, error=None))
    assert w._lastOutput is out and w.ui.show3DButton.enabled and not w.ui.saveReportButton.enabled
    assert w._parameterNode.outputSegmentation is out.segmentationNode
    assert w._parameterNode.outputTable is out.tableNode
    assert "Brain age 47.0 years" in w.ui.resultLabel.text and "+7.0" in w.ui.resultLabel.text
    assert "implausible CSF" in w.ui.statusLabel.text
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1     # the chart was drawn
    assert not [d for d in app.dialogs if d[0] == "error"]
    w.logic.show3D(out.segmentationNode)
    assert out.segmentationNode.GetSegmentation().ContainsRepresentation("Closed surface")
    assert out.segmentationNode.GetDisplayNode().GetVisibility3D()
