"""BrainAge as a BIDS App: find the T1w scans of a BIDS dataset, write a BIDS derivative.

``brainage bids BIDS_DIR OUTPUT_DIR participant|group`` (the BIDS Apps command shape).

Participant level, per T1w scan ``sub-<s>[_ses-<t>][_acq-...][_run-<r>]_T1w.nii.gz``, into
``OUTPUT_DIR/sub-<s>[/ses-<t>]/anat/`` under the same entities:

* ``..._desc-brainage_dseg.nii.gz`` + ``.json``: the tissue labels on the scan's own grid
  (0 background, 1 CSF, 2 GM, 3 WM), described once by ``OUTPUT_DIR/desc-brainage_dseg.tsv``;
* ``..._brainage.tsv`` + ``.json``: one row of ages (years) and volumes (ml), the columns of
  ``brainage predict``'s CSV, with each column's description and units in the sidecar. It is
  written last, so a scan with an ok row is done: a second run skips it (resume).

With ``--report``, each scan's one-page report (HTML + PDF, :mod:`BrainAgeLib.report`) goes to
``OUTPUT_DIR/reports/<source name>_report.html``.

Group level (:mod:`BrainAgeLib.bids_group`): ``OUTPUT_DIR/brainage.tsv`` (every scan), ``figures/`` (predicted against
chronological age, the gap's distribution, QC counts) and ``reports/cohort_report.html`` + ``.pdf``
(the cohort report: scatter, gap distribution, QC counts, the scans to look at first, linked to
their reports when the participant level wrote them). ``dataset_description.json`` carries
``GeneratedBy`` and ``SourceDatasets``. The ``_brainage`` tables and the figures are not (yet)
BIDS file types, so ``.bidsignore`` lists them (and ``reports/``); the derivative passes the BIDS validator.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__

CODE_URL = "https://github.com/brainage/SlicerBrainAge"
BIDS_VERSION = "1.10.0"
DESC = "brainage"
LABELS = ((0, "background", "BG", "#000000"), (1, "cerebrospinal fluid", "CSF", "#5a9bd5"),
          (2, "gray matter", "GM", "#b4b4b4"), (3, "white matter", "WM", "#f0f0d2"))
SCAN_COLUMNS = ["participant_id", "session_id", "source", "predicted_age", "predicted_age_volumes",
                "predicted_age_cnn", "interval_low", "interval_high", "chronological_age",
                "brain_age_gap", "gm_ml", "wm_ml", "csf_ml", "tiv_ml", "qc", "seconds"]
COLUMN_DESCRIPTIONS = {
    "participant_id": {"Description": "BIDS participant label (sub-<label>)"},
    "session_id": {"Description": "BIDS session label (ses-<label>); n/a without sessions"},
    "source": {"Description": "the T1-weighted scan, relative to the source dataset"},
    "predicted_age": {"Description": "brain age of the chosen approach (default: ensemble of "
                      "tissue volumes and image CNN), bias-corrected", "Units": "year"},
    "predicted_age_volumes": {"Description": "brain age from tissue volumes (approach A)", "Units": "year"},
    "predicted_age_cnn": {"Description": "brain age from the image CNN (approach B)", "Units": "year"},
    "interval_low": {"Description": "lower end of the 90% prediction interval", "Units": "year"},
    "interval_high": {"Description": "upper end of the 90% prediction interval", "Units": "year"},
    "chronological_age": {"Description": "age at the scan, from sessions.tsv or participants.tsv",
                          "Units": "year"},
    "brain_age_gap": {"Description": "predicted_age minus chronological_age", "Units": "year"},
    "gm_ml": {"Description": "gray matter volume on the scan's grid", "Units": "ml"},
    "wm_ml": {"Description": "white matter volume on the scan's grid", "Units": "ml"},
    "csf_ml": {"Description": "cerebrospinal fluid volume on the scan's grid", "Units": "ml"},
    "tiv_ml": {"Description": "total intracranial volume (GM + WM + CSF)", "Units": "ml"},
    "qc": {"Description": "ok, ';'-separated quality warnings, or 'error: ...' when the scan "
           "could not be processed"},
    "seconds": {"Description": "processing time of the scan", "Units": "s"},
}
BIDSIGNORE = ["*_brainage.tsv", "*_brainage.json", "/brainage.tsv", "/brainage.json", "/figures", "/reports"]
REPORTS = "reports"
README = """# BrainAge derivative

Made by `brainage bids` ({code}), version {version}.

* `sub-*/[ses-*/]anat/*_desc-brainage_dseg.nii.gz`: tissue labels on each T1w scan's own grid
  (0 background, 1 CSF, 2 GM, 3 WM; lookup table `desc-brainage_dseg.tsv`).
* `sub-*/[ses-*/]anat/*_brainage.tsv`: the scan's brain age (years), 90% prediction interval,
  chronological age and gap (years), tissue volumes (ml) and QC; the `.json` beside it describes
  each column and its units.
* `brainage.tsv`, `figures/`, `reports/cohort_report.html` (+ `.pdf`): the whole cohort (group
  level); `reports/` also holds each scan's one-page report when the participant level ran with
  `--report`.

Research use only; not a medical device.
"""


class BidsError(ValueError):
    """A BIDS dataset, label or filter that cannot be used (the message says why)."""


@dataclass
class BidsScan:
    """One T1w scan found in a BIDS dataset. Ages in years."""

    path: str                    # absolute path of the image
    relpath: str                 # relative to the dataset root (POSIX separators)
    subject: str
    session: str | None = None
    age: float | None = None
    entities: dict = field(default_factory=dict)
    sex: str | None = None       # "M" / "F" from participants.tsv, when given

    @property
    def prefix(self) -> str:
        """Derivative path stem: ``sub-01/ses-1/anat/sub-01_ses-1_run-1`` (the source's folder
        and name without its suffix and extension)."""
        folder, name = self.relpath.rsplit("/", 1)
        base = name.split(".", 1)[0]
        return f"{folder}/{base.rsplit('_', 1)[0]}"


# --------------------------------------------------------------------------- finding scans

def _strip(labels, prefix: str) -> list[str] | None:
    if not labels:
        return None
    return [lab[len(prefix):] if lab.startswith(prefix) else lab for lab in labels]


def read_filter_file(path: str | os.PathLike) -> dict:
    """The ``t1w`` query of a ``--bids-filter-file`` (fMRIPrep's format: a JSON object of
    queries by kind; ``null`` means the entity must be absent, ``"*"`` any value)."""
    from bids.layout import Query
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise BidsError(f"--bids-filter-file: cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BidsError(f"--bids-filter-file: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("t1w", {}), dict):
        raise BidsError(f"--bids-filter-file: {path} must hold an object like "
                        '{"t1w": {"acquisition": "mprage"}}')
    return {k: Query.NONE if v is None else Query.ANY if v == "*" else v
            for k, v in data.get("t1w", {}).items()}


def _read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _age(value: str | None, where: str) -> float | None:
    if value is None or value.strip() in ("", "n/a"):
        return None
    try:
        age = float(value)
    except ValueError:
        raise BidsError(f"{where}: age {value!r} is not a number") from None
    if not math.isfinite(age) or not 0 <= age < 150:
        raise BidsError(f"{where}: age {value!r} is not an age in years")
    return age


def read_ages(bids_dir: str | os.PathLike) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Ages (years) from ``participants.tsv`` by subject label and from each
    ``sub-<s>/sub-<s>_sessions.tsv`` by (subject, session) label; ``n/a`` is left out."""
    root = Path(bids_dir)
    by_subject: dict[str, float] = {}
    by_session: dict[tuple[str, str], float] = {}
    part = root / "participants.tsv"
    if part.exists():
        for n, row in enumerate(_read_tsv(part), start=2):
            sub = (row.get("participant_id") or "").removeprefix("sub-")
            age = _age(row.get("age"), f"{part} line {n}")
            if sub and age is not None:
                by_subject[sub] = age
    for ses_file in sorted(root.glob("sub-*/sub-*_sessions.tsv")):
        sub = ses_file.parent.name.removeprefix("sub-")
        for n, row in enumerate(_read_tsv(ses_file), start=2):
            ses = (row.get("session_id") or "").removeprefix("ses-")
            age = _age(row.get("age"), f"{ses_file} line {n}")
            if ses and age is not None:
                by_session[(sub, ses)] = age
    return by_subject, by_session


def read_sexes(bids_dir: str | os.PathLike) -> dict[str, str]:
    """Sex ("M" / "F") by subject label from the ``sex`` column of ``participants.tsv``
    (M, F, male, female in any case; anything else is left out)."""
    part = Path(bids_dir) / "participants.tsv"
    if not part.exists():
        return {}
    codes = {"m": "M", "male": "M", "f": "F", "female": "F"}
    out = {}
    for row in _read_tsv(part):
        sub = (row.get("participant_id") or "").removeprefix("sub-")
        sex = codes.get((row.get("sex") or "").strip().lower())
        if sub and sex:
            out[sub] = sex
    return out


def find_scans(bids_dir: str | os.PathLike, participant_labels=None, session_labels=None,
               filter_file: str | os.PathLike | None = None) -> list[BidsScan]:
    """Every T1w image (all runs and sessions) of the dataset, with its age, sorted by path.
    Labels may be given with or without their ``sub-``/``ses-`` prefix; a label that matches
    nothing is an error, as is a dataset without T1w images."""
    root = Path(bids_dir)
    if not (root / "dataset_description.json").is_file():
        raise BidsError(f"{bids_dir} is not a BIDS dataset (no dataset_description.json)")
    from bids import BIDSLayout
    try:
        layout = BIDSLayout(str(root), validate=False)
    except Exception as e:   # pybids reports a broken dataset in many ways
        raise BidsError(f"cannot index the BIDS dataset {bids_dir}: {e}") from None
    query = {"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]}
    if filter_file:
        query.update(read_filter_file(filter_file))
    for labels, prefix, entity, option, known in (
            (participant_labels, "sub-", "subject", "--participant-label", layout.get_subjects),
            (session_labels, "ses-", "session", "--session-label", layout.get_sessions)):
        wanted = _strip(labels, prefix)
        if wanted:
            missing = sorted(set(wanted) - set(known()))
            if missing:
                raise BidsError(f"{option}: no {entity} " + ", ".join(f"{prefix}{s}" for s in missing)
                                + f" in {bids_dir}")
            query[entity] = wanted
    try:
        files = layout.get(return_type="object", **query)
    except Exception as e:   # an unknown entity in the filter file
        raise BidsError(f"--bids-filter-file: cannot query {bids_dir}: {e}") from None
    by_subject, by_session = read_ages(root)
    sexes = read_sexes(root)
    scans = []
    for f in files:
        ent = f.get_entities()
        sub, ses = str(ent["subject"]), (str(ent["session"]) if "session" in ent else None)
        age = by_session.get((sub, ses)) if ses is not None else None
        rel = Path(os.path.relpath(os.path.realpath(f.path), os.path.realpath(root))).as_posix()
        scans.append(BidsScan(path=os.path.abspath(f.path), relpath=rel, subject=sub,
            session=ses, age=age if age is not None else by_subject.get(sub),
            entities={k: str(v) for k, v in ent.items()}, sex=sexes.get(sub)))
    if not scans:
        raise BidsError(f"no T1w image in {bids_dir} matches " + ", ".join(
            f"{k}={v}" for k, v in query.items()))
    return sorted(scans, key=lambda s: s.relpath)


# --------------------------------------------------------------------------- writing

def dataset_description(bids_dir: str | os.PathLike) -> dict:
    """The derivative's ``dataset_description.json``."""
    return {"Name": "BrainAge: brain age and tissue segmentation", "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "brainage", "Version": __version__, "CodeURL": CODE_URL,
                             "Description": "brain age from one T1-weighted MRI (tissue volumes "
                                            "and a 3D CNN); GM/WM/CSF labels"}],
            "SourceDatasets": [{"URL": Path(os.path.abspath(bids_dir)).as_uri()}],
            "DatasetLinks": {"raw": Path(os.path.abspath(bids_dir)).as_uri()}}


def _tsv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([("n/a" if r.get(c, "") in ("", None) else str(r[c]).replace("\t", " "))
                    for c in columns])
    return buf.getvalue()


def prepare_output(bids_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Create (or check, when resuming) the derivative's top-level files. Refuses the source
    dataset itself, a folder inside it other than ``derivatives/``, and another tool's
    derivative."""
    from .outputs import atomic_write_text
    src, out = Path(os.path.realpath(bids_dir)), Path(os.path.realpath(output_dir))
    if out == src or src.is_relative_to(out):
        raise BidsError(f"OUTPUT_DIR {output_dir} would hold the BIDS dataset itself; choose another folder "
                        f"(e.g. {Path(bids_dir) / 'derivatives' / 'brainage'})")
    if out.is_relative_to(src) and out.relative_to(src).parts[0] != "derivatives":
        raise BidsError(f"OUTPUT_DIR {output_dir} lies inside the BIDS dataset outside derivatives/")
    if out.exists() and not out.is_dir():
        raise BidsError(f"OUTPUT_DIR {output_dir} is a file, not a folder")
    desc = out / "dataset_description.json"
    if desc.exists():
        try:
            name = json.loads(desc.read_text(encoding="utf-8"))["GeneratedBy"][0]["Name"]
        except (ValueError, KeyError, IndexError, TypeError):
            name = None
        if name != "brainage":
            raise BidsError(f"{output_dir} holds another dataset ({desc}); choose an empty folder")
    files = {desc: json.dumps(dataset_description(bids_dir), indent=2) + "\n",
             out / f"desc-{DESC}_dseg.tsv": _tsv(["index", "name", "abbreviation", "color"],
                                                 [dict(zip(("index", "name", "abbreviation", "color"), lab))
                                                  for lab in LABELS]),
             out / f"desc-{DESC}_dseg.json": json.dumps({
                 "Description": "tissue labels of brainage on the source scan's grid (0 background, "
                                "1 CSF, 2 GM, 3 WM); TissueDefinition: camcan (the training labels') "
                                "or dlmuse (DLMUSE's)"}, indent=2) + "\n",
             out / ".bidsignore": "\n".join(BIDSIGNORE) + "\n",
             out / "README.md": README.format(code=CODE_URL, version=__version__)}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():   # a resumed run leaves unchanged files alone
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                atomic_write_text(text, path)
    except OSError as e:
        raise BidsError(f"cannot write {output_dir}: {e.strerror or e}") from None
    return out


def report_name(relpath: str) -> str:
    """A scan's report name: its source file name without the extension (``sub-01_ses-1_T1w``)."""
    return relpath.rsplit("/", 1)[-1].split(".", 1)[0]


def scan_outputs(output_dir: str | os.PathLike, scan: BidsScan) -> dict[str, Path]:
    """The files one scan writes: dseg (+json) and the table (+json)."""
    stem = Path(output_dir) / scan.prefix
    return {"dseg": Path(f"{stem}_desc-{DESC}_dseg.nii.gz"), "dseg_json": Path(f"{stem}_desc-{DESC}_dseg.json"),
            "tsv": Path(f"{stem}_{DESC}.tsv"), "json": Path(f"{stem}_{DESC}.json")}


def report_path(output_dir: str | os.PathLike, scan: BidsScan) -> Path:
    """The scan's one-page report (HTML; the PDF beside it), written with ``--report``."""
    return Path(output_dir) / REPORTS / f"{report_name(scan.relpath)}_report.html"


def settings_of(options: dict) -> dict:
    """The settings that change a scan's numbers (recorded in its sidecar, checked on resume)."""
    return {k: options.get(k) for k in ("approach", "tissues", "skull_stripped")}


def read_scan_row(tsv: Path) -> dict | None:
    """The row of a scan's ``_brainage.tsv`` (``n/a`` as empty), or None if unreadable."""
    try:
        rows = _read_tsv(tsv)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if len(rows) != 1:
        return None
    return {k: ("" if v == "n/a" else v) for k, v in rows[0].items()}


def is_done(output_dir: str | os.PathLike, scan: BidsScan, options: dict) -> bool:
    """Whether the scan has a complete, ok row made with the same settings (a failed scan is
    tried again); raises :class:`BidsError` if it was made with other settings."""
    files = scan_outputs(output_dir, scan)
    row = read_scan_row(files["tsv"]) if files["tsv"].exists() else None
    if row is None or row.get("qc", "").startswith("error") or not files["dseg"].exists():
        return False
    try:
        before = json.loads(files["json"].read_text(encoding="utf-8")).get("BrainAgeSettings")
    except (OSError, ValueError):
        return False
    if before != settings_of(options):
        raise BidsError(f"{files['tsv']} was made with {before}, not {settings_of(options)}: "
                        "use another OUTPUT_DIR, or --overwrite to redo every scan")
    return True


def process_scan(job) -> dict:
    """The ``brainage bids`` task (a :class:`~BrainAgeLib.cohort.ScanJob` with ``extra``
    ``scan`` and ``output_dir``): predict, then write the dseg and the table, each whole or not
    at all, the table last. Returns the table's row (+ ``_failed``)."""
    from .cohort import predict_job
    from .outputs import atomic_write_image, atomic_write_text
    scan = BidsScan(**job.extra["scan"])
    files = scan_outputs(job.extra["output_dir"], scan)
    row, result = predict_job(job)
    source = f"bids:raw:{scan.relpath}"
    if result is not None:
        try:
            atomic_write_image(result.labels, files["dseg"])
            atomic_write_text(json.dumps({
                "Sources": [source], "SpatialReference": source, "TissueDefinition": result.tissues,
                "GeneratedBy": {"Name": "brainage", "Version": __version__}}, indent=2) + "\n", files["dseg_json"])
        except (OSError, RuntimeError) as e:
            why = getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
            row = {**row, "qc": f"error: cannot write {files['dseg']} ({why})".replace(";", ",")}
            result = None
    out = {c: row.get(c, "") for c in SCAN_COLUMNS}
    out.update(participant_id=f"sub-{scan.subject}",
               session_id=f"ses-{scan.session}" if scan.session else "", source=scan.relpath)
    sidecar = {**COLUMN_DESCRIPTIONS, "Sources": [source],
               "BrainAgeSettings": settings_of(job.options), "GeneratedBy": {"Name": "brainage",
                                                                             "Version": __version__}}
    try:
        atomic_write_text(json.dumps(sidecar, indent=2) + "\n", files["json"])
        atomic_write_text(_tsv(SCAN_COLUMNS, [out]), files["tsv"])
    except OSError as e:
        out["qc"] = f"error: cannot write {files['tsv']} ({e.strerror or e})"
        result = None
    if job.extra.get("report") and result is not None:
        from .report import write_job_report
        try:
            write_job_report(result, job.path, job.extra["report"])
        except Exception as e:   # a report that cannot be written must not lose the age
            out["_report_error"] = f"{type(e).__name__}: {e}"
    out["_failed"] = result is None
    return out


def scan_jobs(scans: list[BidsScan], output_dir: str | os.PathLike, options: dict, report: bool = False):
    """One :class:`~BrainAgeLib.cohort.ScanJob` per scan; with ``report`` each task also writes
    the scan's one-page report into ``OUTPUT_DIR/reports/``."""
    from dataclasses import asdict
    from .cohort import ScanJob

    def extra(s: BidsScan) -> dict:
        e = {"scan": asdict(s), "output_dir": str(output_dir)}
        if report:
            e["report"] = {"out_dir": str(Path(output_dir) / REPORTS), "name": report_name(s.relpath),
                           "sex": s.sex, "pdf": True}
        return e
    return [ScanJob(key=s.relpath, path=s.path, chronological_age=s.age, options=dict(options),
                    extra=extra(s)) for s in scans]


__all__ = ["BidsError", "BidsScan", "find_scans", "read_ages", "read_filter_file", "prepare_output",
           "scan_outputs", "report_path", "is_done", "process_scan", "scan_jobs",
           "read_sexes", "dataset_description", "SCAN_COLUMNS", "LABELS"]
