"""Chronological ages for ``brainage predict --ages``: strict parsing and exact matching.

The table is a CSV (or a TSV such as BIDS ``participants.tsv``) with an ``age`` column (years)
and an id column: ``input``, ``subject_id``, ``participant_id`` or ``id``. An id matches an
input only exactly, as one of (most specific first): the whole path, the file name, the file
name without its image suffix, or the BIDS entity ``sub-<label>`` of the file name or of a
folder (``sub-01`` matches ``sub-01/anat/sub-01_T1w.nii.gz``, never ``sub-010_T1w.nii.gz``).
Never a prefix. Every problem is an :class:`AgesError` naming the line: a duplicated id, an
empty id, an age that is not a number, not finite or outside 0-120 years. An empty age or
``n/a`` (the BIDS mark for a missing value) means "unknown".
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path

from .outputs import input_stem

MIN_AGE, MAX_AGE = 0.0, 120.0          # years
ID_COLUMNS = ("input", "subject_id", "participant_id", "id")
MISSING = ("", "n/a")
_BIDS_SUBJECT = re.compile(r"(?:^|_)(sub-[A-Za-z0-9]+)(?=_|\.|$)")
_BIDS_FOLDER = re.compile(r"sub-[A-Za-z0-9]+")


class AgesError(ValueError):
    """The ages table cannot be used; the message names the file and the line."""


def parse_ages(text: str, name: str = "ages.csv") -> dict[str, float]:
    """``{id: age in years}`` from the text of an ages table (ids with an unknown age left out).

    Raises :class:`AgesError` naming ``name`` and the line for anything doubtful."""
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    except csv.Error as e:
        raise AgesError(f"{name}, line {reader.line_num}: not a readable CSV ({e})") from None
    if not rows:
        raise AgesError(f"{name} is empty; it needs an 'age' column and an id column "
                        f"({', '.join(ID_COLUMNS)})")
    header = [c.strip().lower() for c in rows[0][1]]
    if "age" not in header:
        raise AgesError(f"{name} needs an 'age' column (its header is {','.join(header)[:200]})")
    key = next((k for k in ID_COLUMNS if k in header), None)
    if key is None:
        raise AgesError(f"{name} needs an id column: one of {', '.join(ID_COLUMNS)}")
    i_key, i_age = header.index(key), header.index("age")
    ages: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for line, cells in rows[1:]:
        if len(cells) != len(header):
            raise AgesError(f"{name}, line {line}: {len(cells)} cells, the header has {len(header)}")
        ident, raw = cells[i_key].strip(), cells[i_age].strip()
        if not ident:
            raise AgesError(f"{name}, line {line}: empty {key}")
        if ident in first_line:
            raise AgesError(f"{name}, line {line}: {key} {ident!r} is already on line "
                            f"{first_line[ident]}")
        first_line[ident] = line
        if raw.lower() in MISSING:
            continue
        try:
            age = float(raw)
        except ValueError:
            raise AgesError(f"{name}, line {line}: age {raw[:40]!r} of {ident!r} is not a number") from None
        if not math.isfinite(age):
            raise AgesError(f"{name}, line {line}: age {raw!r} of {ident!r} is not a finite number")
        if not MIN_AGE <= age <= MAX_AGE:
            raise AgesError(f"{name}, line {line}: age {age:g} of {ident!r} is outside "
                            f"{MIN_AGE:g}-{MAX_AGE:g} years")
        ages[ident] = age
    return ages


def read_ages(path: str | os.PathLike) -> dict[str, float]:
    """:func:`parse_ages` of a file (UTF-8, with or without a byte-order mark)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AgesError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AgesError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 CSV") from None
    return parse_ages(text, str(path))


def candidate_ids(path: str) -> list[str]:
    """The ids that match ``path``, most specific first (see the module docstring)."""
    p = str(path)
    name = Path(p.rstrip("/\\")).name
    out = [p, os.path.normpath(p), os.path.abspath(p), name, input_stem(p)]
    entity = _BIDS_SUBJECT.search(name)
    if entity:
        out.append(entity.group(1))
    for part in reversed(Path(os.path.abspath(p)).parts[:-1]):
        if _BIDS_FOLDER.fullmatch(part):
            out.append(part)
            break
    return list(dict.fromkeys(out))


def match_age(ages: dict[str, float], path: str) -> float | None:
    """The age (years) of the first id of :func:`candidate_ids` in ``ages``; None if none is."""
    if not ages:
        return None
    paths = {os.path.normpath(k): k for k in ages if "/" in k or "\\" in k}
    for c in candidate_ids(path):
        if c in ages:
            return ages[c]
        if c in paths:
            return ages[paths[c]]
    return None
