"""docs/slicer_chart.png: the Slicer module's brain-age chart for the bundled sample, drawn with
matplotlib from the MRML nodes the module makes (headless, slicer-core): the plot series and
their table nodes, read back with ``BrainAgeLib.chart.chart_arrays``. Not a Slicer screenshot
(the Slicer application cannot run here); the data are the same.

    .venv/bin/python docs/make_slicer_chart.py        # ~30 s: one prediction on the CPU
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import SimpleITK as sitk  # noqa: E402

import slicer  # noqa: E402
from BrainAgeLib import chart, cli, mrml  # noqa: E402

OUT = Path(__file__).resolve().parent / "slicer_chart.png"


def draw(ax, chartNode) -> None:
    """One matplotlib axis from a vtkMRMLPlotChartNode: each series as its node says."""
    P = slicer.vtkMRMLPlotSeriesNode
    arrays = chart.chart_arrays(chartNode)
    for i in range(chartNode.GetNumberOfPlotSeriesNodes()):
        s = chartNode.GetNthPlotSeriesNode(i)
        x, y = arrays[s.GetName()]
        color = s.GetColor()
        if s.GetPlotType() == P.PlotTypeScatter:
            ax.scatter(x, y, s=s.GetMarkerSize() ** 2, color=color, label=s.GetName(), zorder=3)
        else:
            style = "--" if s.GetLineStyle() == P.LineStyleDash else "-"
            label = None if s.GetName().endswith("upper") else s.GetName().replace(", lower", "")
            ax.plot(x, y, style, color=color, lw=s.GetLineWidth(), label=label)
    ax.set_title(chartNode.GetTitle(), fontsize=9)
    ax.set_xlabel(chartNode.GetXAxisTitle())
    ax.set_ylabel(chartNode.GetYAxisTitle())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def main() -> None:
    scene, app = mrml.setup_headless_scene()
    volume = mrml.add_volume_node(scene, sitk.ReadImage(str(cli.SAMPLE)), "IXI012 T1")
    out = mrml.process(scene, volume, chronologicalAge=cli.SAMPLE_AGE)
    with_age = chart.update_result_chart(scene, out.result, name="IXI012 T1")
    out.result.chronological_age = None
    without_age = chart.update_result_chart(scene, out.result, name="IXI012 T1, age unknown")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    draw(axes[0], with_age)
    draw(axes[1], without_age)
    fig.suptitle("BrainAge chart in Slicer's plot view: drawn with matplotlib from the same MRML "
                 "table and plot series nodes (not a screenshot)", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}: predicted {out.predicted_age:.1f} y, chronological {cli.SAMPLE_AGE} y, "
          f"interval {out.interval[0]:.1f}-{out.interval[1]:.1f}")


if __name__ == "__main__":
    main()
