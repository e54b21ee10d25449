"""BrainAge: brain age from one T1-weighted MRI, as a 3D Slicer scripted module.

The module, its widget and its logic stay thin: the work is done by the Qt-free
``BrainAgeLib`` package (``BrainAgeLib.mrml.process`` for the MRML side), which is imported
lazily, after the dependencies have been installed with the user's consent.
"""
import logging
import os

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

README_URL = "https://github.com/brainage/SlicerBrainAge#readme"
SAMPLE_FILE = "IXI012-HH-1211_T1.nii.gz"
SAMPLE_AGE = 38.78
# PyPI packages BrainAgeLib needs beside Slicer's own (torch comes from the PyTorch extension)
REQUIREMENTS = ["scikit-learn>=1.3", "safetensors>=0.4", "tqdm>=4.60", "deepbet>=1.0.2"]


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
        self.parent.helpText = _(f"""
Estimates the brain age of a person from one T1-weighted brain MRI, and shows the grey matter,
white matter and cerebrospinal fluid it measured as segments. Two approaches are combined:
regional tissue volumes from a 3D residual U-Net, and a 3D CNN on the image.
Research use only. See the <a href="{README_URL}">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Models trained on the Cam-CAN data set; the bundled sample is from the IXI data set
(Imperial College London, CC BY-SA 3.0).
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the bundled T1 (no download) to the Sample Data module."""
    import SampleData
    resources = os.path.join(os.path.dirname(__file__), "Resources")
    path = os.path.join(resources, "SampleData", SAMPLE_FILE)
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="BrainAge",
        sampleName="BrainAgeT1",
        thumbnailFileName=os.path.join(resources, "Icons", "BrainAge.png"),
        uris="file://" + path.replace(os.sep, "/"),
        fileNames=SAMPLE_FILE,
        nodeNames="BrainAgeT1",
        loadFileType="VolumeFile",
    )


#
# Parameters
#


@parameterNodeWrapper
class BrainAgeParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    chronologicalAge: float = 0.0          # 0 means unknown
    approach: Choice["ensemble", "volumes", "image"] = "ensemble"  # noqa: F821
    device: Choice["auto", "cpu", "cuda"] = "auto"  # noqa: F821
    skullStripped: bool = False


#
# Widget
#


class BrainAgeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        self.ui.progressBar.setVisible(True)
        self.ui.resultLabel.text = ""
        try:
            with slicer.util.tryWithErrorDisplay(_("Brain age estimation failed."), waitCursor=True):
                out = self.logic.process(
                    p.inputVolume, p.outputSegmentation, p.outputTable,
                    chronologicalAge=p.chronologicalAge if p.chronologicalAge > 0 else None,
                    approach=p.approach, device=p.device,
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
    """Works from the Python console without the GUI:

    logic = slicer.util.getModuleLogic("BrainAge")
    out = logic.process(volumeNode)          # out.segmentationNode, out.tableNode, out.predicted_age
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return BrainAgeParameterNode(super().getParameterNode())

    @staticmethod
    def missingDependencies() -> list:
        import importlib.util
        names = {"torch": "torch", "sklearn": "scikit-learn", "safetensors": "safetensors",
                 "tqdm": "tqdm", "deepbet": "deepbet"}
        return [pkg for mod, pkg in names.items() if importlib.util.find_spec(mod) is None]

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what BrainAgeLib needs, after the user agreed; never at import time.

        torch comes from the PyTorch extension (PyTorchUtils); the rest from PyPI.
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
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation) is None:
                return False
        try:
            import slicer.packaging
            slicer.packaging.pip_ensure(REQUIREMENTS, prompt_install=askConfirmation, requester="BrainAge")
        except ImportError:   # Slicer before 5.10 has no slicer.packaging
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("BrainAge needs these Python packages: {packages}. Install them now?").format(
                        packages=", ".join(REQUIREMENTS))):
                return False
            slicer.util.pip_install(" ".join(REQUIREMENTS))
        except RuntimeError:  # the user declined
            return False
        return not self.missingDependencies()

    def process(self, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
                approach="ensemble", device="auto", skullStripped=None, progress=None):
        """Brain age of ``volumeNode``; see BrainAgeLib.mrml.process."""
        if self.missingDependencies() and not self.ensureDependencies():
            raise RuntimeError("BrainAge's Python dependencies are not installed")
        from BrainAgeLib.mrml import process
        import time
        start = time.time()
        out = process(slicer.mrmlScene, volumeNode, segmentationNode, tableNode, chronologicalAge,
                      approach=approach, device=device, skullStripped=skullStripped, progress=progress)
        logging.info(f"BrainAge: {out.predicted_age:.1f} years in {time.time() - start:.1f} s")
        return out

    @staticmethod
    def resultText(result) -> str:
        lo, hi = result.interval
        text = _("Brain age {age:.1f} years (90% interval {lo:.1f}-{hi:.1f})").format(
            age=result.predicted_age, lo=lo, hi=hi)
        if result.brain_age_gap is not None:
            text += _(", gap {gap:+.1f} years").format(gap=result.brain_age_gap)
        if result.qc:
            text += "\n" + _("QC: ") + "; ".join(result.qc)
        return text


#
# Test
#


class BrainAgeTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_BrainAgeSample()

    def test_BrainAgeSample(self):
        import SampleData
        registerSampleData()
        volume = SampleData.downloadSample("BrainAgeT1")
        self.delayDisplay("Loaded the bundled sample")
        logic = BrainAgeLogic()
        out = logic.process(volume, chronologicalAge=SAMPLE_AGE)
        self.assertTrue(18 <= out.predicted_age <= 90)
        segmentation = out.segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 3)
        names = [segmentation.GetNthSegment(i).GetName() for i in range(3)]
        self.assertEqual(names, ["Cerebrospinal fluid", "Gray matter", "White matter"])
        again = logic.process(volume, out.segmentationNode, out.tableNode, chronologicalAge=SAMPLE_AGE)
        self.assertIs(again.segmentationNode, out.segmentationNode)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.delayDisplay("Test passed")
