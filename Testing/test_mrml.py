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
    assert float(rows["Predicted brain age"]) == pytest.approx(41.5)
    assert float(rows["Predicted age from tissue volumes (A)"]) == pytest.approx(43.0)
    assert float(rows["Predicted age from the image CNN (B)"]) == pytest.approx(40.0)
    assert (float(rows["90% interval low"]), float(rows["90% interval high"])) == (32.0, 51.0)
    assert float(rows["Chronological age"]) == pytest.approx(35.0)
    assert float(rows["Brain age gap"]) == pytest.approx(6.5)
    for name, key in (("Gray matter volume", "gm"), ("White matter volume", "wm"),
                      ("Cerebrospinal fluid volume", "csf"), ("Total intracranial volume", "tiv")):
        assert float(rows[name]) == pytest.approx(out.result.volumes_ml[key], abs=0.06)
    assert rows["QC"] == "ok" and rows["Approach"] == "ensemble" and rows["Tissue definition"] == "camcan"


def test_table_without_chronological_age_leaves_gap_empty(scene):
    labels = sitk.ReadImage(str(TISSUES), sitk.sitkUInt8)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "no age")
    mrml.update_table_node(table, _hand_made_result(labels, chronological_age=None))
    rows = mrml.read_table_node(table)
    assert rows["Chronological age"] == "" and rows["Brain age gap"] == ""
    scene.RemoveNode(table)


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
    assert float(mrml.read_table_node(out.tableNode)["Chronological age"]) == 50.0
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
    return {"scene": scene, "volume": volume, "out": out, "before": before, "study": study_item,
            "progress": calls}


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
    assert float(rows["Predicted brain age"]) == pytest.approx(out.predicted_age, abs=0.05)
    assert float(rows["Predicted age from tissue volumes (A)"]) == pytest.approx(
        out.result.predicted_age_volumes, abs=0.05)
    assert float(rows["Chronological age"]) == pytest.approx(cli.SAMPLE_AGE, abs=0.05)
    assert float(rows["Brain age gap"]) == pytest.approx(out.predicted_age - cli.SAMPLE_AGE, abs=0.1)
    assert float(rows["Total intracranial volume"]) == pytest.approx(out.volumes_ml["tiv"], abs=0.06)
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
    rows = mrml.read_table_node(out.tableNode)
    assert rows["Approach"] == "volumes" and rows["Chronological age"] == ""
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
