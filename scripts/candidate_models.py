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


def candidate_models(files: Path | dict[str, Path], out: Path, note: str,
                     cnn_config: dict | None = None) -> Path:
    """``out``: the shipped models folder with every file of the folder ``files`` (or each
    ``{name: path}`` of a mapping) in place of the shipped file of that name (manifest updated
    with ``{"candidate": note}``, and for a CNN its training ``cnn_config``, which
    ``train-thick-slice-weights`` reads to pick the IXI validation heads)."""
    if not isinstance(files, dict):
        files = {p.name: p for p in Path(files).iterdir() if p.is_file()}
    shipped = models.read_manifest(models.MODELS_DIR)["files"]
    unknown = sorted(n for n in files if n not in shipped)
    if unknown:
        raise SystemExit(f"{unknown} are not model files of the manifest")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(models.MODELS_DIR, out)
    for name, path in sorted(files.items()):
        shutil.copyfile(path, out / name)
        info = {"candidate": note}
        if name == "age_cnn.safetensors" and cnn_config is not None:
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
    if (args.files / "age_cnn.safetensors").exists() and args.cnn_config is None:
        ap.error("a candidate CNN needs --cnn-config (its run's cnn_config.json)")
    config = json.loads(args.cnn_config.read_text()) if args.cnn_config else None
    out = candidate_models(args.files, args.out, args.note, config)
    print(f"candidate models in {out}: {', '.join(sorted(p.name for p in args.files.iterdir()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
