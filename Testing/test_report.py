"""Reports as a person sees them: `brainage predict --sample --report DIR` writes a
self-contained HTML and a PDF; the HTML renders in headless Chromium without console errors,
the PDF turns into page images with pdftoppm, and every number equals the CSV row's.

Chromium and poppler-utils are installed by `make test` (Makefile `system-deps`); without them
these tests fail, they never skip."""
from __future__ import annotations

import base64
import csv
import io
import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from BrainAgeLib import cli, models, normative, report

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "Testing" / "data" / "IXI013-HH-1212_T1.nii.gz"
NUMERIC = ("predicted_age", "predicted_age_volumes", "predicted_age_cnn", "interval_low", "interval_high",
           "chronological_age", "brain_age_gap", "gm_ml", "wm_ml", "csf_ml", "tiv_ml", "seconds")
IMAGE_CHECK = ("<script>window.addEventListener('load',()=>{for(const i of document.images){"
               "if(!i.complete||i.naturalWidth===0)console.error('broken image '+i.alt);}})</script>")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (apt-get install chromium poppler-utils)")
    return path


class Fields(HTMLParser):
    """Text of every element with a data-field attribute, and every <img> src."""

    def __init__(self):
        super().__init__()
        self.fields, self.images, self._open = {}, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        self._open.append(a.get("data-field"))
        if a.get("data-field"):
            self.fields[a["data-field"]] = ""

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for f in self._open:
            if f:
                self.fields[f] += data


def parse(html: str) -> Fields:
    p = Fields()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """`brainage predict --sample --report DIR --output CSV`, as a user runs it."""
    tmp = tmp_path_factory.mktemp("sample")
    out = tmp / "out"
    assert cli.main(["predict", "--sample", "--report", str(out), "--output", str(tmp / "results.csv"), "-q"]) == 0
    with open(tmp / "results.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    stem = cli.input_stem(str(cli.SAMPLE))
    return {"out": out, "row": row, "html": out / f"{stem}_report.html", "pdf": out / f"{stem}_report.pdf",
            "tmp": tmp}


@pytest.fixture(scope="module")
def result():
    from BrainAgeLib import predict
    return predict(str(FIXTURE), chronological_age=46.71)       # IXI demographics


def test_sample_writes_html_and_pdf(sample):
    assert sample["html"].stat().st_size > 50_000
    assert sample["pdf"].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in sample["out"].iterdir()) == sorted([sample["html"].name, sample["pdf"].name])


def test_html_is_self_contained(sample):
    html = sample["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|file:|//|[\w./-]+\.(png|css|js))""", html, re.I)
    images = parse(html).images
    assert len(images) == 3          # age chart, tissue centile charts, QC slices
    for src in images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.width > 300 and np.asarray(img.convert("L")).std() > 10


def test_every_number_equals_the_csv_row(sample):
    fields = parse(sample["html"].read_text(encoding="utf-8")).fields
    row = sample["row"]
    shown = {k: v.strip() for k, v in fields.items() if k in NUMERIC}
    assert set(shown) == {k for k in NUMERIC if row[k]}, "every CSV number is in the report"
    assert shown == {k: row[k] for k in shown}
    # and in the PDF's text
    text = subprocess.run([tool("pdftotext"), "-layout", str(sample["pdf"]), "-"], capture_output=True,
                          text=True, encoding="utf-8", check=True).stdout
    for k in ("predicted_age", "interval_low", "interval_high", "chronological_age", "brain_age_gap",
              "gm_ml", "wm_ml", "csf_ml", "tiv_ml"):
        assert row[k] in text, k
    # fractions of TIV add up; centiles follow from them with the shipped normative model
    fr = {k: float(fields[f"{k}_frac"]) for k in ("gm", "wm", "csf")}
    assert sum(fr.values()) == pytest.approx(1.0, abs=0.002)
    model = normative.load()
    age = float(row["chronological_age"])
    for k, v in fr.items():
        c = model.centile_of(f"{k}_frac", v, age, cli.SAMPLE_SEX)
        # the shown fraction is rounded to 3 decimals: on a steep curve that moves the centile a little
        assert abs(int(re.sub(r"\D", "", fields[f"{k}_centile"])) - c) <= 3, k
    gap_c = model.centile_of("gap", float(row["brain_age_gap"]), age, cli.SAMPLE_SEX)
    assert fields["gap_centile"] == report.ordinal(gap_c)


def test_report_content(sample):
    html = sample["html"].read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for expected in ("Research use only", "not for diagnosis", "IXI012-HH-1211_T1.nii.gz", "male",
                     "Scan date not in the image header", "90% interval", "brain mask", "Ages outside"):
        assert expected in text, expected
    qc = sample["row"]["qc"]
    assert ("All automatic checks passed" in text) == (qc == "ok")
    for warning in ([] if qc == "ok" else qc.split(";")):
        assert report.qc_advice(warning)[0] in text
    for name, entry in models.read_manifest()["files"].items():
        assert entry["sha256"] in html, name
    lo, hi = normative.load().age_range
    assert f"ages {lo:.0f}–{hi:.0f} years" in text


def test_chromium_renders_without_console_errors(sample):
    page = sample["tmp"] / "check.html"
    page.write_text(sample["html"].read_text(encoding="utf-8").replace("</body>", IMAGE_CHECK + "</body>"),
                    encoding="utf-8")
    shot = sample["tmp"] / "screenshot.png"
    proc = subprocess.run([tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", "--window-size=1000,2400",
                           f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    img = np.asarray(Image.open(shot).convert("L"), float)
    assert img.shape == (2400, 1000)
    assert img.std() > 20 and (img < 100).mean() > 0.02      # text, charts and slices, not a blank page


def test_pdf_pages_as_images(sample):
    subprocess.run([tool("pdftoppm"), "-r", "50", "-png", str(sample["pdf"]), str(sample["tmp"] / "page")],
                   check=True, timeout=120)
    pages = sorted(sample["tmp"].glob("page-*.png"))
    assert 1 <= len(pages) <= 3
    for p in pages:
        img = np.asarray(Image.open(p).convert("L"), float)
        assert img.shape[0] > img.shape[1] and img.std() > 15, p.name     # A4 portrait, with content


def test_age_outside_training_range_is_said(result, tmp_path):
    lo, hi = normative.load().age_range
    for age in (hi + 7, lo - 3):
        paths = report.write_subject_report(replace(result, chronological_age=age), tmp_path,
                                            input_path=str(FIXTURE), pdf=False, name=f"age{age:g}")
        html = paths["html"].read_text(encoding="utf-8")
        assert "outside the training range" in html and "not extrapolated" in html
        fields = parse(html).fields
        assert "gap_centile" not in fields and all(fields[f"{k}_centile"] == "—" for k in ("gm", "wm", "csf"))


def test_slicer_signature_without_age_and_with_warnings(result, tmp_path):
    r = replace(result, chronological_age=None,
                qc=["image much softer than the training scans (grey/white edge sharpness 0.40 < 0.45)",
                    "registration: low similarity to template (r=0.71)"])
    paths = report.write_subject_report(r, tmp_path)        # what Slicer's "Save report" calls
    assert paths["pdf"].exists() and paths["html"].name == "brainage_report.html"
    html = paths["html"].read_text(encoding="utf-8")
    assert "Chronological age not given" in html and "brain_age_gap" not in parse(html).fields
    assert "Blur can make a brain look older" in html and "could not be aligned well" in html
    assert "model space" in html        # the QC slices come from the preprocessed image


def test_cohort_report_lists_scans_to_look_at_first(result, tmp_path):
    rep = report.BatchReporter(tmp_path, sex_of=lambda p: "F", pdf=False)
    old = replace(result, chronological_age=result.predicted_age - 20)       # a gap of +20 years (age within 18-88)
    for folder, r in (("a", result), ("b", old)):     # one file name in two folders
        (tmp_path / folder).mkdir()
        path = str(shutil.copy(FIXTURE, tmp_path / folder / "IXI013.nii.gz"))
        rep.add(path, cli.result_row(path, r), r)
    rep.add("c/broken.nii.gz", cli.error_row("c/broken.nii.gz", "not an image", 0.1, None))
    paths = rep.finish()
    assert sorted(p.name for p in tmp_path.glob("*_report.html")) == [
        "IXI013_2_report.html", "IXI013_report.html", "cohort_report.html"]
    html = paths["html"].read_text(encoding="utf-8")
    first = html.split("Scans to look at first")[1].split("<h2>")[0]
    assert "broken.nii.gz" in first and "IXI013_2_report.html" in first and "centile for age" in first
    assert first.index("broken.nii.gz") < first.index("IXI013_2_report.html")   # errors first
    assert 'href="IXI013_report.html"' in html                                      # every scan linked
    assert len(parse(html).images) == 2
    assert report.BatchReporter(tmp_path / "one", pdf=False).finish() == {}        # one scan: no cohort report
