"""Are the shipped model files the ones a candidate folder was measured with? Networks compared
tensor by tensor (a re-export may order the safetensors header differently), JSON files as
documents without ``fitted_for`` (the SHA256 the thick-slice lines record), each difference
printed. ``--tolerance`` allows numbers to differ by rounding (a refit from a CSV that stored 3
decimals); ``--ignore`` names provenance text that may differ (dotted keys, e.g.
``ensemble.weight_rule``, which records the path of the file the weight was read from). Exit
status 1 if anything else differs.

    .venv/bin/python scripts/shipped_equals_measured.py runs/zoomship/models-lines \\
        --networks age_cnn.safetensors --json age_model.json feature_reference.json thick_slice_weights.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHIPPED = Path("BrainAge/Resources/Models")


def json_differences(a, b, tolerance: float = 0.0, ignore: frozenset = frozenset(), path: str = "") -> list[str]:
    """Dotted paths where documents ``a`` and ``b`` differ (numbers within ``tolerance`` agree)."""
    if path in ignore:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if (k not in a or k not in b) and p not in ignore:
                out.append(f"{p}: only in {'shipped' if k in a else 'measured'}")
            elif k in a and k in b:
                out += json_differences(a[k], b[k], tolerance, ignore, p)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} against {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_differences(x, y, tolerance, ignore, f"{path}[{i}]")]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if numbers and abs(a - b) <= tolerance:
        return []
    same_kind = isinstance(a, bool) == isinstance(b, bool)      # JSON's true is not 1
    return [] if same_kind and a == b else [f"{path}: {str(a)[:60]} against {str(b)[:60]}"]


def differing(measured: Path, networks: list[str], documents: list[str], shipped: Path = SHIPPED,
              tolerance: float = 0.0, ignore: frozenset = frozenset()) -> list[str]:
    """The differences, as ``file: where``, between the shipped ``networks`` (safetensors) and
    ``documents`` (JSON) and those in ``measured``."""
    import torch
    from safetensors.torch import load_file
    bad = []
    for n in networks:
        a, b = load_file(shipped / n), load_file(measured / n)
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            bad.append(f"{n}: tensors")
    for n in documents:
        a, b = (json.loads((d / n).read_text()) for d in (shipped, measured))
        a.pop("fitted_for", None), b.pop("fitted_for", None)
        bad += [f"{n}: {d}" for d in json_differences(a, b, tolerance, ignore)]
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("measured", type=Path, help="the candidate models folder the figures came from")
    ap.add_argument("--networks", nargs="*", default=[], help="safetensors files to compare")
    ap.add_argument("--json", nargs="*", default=[], help="JSON files to compare")
    ap.add_argument("--tolerance", type=float, default=0.0, help="largest difference of two numbers that agree")
    ap.add_argument("--ignore", nargs="*", default=[], help="dotted JSON keys of provenance text to skip")
    args = ap.parse_args(argv)
    bad = differing(args.measured, args.networks, args.json, tolerance=args.tolerance, ignore=frozenset(args.ignore))
    print("shipped = measured:", "yes" if not bad else "NO")
    for d in bad:
        print("  ", d)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
