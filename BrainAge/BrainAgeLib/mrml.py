"""Slicer glue without Qt: MRML volume node <-> SimpleITK image, and a BrainAge result as a
segmentation node (native segments with standard terminology and colours) and a table node.

Imports only ``slicer``'s MRML and logic classes, which exist both in the Slicer application
and in the ``slicer-core`` package (headless), so that all of it is tested without Qt.
Slicer's physical space is RAS; ITK's is LPS.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

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


def release_models() -> None:
    """Drop the cached networks and give their GPU memory back (after a run in this process;
    a background worker gives everything back when it exits). Reloading costs ~0.1 s."""
    import sys
    from . import models
    models._load_resunet.cache_clear()
    regression = sys.modules.get(f"{__package__}.regression")
    if regression is not None:
        regression._load_cnn.cache_clear()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc
        gc.collect()
        torch.cuda.empty_cache()


def process(scene, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
            approach: str = "ensemble", device: str = "auto", skullStripped: bool | None = None,
            progress: Callable[[float, str], None] | None = None,
            tissues: str = "camcan", siteCalibration=None) -> ProcessResult:
    """Brain age of a volume node; tissues into a segmentation node, measurements into a table.

    Blocking (for scripts; the GUI uses :func:`start_process`). Outputs that are None are
    created; given ones are reused and overwritten, never duplicated. The input node is never
    modified. ``skullStripped``: True skips brain extraction, None detects it.
    ``progress(fraction, message)`` is called as the steps advance. ``tissues``: "camcan" or
    "dlmuse", the tissue definition of the segments and volumes. ``siteCalibration``: the path of
    this scanner's calibration JSON (``brainage calibrate-site`` or ``site-offset``), or None.
    The networks leave the GPU after the run.
    """
    from .pipeline import predict
    _check_input(volumeNode)
    image = volume_node_to_sitk(volumeNode)
    try:
        result = predict(image, skull_stripped=skullStripped, chronological_age=chronologicalAge,
                         approach=approach, tissues=tissues, device=device, progress=progress,
                         site_calibration=siteCalibration or None)
    finally:
        if device != "cpu":
            release_models()
    return show_result(scene, volumeNode, result, segmentationNode, tableNode)


class BackgroundProcess:
    """:func:`process` in a worker process (see :mod:`BrainAgeLib.runner`): poll it from a timer.

    The scene is touched only when the worker has finished, by :meth:`poll`: a cancelled or
    failed run leaves the scene as it was. ``output`` is the :class:`ProcessResult` once
    ``state`` is "finished"; ``error`` says why when it is "failed".
    """

    def __init__(self, scene, volumeNode, segmentationNode, tableNode, job) -> None:
        self.scene, self.job = scene, job
        self.volumeID = volumeNode.GetID()
        self.segmentationID = segmentationNode.GetID() if segmentationNode is not None else None
        self.tableID = tableNode.GetID() if tableNode is not None else None
        self.output: ProcessResult | None = None
        self.error: str | None = None
        self.state = job.state

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")

    def poll(self) -> list:
        """New :class:`~BrainAgeLib.runner.Progress` reports; shows the result when finished."""
        if self.done:
            return []
        reports = self.job.poll()
        if self.job.done:
            self._finish()
        return reports

    def _finish(self) -> None:
        try:
            if self.job.state != "finished":
                self.state, self.error = self.job.state, self.job.error
                return
            volume = self.scene.GetNodeByID(self.volumeID) if self.volumeID else None
            if volume is None:
                self.state, self.error = "failed", "the input volume was removed from the scene during the run"
                return
            seg = self.scene.GetNodeByID(self.segmentationID) if self.segmentationID else None
            table = self.scene.GetNodeByID(self.tableID) if self.tableID else None
            try:
                self.output = show_result(self.scene, volume, self.job.result(), seg, table)
                self.state = "finished"
            except Exception as e:      # the result could not be shown: say so, keep the log
                self.state, self.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.job.close()

    def cancel(self) -> float:
        """Stop the worker; the scene is left as it was. Returns the seconds it took."""
        if self.done:
            return 0.0
        seconds = self.job.cancel()
        self.state = "cancelled"
        self.job.close()
        return seconds

    def wait(self, timeout: float | None = None, interval: float = 0.1, progress=None) -> ProcessResult:
        """Block until finished (scripts, tests); returns the output or raises WorkerError."""
        import time
        from .runner import WorkerError
        t_end = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            for p in self.poll():
                if progress:
                    progress(p)
            if not self.done:
                if t_end is not None and time.monotonic() > t_end:
                    raise TimeoutError(f"the BrainAge worker did not finish in {timeout} s")
                time.sleep(interval)
        if self.state != "finished":
            raise WorkerError(self.error or f"the run was {self.state}")
        return self.output


def start_process(scene, volumeNode, segmentationNode=None, tableNode=None, chronologicalAge=None,
                  approach: str = "ensemble", device: str = "auto", skullStripped: bool | None = None,
                  tissues: str = "camcan", python: str | list[str] | None = None,
                  env: dict | None = None, siteCalibration=None) -> BackgroundProcess:
    """Start :func:`process` in a background worker and return at once (the input volume is
    written to a temporary folder first, a fraction of a second). Poll the returned
    :class:`BackgroundProcess` (e.g. every 0.2 s from a QTimer) until ``done``."""
    from . import runner
    _check_input(volumeNode)
    job_dir = runner.new_job_dir()
    try:
        runner.write_single_job(job_dir, volume_node_to_sitk(volumeNode), chronological_age=chronologicalAge,
                                approach=approach, tissues=tissues, device=device,
                                skull_stripped=skullStripped, site_calibration=siteCalibration)
        job = runner.start_job(job_dir, python=python, env=env)
    except Exception:
        import shutil
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return BackgroundProcess(scene, volumeNode, segmentationNode, tableNode, job)


def start_batch(inputs: list, output_csv, ages: dict[str, float] | None = None,
                approach: str = "ensemble", device: str = "auto", skullStripped: bool | None = None,
                tissues: str = "camcan", python: str | list[str] | None = None,
                env: dict | None = None, siteCalibration=None):
    """Start a batch in a background worker: ``inputs`` are paths (files or DICOM folders; expand
    folders with :func:`BrainAgeLib.io.expand_inputs`) or scalar volume nodes (written to the
    job folder; their names fill the ``input`` column). Writes ``brainage predict``'s CSV to
    ``output_csv``; ``ages`` as ``brainage predict --ages`` reads them (keys matched to the path,
    file name or node name). Returns the :class:`~BrainAgeLib.runner.BackgroundJob` to poll."""
    from . import runner
    from .cli import match_age
    if not inputs:
        raise ValueError("the batch has no input")
    job_dir = runner.new_job_dir("brainage-batch-")
    try:
        paths, names = [], []
        for i, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                paths.append(str(item))
                names.append(str(item))
            else:
                _check_input(item)
                path = job_dir / f"scan{i:04d}.nrrd"
                sitk.WriteImage(volume_node_to_sitk(item), str(path), useCompression=False)
                paths.append(str(path))
                names.append(item.GetName() or f"volume {i + 1}")
        scan_ages = [match_age(ages, n) if ages else None for n in names]
        runner.write_batch_job(job_dir, paths, output_csv, names=names, ages=scan_ages, approach=approach,
                               tissues=tissues, device=device, skull_stripped=skullStripped,
                               site_calibration=siteCalibration)
        return runner.start_job(job_dir, python=python, env=env)
    except Exception:
        import shutil
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
