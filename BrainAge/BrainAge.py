"""BrainAge: brain age from one T1-weighted MRI, as a 3D Slicer scripted module.

The module, its widget and its logic stay thin: the work is done by the Qt-free ``BrainAgeLib``
package (``BrainAgeLib.mrml.process`` for the MRML side), which is imported lazily, after its
Python dependencies have been installed with the user's consent (never at import time).
"""
import enum
import importlib
import importlib.util
import logging
import os
import time
from typing import Annotated

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
# PyPI packages BrainAgeLib needs beside what Slicer ships (numpy, SimpleITK);
# torch comes from the PyTorch extension (PyTorchUtils), which picks the build for the GPU.
TORCH_REQUIREMENT = ">=2.1"
REQUIREMENTS = ["scikit-learn>=1.3", "safetensors>=0.4", "tqdm>=4.60", "deepbet>=1.0.2"]
IMPORT_NAMES = {"torch": "torch", "sklearn": "scikit-learn", "safetensors": "safetensors",
                "tqdm": "tqdm", "deepbet": "deepbet"}


#
# BrainAge
#


class BrainAge(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Age")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["BrainAge developers"]
        self.parent.helpText = _("""
Estimates the brain age of a person from one T1-weighted brain MRI, and shows the gray matter,
white matter and cerebrospinal fluid it measured as segments, with the ages, the 90% prediction
interval and the tissue volumes in a table. Two approaches are combined: regional tissue volumes
from a 3D residual U-Net segmentation (A), and a 3D CNN on the image (B).
Research use only, not for diagnosis. See the <a href="{url}">documentation</a>.
""").format(url=README_URL)
        self.parent.acknowledgementText = _("""
Models trained on the Cam-CAN data set. The bundled sample is from the IXI data set
(Imperial College London, CC BY-SA 3.0).
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
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):   # Slicer 5.8+
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
    chronologicalAge: years, 0 for unknown; skullStripped: skip brain extraction."""

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    chronologicalAge: Annotated[float, WithinRange(0, 120)] = 0.0
    approach: Approach = Approach.ENSEMBLE
    device: Device = Device.AUTO
    tissues: Tissues = Tissues.CAMCAN
    skullStripped: bool = False


#
# Widget
#


class BrainAgeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds Resources/UI/BrainAge.ui to the parameter node; the work is in BrainAgeLogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

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
        self.ui.progressBar.setVisible(False)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        ok = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = ok
        self.ui.applyButton.toolTip = _("Estimate the brain age") if ok else _("Select a T1 volume")

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(100 * fraction))
        self.ui.progressBar.setFormat(f"{message} (%p%)")
        slicer.app.processEvents()

    def onApplyButton(self) -> None:
        p = self._parameterNode
        if not self.logic.ensureDependencies():
            return
        self.ui.resultLabel.text = ""
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        try:
            with slicer.util.tryWithErrorDisplay(_("Brain age estimation failed."), waitCursor=True):
                out = self.logic.process(
                    p.inputVolume, p.outputSegmentation, p.outputTable,
                    chronologicalAge=p.chronologicalAge if p.chronologicalAge > 0 else None,
                    approach=p.approach.value, device=p.device.value, tissues=p.tissues.value,
                    skullStripped=True if p.skullStripped else None, progress=self.onProgress)
                p.outputSegmentation = out.segmentationNode
                p.outputTable = out.tableNode
                self.ui.resultLabel.text = self.logic.resultText(out.result)
                slicer.util.setSliceViewerLayers(background=p.inputVolume, fit=True)
        finally:
            self.ui.progressBar.setVisible(False)


#
# Logic
#


class BrainAgeLogic(ScriptedLoadableModuleLogic):
    """Works from the Python console without the GUI::

        logic = slicer.util.getModuleLogic("BrainAge")
        out = logic.process(volumeNode, chronologicalAge=62)
        out.predicted_age, out.interval, out.segmentationNode, out.tableNode, out.result
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return BrainAgeParameterNode(super().getParameterNode())

    @staticmethod
    def missingDependencies() -> list:
        """PyPI names of the packages BrainAgeLib needs that cannot be imported."""
        return [pkg for mod, pkg in IMPORT_NAMES.items() if importlib.util.find_spec(mod) is None]

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what BrainAgeLib needs, after the user agreed (never at import time).

        torch through the PyTorch extension (PyTorchUtils), the others from PyPI with
        ``slicer.packaging.pip_ensure`` (Slicer 5.10 and later) or ``slicer.util.pip_install``.
        Returns True when everything is importable.
        """
        missing = self.missingDependencies()
        if not missing:
            return True
        if "torch" in missing:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay(_("BrainAge needs PyTorch: install the PyTorch extension "
                                           "from the Extensions Manager, restart Slicer, and try again."))
                return False
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                torch = torchLogic.installTorch(askConfirmation=askConfirmation,
                                                torchVersionRequirement=TORCH_REQUIREMENT)
                if torch is None:
                    return False
        if set(missing) - {"torch"}:
            try:   # not "import slicer.packaging": that would make "slicer" a local name here
                pip_ensure = importlib.import_module("slicer.packaging").pip_ensure
            except (ImportError, AttributeError):   # Slicer before 5.10
                pip_ensure = None
            try:
                if pip_ensure is not None:
                    pip_ensure(REQUIREMENTS, prompt_install=askConfirmation, requester="BrainAge")
                else:
                    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                            _("BrainAge needs these Python packages: {packages}.\n"
                              "Install them now? This may take a few minutes.").format(
                                packages=", ".join(REQUIREMENTS))):
                        return False
                    slicer.util.pip_install(" ".join(REQUIREMENTS))
            except RuntimeError:          # the user declined
                return False
        importlib.invalidate_caches()
        still = self.missingDependencies()
        if still:
            logging.error(f"BrainAge: could not install {', '.join(still)}")
        return not still

    def process(self, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
                approach="ensemble", device="auto", skullStripped=None, progress=None,
                tissues="camcan"):
        """Brain age of ``volumeNode`` into a segmentation and a table node (None: new ones).

        Delegates to ``BrainAgeLib.mrml.process`` with ``slicer.mrmlScene``; returns its result
        (``.segmentationNode``, ``.tableNode``, ``.predicted_age``, ``.result``).
        """
        if self.missingDependencies() and not self.ensureDependencies():
            raise RuntimeError("BrainAge's Python dependencies are not installed")
        from BrainAgeLib.mrml import process
        start = time.time()
        out = process(slicer.mrmlScene, volumeNode, segmentationNode, tableNode, chronologicalAge,
                      approach=approach, device=device, skullStripped=skullStripped, progress=progress,
                      tissues=tissues)
        logging.info(f"BrainAge: {volumeNode.GetName()}: {out.predicted_age:.1f} years "
                     f"in {time.time() - start:.1f} s")
        return out

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


#
# Test
#


class BrainAgeTest(ScriptedLoadableModuleTest):
    """Runs the whole module logic on the bundled sample T1 (needs the dependencies installed)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_BrainAgeSample()

    def test_BrainAgeSample(self):
        import SampleData
        registerSampleData()
        volume = SampleData.downloadSample(SAMPLE_NAME)
        self.assertIsNotNone(volume)
        self.delayDisplay("Loaded the bundled sample")
        logic = BrainAgeLogic()
        out = logic.process(volume, chronologicalAge=SAMPLE_AGE)
        self.assertTrue(18 <= out.predicted_age <= 90)
        lo, hi = out.result.interval
        self.assertTrue(lo < out.predicted_age < hi)
        segmentation = out.segmentationNode.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, ["Cerebrospinal fluid", "Gray matter", "White matter"])
        self.assertEqual(out.tableNode.GetTable().GetColumnName(0), "Measurement")
        again = logic.process(volume, out.segmentationNode, out.tableNode, chronologicalAge=SAMPLE_AGE)
        self.assertIs(again.segmentationNode, out.segmentationNode)
        self.assertIs(again.tableNode, out.tableNode)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode"), 1)
        self.delayDisplay("Test passed")
