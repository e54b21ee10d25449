"""A models folder for ``BRAINAGE_MODELS_DIR``: the shipped ``BrainAge/Resources/Models`` with a
candidate's files in place of the shipped ones, the manifest's SHA256 and sizes updated, so that
``predict``, ``evaluate-age``, ``evaluate-robustness`` and ``train-thick-slice-weights`` read the
candidate exactly as they would read a release.

    .venv/bin/python scripts/candidate_models.py docs/results/candidates/thick_partners/models \\
        runs/bthick/models --note "B with thick-slice consistency partners" \\
        --cnn-config docs/results/candidates/thick_partners/cnn_config.json

Every file of the first folder (``age_cnn.safetensors``, ``age_model.json``, ...) replaces the
shipped one of that name; the output folder is made anew.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from BrainAgeLib import models


def candidate_models(files: Path, out: Path, note: str, cnn_config: dict | None = None) -> Path:
    """``out``: the shipped models folder with every file of ``files`` in its place (manifest
    updated with ``{"candidate": note}``, and the CNN's training ``cnn_config``, which
    ``train-thick-slice-weights`` reads for the IXI validation heads)."""
    shipped = models.read_manifest(models.MODELS_DIR)["files"]
    names = sorted(p.name for p in Path(files).iterdir() if p.is_file())
    unknown = [n for n in names if n not in shipped]
    if unknown:
        raise SystemExit(f"{files}: {unknown} are not model files of the manifest")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(models.MODELS_DIR, out)
    for name in names:
        shutil.copyfile(Path(files) / name, out / name)
        info = {"candidate": note}
        if name == "age_cnn.safetensors":
            if cnn_config is None:
                raise SystemExit("a candidate CNN needs --cnn-config (its run's cnn_config.json)")
            info["config"] = cnn_config
        models.update_manifest(name, info, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, help="folder of the candidate's model files")
    ap.add_argument("out", type=Path, help="models folder to write (replaced)")
    ap.add_argument("--note", default="candidate", help="recorded in the manifest of each replaced file")
    ap.add_argument("--cnn-config", type=Path, help="the candidate CNN's cnn_config.json (from its train-cnn run)")
    args = ap.parse_args(argv)
    config = json.loads(args.cnn_config.read_text()) if args.cnn_config else None
    out = candidate_models(args.files, args.out, args.note, config)
    print(f"candidate models in {out}: {', '.join(sorted(p.name for p in args.files.iterdir()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
