"""Are the shipped model files the ones a candidate folder was measured with? Networks compared
tensor by tensor (a re-export may order the safetensors header differently), JSON files as
documents without ``fitted_for`` (the SHA256 the thick-slice lines record). Exit status 1 if not.

    .venv/bin/python scripts/shipped_equals_measured.py runs/zoomship/models-lines \\
        --networks age_cnn.safetensors --json age_model.json feature_reference.json thick_slice_weights.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHIPPED = Path("BrainAge/Resources/Models")


def differing(measured: Path, networks: list[str], documents: list[str], shipped: Path = SHIPPED) -> list[str]:
    """The names among ``networks`` (safetensors) and ``documents`` (JSON) whose shipped file
    differs from the one in ``measured``."""
    import torch
    from safetensors.torch import load_file
    bad = []
    for n in networks:
        a, b = load_file(shipped / n), load_file(measured / n)
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            bad.append(n)
    for n in documents:
        a, b = (json.loads((d / n).read_text()) for d in (shipped, measured))
        a.pop("fitted_for", None), b.pop("fitted_for", None)
        if a != b:
            bad.append(n)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("measured", type=Path, help="the candidate models folder the figures came from")
    ap.add_argument("--networks", nargs="*", default=[], help="safetensors files to compare")
    ap.add_argument("--json", nargs="*", default=[], help="JSON files to compare")
    args = ap.parse_args(argv)
    bad = differing(args.measured, args.networks, args.json)
    print("shipped = measured:", "yes" if not bad else f"NO: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
