"""Normative model of the healthy training cohort: centile curves against age.

For the GM, WM and CSF fractions of TIV and for the brain-age gap (predicted − chronological
age, years), the 5th, 25th, 50th, 75th and 95th centiles are modelled as cubic B-splines of
age (years), with an additive sex term where it calibrates better. Two fitting methods are
compared per variable: linear quantile regression on the spline basis (statsmodels
``QuantReg``, one fit per centile) and a location-scale normal model (OLS spline for the mean,
OLS spline of the absolute residuals for the spread). Both give each centile as ``basis(age) @
coef``, so one JSON format stores either. The candidate whose held-out ``test`` subjects fall
below each centile closest to its nominal share is kept (:func:`fit_normative`).

Crossing centiles are put back in order at evaluation (rearrangement); ages outside the
training range are not extrapolated: :meth:`NormativeModel.centile_of` returns None there.
Shipped as ``normative.json`` (checksummed in the manifest; no pickle), loaded by :func:`load`.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

CENTILES = (5, 25, 50, 75, 95)
VARIABLES = {"gm_frac": "grey matter (fraction of TIV)", "wm_frac": "white matter (fraction of TIV)",
             "csf_frac": "CSF (fraction of TIV)", "gap": "brain-age gap (years)"}
TABLE_COLUMNS = ("subject_id", "site", "sex", "age", "split", "predicted_age", "csf_frac", "gm_frac",
                 "wm_frac")
DEGREE = 3
FILE_NAME = "normative.json"


def _z(p: np.ndarray | float) -> np.ndarray:
    from scipy.stats import norm
    return norm.ppf(p)


def sex_code(value) -> float | None:
    """1.0 for male, 0.0 for female, None when unknown (accepts M/F, male/female)."""
    s = str(value or "").strip().lower()
    return 1.0 if s in ("m", "male") else 0.0 if s in ("f", "female") else None


# --------------------------------------------------------------------------- spline curves

def make_knots(age: np.ndarray, df: int, degree: int = DEGREE) -> np.ndarray:
    """Clamped knot vector for ``df`` (>= degree + 1) basis functions; interior knots at age
    quantiles."""
    lo, hi = float(np.min(age)), float(np.max(age))
    n_inner = max(df - degree - 1, 0)
    inner = np.quantile(age, np.linspace(0, 1, n_inner + 2)[1:-1]) if n_inner else np.empty(0)
    return np.concatenate([[lo] * (degree + 1), inner, [hi] * (degree + 1)])


def spline_basis(age, knots, degree: int = DEGREE) -> np.ndarray:
    """B-spline design matrix (n, n_basis) of ``age`` (years), clamped to the knots' range."""
    from scipy.interpolate import BSpline
    knots = np.asarray(knots, float)
    a = np.clip(np.atleast_1d(np.asarray(age, float)), knots[0], knots[-1])
    return BSpline.design_matrix(a, knots, degree).toarray()


@dataclass
class CentileCurves:
    """Centile curves of one variable: centile c at age a (and sex s, 1 male, 0 female) is
    ``spline_basis(a) @ coef[c] + sex_coef[c] * (s - male_share)``; unknown sex uses s =
    male_share (the cohort's average)."""
    variable: str
    method: str
    knots: list[float]
    coef: dict[str, list[float]]
    sex_coef: dict[str, float] | None = None
    male_share: float = 0.5
    population: str = "all sites"   # the training subjects fitted: "all sites" or one site

    @property
    def age_range(self) -> tuple[float, float]:
        return float(self.knots[0]), float(self.knots[-1])

    def predict(self, age, sex=None) -> np.ndarray:
        """Values of the centiles :data:`CENTILES` at ``age`` (n,): (n, 5), non-decreasing."""
        b = spline_basis(age, self.knots)
        out = np.stack([b @ np.asarray(self.coef[str(c)]) for c in CENTILES], axis=1)
        if self.sex_coef is not None:
            s = np.broadcast_to(np.asarray([self.male_share if sex_code(x) is None else sex_code(x)
                                            for x in np.atleast_1d(np.asarray(sex, object))]
                                           if sex is not None else [self.male_share], float), (len(b),))
            out = out + np.stack([self.sex_coef[str(c)] * (s - self.male_share) for c in CENTILES], 1)
        return np.sort(out, axis=1)

    def centile_of(self, value: float, age: float, sex=None) -> float:
        """Centile (0–100) of ``value`` among people of ``age``: linear in normal scores between
        the fitted curves, extended linearly beyond the 5th and 95th; clipped to 0.1–99.9."""
        from scipy.stats import norm
        q = self.predict([age], None if sex is None else [sex])[0]
        z = _z(np.asarray(CENTILES) / 100.0)
        if value <= q[0] or value >= q[-1]:
            i = (0, 1) if value <= q[0] else (-2, -1)
            slope = (z[i[1]] - z[i[0]]) / max(q[i[1]] - q[i[0]], 1e-12)
            zv = z[i[0]] + slope * (value - q[i[0]])
        else:
            zv = float(np.interp(value, q, z))
        return float(np.clip(norm.cdf(zv) * 100.0, 0.1, 99.9))

    def to_dict(self) -> dict:
        return {"variable": self.variable, "method": self.method, "degree": DEGREE,
                "knots": [float(k) for k in self.knots],
                "coef": {k: [float(x) for x in v] for k, v in self.coef.items()},
                "sex_coef": None if self.sex_coef is None else {k: float(v) for k, v in self.sex_coef.items()},
                "male_share": float(self.male_share), "population": self.population}

    @classmethod
    def from_dict(cls, d: dict) -> "CentileCurves":
        return cls(d["variable"], d["method"], d["knots"], d["coef"], d.get("sex_coef"),
                   d.get("male_share", 0.5), d.get("population", "all sites"))


def _design(age, male, knots, with_sex: bool, male_share: float) -> np.ndarray:
    b = spline_basis(age, knots)
    return np.column_stack([b, male - male_share]) if with_sex else b


def fit_curves(variable: str, age, y, male, method: str = "quantreg", df: int = 4,
               with_sex: bool = False) -> CentileCurves:
    """Fit the centile curves of ``y`` against ``age`` (years); ``male`` is 1/0 per subject
    (subjects of unknown sex must be left out when ``with_sex``). ``method``: "quantreg"
    (statsmodels QuantReg per centile) or "location-scale" (normal, spline mean and spread)."""
    age, y, male = (np.asarray(v, float) for v in (age, y, male))
    knots = make_knots(age, df)
    share = float(np.mean(male)) if with_sex else 0.5
    x = _design(age, male, knots, with_sex, share)
    coefs = {}
    if method == "quantreg":
        from statsmodels.regression.quantile_regression import QuantReg
        for c in CENTILES:
            coefs[str(c)] = np.asarray(QuantReg(y, x).fit(q=c / 100.0, max_iter=10000).params)
    elif method == "location-scale":
        mean, *_ = np.linalg.lstsq(x, y, rcond=None)
        spread, *_ = np.linalg.lstsq(x, np.abs(y - x @ mean) * math.sqrt(math.pi / 2), rcond=None)
        for c in CENTILES:
            coefs[str(c)] = mean + float(_z(c / 100.0)) * spread
    else:
        raise ValueError(f"unknown method {method!r}")
    n_b = len(knots) - DEGREE - 1
    return CentileCurves(variable, f"{method} (cubic B-spline, df {df}{', sex term' if with_sex else ''})",
                         list(map(float, knots)), {k: list(v[:n_b]) for k, v in coefs.items()},
                         {k: float(v[n_b]) for k, v in coefs.items()} if with_sex else None, share)


def calibration(curves: CentileCurves, age, y, sex) -> list[float]:
    """Share (%) of subjects below each centile curve, in the order of :data:`CENTILES`."""
    q = curves.predict(np.asarray(age, float), list(sex))
    return [float(np.mean(np.asarray(y, float) < q[:, i]) * 100.0) for i in range(len(CENTILES))]


# --------------------------------------------------------------------------- the table

def read_table(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The normative table (``subject_id, site, sex, age, split, predicted_age, csf_frac,
    gm_frac, wm_frac``) as column arrays, with ``gap`` = predicted_age − age (years)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise ValueError(f"cannot read the normative table {path}: {e.strerror}") from None
    missing = [c for c in TABLE_COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    t = {c: np.asarray([r[c] for r in rows], object) for c in ("subject_id", "site", "sex", "split")}
    try:
        for c in ("age", "predicted_age", "csf_frac", "gm_frac", "wm_frac"):
            t[c] = np.asarray([float(r[c]) for r in rows])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    t["gap"] = t["predicted_age"] - t["age"]
    for split in ("train", "test"):
        if not np.any(t["split"] == split):
            raise ValueError(f"{path}: no subject with split '{split}'")
    return t


# (method, number of spline basis functions: 4 = a cubic polynomial, 5 = one inner knot, sex term)
CANDIDATES = [("quantreg", 4, False), ("quantreg", 5, False), ("quantreg", 5, True),
              ("location-scale", 4, False), ("location-scale", 5, False), ("location-scale", 5, True)]
# The training subjects a candidate is fitted on: every site, or the reference site only (the
# scanner whose scale the site calibration maps new scanners to). Tissue fractions move with the
# scanner (IXI's WM fraction is 1.2 SD above Cam-CAN's at the same age), so curves pooled over
# two sites fit neither; the test split decides, like the other choices.
REFERENCE_SITE = "camcan"
POPULATIONS = (None, REFERENCE_SITE)


def _select(t: dict, variable: str, log=print) -> tuple[CentileCurves, list[dict]]:
    tr, te = t["split"] == "train", t["split"] == "test"
    male = np.asarray([sex_code(s) for s in t["sex"]], object)
    known = np.asarray([m is not None for m in male])
    rows, best = [], None
    for population in POPULATIONS:
        site = tr if population is None else tr & (t["site"] == population)
        if site.sum() < 100 or (population and site.sum() == tr.sum()):
            continue   # too few subjects, or the same rows as "all sites"
        for method, df, with_sex in CANDIDATES:
            m = site & known if with_sex else site
            if with_sex and (known[site].sum() < 50 or len(set(male[m])) < 2):
                continue   # the data do not support a sex term
            best = _score(t, variable, (method, df, with_sex, population), m, male, te, rows, best)
    best[2]["selected"] = True
    best[2].update(_cv_shares(t, variable, best[3], male, known))
    log(f"{variable}: selected {best[1].method} (max deviation {best[2]['max_abs_dev']} points)")
    return best[1], rows


@lru_cache(maxsize=8)
def _null_max_deviation(n: int, draws: int = 20000, seed: int = 20261126) -> np.ndarray:
    """Sorted maximum deviations (points) of the five shares that ``n`` subjects drawn from
    perfectly calibrated curves show: what chance alone does to a calibration table."""
    u = np.random.default_rng(seed).random((draws, n))
    shares = (u[:, :, None] < np.asarray(CENTILES) / 100.0).mean(axis=1) * 100.0
    return np.sort(np.abs(shares - np.asarray(CENTILES)).max(axis=1))


def chance_of_deviation(max_dev: float, n: int) -> float:
    """Probability that perfectly calibrated curves show a maximum deviation of at least
    ``max_dev`` points on ``n`` subjects (a p-value of the calibration table)."""
    null = _null_max_deviation(int(n))
    return float(1.0 - np.searchsorted(null, max_dev - 1e-9) / len(null))


def _score(t, variable, candidate, m, male, te, rows, best):
    """Fit one candidate on the rows ``m``, score it on ``te``; returns the better of it and ``best``."""
    method, df, with_sex, population = candidate
    curves = fit_curves(variable, t["age"][m], t[variable][m],
                        [x if x is not None else 0.5 for x in male[m]], method, df, with_sex)
    curves.population = population or "all sites"
    shares = calibration(curves, t["age"][te], t[variable][te], t["sex"][te])
    dev = [s - c for s, c in zip(shares, CENTILES)]
    row = {"variable": variable, "model": curves.method, "population": curves.population,
           "n_train": int(m.sum()), "n_test": int(te.sum()),
           **{f"below_{c}": round(s, 1) for c, s in zip(CENTILES, shares)},
           "max_abs_dev": round(max(map(abs, dev)), 1), "mean_abs_dev": round(float(np.mean(np.abs(dev))), 2)}
    row["p_chance"] = round(chance_of_deviation(row["max_abs_dev"], row["n_test"]), 3)
    rows.append(row)
    key = (row["max_abs_dev"], row["mean_abs_dev"])
    if best is None or key < best[0]:
        best = (key, curves, row, candidate)
    return best


def _cv_shares(t: dict, variable: str, candidate: tuple, male, known, folds: int = 5,
               seed: int = 20261126) -> dict:
    """Out-of-fold share (%) of ``train`` subjects below each centile (seeded ``folds``-fold CV):
    a second, larger check of the calibration than the ``test`` rows."""
    method, df, with_sex, population = candidate
    idx = np.flatnonzero((t["split"] == "train") & (known if with_sex else True)
                         & ((t["site"] == population) if population else True))
    fold = np.random.default_rng(seed).permutation(len(idx)) % folds
    below = np.zeros((len(idx), len(CENTILES)), bool)
    for k in range(folds):
        fit, held = idx[fold != k], idx[fold == k]
        c = fit_curves(variable, t["age"][fit], t[variable][fit],
                       [x if x is not None else 0.5 for x in male[fit]], method, df, with_sex)
        below[fold == k] = t[variable][held, None] < c.predict(t["age"][held], list(t["sex"][held]))
    return {"n_cv": len(idx), **{f"cv_below_{c}": round(float(below[:, i].mean() * 100), 1)
                                 for i, c in enumerate(CENTILES)}}


def fit_normative(table: dict[str, np.ndarray], log=print, source: str = "") -> dict:
    """Fit and select the centile curves of every variable on the ``train`` rows, score them on
    the ``test`` rows; returns the JSON-ready normative model with its calibration table and
    the reference cohort (the training subjects' ages and predicted ages)."""
    curves, table_rows = {}, []
    for v in VARIABLES:
        c, rows = _select(table, v, log)
        curves[v] = c.to_dict()
        table_rows += rows
    tr = table["split"] == "train"
    sites = sorted(set(table["site"][tr]))
    return {"type": "BrainAgeNormativeModel", "version": 1, "centiles": list(CENTILES),
            "source_table": source, "variables": curves, "calibration": table_rows,
            "training": {"n": int(tr.sum()), "n_test": int((table["split"] == "test").sum()),
                         "sites": sites, "age_range": [float(table["age"][tr].min()), float(table["age"][tr].max())],
                         "sex_counts": {s: int(np.sum(table["sex"][tr] == s)) for s in sorted(set(table["sex"][tr]))}},
            "reference": {"subject_id": [str(s) for s in table["subject_id"][tr]],
                          "site": [str(s) for s in table["site"][tr]], "sex": [str(s) for s in table["sex"][tr]],
                          "age": [round(float(a), 2) for a in table["age"][tr]],
                          "predicted_age": [round(float(a), 2) for a in table["predicted_age"][tr]]}}


def calibration_markdown(model: dict) -> str:
    """The calibration table (share of test subjects below each centile) as Markdown."""
    head = ("| variable | model | " + " | ".join(f"< {c}th" for c in CENTILES)
            + " | max dev | p (chance) |")
    lines = [head, "|" + " --- |" * (len(CENTILES) + 4)]
    for r in model["calibration"]:
        mark = "**" if r.get("selected") else ""
        lines.append(f"| {mark}{r['variable']}{mark} | {mark}{r['model']}, {r.get('population', 'all sites')}{mark} | "
                     + " | ".join(f"{r[f'below_{c}']:.0f}" for c in CENTILES)
                     + f" | {r['max_abs_dev']:.1f} | {r.get('p_chance', float('nan')):.2f} |")
    sel = [r for r in model["calibration"] if r.get("selected") and "n_cv" in r]
    if sel:
        lines += ["", "Selected models, 5-fold cross-validation on the training subjects (out-of-fold share "
                  "below each centile, %):", "",
                  "| variable | n | " + " | ".join(f"< {c}th" for c in CENTILES) + " |",
                  "|" + " --- |" * (len(CENTILES) + 2)]
        lines += [f"| {r['variable']} | {r['n_cv']} | " + " | ".join(f"{r[f'cv_below_{c}']:.0f}" for c in CENTILES)
                  + " |" for r in sel]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the shipped model

@dataclass
class NormativeModel:
    """The shipped normative model (:func:`load`)."""
    data: dict
    curves: dict[str, CentileCurves] = field(default_factory=dict)

    def __post_init__(self):
        if self.data.get("type") != "BrainAgeNormativeModel":
            raise ValueError("not a BrainAge normative model")
        self.curves = {k: CentileCurves.from_dict(v) for k, v in self.data["variables"].items()}

    @property
    def age_range(self) -> tuple[float, float]:
        """Ages (years) of the training cohort: curves are not extrapolated beyond them."""
        lo, hi = self.data["training"]["age_range"]
        return float(lo), float(hi)

    def in_range(self, age: float | None) -> bool:
        return age is not None and self.age_range[0] <= age <= self.age_range[1]

    def centile_curves(self, variable: str, ages, sex=None) -> np.ndarray:
        """(n, 5) values of the 5th–95th centiles of ``variable`` at ``ages`` (years)."""
        return self.curves[variable].predict(np.asarray(ages, float), sex)

    def centile_of(self, variable: str, value: float | None, age: float | None, sex=None) -> float | None:
        """Centile (0–100) of ``value`` among healthy people of ``age``; None when the age is
        unknown or outside the training range (never extrapolated)."""
        if value is None or not self.in_range(age):
            return None
        return self.curves[variable].centile_of(float(value), float(age), sex)


def load(path: str | os.PathLike | None = None) -> NormativeModel:
    """The normative model from ``path``, or the shipped ``normative.json`` (checksum verified)."""
    if path is not None:
        return NormativeModel(json.loads(Path(path).read_text()))
    from . import models
    return _load_shipped(str(models.models_dir()))


@lru_cache(maxsize=2)
def _load_shipped(folder: str) -> NormativeModel:
    from . import models
    return NormativeModel(json.loads(models.verify(FILE_NAME, folder).read_text()))


def reference_cohort(model: NormativeModel | None = None, band_step: float = 1.0) -> dict:
    """The training cohort's points and the healthy band, for a predicted-against-chronological
    age chart: ``age``, ``predicted_age``, ``sex``, ``site`` (lists, years) and ``band`` =
    {``age``, ``low``, ``median``, ``high``}: chronological age plus the 5th, 50th and 95th
    centiles of the brain-age gap (a 90% band of predicted ages)."""
    m = model or load()
    ref = m.data["reference"]
    lo, hi = m.age_range
    grid = np.arange(math.floor(lo), math.ceil(hi) + band_step / 2, band_step).clip(lo, hi)
    q = m.centile_curves("gap", grid)
    return {"age": list(ref["age"]), "predicted_age": list(ref["predicted_age"]),
            "sex": list(ref["sex"]), "site": list(ref["site"]),
            "band": {"age": grid.tolist(), "low": (grid + q[:, 0]).tolist(),
                     "median": (grid + q[:, 2]).tolist(), "high": (grid + q[:, 4]).tolist()}}


def train_normative(table_path: str | os.PathLike, out_path: str | os.PathLike, log=print) -> dict:
    """Fit from the normative table CSV and write the JSON model; returns the model dict."""
    model = fit_normative(read_table(table_path), log=log, source=str(table_path))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model, indent=1) + "\n")
    return model
