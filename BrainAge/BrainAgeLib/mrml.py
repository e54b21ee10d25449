"""Slicer glue without Qt: MRML volume node <-> SimpleITK image, and a BrainAge result as a
segmentation node (native segments with standard terminology and colours) and a table node.

Imports only ``slicer``'s MRML and logic classes, which exist both in the Slicer application
and in the ``slicer-core`` package (headless), so that all of it is tested without Qt.
Slicer's physical space is RAS; ITK's is LPS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

import slicer
import vtk
from vtk.util import numpy_support

# Segment id, name, label value, SNOMED CT type code and meaning, and Slicer's recommended colour,
# as in Slicer's terminology "Segmentation category and type - DICOM master list"
# (Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-DICOM-Master.json;
# the same colours are in Base/Logic/Resources/ColorFiles/GenericAnatomyColors.txt:
# cerebro-spinal_fluid, gray_matter, white_matter). Slicer's "General Anatomy list" holds gray and
# white matter with the same codes and colours but not CSF (65216001), so the DICOM master list,
# which Slicer loads by default too, is the context of all three.
SEGMENTS = (
    ("CSF", "Cerebrospinal fluid", 1, "65216001", "Cerebrospinal Fluid", (85, 188, 255)),
    ("GM", "Gray matter", 2, "389081007", "Gray Matter", (200, 200, 235)),
    ("WM", "White matter", 3, "389080008", "White Matter", (250, 250, 210)),
)
CATEGORY = ("SCT", "123037004", "Anatomical Structure")   # scheme, code value, meaning
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
REGION_CONTEXT = "Anatomic codes - DICOM master list"
_LPS = np.diag([-1.0, -1.0, 1.0])


def terminology_entry(code: str, meaning: str) -> str:
    """Slicer's terminology-entry tag string (``context~category~type~modifier~region context~
    region~region modifier``, each code ``scheme^value^meaning``) for a segment type of the
    Anatomical Structure category, made by Slicer's own serializer."""
    scheme, cat_code, cat_meaning = CATEGORY
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT, cat_code, scheme, cat_meaning, code, "SCT", meaning,
        "", "", "", REGION_CONTEXT, "", "", "", "", "", "")


def setup_headless_scene():
    """A real MRML scene with the application logic and the module logics BrainAge needs,
    set up as Slicer's application does at start-up (for slicer-core, without Qt).

    Returns ``(scene, application_logic)``; keep both alive while the scene is used (the module
    logics are kept alive by the application logic). Inside Slicer use ``slicer.mrmlScene``.
    """
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app._brainage_logics = []
    for name, cls in (("Colors", slicer.vtkMRMLColorLogic),
                      ("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Terminologies", slicer.vtkSlicerTerminologiesModuleLogic),
                      ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(app)
        if name == "Terminologies":
            # slicer-core ships no terminology JSON files: loading Slicer's defaults on SetMRMLScene
            # fails (and would print errors). Segments are tagged with terminology strings, which
            # need no loaded terminology.
            shown = vtk.vtkObject.GetGlobalWarningDisplay()
            vtk.vtkObject.GlobalWarningDisplayOff()
            try:
                logic.SetMRMLScene(scene)
            finally:
                vtk.vtkObject.SetGlobalWarningDisplay(shown)
        else:
            logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        app._brainage_logics.append(logic)
    return scene, app


# --------------------------------------------------------------------------- volumes

def _ijk_to_ras(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])


def volume_node_to_sitk(volumeNode) -> sitk.Image:
    """A SimpleITK image (a copy) with the voxels and geometry of a scalar volume node.

    Parent transforms are not applied: the image is in the node's own coordinates.
    """
    image_data = volumeNode.GetImageData() if volumeNode is not None else None
    if image_data is None:
        raise ValueError("the volume node holds no image data")
    dims = image_data.GetDimensions()
    if image_data.GetNumberOfScalarComponents() != 1:
        raise ValueError("the volume node is not a scalar volume")
    arr = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())
    arr = np.array(arr).reshape(dims[2], dims[1], dims[0])
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(volumeNode.GetSpacing())
    image.SetOrigin(tuple(_LPS @ np.array(volumeNode.GetOrigin())))
    image.SetDirection(tuple((_LPS @ _ijk_to_ras(volumeNode)).ravel()))
    return image


def update_volume_node_from_sitk(node, image: sitk.Image) -> None:
    """Set the voxels and geometry of ``node`` (scalar or labelmap volume) from ``image``."""
    arr = np.ascontiguousarray(sitk.GetArrayFromImage(image))
    vtk_arr = numpy_support.numpy_to_vtk(arr.ravel(), deep=True)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(image.GetSize())
    image_data.GetPointData().SetScalars(vtk_arr)
    node.SetSpacing(image.GetSpacing())
    node.SetOrigin(tuple(_LPS @ np.array(image.GetOrigin())))
    ras = _LPS @ np.array(image.GetDirection()).reshape(3, 3)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, ras[r, c])
    node.SetIJKToRASDirectionMatrix(m)
    node.SetAndObserveImageData(image_data)


def add_volume_node(scene, image: sitk.Image, name: str = "T1", labelmap: bool = False):
    """A new volume node in ``scene`` holding ``image`` (with display nodes)."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    update_volume_node_from_sitk(node, image)
    node.CreateDefaultDisplayNodes()
    return node


# --------------------------------------------------------------------------- outputs

def _place_in_study(scene, volumeNode, node) -> None:
    """Put ``node`` beside the input volume in the subject hierarchy (its study or patient)."""
    sh = scene.GetSubjectHierarchyNode()
    if sh is None:
        return
    vol_item = sh.GetItemByDataNode(volumeNode)
    if not vol_item:
        return
    parent = sh.GetItemParent(vol_item)
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent)
    else:
        sh.CreateItem(parent, node)


def update_segmentation_node(scene, segmentationNode, labels: sitk.Image, volumeNode) -> None:
    """Fill ``segmentationNode`` with the CSF, GM and WM segments of ``labels`` (uint8 on the input
    grid), replacing whatever it held; its reference geometry is ``volumeNode``'s."""
    segmentation = segmentationNode.GetSegmentation()
    segmentation.RemoveAllSegments()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    for seg_id, name, _, code, meaning, rgb in SEGMENTS:
        segmentation.AddEmptySegment(seg_id, name, [c / 255 for c in rgb])
        segment = segmentation.GetSegment(seg_id)
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology_entry(code, meaning))
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
    # The labels are in the input's own (local) coordinates, like the labelmap node below, which
    # is outside the scene (nothing appears in, or is removed from, the scene) and so has no parent
    # transform. The import resamples through any transform between the two nodes, so the
    # segmentation takes no transform during the import and the input's transform after it.
    segmentationNode.SetAndObserveTransformNodeID(None)
    label_node = slicer.vtkMRMLLabelMapVolumeNode()
    update_volume_node_from_sitk(label_node, sitk.Cast(labels, sitk.sitkUInt8))
    ids = vtk.vtkStringArray()
    for seg_id, *_ in SEGMENTS:       # label value i goes to the i-th id: 1 CSF, 2 GM, 3 WM
        ids.InsertNextValue(seg_id)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            label_node, segmentationNode, ids):
        raise RuntimeError("importing the tissue labels into the segmentation failed")
    if segmentationNode.GetDisplayNode() is None:
        segmentationNode.CreateDefaultDisplayNodes()
    # shown where the input is shown, also when the input is under a transform
    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    _place_in_study(scene, volumeNode, segmentationNode)


TABLE_COLUMNS = ("Measurement", "Value", "Unit")
INPUT_ATTRIBUTE = "BrainAge.InputVolumeID"    # on the output nodes: the volume they were made for
INFO_ATTRIBUTES = {"approach": "BrainAge.Approach", "tissues": "BrainAge.Tissues", "qc": "BrainAge.QC"}


def table_rows(result) -> list[tuple[str, float | None, str]]:
    """(measurement, value, unit) rows of a BrainAgeResult for the results table; a value is
    None when unknown (chronological age not given, no CNN)."""
    v = result.volumes_ml
    return [
        ("Predicted brain age", result.predicted_age, "years"),
        ("90% interval low", result.interval[0], "years"),
        ("90% interval high", result.interval[1], "years"),
        ("Chronological age", result.chronological_age, "years"),
        ("Brain age gap", result.brain_age_gap, "years"),
        ("Predicted age from tissue volumes (A)", result.predicted_age_volumes, "years"),
        ("Predicted age from the image CNN (B)", result.predicted_age_cnn, "years"),
        ("Gray matter volume", v["gm"], "ml"),
        ("White matter volume", v["wm"], "ml"),
        ("Cerebrospinal fluid volume", v["csf"], "ml"),
        ("Total intracranial volume", v["tiv"], "ml"),
    ]


def update_table_node(tableNode, result) -> None:
    """Overwrite ``tableNode`` with the measurements of ``result``: a text column of names, a
    numeric (double) column of values (NaN when unknown, shown empty) and a text column of units.
    The approach, the tissue definition and the QC warnings are node attributes
    (:data:`INFO_ATTRIBUTES`), shown in the module's status line."""
    table = tableNode.GetTable()
    table.Initialize()
    names, values, units = vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkStringArray()
    for col, name in zip((names, values, units), TABLE_COLUMNS):
        col.SetName(name)
    for name, value, unit in table_rows(result):
        names.InsertNextValue(name)
        values.InsertNextValue(float("nan") if value is None else round(float(value), 2))
        units.InsertNextValue(unit)
    for col in (names, values, units):
        table.AddColumn(col)
    tableNode.SetColumnDescription("Value", "ages in years, volumes in ml on the input's grid; "
                                   "the interval is the 90% prediction interval")
    for key, attribute in INFO_ATTRIBUTES.items():
        tableNode.SetAttribute(attribute, str(getattr(result, "qc_text" if key == "qc" else key)))
    tableNode.Modified()


def segment_terminology(segment) -> str:
    """The terminology-entry tag string of a segment ('' when it has none)."""
    value = vtk.reference("")
    segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), value)
    return str(value)


def read_table_node(tableNode) -> dict[str, float | None]:
    """Measurement -> value (None when unknown) of a BrainAge results table node."""
    table = tableNode.GetTable()
    names, values = table.GetColumnByName("Measurement"), table.GetColumnByName("Value")
    out = {}
    for i in range(table.GetNumberOfRows()):
        value = float(values.GetValue(i))
        out[names.GetValue(i)] = None if np.isnan(value) else value
    return out


def table_info(tableNode) -> dict[str, str]:
    """Approach, tissue definition and QC text (``ok`` or ``;``-separated warnings) of a
    BrainAge results table node."""
    return {key: tableNode.GetAttribute(attribute) or "" for key, attribute in INFO_ATTRIBUTES.items()}


@dataclass
class ProcessResult:
    """What :func:`process` made: the output nodes and the full ``BrainAgeResult``."""

    segmentationNode: object
    tableNode: object
    result: object          # BrainAgeLib.pipeline.BrainAgeResult

    @property
    def predicted_age(self) -> float:
        return self.result.predicted_age

    @property
    def interval(self) -> tuple[float, float]:
        return self.result.interval

    @property
    def brain_age_gap(self) -> float | None:
        return self.result.brain_age_gap

    @property
    def volumes_ml(self) -> dict[str, float]:
        return self.result.volumes_ml


def _check_input(volumeNode) -> None:
    if volumeNode is None or not volumeNode.IsA("vtkMRMLScalarVolumeNode") or volumeNode.IsA(
            "vtkMRMLLabelMapVolumeNode"):
        raise ValueError("the input must be a scalar volume node holding a T1-weighted MRI")
    if volumeNode.GetImageData() is None:
        raise ValueError("the input volume node holds no image data")


def show_result(scene, volumeNode, result, segmentationNode=None, tableNode=None) -> ProcessResult:
    """Put a ``BrainAgeResult`` of ``volumeNode`` into the scene: tissue segments into
    ``segmentationNode`` and measurements into ``tableNode`` (each created when None, otherwise
    overwritten), both beside the input in the subject hierarchy. The input is not modified."""
    _check_input(volumeNode)
    base = volumeNode.GetName() or "T1"
    if segmentationNode is None:
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{base} tissues")
        segmentationNode.CreateDefaultDisplayNodes()
    update_segmentation_node(scene, segmentationNode, result.labels, volumeNode)
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} brain age")
    update_table_node(tableNode, result)
    _place_in_study(scene, volumeNode, tableNode)
    for node in (segmentationNode, tableNode):
        node.SetAttribute(INPUT_ATTRIBUTE, volumeNode.GetID() or "")
    return ProcessResult(segmentationNode, tableNode, result)


def output_for_input(scene, volumeNode, current, class_name: str):
    """The output node to use for ``volumeNode``: ``current`` when the user picked it (it was
    not made by BrainAge for another volume), else the node BrainAge made for this volume
    earlier, else None (a new one is created, named after the volume)."""
    if volumeNode is None:
        return current
    made_for = current.GetAttribute(INPUT_ATTRIBUTE) if current is not None else None
    if current is not None and (not made_for or made_for == volumeNode.GetID()):
        return current
    for i in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(i, class_name)
        if node.GetAttribute(INPUT_ATTRIBUTE) == volumeNode.GetID():
            return node
    return None


# Running BrainAge on a volume node (blocking, or in a background worker) lives in mrml_process;
# imported here so that ``from BrainAgeLib.mrml import process`` (DESIGN.md's Slicer API) holds.
from .mrml_process import (BackgroundProcess, process, release_models, start_batch,  # noqa: E402
                           start_process)
