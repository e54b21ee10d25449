"""Reports a clinician can read: one subject (:func:`write_subject_report`) or a batch
(:func:`write_cohort_report`), as one self-contained HTML file (images embedded) and the same
content as PDF.

Jinja2 renders the templates in ``templates/``; WeasyPrint turns the HTML into the PDF;
:mod:`BrainAgeLib.charts` draws the pictures (matplotlib). Ages in years, volumes in ml,
tissue fractions as shares of TIV. Numbers are printed with the CSV's digits (ages 2, ml 1),
so the report reads the same as ``brainage predict --output``'s row.
"""
from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import tempfile
from pathlib import Path

from . import __version__

DISCLAIMER = "Research use only. Not a medical device; not for diagnosis."
REPORT_SUFFIX = "_report"

# QC warning (its start) -> (what it means, what to do), in plain words
QC_ADVICE = {
    "not a T1": ("The image does not look like a T1-weighted MRI (its tissue brightness is not "
                 "ordered white matter > grey matter > CSF).",
                 "Check that the T1-weighted series was chosen (not T2, FLAIR or PD); the age is not "
                 "meaningful for other contrasts."),
    "registration": ("The brain could not be aligned well to the template.",
                     "Look at the QC slices: if the outlines do not follow the brain, check the "
                     "image's orientation and field of view, or give a brain-extracted image."),
    "unusual grey/white contrast": ("Grey and white matter differ in brightness unlike in the "
                                    "training scans.",
                                    "Sequence or scanner settings differ from the training data; "
                                    "read the ages with care, and fit a site offset on this "
                                    "scanner's healthy controls (brainage site-offset)."),
    "image much softer": ("The image is blurrier than any scan the models were checked on.",
                          "Blur can make a brain look older. Prefer a sharper (e.g. 1 mm 3D) "
                          "acquisition; do not read a positive gap from this scan alone."),
    "tissue pattern unlike": ("The tissue pattern differs from every healthy training scan.",
                              "Look at the QC slices for a lesion, an artefact or a failed "
                              "segmentation; the age is not reliable if the segmentation is wrong."),
    "unstable segmentation": ("The tissue segmentation changes when the image is mirrored left to "
                              "right, more than on clean scans: a sign of head motion, ghosting or "
                              "another artefact.",
                              "Look at the image for motion or ghosting; motion can make a brain look "
                              "years older. Prefer a repeat scan; do not read a gap from this one alone."),
    "the two age models disagree": ("The two age models (tissue volumes and image CNN) disagree more "
                                    "than they do on healthy scans.",
                                    "The age is uncertain: check the image quality and the "
                                    "segmentation before using it."),
    "predicted age": ("The predicted age lies outside the ages the models were trained on.",
                      "The value is extrapolated; read it as 'younger/older than the training range'."),
    "chronological age": ("The person's age lies outside the training cohort's ages.",
                          "The gap and the centiles are not reliable for this age."),
    "implausible TIV": ("The measured head size (total intracranial volume) is outside the adult "
                        "range.",
                        "Check the QC slices for a failed brain extraction or a wrong voxel size "
                        "in the header."),
    "implausible": ("A tissue's share of the intracranial volume is outside its adult range.",
                    "Check the QC slices: the segmentation may have failed (lesion, artefact, "
                    "or incomplete field of view)."),
}


def qc_advice(warning: str) -> tuple[str, str]:
    """(meaning, what to do) of one QC warning, in plain words."""
    for start, advice in QC_ADVICE.items():
        if warning.startswith(start):
            return advice
    return ("An automatic quality check raised this warning.",
            "Look at the QC slices before using the result.")


def fmt(value, digits: int = 2) -> str:
    """A number as in the CSV (empty when missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def ordinal(centile: float | None) -> str:
    """``37.2`` -> ``"37th"``; ``0.3`` -> ``"< 1st"``; None -> ``""``."""
    if centile is None:
        return ""
    if centile < 1:
        return "< 1st"
    if centile > 99:
        return "> 99th"
    n = int(round(centile))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def reading(centile: float | None) -> str:
    """Plain words for a centile among healthy people of the same age."""
    if centile is None:
        return ""
    if centile < 5:
        return "below the 5th centile: unusually low for this age"
    if centile > 95:
        return "above the 95th centile: unusually high for this age"
    return "within the range of 90% of healthy people of this age"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def scan_date(path: str | os.PathLike | None) -> str | None:
    """Acquisition or study date (YYYY-MM-DD) from the image header (DICOM tags 0008,0022 /
    0008,0020), or None when the format or header has none (NIfTI, NRRD)."""
    if path is None:
        return None
    import SimpleITK as sitk
    p = Path(path)
    files = [p]
    if p.is_dir():
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p))
        files = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p), ids[0])[:1]] if ids else []
    for f in files:
        try:
            r = sitk.ImageFileReader()
            r.SetFileName(str(f))
            r.ReadImageInformation()
        except RuntimeError:
            return None
        for key in ("0008|0022", "0008|0020"):
            if r.HasMetaDataKey(key):
                v = r.GetMetaData(key).strip()
                if len(v) == 8 and v.isdigit():
                    return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return None


def model_files() -> list[dict]:
    """Shipped model files (name, SHA256, date, training data) from the manifest."""
    from . import models
    try:
        files = models.read_manifest().get("files", {})
    except models.ModelError:
        return []
    return [{"name": k, "sha256": v.get("sha256", ""), "created": v.get("created", ""),
             "training": v.get("training", "")} for k, v in sorted(files.items())]


def tissue_fractions(result) -> dict[str, float]:
    """GM, WM and CSF fractions of TIV, measured as in the normative table: soft volumes of the
    ResUNet's model-space probabilities (from the labels' volumes when those are missing)."""
    if result.model_space_probabilities is not None:
        from .volumes import global_fractions
        csf, gm, wm = (float(x) for x in global_fractions(result.model_space_probabilities))
    else:
        v = result.volumes_ml
        csf, gm, wm = (v[k] / v["tiv"] for k in ("csf", "gm", "wm"))
    return {"csf_frac": csf, "gm_frac": gm, "wm_frac": wm}


def _normative(normative):
    from . import normative as nm
    return normative if isinstance(normative, nm.NormativeModel) else nm.load(normative)


def subject_context(result, *, input_path: str | os.PathLike | None = None, sex: str | None = None,
                    image=None, normative=None, name: str | None = None) -> dict:
    """Everything the one-subject template shows (strings, numbers and embedded PNGs)."""
    from . import charts
    from .normative import reference_cohort, sex_code
    model = _normative(normative)
    age = result.chronological_age
    gap = result.brain_age_gap
    sex = sex if sex_code(sex) is not None else None
    in_range = model.in_range(age)
    lo, hi = model.age_range
    fr = tissue_fractions(result)
    v = result.volumes_ml
    tissues = []
    for key, label, frac in (("gm", "Grey matter", "gm_frac"), ("wm", "White matter", "wm_frac"),
                             ("csf", "Cerebrospinal fluid", "csf_frac")):
        c = model.centile_of(frac, fr[frac], age, sex)
        tissues.append({"key": key, "label": label, "ml": fmt(v[key], 1), "fraction": f"{fr[frac]:.3f}",
                        "centile": ordinal(c), "centile_value": c, "reading": reading(c)})
    gap_centile = model.centile_of("gap", gap, age, sex)
    ref = reference_cohort(model)
    training = model.data["training"]
    age_note = None
    if age is None:
        age_note = "Chronological age not given: no brain-age gap and no centiles."
    elif not in_range:
        age_note = (f"The age {fmt(age)} years is outside the training range ({lo:.0f}–{hi:.0f} years): "
                    "the centile curves are not extrapolated, so no centile is given.")
    warnings = [{"text": w, "meaning": qc_advice(w)[0], "action": qc_advice(w)[1]} for w in result.qc]
    if image is not None and not hasattr(image, "GetSpacing"):
        from .io import read_image
        image = read_image(image)
    qc_png, qc_space = None, "no image was given"
    if image is not None:
        qc_png = charts.qc_slices(image, result.labels, result.brain_mask)
        qc_space = "the input image (its own grid)"
    elif result.model_space_image is not None and result.model_space_probabilities is not None:
        import SimpleITK as sitk
        lab = sitk.GetImageFromArray(result.model_space_probabilities.argmax(0).astype("uint8"))
        lab.CopyInformation(result.model_space_image)
        qc_png = charts.qc_slices(result.model_space_image, lab, None)
        qc_space = "the preprocessed image in model space (2 mm, registered to the template)"
    file_name = Path(input_path).name if input_path else (name or "(image in memory)")
    return {
        "title": f"Brain age report: {file_name}", "disclaimer": DISCLAIMER, "version": __version__,
        "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "file": file_name, "path": str(input_path) if input_path else "",
        "scan_date": scan_date(input_path) or "not in the image header",
        "sex": {"M": "male", "F": "female"}.get(str(sex).strip().upper()[:1], "not given") if sex else "not given",
        "n": {"predicted_age": fmt(result.predicted_age), "interval_low": fmt(result.interval[0]),
              "interval_high": fmt(result.interval[1]), "chronological_age": fmt(age),
              "brain_age_gap": fmt(gap), "predicted_age_volumes": fmt(result.predicted_age_volumes),
              "predicted_age_cnn": fmt(result.predicted_age_cnn), "gm_ml": fmt(v["gm"], 1),
              "wm_ml": fmt(v["wm"], 1), "csf_ml": fmt(v["csf"], 1), "tiv_ml": fmt(v["tiv"], 1),
              "seconds": fmt(result.seconds, 1)},
        "gap_centile": ordinal(gap_centile), "gap_reading": reading(gap_centile),
        "age_note": age_note, "tissues": tissues, "qc_ok": not result.qc, "warnings": warnings,
        "qc_space": qc_space,
        "template_similarity": fmt(result.template_similarity), "edge_sharpness": fmt(result.edge_sharpness),
        "approach": result.approach, "tissue_definition": result.tissues,
        "site_offset": fmt(result.age_details.get("site_offset")) if result.age_details else "",
        "age_chart": data_uri(charts.age_chart(ref, age, result.predicted_age, result.interval)),
        "tissue_chart": data_uri(charts.tissue_charts(model, age if in_range else None, sex, fr)),
        "qc_chart": data_uri(qc_png) if qc_png else "",
        "training": training, "age_range": f"{lo:.0f}–{hi:.0f}", "models": model_files(),
        "normative_note": "; ".join(f"{k}: {c.method}, fitted on {_population(c.population)}"
                                    for k, c in model.curves.items()),
        "sex_in_curves": any(c.sex_coef is not None for c in model.curves.values()),
        "reference_only": sorted({c.population for c in model.curves.values()} - {"all sites"}),
    }


def _population(population: str) -> str:
    return "both training sites" if population == "all sites" else f"the {population} subjects only"


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    return Environment(loader=PackageLoader("BrainAgeLib", "templates"), autoescape=select_autoescape(),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, context: dict) -> str:
    """HTML of ``template`` (a file in ``BrainAgeLib/templates``) with ``context``."""
    return _environment().get_template(template).render(**context)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pdf(html: str, path: Path) -> None:
    """The PDF of ``html`` (WeasyPrint), written whole or not at all."""
    import logging
    from weasyprint import HTML
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    _write_atomic(path, HTML(string=html, base_url=str(path.parent)).write_pdf())


def _stem(name: str) -> str:
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_subject_report(result, out_dir: str | os.PathLike, *, input_path: str | os.PathLike | None = None,
                         sex: str | None = None, image=None, name: str | None = None, pdf: bool = True,
                         normative=None) -> dict[str, Path]:
    """Write ``<name>_report.html`` (self-contained) and ``<name>_report.pdf`` of one
    :class:`~BrainAgeLib.pipeline.BrainAgeResult` into ``out_dir``; returns their paths.

    ``input_path``: the scanned file (its name, and the scan date from a DICOM header);
    ``sex``: "M"/"F" (centiles by sex where the normative model has a sex term); ``image``:
    the input image (path or SimpleITK image) for the QC slices on its own grid (default:
    the preprocessed model-space image); ``name``: file name stem (default: the input's);
    ``normative``: a :class:`~BrainAgeLib.normative.NormativeModel` or JSON path (default: the
    shipped one)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or (_stem(Path(str(input_path).rstrip("/\\")).name) if input_path else "brainage")
    html = render("subject.html.j2", subject_context(result, input_path=input_path, sex=sex,
                                                     image=image, normative=normative, name=stem))
    paths = {"html": out / f"{stem}{REPORT_SUFFIX}.html"}
    _write_atomic(paths["html"], html.encode("utf-8"))
    if pdf:
        paths["pdf"] = out / f"{stem}{REPORT_SUFFIX}.pdf"
        write_pdf(html, paths["pdf"])
    return paths


def _float(s) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def cohort_context(rows: list[dict], reports: dict[str, str] | None = None, normative=None) -> dict:
    """What the cohort template shows, from ``brainage predict`` CSV rows (column names as in
    the CSV) and the one-subject report of each input (paths relative to the cohort report)."""
    from collections import Counter
    from . import charts
    from .normative import reference_cohort
    model = _normative(normative)
    ref = reference_cohort(model)
    reports = reports or {}
    entries, points, gaps, qc_counts = [], [], [], Counter()
    for r in rows:
        qc = r.get("qc", "")
        pred, age = _float(r.get("predicted_age")), _float(r.get("chronological_age"))
        gap = None if pred is None or age is None else pred - age
        c = model.centile_of("gap", gap, age, r.get("sex"))
        if qc.startswith("error"):
            qc_counts["error (not processed)"] += 1
        elif qc in ("", "ok"):
            qc_counts["ok"] += 1
        else:
            for w in qc.split(";"):
                qc_counts[w.split(" (")[0].split(":")[0]] += 1
        reasons = []
        if qc.startswith("error"):
            reasons.append(qc)
        elif qc not in ("", "ok"):
            reasons.append("QC: " + qc)
        if c is not None and (c < 5 or c > 95):
            reasons.append(f"gap {ordinal(c)} centile for age")
        entries.append({**r, "gap_centile": ordinal(c), "centile_value": c, "reasons": reasons,
                        "report": reports.get(r["input"], ""), "name": Path(r["input"].rstrip("/\\")).name})
        if pred is not None and age is not None:
            points.append((age, pred))
            gaps.append(gap)
    first = sorted((e for e in entries if e["reasons"]),
                   key=lambda e: (not e["qc"].startswith("error"), e["qc"] in ("", "ok"),
                                  -abs((e["centile_value"] or 50) - 50)))
    ref_gaps = [p - a for a, p in zip(ref["age"], ref["predicted_age"])]
    return {"title": f"Brain age cohort report ({len(rows)} scans)", "disclaimer": DISCLAIMER,
            "version": __version__, "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "entries": entries, "first": first, "qc_counts": sorted(qc_counts.items(), key=lambda x: -x[1]),
            "n": len(rows), "n_with_age": len(points),
            "scatter": data_uri(charts.age_chart(ref, None, 0.0, (0.0, 0.0), others=points)) if points else "",
            "histogram": data_uri(charts.gap_histogram(gaps, ref_gaps)) if gaps else "",
            "training": model.data["training"], "age_range": "{:.0f}–{:.0f}".format(*model.age_range),
            "models": model_files()}


def write_cohort_report(rows: list[dict], out_dir: str | os.PathLike, *, reports: dict[str, str] | None = None,
                        pdf: bool = True, normative=None, name: str = "cohort") -> dict[str, Path]:
    """Write ``cohort_report.html`` and ``.pdf`` of a batch into ``out_dir``: the scatter of
    predicted against chronological age, the gap distribution, QC counts and the scans to look
    at first (errors, QC warnings, gaps outside the 5th–95th centile), linking the one-subject
    reports (``reports``: input -> path relative to ``out_dir``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = render("cohort.html.j2", cohort_context(rows, reports, normative))
    paths = {"html": out / f"{name}{REPORT_SUFFIX}.html"}
    _write_atomic(paths["html"], html.encode("utf-8"))
    if pdf:
        paths["pdf"] = out / f"{name}{REPORT_SUFFIX}.pdf"
        write_pdf(html, paths["pdf"])
    return paths


def read_sexes(path: str | os.PathLike | None) -> dict[str, str]:
    """Sex ("M"/"F") by input key from an ages CSV (``--ages``) that has a ``sex`` column;
    empty when there is none. Keys as in the CSV's ``input``, ``subject_id`` or ``id``."""
    import csv
    if not path:
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    if not rows or "sex" not in rows[0]:
        return {}
    key = next((k for k in ("input", "subject_id", "id") if k in rows[0]), None)
    return {r[key]: r["sex"] for r in rows if key and r.get("sex")}


class BatchReporter:
    """Reports of a ``brainage predict --report DIR`` run: one per processed input as it
    finishes (:meth:`add`), and a cohort report when the batch had several inputs
    (:meth:`finish`). ``sex_of(path)`` gives an input's sex or None."""

    def __init__(self, out_dir: str | os.PathLike, sex_of=None, pdf: bool = True):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.sex_of = sex_of or (lambda path: None)
        self.pdf = pdf
        self.rows: list[dict] = []
        self.reports: dict[str, str] = {}
        self._stems: set[str] = set()

    def _name(self, path: str) -> str:
        stem = _stem(Path(path.rstrip("/\\")).name)
        name, i = stem, 2
        while name in self._stems:        # two inputs with one file name never share a report
            name, i = f"{stem}_{i}", i + 1
        self._stems.add(name)
        return name

    def subject_job(self, path: str) -> dict:
        """What a worker needs to write ``path``'s report itself (:func:`write_job_report`)."""
        return {"out_dir": str(self.out), "name": self._name(path), "sex": self.sex_of(path),
                "pdf": self.pdf}

    def add(self, path: str, row: dict, result=None, report: dict | None = None) -> dict[str, Path]:
        """Record ``row`` (the CSV row) and its report: written here from ``result``, or
        already written by the scan's task (``report``: its paths)."""
        self.rows.append({**row, "sex": self.sex_of(path) or ""})
        if report:
            paths = {k: Path(v) for k, v in report.items()}
        elif result is not None:
            paths = write_subject_report(result, self.out, input_path=path, image=path,
                                         sex=self.sex_of(path), name=self._name(path), pdf=self.pdf)
        else:
            return {}
        self.reports[row["input"]] = paths["html"].name
        return paths

    def finish(self) -> dict[str, Path]:
        """The cohort report, when more than one input was given; returns its paths."""
        if len(self.rows) < 2:
            return {}
        return write_cohort_report(self.rows, self.out, reports=self.reports, pdf=self.pdf)


def write_job_report(result, path: str, job: dict) -> dict[str, str]:
    """A batch task's one-subject report (``job`` from :meth:`BatchReporter.subject_job`)."""
    paths = write_subject_report(result, job["out_dir"], input_path=path, image=path, sex=job["sex"],
                                 name=job["name"], pdf=job["pdf"])
    return {k: str(v) for k, v in paths.items()}
