"""Make docs/segments.png: the tissue segments BrainAge finds on the bundled sample T1.

    .venv/bin/python docs/make_figures.py
"""
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
    zs = np.nonzero(lab.any(axis=(1, 2)))[0]
    z = int(zs.mean()) if len(zs) else img.shape[0] // 2
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
    lo, hi = res.interval
    fig.suptitle(f"IXI012 (38.8 y): brain age {res.predicted_age:.1f} y (90% {lo:.0f}-{hi:.0f}); "
                 "CSF blue, GM lavender, WM cream")
    fig.tight_layout()
    out = Path(__file__).parent / "segments.png"
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
