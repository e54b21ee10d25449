"""Figures: docs/segments.png, the tissue segments BrainAge finds on the bundled sample T1
(runs the real predict), and the module icon BrainAge/Resources/Icons/BrainAge.png (128x128).

    .venv/bin/python docs/make_figures.py            # both
    .venv/bin/python docs/make_figures.py --icon     # only the icon (no model needed)
"""
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from BrainAgeLib import cli
from BrainAgeLib.pipeline import predict


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    res = predict(cli.SAMPLE, chronological_age=cli.SAMPLE_AGE)
    # show in RAS-like radiological views: reorient both to LPS axes first
    img = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(cli.SAMPLE), sitk.sitkFloat32), "LPS"))
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(res.labels, "LPS"))
    cmap = ListedColormap([(0, 0, 0, 0), (85 / 255, 188 / 255, 1, 1), (200 / 255, 200 / 255, 235 / 255, 1),
                           (250 / 255, 250 / 255, 210 / 255, 1)])
    # axial slice through the lateral ventricles: 65% of the way up the labelled extent
    zs = np.nonzero(lab.any(axis=(1, 2)))[0]
    z = int(zs.min() + 0.65 * (zs.max() - zs.min())) if len(zs) else img.shape[0] // 2
    y, x = img.shape[1] // 2, img.shape[2] // 2
    views = [("axial", img[z], lab[z]), ("coronal", np.flipud(img[:, y]), np.flipud(lab[:, y])),
             ("sagittal", np.flipud(img[:, :, x]), np.flipud(lab[:, :, x]))]
    fig, axes = plt.subplots(2, 3, figsize=(10, 7))
    for col, (name, im, lb) in enumerate(views):
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(im, cmap="gray", aspect="equal")
            if row == 1:
                ax.imshow(lb, cmap=cmap, vmin=0, vmax=3, alpha=0.55, interpolation="nearest")
            ax.set_axis_off()
        axes[0, col].set_title(name)
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=cmap(i), label=name) for i, name in
                        ((1, "Cerebrospinal fluid"), (2, "Gray matter"), (3, "White matter"))],
               loc="lower center", ncol=3, frameon=False)
    lo, hi = res.interval
    fig.suptitle(f"Bundled sample IXI012 (chronological age {cli.SAMPLE_AGE:.1f} y): "
                 f"brain age {res.predicted_age:.1f} y, 90% interval {lo:.0f}-{hi:.0f} y")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out = Path(__file__).parent / "segments.png"
    fig.savefig(out, dpi=80)
    print(out)


def make_icon() -> Path:
    """A top view of a brain, both hemispheres as CSF, gray matter and white matter layers in
    Slicer's colours for them, on a dark rounded square with "AGE" beneath."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse, FancyBboxPatch
    csf, gm, wm = (85 / 255, 188 / 255, 1.0), (200 / 255, 200 / 255, 235 / 255), (250 / 255, 250 / 255, 210 / 255)
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    fig.patch.set_alpha(0)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 128)
    ax.set_ylim(0, 128)
    ax.set_axis_off()
    ax.add_patch(FancyBboxPatch((4, 4), 120, 120, boxstyle="round,pad=0,rounding_size=18",
                                facecolor=(0.13, 0.2, 0.32), edgecolor="none"))
    for side in (-1, 1):                     # two hemispheres, each CSF > GM > WM
        cx = 64 + side * 22
        for (w, h), colour in (((50, 86), csf), ((44, 80), gm), ((28, 62), wm)):
            ax.add_patch(Ellipse((cx, 74), w, h, facecolor=colour, edgecolor="none"))
        for dy, length in ((-22, 9), (-6, 11), (10, 11), (26, 9)):   # sulci: gray matter folds
            ax.plot([cx + side * 14, cx + side * (14 - length)], [74 + dy, 74 + dy - 3], color=gm,
                    lw=2.2, solid_capstyle="round")
    ax.plot([64, 64], [33, 115], color=(0.13, 0.2, 0.32), lw=2.5)   # the interhemispheric fissure
    ax.text(64, 19, "AGE", ha="center", va="center", color="white", fontsize=13, fontweight="bold",
            family="DejaVu Sans")
    out = Path(__file__).resolve().parent.parent / "BrainAge" / "Resources" / "Icons" / "BrainAge.png"
    fig.savefig(out, dpi=100, transparent=True)
    plt.close(fig)
    print(out)
    return out


if __name__ == "__main__":
    make_icon()
    if "--icon" not in sys.argv[1:]:
        main()
