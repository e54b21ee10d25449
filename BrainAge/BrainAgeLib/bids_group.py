"""The group level of the BIDS App (``brainage bids BIDS_DIR OUTPUT_DIR group``): every scan's
row of the derivative gathered into ``OUTPUT_DIR/brainage.tsv`` (+ json), the cohort's figures
(``figures/``: predicted against chronological age, the gap's distribution, QC counts) and the
cohort report (``reports/cohort_report.html`` + ``.pdf``). The participant level, and the
derivative's layout, are in :mod:`BrainAgeLib.bids`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .bids import (COLUMN_DESCRIPTIONS, DESC, REPORTS, SCAN_COLUMNS, BidsError, _tsv, read_scan_row,
                   read_sexes, report_name)

def collect_rows(output_dir: str | os.PathLike) -> list[dict]:
    """Every scan's row in the derivative, sorted by source."""
    rows = []
    for tsv in sorted(Path(output_dir).glob(f"sub-*/**/*_{DESC}.tsv")):
        row = read_scan_row(tsv)
        if row is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: r.get("source", ""))


def qc_counts(rows: list[dict]) -> dict[str, int]:
    """How many scans are ok, failed, or carry each warning."""
    counts = {"ok": 0, "error": 0}
    for r in rows:
        qc = r.get("qc", "")
        if qc == "ok":
            counts["ok"] += 1
        elif qc.startswith("error"):
            counts["error"] += 1
        else:
            for w in qc.split(";"):
                counts[w] = counts.get(w, 0) + 1
    return counts


def write_group(output_dir: str | os.PathLike, bids_dir: str | os.PathLike | None = None,
                report: bool = True) -> dict:
    """``brainage.tsv`` (+ json), the figures and (``report``) the cohort report of the whole
    cohort (sex from ``bids_dir``'s participants.tsv when given); returns a summary."""
    from .outputs import atomic_write_text
    out = Path(output_dir)
    rows = collect_rows(out)
    if not rows:
        raise BidsError(f"no participant results in {output_dir}: run the participant level first")
    atomic_write_text(json.dumps(COLUMN_DESCRIPTIONS, indent=2) + "\n", out / f"{DESC}.json")
    atomic_write_text(_tsv(SCAN_COLUMNS, rows), out / f"{DESC}.tsv")
    counts = qc_counts(rows)
    figures = _figures(rows, counts, out / "figures")
    gaps = [float(r["brain_age_gap"]) for r in rows if r.get("brain_age_gap")]
    summary = {"scans": len(rows), "qc": counts, "figures": [str(f) for f in figures]}
    if report:
        summary["report"] = {k: str(v) for k, v in write_group_report(rows, out, bids_dir).items()}
    if gaps:
        summary.update(mean_gap=sum(gaps) / len(gaps),
                       mae=sum(abs(g) for g in gaps) / len(gaps), with_age=len(gaps))
    return summary


def write_group_report(rows: list[dict], output_dir: Path, bids_dir=None) -> dict[str, Path]:
    """``reports/cohort_report.html`` + ``.pdf`` of the derivative's rows, linking the scans'
    own reports that the participant level wrote (``--report``)."""
    from .report import write_cohort_report
    sexes = read_sexes(bids_dir) if bids_dir else {}
    folder = Path(output_dir) / REPORTS
    cohort_rows, links = [], {}
    for r in rows:
        source = r.get("source", "")
        cohort_rows.append({**r, "input": source,
                            "sex": sexes.get(r.get("participant_id", "").removeprefix("sub-"), "")})
        name = f"{report_name(source)}_report.html"
        if (folder / name).exists():
            links[source] = name
    return write_cohort_report(cohort_rows, folder, reports=links)


def _figures(rows: list[dict], counts: dict[str, int], folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .outputs import _atomic
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [(float(r["chronological_age"]), float(r["predicted_age"])) for r in rows
             if r.get("chronological_age") and r.get("predicted_age")]
    made = []

    def save(fig, name):
        path = folder / name
        _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)
        made.append(path)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if pairs:
        x, y = zip(*pairs)
        lo, hi = min(x + y) - 5, max(x + y) + 5
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="identity")
        ax.scatter(x, y, s=14)
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no chronological ages", ha="center", transform=ax.transAxes)
    ax.set(xlabel="chronological age (years)", ylabel="brain age (years)",
           title=f"Brain age, {len(pairs)} scans")
    save(fig, "brainage_vs_age.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    gaps = [p - c for c, p in pairs]
    if gaps:
        ax.hist(gaps, bins=min(30, max(5, len(gaps) // 3)))
        ax.axvline(0, color="grey", lw=1)
    ax.set(xlabel="brain age gap (years)", ylabel="scans", title="Brain age gap")
    save(fig, "brainage_gap.png")
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.35 * len(counts)))
    names = list(counts)
    ax.barh(names, [counts[n] for n in names])
    ax.invert_yaxis()
    ax.set(xlabel="scans", title="Quality control")
    fig.tight_layout()
    save(fig, "brainage_qc.png")
    return made


__all__ = ["collect_rows", "qc_counts", "write_group", "write_group_report"]
