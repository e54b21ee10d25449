"""The brain-age chart as MRML nodes (no Qt): table nodes -> plot series nodes -> a plot chart.

The reference cohort's predicted against chronological age (grey points), the identity line and
the 90% band (identity ± the prediction interval's half-width), and this person: a red point
with a vertical interval at the chronological age, or, when that is unknown, the predicted age
and its interval as horizontal lines across the cohort (which ages usually get this brain age).

The functions take plain arrays (ages in years), so any cohort can be drawn. What ships until
the normative model lands: :func:`reference_cohort` reads the held-out test subjects'
predictions (100 Cam-CAN ``test`` subjects, ``docs/results/age_test_predictions.csv`` without
the subject ids, in ``Resources/Reference``), and :func:`band_halfwidth` the interval of
``age_model.json``. Shown in Slicer with ``slicer.modules.plots.logic().ShowChartInLayout``.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import slicer
import vtk

REFERENCE_CSV = (Path(__file__).resolve().parent.parent / "Resources" / "Reference"
                 / "heldout_test_predictions.csv")
CHART_ATTRIBUTE = "BrainAge.Chart"     # on the chart's tables and series: the chart node's ID
COHORT_GREY = (0.55, 0.55, 0.55)
SUBJECT_RED = (0.85, 0.1, 0.1)
X_TITLE = "Chronological age (years)"
Y_TITLE = "Predicted brain age (years)"


def reference_cohort(path: str | os.PathLike | None = None,
                     approach: str = "ensemble") -> tuple[np.ndarray, np.ndarray]:
    """(chronological ages, predicted ages) in years of the reference cohort: a CSV with an
    ``age`` column and one column per approach (``ensemble``, ``volumes``, ``cnn``; ``image``
    means ``cnn``)."""
    column = "cnn" if approach == "image" else approach
    with open(path or REFERENCE_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "age" not in rows[0] or column not in rows[0]:
        raise ValueError(f"the reference cohort needs 'age' and '{column}' columns")
    rows = [r for r in rows if r["age"] and r[column]]
    return (np.array([float(r["age"]) for r in rows]), np.array([float(r[column]) for r in rows]))


def band_halfwidth(approach: str = "ensemble") -> float:
    """Half-width (years) of the shipped 90% prediction interval of ``approach``."""
    from . import models
    m = models.load_json("age_model.json")
    key = {"image": "cnn"}.get(approach, approach)
    return float(m[key]["interval_halfwidth"])


@dataclass
class Series:
    """One plot series: its table's columns (name -> values) and how it is drawn."""

    name: str
    columns: dict[str, np.ndarray]
    x: str
    y: str
    plot_type: str            # "scatter" or "line"
    color: tuple[float, float, float]
    line_style: str = "solid"  # "solid", "dash", "none"
    marker: str = "none"      # "circle", "none"
    marker_size: float = 6.0
    line_width: float = 2.0


def chart_series(ages, predicted, halfwidth: float, predicted_age: float,
                 interval: tuple[float, float], chronological_age: float | None = None) -> list[Series]:
    """The chart's series from plain arrays (years); what :func:`update_chart` puts into MRML
    and what a matplotlib figure of the same chart draws."""
    ages, predicted = np.asarray(ages, float), np.asarray(predicted, float)
    if ages.shape != predicted.shape or ages.ndim != 1 or ages.size == 0:
        raise ValueError("the cohort needs as many chronological as predicted ages (years)")
    lo_x = float(np.floor(min(ages.min(), chronological_age or ages.min()) / 5) * 5)
    hi_x = float(np.ceil(max(ages.max(), chronological_age or ages.max()) / 5) * 5)
    grid = np.array([lo_x, hi_x])
    lo, hi = (float(v) for v in interval)
    out = [
        Series("Reference cohort", {X_TITLE: ages, Y_TITLE: predicted}, X_TITLE, Y_TITLE, "scatter",
               COHORT_GREY, line_style="none", marker="circle", marker_size=5),
        Series("Predicted = chronological", {X_TITLE: grid, "Identity": grid}, X_TITLE, "Identity",
               "line", (0.2, 0.2, 0.2), line_width=1),
        Series("90% band, lower", {X_TITLE: grid, "Band low": grid - halfwidth}, X_TITLE, "Band low",
               "line", COHORT_GREY, line_style="dash", line_width=1),
        Series("90% band, upper", {X_TITLE: grid, "Band high": grid + halfwidth}, X_TITLE, "Band high",
               "line", COHORT_GREY, line_style="dash", line_width=1),
    ]
    if chronological_age is not None:
        c = float(chronological_age)
        out += [
            Series("This person", {X_TITLE: np.array([c]), Y_TITLE: np.array([float(predicted_age)])},
                   X_TITLE, Y_TITLE, "scatter", SUBJECT_RED, line_style="none", marker="circle",
                   marker_size=12),
            Series("This person's 90% interval", {X_TITLE: np.array([c, c]), Y_TITLE: np.array([lo, hi])},
                   X_TITLE, Y_TITLE, "line", SUBJECT_RED, line_width=3),
        ]
    else:
        out += [
            Series("This person's brain age (chronological age unknown)",
                   {X_TITLE: grid, Y_TITLE: np.full(2, float(predicted_age))}, X_TITLE, Y_TITLE,
                   "line", SUBJECT_RED, line_width=3),
            Series("This person's 90% interval, lower", {X_TITLE: grid, "Interval low": np.full(2, lo)},
                   X_TITLE, "Interval low", "line", SUBJECT_RED, line_style="dash", line_width=1.5),
            Series("This person's 90% interval, upper", {X_TITLE: grid, "Interval high": np.full(2, hi)},
                   X_TITLE, "Interval high", "line", SUBJECT_RED, line_style="dash", line_width=1.5),
        ]
    return out


def _table_node(scene, name: str, columns: dict[str, np.ndarray], chart_id: str):
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    for col_name, values in columns.items():
        arr = vtk.vtkDoubleArray()
        arr.SetName(col_name)
        for v in values:
            arr.InsertNextValue(float(v))
        table.AddColumn(arr)
        node.SetColumnUnitLabel(col_name, "years")
    node.SetAttribute(CHART_ATTRIBUTE, chart_id)
    return node


def _clear_chart(scene, chartNode) -> None:
    """Remove the series (and their tables) that an earlier :func:`update_chart` made."""
    ids = [chartNode.GetNthPlotSeriesNodeID(i) for i in range(chartNode.GetNumberOfPlotSeriesNodes())]
    chartNode.RemoveAllPlotSeriesNodeIDs()
    for sid in ids:
        series = scene.GetNodeByID(sid)
        if series is None or series.GetAttribute(CHART_ATTRIBUTE) != chartNode.GetID():
            continue
        table = series.GetTableNode()
        scene.RemoveNode(series)
        if table is not None and table.GetAttribute(CHART_ATTRIBUTE) == chartNode.GetID():
            scene.RemoveNode(table)


def update_chart(scene, ages, predicted, halfwidth: float, predicted_age: float,
                 interval: tuple[float, float], chronological_age: float | None = None,
                 chartNode=None, name: str = "Brain age"):
    """Draw the brain-age chart into ``chartNode`` (created when None; its earlier BrainAge
    series and tables are replaced, never duplicated). Returns the plot chart node."""
    P = slicer.vtkMRMLPlotSeriesNode
    types = {"scatter": P.PlotTypeScatter, "line": P.PlotTypeLine}
    styles = {"solid": P.LineStyleSolid, "dash": P.LineStyleDash, "none": P.LineStyleNone}
    markers = {"circle": P.MarkerStyleCircle, "none": P.MarkerStyleNone}
    if chartNode is None:
        chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
    else:
        _clear_chart(scene, chartNode)
    chart_id = chartNode.GetID()
    for s in chart_series(ages, predicted, halfwidth, predicted_age, interval, chronological_age):
        table = _table_node(scene, f"{name} chart: {s.name}", s.columns, chart_id)
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", s.name)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(s.x)
        series.SetYColumnName(s.y)
        series.SetPlotType(types[s.plot_type])
        series.SetLineStyle(styles[s.line_style])
        series.SetMarkerStyle(markers[s.marker])
        series.SetMarkerSize(s.marker_size)
        series.SetLineWidth(s.line_width)
        series.SetColor(*s.color)
        series.SetAttribute(CHART_ATTRIBUTE, chart_id)
        chartNode.AddAndObservePlotSeriesNodeID(series.GetID())
    chartNode.SetTitle(f"{name}: brain age against the reference cohort")
    chartNode.SetXAxisTitle(X_TITLE)
    chartNode.SetYAxisTitle(Y_TITLE)
    chartNode.SetLegendVisibility(True)
    chartNode.SetGridVisibility(True)
    return chartNode


def update_result_chart(scene, result, chartNode=None, name: str = "Brain age",
                        cohort: str | os.PathLike | None = None):
    """:func:`update_chart` for a ``BrainAgeResult`` against the shipped reference cohort of its
    approach and the shipped interval half-width."""
    ages, predicted = reference_cohort(cohort, result.approach)
    halfwidth = (result.age_details.get("interval_halfwidths", {}).get(
        {"image": "cnn"}.get(result.approach, result.approach)) or band_halfwidth(result.approach))
    return update_chart(scene, ages, predicted, halfwidth, result.predicted_age, result.interval,
                        result.chronological_age, chartNode, name)


def chart_arrays(chartNode) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Series name -> (x, y) arrays read back from the MRML nodes (for tests and figures)."""
    from vtk.util import numpy_support
    out = {}
    for i in range(chartNode.GetNumberOfPlotSeriesNodes()):
        series = chartNode.GetNthPlotSeriesNode(i)
        table = series.GetTableNode().GetTable()
        x = numpy_support.vtk_to_numpy(table.GetColumnByName(series.GetXColumnName())).copy()
        y = numpy_support.vtk_to_numpy(table.GetColumnByName(series.GetYColumnName())).copy()
        out[series.GetName()] = (x, y)
    return out
