"""What BrainAgeLib needs in Slicer's Python beside what Slicer ships, and what is missing.

Standard library only (``packaging`` when present), so that the Slicer module can ask before
anything is installed. torch comes from the PyTorch extension (PyTorchUtils picks the build for
the computer's GPU or CPU); the rest from PyPI. deepbet is installed without its GUI
dependencies (customtkinter, darkdetect: only its ``deepbet.ui`` uses them, BrainAge never
imports it) through ``slicer.packaging``'s ``skip_packages`` (Slicer 5.12+), or on older Slicer
as ``deepbet --no-deps`` plus :data:`DEEPBET_DEPENDENCIES`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

TORCH_REQUIREMENT = "torch>=2.1"
PIP_REQUIREMENTS = ["scikit-learn>=1.3", "safetensors>=0.4", "tqdm>=4.60", "nibabel>=5.0",
                    "deepbet>=1.0.2,<2"]
SKIP_PACKAGES = ["customtkinter", "darkdetect"]
# deepbet 1.0.2's Requires-Dist without torch and tqdm (above) and its GUI (SKIP_PACKAGES)
DEEPBET_DEPENDENCIES = ["connected-components-3d", "fill_voids", "pandas"]

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")


@dataclass
class Requirement:
    """One requirement and what this Python has of it."""

    requirement: str          # e.g. "scikit-learn>=1.3"
    name: str                 # distribution name, e.g. "scikit-learn"
    installed: str | None     # installed version, None when absent

    @property
    def ok(self) -> bool:
        return self.installed is not None and satisfies(self.installed, self.requirement)

    def describe(self) -> str:
        """One line for the confirmation dialog."""
        if self.installed is None:
            return f"{self.requirement} (not installed)"
        return f"{self.requirement} (installed {self.installed}: will be updated)"


def _version_tuple(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+\-]", v)[:4])


def satisfies(version: str, requirement: str) -> bool:
    """Whether ``version`` meets the specifiers of ``requirement`` ("name>=1.2,<2")."""
    spec = _SPEC.match(requirement).group(2).strip()
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        return SpecifierSet(spec).contains(version, prereleases=True)
    except ImportError:       # no 'packaging': compare release numbers
        ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
               ">": lambda a, b: a > b, "<": lambda a, b: a < b, "!=": lambda a, b: a != b}
        for part in spec.split(","):
            m = re.match(r"\s*(>=|<=|==|!=|>|<)\s*(\S+)", part)
            if m and not ops[m.group(1)](_version_tuple(version), _version_tuple(m.group(2))):
                return False
        return True


def check(requirement: str) -> Requirement:
    """The installed version of ``requirement``'s distribution (no import: nothing gets loaded)."""
    name = _SPEC.match(requirement).group(1)
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    return Requirement(requirement, name, installed)


def unmet(include_torch: bool = True) -> list[Requirement]:
    """The requirements that are missing or too old (torch first)."""
    reqs = ([TORCH_REQUIREMENT] if include_torch else []) + PIP_REQUIREMENTS
    return [r for r in map(check, reqs) if not r.ok]


def confirmation_details(todo: list[Requirement]) -> str:
    """The list of what will be installed, for the one confirmation dialog."""
    lines = []
    for r in todo:
        line = "- " + r.describe()
        if r.name == "torch":
            line += ", through the PyTorch extension (the build for this computer's GPU or CPU)"
        elif r.name == "deepbet":
            line += f", without its GUI dependencies ({', '.join(SKIP_PACKAGES)})"
        lines.append(line)
    return "\n".join(lines)
