"""Seconds per one-subject report (HTML + PDF) beside the prediction it reports, in one run on
this machine's CPU: the bundled sample (2 mm whole-head IXI T1) is predicted, then its report
written, ``--runs`` times after a warm-up of each; medians. The report's parts are timed too:
charts and context (matplotlib), HTML (Jinja2), PDF (WeasyPrint).

    python benchmarks/report.py [--runs 5] [--threads 2] [--out docs/results/benchmark_report.txt]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "BrainAge"))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "benchmark_report.txt"))
    args = ap.parse_args()
    import SimpleITK as sitk
    import torch
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    from BrainAgeLib import predict, report
    from BrainAgeLib.cli import SAMPLE, SAMPLE_AGE, SAMPLE_SEX
    sample = str(SAMPLE)
    times = {k: [] for k in ("predict", "report", "context", "html", "pdf")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs + 1):                  # run 0 is the warm-up (loads models, fonts)
            result, t_pred = timed(lambda: predict(sample, chronological_age=SAMPLE_AGE, device="cpu"))
            _, t_rep = timed(lambda: report.write_subject_report(result, tmp, input_path=sample, image=sample,
                                                                 sex=SAMPLE_SEX))
            ctx, t_ctx = timed(lambda: report.subject_context(result, input_path=sample, image=sample,
                                                              sex=SAMPLE_SEX))
            html, t_html = timed(lambda: report.render("subject.html.j2", ctx))
            _, t_pdf = timed(lambda: report.write_pdf(html, Path(tmp) / "x.pdf"))
            if i:
                for k, v in zip(times, (t_pred, t_rep, t_ctx, t_html, t_pdf)):
                    times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"benchmarks/report.py: bundled sample {SAMPLE.name}, {args.runs} runs after a warm-up, "
             f"{args.threads} threads, medians (s)",
             f"predict() end to end            {med['predict']:.2f}",
             f"write_subject_report (HTML+PDF)  {med['report']:.2f}   ({med['report'] / med['predict']:.2f}x the prediction)",
             f"  charts and context (matplotlib) {med['context']:.2f}",
             f"  HTML (Jinja2)                   {med['html']:.3f}",
             f"  PDF (WeasyPrint)                {med['pdf']:.2f}",
             "all runs: " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in times.items())]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
