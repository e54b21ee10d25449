"""BrainAgeLib.mrml on a real MRML scene (slicer-core, headless): segments, terminology,
colours, geometry, table, subject hierarchy, storage round trip, node reuse.

Two parts:
* the MRML conversion (``show_result``) of a hand-made result whose labels are a real tissue
  label map (DLMUSE-derived, Testing/data) on a real T1 with a permuted (non-identity) direction:
  needs no trained model, runs in seconds;
* ``process`` end to end on the bundled sample T1: runs the real ``predict``, so it needs the
  shipped models (BrainAge/Resources/Models) and takes about half a minute on a CPU.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import slicer  # slicer-core: the real MRML scene and logic classes, headless
import vtk
from vtk.util import numpy_support

from BrainAgeLib import cli, mrml
from BrainAgeLib.pipeline import BrainAgeResult
from BrainAgeLib.volumes import tissue_volumes_ml

DATA = Path(__file__).resolve().parent / "data"
T1 = DATA / "IXI013-HH-1212_T1.nii.gz"
TISSUES = DATA / "IXI013-HH-1212_DLMUSE_tissues.nii.gz"
SAMPLE = cli.SAMPLE

# what Slicer's DICOM master terminology and GenericAnatomyColors say (checked by hand against
# Slicer's Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-DICOM-Master.json)
EXPECTED = {  # segment id: name, SNOMED CT code, code meaning, recommended RGB
    "CSF": ("Cerebrospinal fluid", "65216001", "Cerebrospinal Fluid", (85, 188, 255)),
    "GM": ("Gray matter", "389081007", "Gray Matter", (200, 200, 235)),
    "WM": ("White matter", "389080008", "White Matter", (250, 250, 210)),
}
KEYS = {"CSF": "csf", "GM": "gm", "WM": "wm"}


# --------------------------------------------------------------------------- helpers

def _new_scene():
    scene, app = mrml.setup_headless_scene()
    scene._app = app           # keep the application logic (and the module logics) alive
    return scene


def _volume_in_study(scene, image: sitk.Image, name: str, patient: str):
    """A volume node holding ``image``, placed in a patient/study of the subject hierarchy."""
    volume = mrml.add_volume_node(scene, image, name)
    sh = scene.GetSubjectHierarchyNode()
    study_item = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), patient), "MRI study")
    item = sh.GetItemByDataNode(volume)
    if item:                          # the subject hierarchy logic creates items for new nodes
        sh.SetItemParent(item, study_item)
    else:
        sh.CreateItem(study_item, volume)
    return volume, study_item


def _snapshot(volume):
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return {"voxels": numpy_support.vtk_to_numpy(volume.GetImageData().GetPointData().GetScalars()).copy(),
            "ijk_to_ras": [m.GetElement(r, c) for r in range(4) for c in range(4)],
            "name": volume.GetName(), "image_mtime": volume.GetImageData().GetMTime()}


def _assert_unchanged(volume, before):
    after = _snapshot(volume)
    assert np.array_equal(after["voxels"], before["voxels"])
    assert after["ijk_to_ras"] == before["ijk_to_ras"]
    assert after["name"] == before["name"]
    assert after["image_mtime"] == before["image_mtime"]


def _segment_ml(seg_node, seg_id):
    oi = slicer.vtkOrientedImageData()
    seg_node.GetBinaryLabelmapRepresentation(seg_id, oi)
    arr = numpy_support.vtk_to_numpy(oi.GetPointData().GetScalars())
    return float((arr > 0).sum()) * float(np.prod(oi.GetSpacing())) / 1000


def _exported_labels(scene, seg_node, reference):
    """The segments exported back to a label map on the reference volume's grid, as SimpleITK."""
    lab = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")
    ids = vtk.vtkStringArray()
    for seg_id in ("CSF", "GM", "WM"):
        ids.InsertNextValue(seg_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg_node, ids, lab, reference)
    image = mrml.volume_node_to_sitk(lab)
    scene.RemoveNode(lab)
    return image


def _parse_terminology(entry: str):
    parsed = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(entry, parsed)
    return parsed


def _hand_made_result(labels: sitk.Image, chronological_age=35.0) -> BrainAgeResult:
    return BrainAgeResult(predicted_age=41.5, predicted_age_volumes=43.0, predicted_age_cnn=40.0,
                          interval=(32.0, 51.0), volumes_ml=tissue_volumes_ml(labels), labels=labels,
                          qc=[], seconds=1.0, chronological_age=chronological_age, approach="ensemble")


# --------------------------------------------------------------------------- MRML conversion (no models)

@pytest.fixture(scope="module")
def scene():
    return _new_scene()


@pytest.fixture(scope="module")
def shown(scene):
    """A real T1 (permuted direction) and a real tissue label map shown as segments and a table."""
    image = sitk.ReadImage(str(T1), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    volume, study_item = _volume_in_study(scene, image, "IXI013 T1", "IXI013")
    before = _snapshot(volume)
    result = _hand_made_result(labels)
    out = mrml.show_result(scene, volume, result)
    return {"volume": volume, "out": out, "before": before, "study": study_item, "labels": labels,
            "image": image}


def test_three_native_segments_with_terminology_and_colours(shown):
    seg = shown["out"].segmentationNode.GetSegmentation()
    assert seg.GetNumberOfSegments() == 3
    assert [seg.GetNthSegmentID(i) for i in range(3)] == ["CSF", "GM", "WM"]
    for seg_id, (name, code, meaning, rgb) in EXPECTED.items():
        s = seg.GetSegment(seg_id)
        assert s.GetName() == name
        assert np.allclose(s.GetColor(), np.array(rgb) / 255, atol=1e-6)
        entry = mrml.segment_terminology(s)
        t = _parse_terminology(entry)
        assert t.GetTerminologyContextName() == "Segmentation category and type - DICOM master list"
        cat, typ = t.GetCategoryObject(), t.GetTypeObject()
        assert (cat.GetCodingSchemeDesignator(), cat.GetCodeValue(), cat.GetCodeMeaning()) == \
            ("SCT", "123037004", "Anatomical Structure")
        assert (typ.GetCodingSchemeDesignator(), typ.GetCodeValue(), typ.GetCodeMeaning()) == ("SCT", code, meaning)
        assert t.GetRegionContextName() == "Anatomic codes - DICOM master list"
        assert not s.GetNameAutoGenerated() and not s.GetColorAutoGenerated()


def test_segment_volumes_match_result_within_half_percent(shown):
    out = shown["out"]
    for seg_id, key in KEYS.items():
        ml = _segment_ml(out.segmentationNode, seg_id)
        assert ml == pytest.approx(out.result.volumes_ml[key], rel=0.005)
        assert ml > 50


def test_segments_reproduce_the_label_map_voxel_for_voxel(shown, scene):
    """Exported back on the input's grid the segments give the very labels (geometry is right
    also for an input whose direction matrix is a permutation)."""
    back = _exported_labels(scene, shown["out"].segmentationNode, shown["volume"])
    labels = shown["labels"]
    assert back.GetSize() == labels.GetSize()
    assert np.allclose(back.GetOrigin(), labels.GetOrigin(), atol=1e-4)
    assert np.allclose(back.GetDirection(), labels.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))


def test_reference_geometry_is_the_input(shown):
    seg_node, volume = shown["out"].segmentationNode, shown["volume"]
    ref = seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert ref is volume
    oi = slicer.vtkOrientedImageData()
    seg_node.GetBinaryLabelmapRepresentation("GM", oi)
    assert np.allclose(oi.GetSpacing(), volume.GetSpacing())
    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    oi.GetDirectionMatrix(a)
    volume.GetIJKToRASDirectionMatrix(b)
    assert np.allclose([a.GetElement(r, c) for r in range(3) for c in range(3)],
                       [b.GetElement(r, c) for r in range(3) for c in range(3)])


def test_table_contents(shown):
    out = shown["out"]
    rows = mrml.read_table_node(out.tableNode)
    table = out.tableNode.GetTable()
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == list(mrml.TABLE_COLUMNS)
    # numbers in a numeric column, units beside them
    assert table.GetColumnByName("Value").IsA("vtkDoubleArray")
    units = {table.GetColumnByName("Measurement").GetValue(i): table.GetColumnByName("Unit").GetValue(i)
             for i in range(table.GetNumberOfRows())}
    assert units["Predicted brain age"] == "years" and units["Gray matter volume"] == "ml"
    assert set(units.values()) == {"years", "ml"}
    assert rows["Predicted brain age"] == pytest.approx(41.5)
    assert rows["Predicted age from tissue volumes (A)"] == pytest.approx(43.0)
    assert rows["Predicted age from the image CNN (B)"] == pytest.approx(40.0)
    assert (rows["90% interval low"], rows["90% interval high"]) == (32.0, 51.0)
    assert rows["Chronological age"] == pytest.approx(35.0)
    assert rows["Brain age gap"] == pytest.approx(6.5)
    for name, key in (("Gray matter volume", "gm"), ("White matter volume", "wm"),
                      ("Cerebrospinal fluid volume", "csf"), ("Total intracranial volume", "tiv")):
        assert rows[name] == pytest.approx(out.result.volumes_ml[key], abs=0.006)
    assert mrml.table_info(out.tableNode) == {"approach": "ensemble", "tissues": "camcan", "qc": "ok"}
    assert out.tableNode.GetColumnDescription("Value")


def test_table_without_chronological_age_leaves_gap_empty(scene):
    labels = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "no age")
    r = _hand_made_result(labels, chronological_age=None)
    r.qc = ["not a T1: tissue contrast WM > GM > CSF not found"]
    mrml.update_table_node(table, r)
    rows = mrml.read_table_node(table)
    assert rows["Chronological age"] is None and rows["Brain age gap"] is None
    assert np.isnan(table.GetTable().GetColumnByName("Value").GetValue(3))
    assert mrml.table_info(table)["qc"] == "not a T1: tissue contrast WM > GM > CSF not found"
    scene.RemoveNode(table)


def test_outputs_follow_the_input(shown, scene):
    """A new input gets new outputs unless the user picked existing ones; going back to an
    input finds the outputs made for it."""
    out, volume = shown["out"], shown["volume"]
    assert out.segmentationNode.GetAttribute(mrml.INPUT_ATTRIBUTE) == volume.GetID()
    other = mrml.add_volume_node(scene, shown["image"], "second T1")
    for node, cls in ((out.segmentationNode, "vtkMRMLSegmentationNode"), (out.tableNode, "vtkMRMLTableNode")):
        assert mrml.output_for_input(scene, other, node, cls) is None          # made for another volume
        assert mrml.output_for_input(scene, volume, None, cls) is node         # back to the first
        assert mrml.output_for_input(scene, volume, node, cls) is node
    picked = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user's")
    assert mrml.output_for_input(scene, other, picked, "vtkMRMLSegmentationNode") is picked
    second = mrml.show_result(scene, other, _hand_made_result(shown["labels"]))
    assert second.segmentationNode.GetName() == "second T1 tissues"
    assert second.tableNode.GetName() == "second T1 brain age"
    assert second.segmentationNode is not out.segmentationNode
    for node in (second.segmentationNode, second.tableNode, other, picked):
        scene.RemoveNode(node)


def test_outputs_placed_in_the_input_study(shown, scene):
    sh = scene.GetSubjectHierarchyNode()
    for node in (shown["out"].segmentationNode, shown["out"].tableNode):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == shown["study"]


def test_input_node_unchanged(shown):
    _assert_unchanged(shown["volume"], shown["before"])
    assert not shown["volume"].IsA("vtkMRMLLabelMapVolumeNode")


def test_seg_nrrd_round_trip_keeps_segments(shown, scene, tmp_path):
    seg_node = shown["out"].segmentationNode
    path = str(tmp_path / "tissues.seg.nrrd")
    writer = slicer.vtkMRMLSegmentationStorageNode()
    writer.SetFileName(path)
    assert writer.WriteData(seg_node)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(path)
    assert reader.ReadData(loaded)
    seg, orig = loaded.GetSegmentation(), seg_node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 3
    for seg_id, key in KEYS.items():
        s, o = seg.GetSegment(seg_id), orig.GetSegment(seg_id)
        assert s.GetName() == o.GetName()
        assert np.allclose(s.GetColor(), o.GetColor(), atol=1e-6)
        assert mrml.segment_terminology(s) == mrml.segment_terminology(o)
        assert _segment_ml(loaded, seg_id) == pytest.approx(shown["out"].result.volumes_ml[key], rel=0.005)
    back = _exported_labels(scene, loaded, shown["volume"])
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(shown["labels"]))
    scene.RemoveNode(loaded)


def test_second_run_reuses_output_nodes(shown, scene):
    out = shown["out"]
    counts = {c: scene.GetNumberOfNodesByClass(c) for c in
              ("vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLLabelMapVolumeNode",
               "vtkMRMLScalarVolumeNode")}
    # other labels this time: the segments must be replaced, not added to
    labels = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    eroded = sitk.BinaryErode(labels > 0, [1, 1, 1])
    labels2 = sitk.Cast(labels * sitk.Cast(eroded, sitk.sitkUInt8), sitk.sitkUInt8)
    again = mrml.show_result(scene, shown["volume"], _hand_made_result(labels2, 50.0),
                             out.segmentationNode, out.tableNode)
    assert again.segmentationNode is out.segmentationNode and again.tableNode is out.tableNode
    assert {c: scene.GetNumberOfNodesByClass(c) for c in counts} == counts
    assert out.segmentationNode.GetSegmentation().GetNumberOfSegments() == 3
    assert _segment_ml(out.segmentationNode, "GM") == pytest.approx(tissue_volumes_ml(labels2)["gm"], rel=0.005)
    assert mrml.read_table_node(out.tableNode)["Chronological age"] == 50.0
    assert out.tableNode.GetTable().GetNumberOfRows() == len(mrml.table_rows(again.result))
    # a user's segmentation holding other segments: they are replaced by the three tissues
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user")
    user.GetSegmentation().AddEmptySegment("tumour", "tumour")
    mrml.show_result(scene, shown["volume"], _hand_made_result(labels), user, out.tableNode)
    assert [user.GetSegmentation().GetNthSegmentID(i) for i in range(3)] == ["CSF", "GM", "WM"]
    assert user.GetSegmentation().GetNumberOfSegments() == 3
    scene.RemoveNode(user)
    _assert_unchanged(shown["volume"], shown["before"])


def _linear_transform(scene, name, angle, shift):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    t = vtk.vtkTransform()
    t.Translate(*shift)
    t.RotateZ(angle)
    node.SetMatrixTransformToParent(t.GetMatrix())
    return node


def test_segmentation_follows_the_input_transform(scene):
    """An input under a (non-identity) transform: the segments are not resampled, and the
    segmentation goes under the same transform, also when reused from under another one."""
    labels = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    volume = mrml.add_volume_node(scene, sitk.ReadImage(str(T1), sitk.sitkFloat32), "moved T1")
    transform = _linear_transform(scene, "moved", 20.0, (15.0, -7.0, 4.0))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    out = mrml.show_result(scene, volume, _hand_made_result(labels))
    assert out.segmentationNode.GetTransformNodeID() == transform.GetID()
    back = _exported_labels(scene, out.segmentationNode, volume)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    other = _linear_transform(scene, "other", -35.0, (-30.0, 12.0, 0.0))
    out.segmentationNode.SetAndObserveTransformNodeID(other.GetID())
    mrml.show_result(scene, volume, _hand_made_result(labels), out.segmentationNode, out.tableNode)
    assert out.segmentationNode.GetTransformNodeID() == transform.GetID()
    back = _exported_labels(scene, out.segmentationNode, volume)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    for seg_id, key in KEYS.items():
        assert _segment_ml(out.segmentationNode, seg_id) == pytest.approx(tissue_volumes_ml(labels)[key], rel=0.005)
    for node in (out.segmentationNode, out.tableNode, volume, transform, other):
        scene.RemoveNode(node)


def test_label_map_or_empty_input_is_refused(scene):
    lab = sitk.Image(40, 40, 40, sitk.sitkUInt8)
    node = mrml.add_volume_node(scene, lab, "labels", labelmap=True)
    with pytest.raises(ValueError, match="scalar volume"):
        mrml.process(scene, node)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="no image data"):
        mrml.process(scene, empty)
    with pytest.raises(ValueError):
        mrml.process(scene, None)
    scene.RemoveNode(node)
    scene.RemoveNode(empty)


def _check_round_trip(scene, img: sitk.Image, name: str):
    node = mrml.add_volume_node(scene, img, name)
    back = mrml.volume_node_to_sitk(node)
    assert back.GetSize() == img.GetSize()
    assert back.GetPixelID() == img.GetPixelID()
    assert np.allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-9)
    assert np.allclose(back.GetSpacing(), img.GetSpacing())
    assert np.allclose(back.GetDirection(), img.GetDirection(), atol=1e-9)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    # Slicer's RAS is ITK's LPS with x and y negated: origin and every voxel's position
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    assert np.allclose(node.GetOrigin(), lps_to_ras @ np.array(img.GetOrigin()))
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    size = img.GetSize()
    for ijk in ((0, 0, 0), (size[0] - 1, 3, 1), (2, size[1] - 1, size[2] - 1)):
        ras = m.MultiplyPoint((*ijk, 1.0))[:3]
        lps = img.TransformIndexToPhysicalPoint(ijk)
        assert np.allclose(ras, lps_to_ras @ np.array(lps), atol=1e-6)
    scene.RemoveNode(node)


def test_oblique_geometry_round_trip(scene):
    """Volume node <-> SimpleITK keeps voxels, origin, spacing and (LPS vs RAS) directions."""
    img = sitk.GetImageFromArray(np.random.default_rng(0).random((40, 30, 20)).astype(np.float32))
    img.SetSpacing((0.9, 1.1, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(sitk.Euler3DTransform((0, 0, 0), 0.3, -0.2, 0.5).GetMatrix())
    _check_round_trip(scene, img, "oblique")


def test_reoriented_real_t1_round_trip(scene):
    """A real T1 with a permuted direction, the same reoriented to RAI, and made oblique."""
    t1 = sitk.ReadImage(str(T1))                      # float32, direction a permutation
    assert not np.allclose(t1.GetDirection(), np.eye(3).ravel())
    _check_round_trip(scene, t1, "IXI013 as stored")
    rai = sitk.DICOMOrient(t1, "RAI")
    _check_round_trip(scene, rai, "IXI013 RAI")
    oblique = sitk.Image(rai)
    rot = np.array(sitk.Euler3DTransform((0, 0, 0), 0.1, 0.2, -0.15).GetMatrix()).reshape(3, 3)
    oblique.SetDirection(tuple((rot @ np.array(rai.GetDirection()).reshape(3, 3)).ravel()))
    _check_round_trip(scene, sitk.Cast(oblique, sitk.sitkInt16), "IXI013 oblique int16")


def test_headless_scene_has_the_module_logics():
    scene = _new_scene()
    for name in ("Volumes", "Segmentations", "Terminologies", "SubjectHierarchy", "Colors"):
        assert scene._app.GetModuleLogic(name) is not None, name
    assert scene.GetSubjectHierarchyNode() is not None


# --------------------------------------------------------------------------- process (needs the models)

@pytest.fixture(scope="module")
def processed():
    """The bundled sample through ``process`` (the real predict): needs the shipped models."""
    scene = _new_scene()
    image = sitk.ReadImage(str(SAMPLE), sitk.sitkFloat32)
    volume, study_item = _volume_in_study(scene, image, "IXI012 T1", "IXI012")
    before = _snapshot(volume)
    calls = []
    out = mrml.process(scene, volume, chronologicalAge=cli.SAMPLE_AGE,
                       progress=lambda f, m: calls.append((f, m)))
    from BrainAgeLib import models, regression
    cached = (models._load_resunet.cache_info().currsize, regression._load_cnn.cache_info().currsize)
    return {"scene": scene, "volume": volume, "out": out, "before": before, "study": study_item,
            "progress": calls, "cached_after": cached}


def test_process_sample_gives_a_plausible_age_and_segments(processed):
    out = processed["out"]
    assert 18 <= out.predicted_age <= 90
    lo, hi = out.interval
    assert lo < out.predicted_age < hi
    assert out.brain_age_gap == pytest.approx(out.predicted_age - cli.SAMPLE_AGE)
    seg = out.segmentationNode.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == \
        ["Cerebrospinal fluid", "Gray matter", "White matter"]
    for seg_id, key in KEYS.items():
        assert _segment_ml(out.segmentationNode, seg_id) == pytest.approx(out.volumes_ml[key], rel=0.005)
    back = _exported_labels(processed["scene"], out.segmentationNode, processed["volume"])
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(out.result.labels))
    fractions = [f for f, _ in processed["progress"]]
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_process_sample_table_and_placement(processed):
    out, scene = processed["out"], processed["scene"]
    rows = mrml.read_table_node(out.tableNode)
    assert rows["Predicted brain age"] == pytest.approx(out.predicted_age, abs=0.006)
    assert rows["Predicted age from tissue volumes (A)"] == pytest.approx(out.result.predicted_age_volumes, abs=0.006)
    assert rows["Chronological age"] == pytest.approx(cli.SAMPLE_AGE, abs=0.006)
    assert rows["Brain age gap"] == pytest.approx(out.predicted_age - cli.SAMPLE_AGE, abs=0.01)
    assert rows["Total intracranial volume"] == pytest.approx(out.volumes_ml["tiv"], abs=0.006)
    sh = scene.GetSubjectHierarchyNode()
    for node in (out.segmentationNode, out.tableNode):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == processed["study"]
    _assert_unchanged(processed["volume"], processed["before"])


def test_process_second_run_reuses_output_nodes(processed):
    out, scene = processed["out"], processed["scene"]
    n_seg = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    n_tab = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    n_vol = scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")
    again = mrml.process(scene, processed["volume"], out.segmentationNode, out.tableNode,
                         approach="volumes")
    assert again.segmentationNode is out.segmentationNode and again.tableNode is out.tableNode
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == n_seg
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == n_tab
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == n_vol
    assert out.segmentationNode.GetSegmentation().GetNumberOfSegments() == 3
    assert mrml.table_info(out.tableNode)["approach"] == "volumes"
    assert mrml.read_table_node(out.tableNode)["Chronological age"] is None
    assert again.predicted_age == pytest.approx(again.result.predicted_age_volumes)
    _assert_unchanged(processed["volume"], processed["before"])


def test_console_api_gives_the_same_numbers_as_the_cli(processed, tmp_path):
    """``process`` on a volume node and ``brainage predict`` on the file agree."""
    import csv
    out_csv = tmp_path / "sample.csv"
    assert cli.main(["predict", str(SAMPLE), "--output", str(out_csv), "--quiet"]) == 0
    row = next(csv.DictReader(out_csv.open()))
    r = processed["out"].result
    assert float(row["predicted_age"]) == pytest.approx(r.predicted_age, abs=0.01)
    assert float(row["predicted_age_volumes"]) == pytest.approx(r.predicted_age_volumes, abs=0.01)
    assert float(row["predicted_age_cnn"]) == pytest.approx(r.predicted_age_cnn, abs=0.01)
    assert float(row["interval_low"]) == pytest.approx(r.interval[0], abs=0.01)
    for key in ("gm", "wm", "csf", "tiv"):
        assert float(row[f"{key}_ml"]) == pytest.approx(r.volumes_ml[key], abs=0.06)


def test_process_gives_the_models_back_after_a_run(processed):
    """With device auto/cuda the cached networks are dropped after the run (on a GPU their memory
    goes back with torch.cuda.empty_cache); the next run loads them again (~0.1 s)."""
    assert processed["cached_after"] == (0, 0)


# --------------------------------------------------------------------------- background worker

def _scene_state(scene):
    return {c: scene.GetNumberOfNodesByClass(c) for c in
            ("vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLVolumeNode", "vtkMRMLPlotChartNode")}


def test_background_process_gives_the_blocking_result(processed):
    """The same volume through the background worker: the same numbers and labels as the blocking
    call, into the same nodes, with progress on the way; starting takes a fraction of a second."""
    scene, volume, blocking = processed["scene"], processed["volume"], processed["out"]
    before = _scene_state(scene)
    t0 = time.monotonic()
    job = mrml.start_process(scene, volume, blocking.segmentationNode, blocking.tableNode,
                             chronologicalAge=cli.SAMPLE_AGE)
    start_seconds = time.monotonic() - t0
    assert job.state == "running" and start_seconds < 1.0
    seen = []
    out = job.wait(timeout=600, progress=seen.append)
    assert job.state == "finished" and job.error is None
    assert out.segmentationNode is blocking.segmentationNode and out.tableNode is blocking.tableNode
    assert _scene_state(scene) == before
    a, b = out.result, blocking.result
    for name in ("predicted_age", "predicted_age_volumes", "predicted_age_cnn", "chronological_age"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-3), name
    assert np.allclose(a.interval, b.interval, atol=1e-6)
    assert a.volumes_ml == pytest.approx(b.volumes_ml, abs=1e-3) and a.qc == b.qc
    assert np.array_equal(sitk.GetArrayViewFromImage(a.labels), sitk.GetArrayViewFromImage(b.labels))
    assert a.labels.GetOrigin() == b.labels.GetOrigin() and a.labels.GetDirection() == b.labels.GetDirection()
    assert mrml.read_table_node(out.tableNode)["Predicted brain age"] == pytest.approx(b.predicted_age, abs=0.006)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"starting", "segmenting tissues", "estimating age"} <= {p.message for p in seen}
    assert not job.job.job_dir.exists()          # the temporary files are gone
    _assert_unchanged(volume, processed["before"])


def test_background_cancel_leaves_the_scene_as_it_was(processed):
    scene, volume = processed["scene"], processed["volume"]
    before = _scene_state(scene)
    n_nodes = scene.GetNumberOfNodes()
    table_before = mrml.read_table_node(processed["out"].tableNode)
    job = mrml.start_process(scene, volume, processed["out"].segmentationNode, processed["out"].tableNode)
    deadline = time.monotonic() + 120
    while not any(p.message == "reading image" for p in job.poll()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "running"
    pid = job.job.pid
    assert job.cancel() < 2.0
    assert job.state == "cancelled" and job.done and job.poll() == []
    with pytest.raises(OSError):
        os.kill(pid, 0)                          # the worker is gone
    assert _scene_state(scene) == before and scene.GetNumberOfNodes() == n_nodes
    assert mrml.read_table_node(processed["out"].tableNode) == table_before
    assert not job.job.job_dir.exists()
    from BrainAgeLib.runner import WorkerError
    with pytest.raises(WorkerError, match="cancelled"):
        job.wait()


def test_batch_in_background_writes_the_cli_csv(processed, tmp_path):
    """Scene volumes and paths into ``brainage predict``'s CSV, with per-scan progress; bad inputs
    get an error row and the batch goes on. (A real scan through the worker is the test above;
    these inputs fail fast, so that the test takes seconds.)"""
    import csv
    scene = processed["scene"]
    tiny = mrml.add_volume_node(scene, sitk.Image(6, 6, 6, sitk.sitkFloat32), "IXI099 tiny")
    out_csv = tmp_path / "batch" / "brainage.csv"
    missing = str(tmp_path / "missing_T1.nii.gz")
    job = mrml.start_batch([tiny, missing], out_csv, ages={"IXI099 tiny": 61.5})
    seen = []
    assert job.wait(timeout=300, progress=seen.append) == "finished"
    with open(out_csv, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == cli.COLUMNS
    assert [r["input"] for r in rows] == ["IXI099 tiny", missing]
    assert rows[0]["chronological_age"] == "61.50" and rows[1]["chronological_age"] == ""
    assert all(r["qc"].startswith("error: ") and r["predicted_age"] == "" for r in rows)
    assert "missing_T1" in rows[1]["qc"] or "not" in rows[1]["qc"]
    assert {p.scan for p in seen if p.scan is not None} == {0, 1}
    assert all(p.n_scans == 2 for p in seen if p.scan is not None)
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen) and seen[-1].fraction == 1.0
    job.close()
    assert not job.job_dir.exists() and out_csv.is_file()
    scene.RemoveNode(tiny)
    with pytest.raises(ValueError, match="no input"):
        mrml.start_batch([], out_csv)


def test_background_process_applies_the_site_calibration_file(processed, tmp_path):
    """The Slicer "Site calibration" parameter: a site-offset JSON moves every age by its offset
    in the background worker; a broken file is refused before the worker starts, and the scene
    is left as it was."""
    import json
    from BrainAgeLib.regression import SiteOffset
    scene, volume, blocking = processed["scene"], processed["volume"], processed["out"]
    site = tmp_path / "site.json"
    site.write_text(json.dumps(SiteOffset(offset=3.0, n=20, mad=2.0).to_dict()))
    job = mrml.start_process(scene, volume, blocking.segmentationNode, blocking.tableNode,
                             chronologicalAge=cli.SAMPLE_AGE, siteCalibration=str(site))
    out = job.wait(timeout=600)
    b = blocking.result
    assert out.predicted_age == pytest.approx(b.predicted_age - 3.0, abs=1e-3)
    assert out.result.predicted_age_volumes == pytest.approx(b.predicted_age_volumes - 3.0, abs=1e-3)
    assert np.allclose(out.interval, np.asarray(b.interval) - 3.0, atol=1e-3)
    assert mrml.read_table_node(out.tableNode)["Predicted brain age"] == pytest.approx(b.predicted_age - 3.0,
                                                                                       abs=0.006)
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "SiteOffset", "offset_years": NaN, "n_controls": 20}')
    before = _scene_state(scene)
    with pytest.raises(ValueError, match="site calibration .*bad.json"):
        mrml.start_process(scene, volume, siteCalibration=str(bad))
    assert _scene_state(scene) == before
    _assert_unchanged(volume, processed["before"])
    # put the table back as the other tests expect it (the uncalibrated ages)
    mrml.process(scene, volume, blocking.segmentationNode, blocking.tableNode, chronologicalAge=cli.SAMPLE_AGE)


def test_runs_live_in_mrml_process_and_keep_the_design_api():
    """DESIGN.md's Slicer API (``from BrainAgeLib.mrml import process``) holds after the split:
    the runs are defined once, in mrml_process, and the nodes' module hands out the same objects."""
    from BrainAgeLib import mrml_process
    for name in ("process", "start_process", "start_batch", "release_models", "BackgroundProcess"):
        assert getattr(mrml, name) is getattr(mrml_process, name)
        assert getattr(mrml_process, name).__module__ == "BrainAgeLib.mrml_process"
    assert mrml.show_result.__module__ == "BrainAgeLib.mrml"
