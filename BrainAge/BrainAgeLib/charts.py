"""Report charts (matplotlib, Agg): each function returns PNG bytes.

Ages in years, tissue fractions as shares of TIV. Used by :mod:`BrainAgeLib.report`.
"""
from __future__ import annotations

import io

import numpy as np

OUTLINE_COLOURS = {"CSF": "#1f9bff", "GM": "#ff5a1f", "WM": "#2ecc40"}   # label 1, 2, 3
MASK_COLOUR = "#ffd400"
PERSON = "#d62728"
BAND = "#9ecae1"
DPI = 110


def _figure(w: float, h: float):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt.figure(figsize=(w, h), dpi=DPI)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def age_chart(reference: dict, age: float | None, predicted: float, interval: tuple[float, float],
              others: list[tuple[float, float]] | None = None) -> bytes:
    """Predicted against chronological age: the training cohort (grey), its 90% band (blue),
    and this person (red, with the 90% interval); ``others`` are extra (age, predicted) points
    of a cohort (cohort report)."""
    fig = _figure(5.2, 3.9)
    ax = fig.add_subplot(111)
    b = reference["band"]
    ax.fill_between(b["age"], b["low"], b["high"], color=BAND, alpha=0.5, lw=0,
                    label="90% of healthy people")
    ax.plot(b["age"], b["median"], color="#3182bd", lw=1)
    ax.scatter(reference["age"], reference["predicted_age"], s=5, color="#888888", alpha=0.45,
               lw=0, label=f"training cohort (n={len(reference['age'])})")
    lo, hi = min(b["age"]) - 3, max(b["age"]) + 3
    ax.plot([lo, hi], [lo, hi], color="#555555", ls=":", lw=0.8, label="brain age = age")
    if others:
        o = np.asarray(others, float)
        ax.scatter(o[:, 0], o[:, 1], s=16, color=PERSON, alpha=0.8, label="this batch", zorder=3)
    elif age is not None:
        ax.errorbar([age], [predicted], yerr=[[predicted - interval[0]], [interval[1] - predicted]],
                    fmt="o", color=PERSON, ms=7, capsize=3, zorder=4, label="this person (90% interval)")
        lo, hi = min(lo, age - 3), max(hi, age + 3)
    else:
        ax.axhspan(interval[0], interval[1], color=PERSON, alpha=0.08)
        ax.axhline(predicted, color=PERSON, lw=1.5, label="this person's brain age (age not given)")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("chronological age (years)")
    ax.set_ylabel("predicted brain age (years)")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return _png(fig)


def tissue_charts(model, age: float | None, sex, fractions: dict[str, float]) -> bytes:
    """GM, WM and CSF fractions of TIV against age: the 5th–95th and 25th–75th centile bands
    and the median of the healthy cohort, and this person (red)."""
    lo, hi = model.age_range
    grid = np.linspace(lo, hi, 120)
    fig = _figure(7.6, 2.5)
    for i, (key, title) in enumerate((("gm_frac", "Grey matter"), ("wm_frac", "White matter"),
                                      ("csf_frac", "CSF"))):
        ax = fig.add_subplot(1, 3, i + 1)
        q = model.centile_curves(key, grid, None if sex is None else [sex] * len(grid))
        ax.fill_between(grid, q[:, 0], q[:, 4], color=BAND, alpha=0.45, lw=0, label="5th–95th")
        ax.fill_between(grid, q[:, 1], q[:, 3], color="#6baed6", alpha=0.5, lw=0, label="25th–75th")
        ax.plot(grid, q[:, 2], color="#08519c", lw=1, label="50th")
        v = fractions.get(key)
        if v is not None and age is not None:
            ax.plot([age], [v], "o", color=PERSON, ms=6, zorder=4, label="this person")
            if not model.in_range(age):
                ax.set_xlim(min(lo, age) - 2, max(hi, age) + 2)
        elif v is not None:
            ax.axhline(v, color=PERSON, lw=1.2, label="this person (age not given)")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("age (years)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
        if i == 0:
            ax.set_ylabel("fraction of TIV", fontsize=8)
            ax.legend(fontsize=6, frameon=False, loc="lower left")
    fig.tight_layout()
    return _png(fig)


def _centre(mask: np.ndarray) -> tuple[int, int, int]:
    idx = np.argwhere(mask)
    return tuple(int(round(c)) for c in idx.mean(0)) if len(idx) else tuple(s // 2 for s in mask.shape)


def qc_slices(image, labels, mask=None) -> bytes:
    """Axial, coronal and sagittal slices through the brain's centre (SimpleITK images on one
    grid, shown in LPS, radiological convention: the person's right on the left) with the
    CSF/GM/WM labels outlined and the brain mask (yellow, dashed)."""
    import SimpleITK as sitk
    img = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS")).astype(np.float32)
    lab = sitk.GetArrayFromImage(sitk.DICOMOrient(labels, "LPS"))
    msk = None if mask is None else sitk.GetArrayFromImage(sitk.DICOMOrient(mask, "LPS")) > 0
    sx, sy, sz = sitk.DICOMOrient(image, "LPS").GetSpacing()
    cz, cy, cx = _centre(lab > 0)
    vmax = float(np.percentile(img[lab > 0], 99.5)) if (lab > 0).any() else float(img.max() or 1)
    views = [("axial", lambda a: a[cz], sy / sx, False),
             ("coronal", lambda a: a[:, cy, :], sz / sx, True),
             ("sagittal", lambda a: a[:, :, cx], sz / sy, True)]
    fig = _figure(7.6, 2.9)
    for i, (name, cut, aspect, flip) in enumerate(views):
        ax = fig.add_subplot(1, 3, i + 1)
        f = (lambda a: a[::-1]) if flip else (lambda a: a)
        ax.imshow(f(cut(img)), cmap="gray", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
        sl = f(cut(lab))
        for value, (tissue, colour) in enumerate(OUTLINE_COLOURS.items(), start=1):
            if (sl == value).any():
                ax.contour(sl == value, levels=[0.5], colors=[colour], linewidths=0.6)
        if msk is not None:
            m = f(cut(msk))
            if m.any():
                ax.contour(m, levels=[0.5], colors=[MASK_COLOUR], linewidths=0.9, linestyles="dashed")
        ax.set_title(name, fontsize=8)
        if name != "sagittal":
            ax.text(0.02, 0.04, "R", color="w", transform=ax.transAxes, fontsize=8)
        ax.set_axis_off()
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=c, lw=1.5, label=t) for t, c in OUTLINE_COLOURS.items()]
    if msk is not None:
        handles.append(Line2D([], [], color=MASK_COLOUR, lw=1.5, ls="--", label="brain mask"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _png(fig)


def gap_histogram(gaps: list[float], reference_gaps: list[float]) -> bytes:
    """Distribution of the brain-age gaps (years) of a batch against the training cohort's."""
    fig = _figure(5.2, 3.0)
    ax = fig.add_subplot(111)
    allg = np.concatenate([np.asarray(gaps, float), np.asarray(reference_gaps, float)])
    bins = np.linspace(np.floor(allg.min()) - 1, np.ceil(allg.max()) + 1, 30)
    ax.hist(reference_gaps, bins=bins, density=True, color="#bbbbbb", label="training cohort")
    ax.hist(gaps, bins=bins, density=True, color=PERSON, alpha=0.6, label="this batch")
    ax.axvline(0, color="#555555", ls=":", lw=0.8)
    ax.set_xlabel("brain-age gap (years)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    return _png(fig)
