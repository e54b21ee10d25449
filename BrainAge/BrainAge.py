"""BrainAge: brain age from one T1-weighted MRI, as a 3D Slicer scripted module.

The module, its widget and its logic stay thin: the work is done by the Qt-free ``BrainAgeLib``
package (``BrainAgeLib.mrml`` for the MRML side, ``BrainAgeLib.mrml_process`` for runs on a
volume node, ``BrainAgeLib.runner`` for the background worker, ``BrainAgeLib.chart`` for the
plot), which is imported lazily, after its Python
dependencies have been installed with the user's consent (never at import time).
"""
import enum
import importlib
import logging
import os
import pathlib
import sys
import time
import traceback
from typing import Annotated

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, WithinRange

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

README_URL = "https://github.com/brainage/SlicerBrainAge#readme"
SAMPLE_NAME = "BrainAgeT1"
SAMPLE_FILE = "IXI012-HH-1211_T1.nii.gz"
SAMPLE_AGE = 38.78   # years, from the IXI demographics
POLL_MS = 200        # how often the widget looks at the background worker
RESULTS_LAYOUT_ID = 14310   # a custom layout: axial slice, 3D, chart; the results table below
RESULTS_LAYOUT = """
<layout type="vertical" split="true">
 <item splitSize="500">
  <layout type="horizontal">
   <item>
    <view class="vtkMRMLSliceNode" singletontag="Red">
     <property name="orientation" action="default">Axial</property>
     <property name="viewlabel" action="default">R</property>
     <property name="viewcolor" action="default">#F34A33</property>
    </view>
   </item>
   <item>
    <view class="vtkMRMLViewNode" singletontag="1">
     <property name="viewlabel" action="default">1</property>
    </view>
   </item>
   <item>
    <view class="vtkMRMLPlotViewNode" singletontag="PlotView1">
     <property name="viewlabel" action="default">P</property>
    </view>
   </item>
  </layout>
 </item>
 <item splitSize="250">
  <view class="vtkMRMLTableViewNode" singletontag="TableView1">
   <property name="viewlabel" action="default">T</property>
  </view>
 </item>
</layout>
"""


#
# BrainAge
#


class BrainAge(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Age")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["BrainAge maintainers (SlicerBrainAge project, https://github.com/brainage)"]
        self.parent.helpText = _("""
Estimates the brain age of a person from one T1-weighted brain MRI, and shows the gray matter,
white matter and cerebrospinal fluid it measured as segments, with the ages, the 90% prediction
interval and the tissue volumes in a table and a chart against a reference cohort. Two
approaches are combined: regional tissue volumes from a 3D residual U-Net segmentation (A), and
a 3D CNN on the image (B). Research use only, not for diagnosis.
See the <a href="{url}">documentation</a>.
""").format(url=README_URL)
        self.parent.acknowledgementText = _("""
Models trained on data of the Cambridge Centre for Ageing and Neuroscience (Cam-CAN,
https://www.cam-can.org; Shafto et al. 2014, Taylor et al. 2017), as preprocessed in the public
repository pascutc98/brain-age-prediction. The bundled sample is from the IXI data set
(Imperial College London, brain-development.org, CC BY-SA 3.0). Brain extraction by deepbet
(Fisch et al. 2024). Software: MIT licence.
""")
        # Additional initialization step after application startup is complete
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data: the bundled T1, copied from the module's folder (no download)
#


def samplePath() -> str:
    return os.path.join(os.path.dirname(__file__), "Resources", "SampleData", SAMPLE_FILE)


def registerSampleData():
    """Add the bundled T1 to the Sample Data module (a local file: nothing is downloaded)."""
    import hashlib
    import urllib.parse
    import urllib.request

    import SampleData

    path = samplePath()
    if not os.path.isfile(path):
        logging.warning(f"BrainAge: sample data missing: {path}")
        return
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()   # refreshes a stale cached copy
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):   # Slicer 5.12+
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("BrainAge", title=_("Brain Age"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="BrainAge",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "BrainAge.png"),
        uris=urllib.parse.urljoin("file:", urllib.request.pathname2url(path)),
        fileNames=SAMPLE_FILE,
        checksums=f"SHA256:{digest}",
        nodeNames=SAMPLE_NAME,
        loadFileTypes="VolumeFile",
    )


def forgetBrainAgeLib() -> list:
    """Drop BrainAgeLib and its submodules from ``sys.modules`` so that the next import reads
    the files again (what Reload needs). Returns the names dropped."""
    names = sorted(n for n in sys.modules if n == "BrainAgeLib" or n.startswith("BrainAgeLib."))
    for name in names:
        del sys.modules[name]
    importlib.invalidate_caches()
    return names


#
# Parameters
#


class Approach(enum.Enum):
    ENSEMBLE = "ensemble"
    VOLUMES = "volumes"
    IMAGE = "image"

    def label(self):
        return {"ensemble": _("Ensemble of A and B"), "volumes": _("A: tissue volumes"),
                "image": _("B: image CNN")}[self.value]


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    def label(self):
        return {"auto": _("Auto (GPU if available)"), "cpu": _("CPU"), "cuda": _("GPU (CUDA)")}[self.value]


class Tissues(enum.Enum):
    CAMCAN = "camcan"
    DLMUSE = "dlmuse"

    def label(self):
        return {"camcan": _("Cam-CAN (training labels)"), "dlmuse": _("DLMUSE (CSF = ventricles)")}[self.value]


@parameterNodeWrapper
class BrainAgeParameterNode:
    """inputVolume: the T1; outputSegmentation/outputTable: None creates new ones;
    chronologicalAge: years, 0 for unknown; skullStripped: skip brain extraction;
    siteCalibration: this scanner's offset or calibration JSON (brainage site-offset or calibrate-site), empty for none."""

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    chronologicalAge: Annotated[float, WithinRange(0, 120)] = 0.0
    approach: Approach = Approach.ENSEMBLE
    device: Device = Device.AUTO
    tissues: Tissues = Tissues.CAMCAN
    skullStripped: bool = False
    siteCalibration: pathlib.Path


#
# Widget
#


class BrainAgeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds Resources/UI/BrainAge.ui to the parameter node; the work is in BrainAgeLogic.

    Apply starts the background worker and turns into Cancel; the logic's timer reports
    progress and the end, which the widget shows (table, chart, status line)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None            # the running single-volume job
        self._batch = None          # the running batch job
        self._lastOutput = None     # ProcessResult of the last run
        self._lastInputID = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainAge.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BrainAgeLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.show3DButton.connect("clicked(bool)", self.onShow3D)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReport)
        self.ui.batchRunButton.connect("clicked(bool)", self.onBatchButton)
        self.ui.batchFromSceneCheckBox.connect("toggled(bool)", self._updateBatchInputs)
        self.ui.progressBar.setVisible(False)
        self.ui.batchProgressBar.setVisible(False)
        self.ui.show3DButton.enabled = False
        canReport, why = self.logic.reportAvailable()
        self.ui.saveReportButton.enabled = False
        self.ui.saveReportButton.toolTip = why
        self._canReport = canReport
        self._updateBatchInputs()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelAll()
        self.removeObservers()

    def onReload(self) -> None:
        """Reload the module and BrainAgeLib, so that edits of the library take effect."""
        self._cancelAll()
        forgetBrainAgeLib()
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelAll()
        self._lastOutput = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)
            self._onParameterChanged()

    def _onParameterChanged(self, caller=None, event=None) -> None:
        p = self._parameterNode
        volume = p.inputVolume if p else None
        volumeID = volume.GetID() if volume else None
        if p and volumeID != self._lastInputID:      # outputs follow the input
            self._lastInputID = volumeID
            seg, table = self.logic.outputsForInput(volume, p.outputSegmentation, p.outputTable)
            if seg is not p.outputSegmentation:
                p.outputSegmentation = seg
            if table is not p.outputTable:
                p.outputTable = table
        self._updateApplyButton()

    def _updateApplyButton(self) -> None:
        if self._job is not None:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the estimation; the scene stays as it was")
            self.ui.applyButton.enabled = True
            return
        ok = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.text = _("Apply")
        self.ui.applyButton.enabled = ok
        self.ui.applyButton.toolTip = _("Estimate the brain age") if ok else _("Select a T1 volume")

    @staticmethod
    def _try(message: str, function, *args, **kwargs):
        """``function(...)``; an error is shown in a dialog with its details, and gives None."""
        try:
            with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
                return function(*args, **kwargs)
        except Exception:
            return None

    def _cancelAll(self) -> None:
        for job in (self._job, self._batch):
            if job is not None:
                self.logic.cancel(job)

    # ---------------------------------------------------------------- one volume

    def onApplyButton(self) -> None:
        if self._job is not None:
            self.logic.cancel(self._job)
            return
        p = self._parameterNode
        if not self.logic.ensureDependencies():
            return
        self.ui.statusLabel.text = ""
        self.ui.resultLabel.text = ""
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self._job = self._try(
            _("Brain age estimation could not start."), self.logic.processInBackground,
            p.inputVolume, p.outputSegmentation, p.outputTable,
            chronologicalAge=p.chronologicalAge if p.chronologicalAge > 0 else None,
            approach=p.approach.value, device=p.device.value, tissues=p.tissues.value,
            skullStripped=True if p.skullStripped else None, siteCalibration=self._siteCalibration(),
            onProgress=self._onProgress, onFinished=self._onFinished)
        if self._job is None:
            self.ui.progressBar.setVisible(False)
        self.ui.inputsCollapsibleButton.enabled = self._job is None
        self._updateApplyButton()

    def _siteCalibration(self):
        """The site-calibration file chosen, or None (an empty path edit reads as "." or "")."""
        path = self._parameterNode.siteCalibration
        return str(path) if path is not None and str(path) not in ("", ".") else None

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(100 * fraction))
        self.ui.progressBar.setFormat(f"{message} (%p%)")

    def _onFinished(self, job) -> None:
        self._job = None
        self.ui.progressBar.setVisible(False)
        self.ui.inputsCollapsibleButton.enabled = True
        self._updateApplyButton()
        if job.state == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the scene is as it was.")
            return
        if job.state != "finished":
            self.ui.statusLabel.text = _("Failed: see the error message.")
            slicer.util.errorDisplay(_("Brain age estimation failed: {error}").format(
                error=(job.error or "").split("\n")[0]), detailedText=job.error or "")
            return
        out = self._lastOutput = job.output
        p = self._parameterNode
        if p:
            p.outputSegmentation = out.segmentationNode
            p.outputTable = out.tableNode
        self.ui.resultLabel.text = self.logic.resultText(out.result)
        self.ui.statusLabel.text = self.logic.statusText(out.result)
        self.ui.show3DButton.enabled = True
        self.ui.saveReportButton.enabled = self._canReport
        chartNode = self._try(_("Drawing the brain-age chart failed."), self.logic.updateChart, out)
        self._try(_("Showing the results failed."), self.logic.showResults, out, chartNode)

    def onShow3D(self) -> None:
        if self._lastOutput is not None:
            self._try(_("Showing the segments in 3D failed."), self.logic.show3D,
                      self._lastOutput.segmentationNode)

    def onSaveReport(self) -> None:
        if self._lastOutput is None:
            return
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Folder for the report"))
        if folder:
            path = self._try(_("Writing the report failed."), self.logic.saveReport, self._lastOutput.result, folder)
            if path:
                self.ui.statusLabel.text = _("Report written: {path}").format(path=path)

    # ---------------------------------------------------------------- batch

    def _updateBatchInputs(self, *args) -> None:
        self.ui.batchFolderPathLineEdit.enabled = not self.ui.batchFromSceneCheckBox.checked

    def onBatchButton(self) -> None:
        if self._batch is not None:
            self.logic.cancel(self._batch)
            return
        if not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        inputs = self._try(_("The batch could not start."), lambda: self.logic.sceneVolumes()
                           if self.ui.batchFromSceneCheckBox.checked
                           else self.logic.folderInputs(self.ui.batchFolderPathLineEdit.currentPath))
        if not inputs:
            return
        self._batch = self._try(
            _("The batch could not start."), self.logic.batchInBackground,
            inputs, self.ui.batchOutputPathLineEdit.currentPath,
            agesCsv=self.ui.batchAgesPathLineEdit.currentPath or None,
            approach=p.approach.value, device=p.device.value, tissues=p.tissues.value,
            skullStripped=True if p.skullStripped else None, siteCalibration=self._siteCalibration(),
            onProgress=self._onBatchProgress, onFinished=self._onBatchFinished)
        if self._batch is not None:
            self.ui.batchRunButton.text = _("Cancel batch")
            self.ui.batchProgressBar.setValue(0)
            self.ui.batchProgressBar.setVisible(True)
            self.ui.batchStatusLabel.text = _("{n} scans").format(n=len(inputs))

    def _onBatchProgress(self, fraction: float, message: str) -> None:
        self.ui.batchProgressBar.setValue(int(100 * fraction))
        self.ui.batchProgressBar.setFormat("%p%")
        self.ui.batchStatusLabel.text = message

    def _onBatchFinished(self, job) -> None:
        self._batch = None
        self.ui.batchRunButton.text = _("Run batch")
        self.ui.batchProgressBar.setVisible(False)
        self.ui.batchStatusLabel.text = self.logic.batchSummary(job)
        if job.state == "failed":
            slicer.util.errorDisplay(_("The batch failed: {error}").format(
                error=(job.error or "").split("\n")[0]), detailedText=job.error or "")


#
# Logic
#


class BrainAgeLogic(ScriptedLoadableModuleLogic):
    """Works from the Python console without the GUI::

        logic = slicer.util.getModuleLogic("BrainAge")
        out = logic.process(volumeNode, chronologicalAge=62)        # blocking
        out.predicted_age, out.interval, out.segmentationNode, out.tableNode, out.result

        job = logic.processInBackground(volumeNode, onFinished=lambda job: print(job.output.predicted_age))
        job.cancel()                                                # any time; the scene stays as it was
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._timers = {}     # job -> QTimer polling it

    def getParameterNode(self):
        return BrainAgeParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- dependencies

    @staticmethod
    def unmetRequirements() -> list:
        """The requirements (``BrainAgeLib.dependencies.Requirement``) missing or too old."""
        from BrainAgeLib import dependencies
        return dependencies.unmet()

    def missingDependencies(self) -> list:
        """Distribution names of the packages that are missing or too old."""
        return [r.name for r in self.unmetRequirements()]

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what BrainAgeLib needs, after one confirmation that lists everything
        (never at import time). Returns True when everything is present in the right version.

        torch through the PyTorch extension (PyTorchUtils, which picks the build for the GPU);
        the PyPI packages with ``slicer.packaging.pip_ensure`` (Slicer 5.12+), deepbet without
        its GUI dependencies (``skip_packages``); on older Slicer ``slicer.util.pip_install``,
        deepbet with ``--no-deps`` and its other dependencies named. Errors are shown in a
        dialog with the log.
        """
        from BrainAgeLib import dependencies as deps
        todo = self.unmetRequirements()
        if not todo:
            return True
        torchReq = next((r for r in todo if r.name == "torch"), None)
        pipTodo = [r for r in todo if r.name != "torch"]
        torchLogic = None
        if torchReq is not None:
            if torchReq.installed:
                slicer.util.errorDisplay(_(
                    "BrainAge needs {requirement}, but PyTorch {version} is installed. Install a newer "
                    "PyTorch in the PyTorch Util module, restart Slicer, and try again.").format(
                        requirement=torchReq.requirement, version=torchReq.installed))
                return False
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay(_("BrainAge needs PyTorch: install the PyTorch extension "
                                           "from the Extensions Manager, restart Slicer, and try again."))
                return False
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("BrainAge needs {n} Python package(s) that are missing or too old. Install them now? "
                  "This needs a network connection and may take several minutes.").format(n=len(todo)),
                _("BrainAge - install Python packages"), detailedText=deps.confirmation_details(todo)):
            return False
        try:
            if torchLogic is not None and not torchLogic.torchInstalled():
                if torchLogic.installTorch(askConfirmation=False,
                                           torchVersionRequirement=deps.TORCH_REQUIREMENT[len("torch"):]) is None:
                    raise RuntimeError("PyTorch was not installed")
            if pipTodo:
                requirements = [r.requirement for r in pipTodo]
                try:   # not "import slicer.packaging": that would make "slicer" a local name here
                    pip_ensure = importlib.import_module("slicer.packaging").pip_ensure
                except (ImportError, AttributeError):   # Slicer before 5.12
                    pip_ensure = None
                if pip_ensure is not None:
                    pip_ensure(requirements, skip_packages=deps.SKIP_PACKAGES, prompt_install=False,
                               requester="BrainAge")
                else:
                    others = [r for r in requirements if not r.startswith("deepbet")]
                    deepbet = [r for r in requirements if r.startswith("deepbet")]
                    if deepbet:
                        others += deps.DEEPBET_DEPENDENCIES
                    if others:
                        slicer.util.pip_install(" ".join(f'"{r}"' for r in others))
                    if deepbet:
                        slicer.util.pip_install(f'"{deepbet[0]}" --no-deps')
        except Exception as e:
            log = getattr(e, "output", None) or getattr(e, "stderr", None) or traceback.format_exc()
            slicer.util.errorDisplay(_("Installing BrainAge's Python packages failed: {error}").format(error=e),
                                     detailedText=str(log))
            return False
        importlib.invalidate_caches()
        still = self.unmetRequirements()
        if still:
            slicer.util.errorDisplay(_("BrainAge could not install: {packages}. Restart Slicer and try "
                                       "again.").format(packages=", ".join(r.requirement for r in still)),
                                     detailedText=deps.confirmation_details(still))
        return not still

    # ---------------------------------------------------------------- one volume

    def process(self, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
                approach="ensemble", device="auto", skullStripped=None, progress=None,
                tissues="camcan", siteCalibration=None):
        """Brain age of ``volumeNode`` into a segmentation and a table node (None: new ones),
        blocking (for scripts). Delegates to ``BrainAgeLib.mrml_process.process`` with
        ``slicer.mrmlScene``; returns its result (``.segmentationNode``, ``.tableNode``,
        ``.predicted_age``, ``.result``).
        """
        if self.missingDependencies() and not self.ensureDependencies():
            raise RuntimeError("BrainAge's Python dependencies are not installed")
        from BrainAgeLib.mrml_process import process
        start = time.time()
        out = process(slicer.mrmlScene, volumeNode, segmentationNode, tableNode, chronologicalAge,
                      approach=approach, device=device, skullStripped=skullStripped, progress=progress,
                      tissues=tissues, siteCalibration=siteCalibration)
        logging.info(f"BrainAge: {volumeNode.GetName()}: {out.predicted_age:.1f} years "
                     f"in {time.time() - start:.1f} s")
        return out

    @staticmethod
    def workerCommand():
        """(python, environment) for the background worker: Slicer's PythonSlicer in the
        environment Slicer started from (the launcher adds its own paths)."""
        env = slicer.util.startupEnvironment() if hasattr(slicer.util, "startupEnvironment") else None
        return sys.executable, env

    def _poll(self, job, onProgress, onFinished) -> None:
        """Poll ``job`` from a QTimer every POLL_MS ms until it is done (never blocks)."""
        timer = qt.QTimer()
        timer.setInterval(POLL_MS)

        def tick():
            try:
                reports = job.poll()
            except Exception as e:         # never leave a timer running on an error
                job.state, job.error = "failed", f"{type(e).__name__}: {e}"
                reports = []
            if reports and onProgress:
                onProgress(reports[-1].fraction, reports[-1].message)
            if job.done:
                timer.stop()
                self._timers.pop(job, None)
                try:
                    if onFinished:
                        onFinished(job)
                finally:
                    if hasattr(job, "close"):      # a batch job: remove its temporary folder
                        job.close()

        timer.connect("timeout()", tick)
        self._timers[job] = timer
        timer.start()

    def processInBackground(self, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
                            approach="ensemble", device="auto", skullStripped=None, tissues="camcan",
                            siteCalibration=None, onProgress=None, onFinished=None):
        """Start the estimation in a background process and return at once: a
        ``BrainAgeLib.mrml_process.BackgroundProcess`` (``.state``, ``.output`` when finished, ``.error``
        when failed, ``.cancel()``). ``onProgress(fraction, message)`` and ``onFinished(job)`` are
        called from Slicer's event loop."""
        if self.missingDependencies() and not self.ensureDependencies():
            raise RuntimeError("BrainAge's Python dependencies are not installed")
        from BrainAgeLib.mrml_process import start_process
        python, env = self.workerCommand()
        job = start_process(slicer.mrmlScene, volumeNode, segmentationNode, tableNode, chronologicalAge,
                            approach=approach, device=device, skullStripped=skullStripped, tissues=tissues,
                            python=python, env=env, siteCalibration=siteCalibration)
        self._poll(job, onProgress, onFinished)
        return job

    @staticmethod
    def cancel(job) -> None:
        """Stop a background job now (its worker is killed; the scene stays as it was); the
        polling timer then calls its onFinished with ``job.state == "cancelled"``."""
        job.cancel()

    @staticmethod
    def outputsForInput(volumeNode, segmentationNode, tableNode):
        """The outputs to use when the input becomes ``volumeNode``: the user's picks, or the
        nodes BrainAge made for this volume before, else None (new ones named after it)."""
        from BrainAgeLib.mrml import output_for_input
        scene = slicer.mrmlScene
        return (output_for_input(scene, volumeNode, segmentationNode, "vtkMRMLSegmentationNode"),
                output_for_input(scene, volumeNode, tableNode, "vtkMRMLTableNode"))

    # ---------------------------------------------------------------- showing results

    @staticmethod
    def updateChart(out):
        """The brain-age chart of a result (a plot chart node, one per input volume)."""
        from BrainAgeLib import chart, mrml
        scene = slicer.mrmlScene
        volumeID = out.segmentationNode.GetAttribute(mrml.INPUT_ATTRIBUTE)
        volume = scene.GetNodeByID(volumeID) if volumeID else None
        chartNode = mrml.output_for_input(scene, volume, None, "vtkMRMLPlotChartNode") if volume else None
        name = volume.GetName() if volume else "Brain age"
        chartNode = chart.update_result_chart(scene, out.result, chartNode, name=name)
        chartNode.SetAttribute(mrml.INPUT_ATTRIBUTE, volumeID or "")
        return chartNode

    @staticmethod
    def showResults(out, chartNode=None) -> None:
        """A layout with the slice views, the results table and the chart."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:
            return
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        if not layoutNode.IsLayoutDescription(RESULTS_LAYOUT_ID):
            layoutNode.AddLayoutDescription(RESULTS_LAYOUT_ID, RESULTS_LAYOUT)
        layoutManager.setLayout(RESULTS_LAYOUT_ID)
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetActiveTableID(out.tableNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        if chartNode is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chartNode)
        volumeID = out.segmentationNode.GetAttribute("BrainAge.InputVolumeID")
        if volumeID:
            slicer.util.setSliceViewerLayers(background=slicer.mrmlScene.GetNodeByID(volumeID), fit=True)

    @staticmethod
    def releaseModels() -> None:
        """Give the GPU memory of the networks back now (a background run gives it back when
        its worker ends; a blocking ``process`` after each run)."""
        from BrainAgeLib.mrml_process import release_models
        release_models()

    @staticmethod
    def show3D(segmentationNode) -> None:
        """The segments as closed surfaces in the 3D view."""
        segmentationNode.CreateClosedSurfaceRepresentation()
        display = segmentationNode.GetDisplayNode()
        if display is not None:
            display.SetVisibility3D(True)
            display.SetSegmentVisibility("CSF", False)     # CSF would hide the brain
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and layoutManager.threeDWidget(0) is not None:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    @staticmethod
    def reportAvailable():
        """(True, tooltip) when ``BrainAgeLib.report.write_subject_report`` exists."""
        try:
            report = importlib.import_module("BrainAgeLib.report")
            if callable(getattr(report, "write_subject_report", None)):
                return True, _("Write this person's report (HTML/PDF) into a folder")
        except Exception:
            pass
        return False, _("Reports need BrainAgeLib.report (comes with the normative model)")

    @staticmethod
    def saveReport(result, folder):
        """``BrainAgeLib.report.write_subject_report(result, folder)``."""
        report = importlib.import_module("BrainAgeLib.report")
        return report.write_subject_report(result, folder)

    @staticmethod
    def resultText(result) -> str:
        lo, hi = result.interval
        text = _("Brain age {age:.1f} years (90% interval {lo:.1f} to {hi:.1f})").format(
            age=result.predicted_age, lo=lo, hi=hi)
        if result.brain_age_gap is not None:
            text += "\n" + _("Brain age gap {gap:+.1f} years (chronological age {age:.1f})").format(
                gap=result.brain_age_gap, age=result.chronological_age)
        if result.qc:
            text += "\n" + _("Quality warnings: {warnings}").format(warnings="; ".join(result.qc))
        return text

    @staticmethod
    def statusText(result) -> str:
        """One short line: time taken and the quality checks in words."""
        done = _("Done in {s:.0f} s.").format(s=result.seconds)
        if not result.qc:
            return done + " " + _("Quality checks passed.")
        return done + " " + _("Check the segments over the image before using the age: {w}.").format(
            w="; ".join(result.qc))

    # ---------------------------------------------------------------- batch

    @staticmethod
    def sceneVolumes() -> list:
        """The scalar volumes of the scene (not label maps)."""
        nodes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
        return [n for n in nodes if not n.IsA("vtkMRMLLabelMapVolumeNode")]

    @staticmethod
    def folderInputs(folder: str) -> list:
        """The images and DICOM series of a folder, as ``brainage predict`` finds them."""
        from BrainAgeLib.io import expand_inputs
        if not folder or not os.path.isdir(folder):
            raise ValueError(_("Choose a folder of T1 images."))
        inputs = expand_inputs([folder])
        if not inputs:
            raise ValueError(_("No image found in {folder}.").format(folder=folder))
        return inputs

    def batchInBackground(self, inputs, outputCsv, agesCsv=None, approach="ensemble", device="auto",
                          skullStripped=None, tissues="camcan", siteCalibration=None, onProgress=None,
                          onFinished=None):
        """Every input (paths or volume nodes) into one row of ``outputCsv``, in the background:
        the same CSV as ``brainage predict``. Returns the ``BrainAgeLib.runner.BackgroundJob``."""
        from BrainAgeLib.cli import ArgumentError, read_ages
        from BrainAgeLib.mrml_process import start_batch
        if not outputCsv:
            raise ValueError(_("Choose a CSV file for the results."))
        try:
            ages = read_ages(agesCsv) if agesCsv else None
        except ArgumentError as e:
            raise ValueError(str(e)) from None
        python, env = self.workerCommand()
        job = start_batch(list(inputs), outputCsv, ages=ages, approach=approach, device=device,
                          skullStripped=skullStripped, tissues=tissues, python=python, env=env,
                          siteCalibration=siteCalibration)
        self._poll(job, onProgress, onFinished)
        return job

    @staticmethod
    def batchSummary(job) -> str:
        """One line on a finished batch: rows written, failures, where."""
        import csv
        path = getattr(job, "output_csv", None)
        if job.state == "cancelled":
            return _("Cancelled; the CSV holds the scans finished before.")
        if job.state != "finished" or not path or not os.path.isfile(path):
            return _("The batch failed.")
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        failed = sum(r["qc"].startswith("error") for r in rows)
        return _("{n} scans written to {path}; {failed} failed.").format(n=len(rows), path=path, failed=failed)


#
# Test
#


class BrainAgeTest(ScriptedLoadableModuleTest):
    """A fast part that always runs (module, parameters, sample registration, MRML glue and chart
    on a small synthetic volume: no torch needed), and the whole pipeline on the bundled sample
    only when the dependencies are installed (the Extensions Index factory runs in testing mode,
    where nothing gets installed)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_BrainAgeFast()
        self.setUp()
        self.test_BrainAgeSample()

    def test_BrainAgeFast(self):
        import types

        import numpy as np
        import SimpleITK as sitk

        from BrainAgeLib import chart, mrml
        from BrainAgeLib.volumes import tissue_volumes_ml

        self.assertIsNotNone(slicer.util.getModule("BrainAge"))
        logic = BrainAgeLogic()
        p = logic.getParameterNode()
        # a small synthetic head: CSF shell, GM, WM core, as T1 intensities and as labels
        z, y, x = np.mgrid[:24, :24, :24]
        r = np.sqrt((x - 11.5) ** 2 + (y - 11.5) ** 2 + (z - 11.5) ** 2)
        labels_arr = np.select([r < 5, r < 8, r < 10], [3, 2, 1], 0).astype(np.uint8)
        image = sitk.GetImageFromArray(np.choose(labels_arr, [0.0, 30.0, 70.0, 110.0]).astype(np.float32))
        image.SetSpacing((2.0, 2.0, 2.0))
        labels = sitk.GetImageFromArray(labels_arr)
        labels.CopyInformation(image)
        volume = mrml.add_volume_node(slicer.mrmlScene, image, "synthetic T1")
        p.inputVolume = volume
        self.assertIs(p.inputVolume, volume)
        p.chronologicalAge = 50.0
        self.assertEqual(p.chronologicalAge, 50.0)
        registerSampleData()
        import SampleData
        self.assertIsNotNone(SampleData.SampleDataLogic().sourceForSampleName(SAMPLE_NAME))
        result = types.SimpleNamespace(
            predicted_age=55.0, predicted_age_volumes=54.0, predicted_age_cnn=56.0, interval=(43.0, 67.0),
            chronological_age=50.0, brain_age_gap=5.0, volumes_ml=tissue_volumes_ml(labels), labels=labels,
            qc=[], qc_text="ok", approach="ensemble", tissues="camcan", seconds=1.0,
            age_details={"interval_halfwidths": {"ensemble": 12.0}})
        out = mrml.show_result(slicer.mrmlScene, volume, result)
        self.assertEqual(out.segmentationNode.GetSegmentation().GetNumberOfSegments(), 3)
        rows = mrml.read_table_node(out.tableNode)
        self.assertAlmostEqual(rows["Predicted brain age"], 55.0)
        self.assertAlmostEqual(rows["Brain age gap"], 5.0)
        chartNode = chart.update_result_chart(slicer.mrmlScene, result, name="synthetic T1")
        self.assertGreaterEqual(chartNode.GetNumberOfPlotSeriesNodes(), 5)
        seg2, table2 = logic.outputsForInput(volume, None, None)
        self.assertIs(seg2, out.segmentationNode)
        self.assertIs(table2, out.tableNode)
        self.delayDisplay("Fast part passed")

    def test_BrainAgeSample(self):
        logic = BrainAgeLogic()
        missing = logic.missingDependencies()
        if missing:
            self.delayDisplay(f"Full pipeline not run: missing {', '.join(missing)}")
            return
        import SampleData
        registerSampleData()
        volume = SampleData.downloadSample(SAMPLE_NAME)
        self.assertIsNotNone(volume)
        self.delayDisplay("Loaded the bundled sample")
        out = logic.process(volume, chronologicalAge=SAMPLE_AGE)
        self.assertTrue(18 <= out.predicted_age <= 90)
        lo, hi = out.result.interval
        self.assertTrue(lo < out.predicted_age < hi)
        segmentation = out.segmentationNode.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, ["Cerebrospinal fluid", "Gray matter", "White matter"])
        self.assertEqual(out.tableNode.GetTable().GetColumnName(0), "Measurement")
        # the background worker gives the same numbers into the same nodes
        finished = []
        job = logic.processInBackground(volume, out.segmentationNode, out.tableNode, chronologicalAge=SAMPLE_AGE,
                                        onFinished=finished.append)
        deadline = time.time() + 600
        while not finished and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertEqual(job.state, "finished", job.error)
        self.assertAlmostEqual(job.output.predicted_age, out.predicted_age, places=3)
        self.assertIs(job.output.segmentationNode, out.segmentationNode)
        self.assertIs(job.output.tableNode, out.tableNode)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode"), 1)
        chartNode = logic.updateChart(job.output)
        self.assertGreaterEqual(chartNode.GetNumberOfPlotSeriesNodes(), 5)
        self.delayDisplay("Test passed")
