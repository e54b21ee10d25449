"""The brain-age chart (BrainAgeLib.chart) as real MRML nodes, headless with slicer-core: the
tables, the plot series and the chart; the shipped reference cohort and band."""
from __future__ import annotations

import csv
import types

import numpy as np
import pytest

import slicer

from BrainAgeLib import chart, models, mrml


@pytest.fixture()
def scene():
    scene, app = mrml.setup_headless_scene()
    scene._app = app
    return scene


def _by_name(chartNode) -> dict:
    return {chartNode.GetNthPlotSeriesNode(i).GetName(): chartNode.GetNthPlotSeriesNode(i)
            for i in range(chartNode.GetNumberOfPlotSeriesNodes())}


def test_shipped_reference_cohort_and_band():
    ages, predicted = chart.reference_cohort()
    with open(chart.REFERENCE_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(ages) == len(rows) == 100 and len(predicted) == 100
    assert 18 <= ages.min() and ages.max() <= 90
    # the held-out test subjects of the shipped models: their ensemble MAE as evaluated
    import json
    from pathlib import Path
    metrics = json.loads((Path(__file__).resolve().parent.parent / "docs" / "results"
                          / "age_test_metrics.json").read_text())
    assert np.abs(predicted - ages).mean() == pytest.approx(metrics["ensemble"]["mae"], abs=0.01)
    ages_b, cnn = chart.reference_cohort(approach="image")
    ages_a, volumes = chart.reference_cohort(approach="volumes")
    assert np.array_equal(ages_b, ages) and np.array_equal(ages_a, ages)
    m = models.load_json("age_model.json")
    # each column is its own approach: B's is the ensemble's exactly when A's weight is 0
    w = m["ensemble"]["weight_volumes"]
    assert np.array_equal(cnn, predicted) == (w == 0) and not np.array_equal(volumes, predicted)
    assert chart.band_halfwidth() == m["ensemble"]["interval_halfwidth"]
    assert chart.band_halfwidth("image") == m["cnn"]["interval_halfwidth"]
    assert chart.band_halfwidth("volumes") == m["volumes"]["interval_halfwidth"]
    # the band holds about 90% of the held-out cohort (coverage 0.95 in the README)
    inside = np.abs(predicted - ages) <= chart.band_halfwidth()
    assert 0.85 <= inside.mean() <= 0.99


def test_chart_nodes_with_chronological_age(scene):
    ages, predicted = np.array([25.0, 40.0, 61.0, 78.0]), np.array([27.0, 38.5, 64.0, 75.0])
    c = chart.update_chart(scene, ages, predicted, 12.0, 58.0, (46.0, 70.0), 50.0, name="IXI012 T1")
    assert c.IsA("vtkMRMLPlotChartNode") and c.GetName() == "IXI012 T1 chart"
    assert c.GetXAxisTitle() == chart.X_TITLE and c.GetYAxisTitle() == chart.Y_TITLE
    series = _by_name(c)
    assert list(series) == ["Reference cohort", "Predicted = chronological", "90% band, lower",
                            "90% band, upper", "This person", "This person's 90% interval"]
    P = slicer.vtkMRMLPlotSeriesNode
    cohort = series["Reference cohort"]
    assert cohort.GetPlotType() == P.PlotTypeScatter and cohort.GetMarkerStyle() == P.MarkerStyleCircle
    table = cohort.GetTableNode()
    assert table.IsA("vtkMRMLTableNode") and table.GetScene() is scene
    assert table.GetTable().GetColumnByName(chart.X_TITLE).IsA("vtkDoubleArray")
    assert table.GetColumnUnitLabel(chart.X_TITLE) == "years"
    arrays = chart.chart_arrays(c)
    assert np.array_equal(arrays["Reference cohort"][0], ages)
    assert np.array_equal(arrays["Reference cohort"][1], predicted)
    x, y = arrays["Predicted = chronological"]
    assert np.array_equal(x, y) and x[0] <= 25 and x[-1] >= 78
    assert np.allclose(arrays["90% band, lower"][1], x - 12.0)
    assert np.allclose(arrays["90% band, upper"][1], x + 12.0)
    assert series["90% band, lower"].GetLineStyle() == P.LineStyleDash
    assert [a.tolist() for a in arrays["This person"]] == [[50.0], [58.0]]
    assert series["This person"].GetPlotType() == P.PlotTypeScatter
    assert [a.tolist() for a in arrays["This person's 90% interval"]] == [[50.0, 50.0], [46.0, 70.0]]
    assert series["This person"].GetColor() == pytest.approx(chart.SUBJECT_RED)


def test_chart_without_chronological_age_and_rerun(scene):
    ages, predicted = chart.reference_cohort()
    c = chart.update_chart(scene, ages, predicted, 12.1, 58.0, (46.0, 70.0), 50.0)
    counts = {cls: scene.GetNumberOfNodesByClass(cls) for cls in
              ("vtkMRMLTableNode", "vtkMRMLPlotSeriesNode", "vtkMRMLPlotChartNode")}
    assert counts == {"vtkMRMLTableNode": 6, "vtkMRMLPlotSeriesNode": 6, "vtkMRMLPlotChartNode": 1}
    again = chart.update_chart(scene, ages, predicted, 12.1, 58.0, (46.0, 70.0), None, c)
    assert again is c
    # this person's age on the cohort's distribution: horizontal lines across the cohort
    arrays = chart.chart_arrays(c)
    assert "This person" not in arrays
    x, y = arrays["This person's brain age (chronological age unknown)"]
    assert np.all(y == 58.0) and x[0] <= ages.min() and x[-1] >= ages.max()
    assert np.all(arrays["This person's 90% interval, lower"][1] == 46.0)
    assert np.all(arrays["This person's 90% interval, upper"][1] == 70.0)
    # the earlier series and tables were replaced, not added to; a user's table stays
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 7
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 7
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1
    for i in range(c.GetNumberOfPlotSeriesNodes()):
        assert c.GetNthPlotSeriesNode(i).GetTableNode().GetAttribute(chart.CHART_ATTRIBUTE) == c.GetID()


def test_result_chart_uses_the_result_approach(scene):
    result = types.SimpleNamespace(approach="volumes", predicted_age=47.0, interval=(35.0, 59.0),
                                   chronological_age=None, age_details={})
    c = chart.update_result_chart(scene, result, name="T1")
    arrays = chart.chart_arrays(c)
    ages, volumes = chart.reference_cohort(approach="volumes")
    assert np.array_equal(arrays["Reference cohort"][1], volumes)
    x, low = arrays["90% band, lower"]
    assert np.allclose(x - low, chart.band_halfwidth("volumes"))
    result.age_details = {"interval_halfwidths": {"volumes": 9.0}}      # the result's own band wins
    chart.update_result_chart(scene, result, c)
    x, low = chart.chart_arrays(c)["90% band, lower"]
    assert np.allclose(x - low, 9.0)


def test_bad_cohort_is_refused(scene, tmp_path):
    with pytest.raises(ValueError, match="as many"):
        chart.update_chart(scene, [30, 40], [31], 12.0, 50.0, (40, 60))
    bad = tmp_path / "cohort.csv"
    bad.write_text("subject,predicted\na,3\n")
    with pytest.raises(ValueError, match="'age'"):
        chart.reference_cohort(bad)
