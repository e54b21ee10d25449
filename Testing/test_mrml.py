"""BrainAgeLib.mrml on a real MRML scene (slicer-core, headless): segments, terminology,
colours, geometry, table, subject hierarchy, storage round trip, node reuse."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import slicer  # slicer-core: the real MRML scene and logic classes, headless
from vtk.util import numpy_support

from BrainAgeLib import cli, mrml

SAMPLE = cli.SAMPLE


@pytest.fixture(scope="module")
def scene():
    scene, app = mrml.setup_headless_scene()
    scene._app = app
    return scene


@pytest.fixture(scope="module")
def study(scene):
    """The sample loaded into a volume node placed in a patient/study of the subject hierarchy."""
    image = sitk.ReadImage(str(SAMPLE), sitk.sitkFloat32)
    volume = mrml.add_volume_node(scene, image, "IXI012 T1")
    sh = scene.GetSubjectHierarchyNode()
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "IXI012")
    study_item = sh.CreateStudyItem(patient, "MRI study")
    item = sh.GetItemByDataNode(volume)
    if item:                          # the application creates items for new nodes
        sh.SetItemParent(item, study_item)
    else:                             # a bare headless scene may not
        sh.CreateItem(study_item, volume)
    before = (sitk.GetArrayFromImage(mrml.volume_node_to_sitk(volume)).copy(), volume.GetOrigin(),
              volume.GetSpacing(), volume.GetMTime())
    out = mrml.process(scene, volume, chronologicalAge=cli.SAMPLE_AGE)
    return {"volume": volume, "out": out, "before": before, "study": study_item}


def _segment_ml(seg_node, seg_id):
    oi = slicer.vtkOrientedImageData()
    seg_node.GetBinaryLabelmapRepresentation(seg_id, oi)
    arr = numpy_support.vtk_to_numpy(oi.GetPointData().GetScalars())
    return float((arr > 0).sum()) * float(np.prod(oi.GetSpacing())) / 1000


def test_three_native_segments_with_terminology_and_colours(study):
    seg = study["out"].segmentationNode.GetSegmentation()
    assert seg.GetNumberOfSegments() == 3
    expected = {"Cerebrospinal fluid": ("65216001", (85, 188, 255)),
                "Gray matter": ("389081007", (200, 200, 235)),
                "White matter": ("389080008", (250, 250, 210))}
    for i in range(3):
        s = seg.GetNthSegment(i)
        code, rgb = expected[s.GetName()]
        entry = mrml.segment_terminology(s)
        assert isinstance(entry, str) and f"SCT^{code}^" in entry and "SCT^123037004^Anatomical Structure" in entry
        assert np.allclose(s.GetColor(), np.array(rgb) / 255, atol=1e-3)


def test_segment_volumes_match_result_within_half_percent(study):
    out = study["out"]
    for seg_id, key in (("CSF", "csf"), ("GM", "gm"), ("WM", "wm")):
        ml = _segment_ml(out.segmentationNode, seg_id)
        assert ml == pytest.approx(out.result.volumes_ml[key], rel=0.005)
        assert ml > 50


def test_reference_geometry_is_the_input(study):
    seg_node = study["out"].segmentationNode
    ref = seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert ref is study["volume"]
    oi = slicer.vtkOrientedImageData()
    seg_node.GetBinaryLabelmapRepresentation("GM", oi)
    assert np.allclose(oi.GetSpacing(), study["volume"].GetSpacing())


def test_table_contents(study):
    out = study["out"]
    rows = mrml.read_table_node(out.tableNode)
    assert float(rows["Predicted brain age"]) == pytest.approx(out.predicted_age, abs=0.05)
    assert float(rows["Chronological age"]) == pytest.approx(cli.SAMPLE_AGE, abs=0.05)
    assert float(rows["Brain age gap"]) == pytest.approx(out.predicted_age - cli.SAMPLE_AGE, abs=0.1)
    assert float(rows["90% interval low"]) < out.predicted_age < float(rows["90% interval high"])
    assert float(rows["Gray matter volume"]) == pytest.approx(out.result.volumes_ml["gm"], abs=0.06)
    assert float(rows["Total intracranial volume"]) == pytest.approx(out.result.volumes_ml["tiv"], abs=0.06)
    assert rows["Predicted age from tissue volumes (A)"]


def test_outputs_placed_in_the_input_study(study, scene):
    sh = scene.GetSubjectHierarchyNode()
    for node in (study["out"].segmentationNode, study["out"].tableNode):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study["study"]


def test_input_node_unchanged(study):
    arr, origin, spacing, _ = study["before"]
    vol = study["volume"]
    assert np.array_equal(sitk.GetArrayFromImage(mrml.volume_node_to_sitk(vol)), arr)
    assert vol.GetOrigin() == origin and vol.GetSpacing() == spacing


def test_seg_nrrd_round_trip_keeps_volumes(study, scene, tmp_path):
    seg_node = study["out"].segmentationNode
    path = str(tmp_path / "tissues.seg.nrrd")
    writer = slicer.vtkMRMLSegmentationStorageNode()
    writer.SetFileName(path)
    assert writer.WriteData(seg_node)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(path)
    assert reader.ReadData(loaded)
    seg = loaded.GetSegmentation()
    assert seg.GetNumberOfSegments() == 3
    for seg_id in ("CSF", "GM", "WM"):
        assert _segment_ml(loaded, seg_id) == pytest.approx(_segment_ml(seg_node, seg_id), rel=1e-6)
        assert seg.GetSegment(seg_id).GetName() == seg_node.GetSegmentation().GetSegment(seg_id).GetName()
    scene.RemoveNode(loaded)


def test_second_run_reuses_output_nodes(study, scene):
    out = study["out"]
    n_seg = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    n_tab = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    again = mrml.process(scene, study["volume"], out.segmentationNode, out.tableNode, approach="volumes")
    assert again.segmentationNode is out.segmentationNode and again.tableNode is out.tableNode
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == n_seg
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == n_tab
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    assert out.segmentationNode.GetSegmentation().GetNumberOfSegments() == 3
    assert mrml.read_table_node(out.tableNode)["Approach"] == "volumes"


def test_label_map_input_is_refused(scene):
    lab = sitk.Image(40, 40, 40, sitk.sitkUInt8)
    node = mrml.add_volume_node(scene, lab, "labels", labelmap=True)
    with pytest.raises(ValueError, match="scalar volume"):
        mrml.process(scene, node)


def test_oblique_geometry_round_trip(scene):
    """Volume node -> SimpleITK keeps origin, spacing and (LPS vs RAS) directions."""
    img = sitk.GetImageFromArray(np.random.rand(40, 30, 20).astype(np.float32))
    img.SetSpacing((0.9, 1.1, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(sitk.Euler3DTransform((0, 0, 0), 0.3, -0.2, 0.5).GetMatrix())
    node = mrml.add_volume_node(scene, img, "oblique")
    back = mrml.volume_node_to_sitk(node)
    assert np.allclose(back.GetOrigin(), img.GetOrigin())
    assert np.allclose(back.GetSpacing(), img.GetSpacing())
    assert np.allclose(back.GetDirection(), img.GetDirection(), atol=1e-9)
    # a physical point maps to the same voxel in both
    p = (12.0, -15.0, 40.0)
    assert np.allclose(back.TransformPhysicalPointToContinuousIndex(p),
                       img.TransformPhysicalPointToContinuousIndex(p))
    # and Slicer's RAS origin is LPS with x and y negated
    assert np.allclose(node.GetOrigin(), (-10.0, 20.0, 30.0))
