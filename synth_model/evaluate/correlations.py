"""Column correlation stability: association matrices of real and synthetic, compared.

Pairs of numeric columns use Pearson's r, categorical pairs Theil's U (uncertainty coefficient),
mixed pairs the correlation ratio. Score = 10 x (1 - mean absolute difference), Pearson
differences halved so every entry lies in [0, 1]. Free-text and identifier-like columns (mostly
unique values) carry no association and are left out.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from synth_model.evaluate.encoding import is_numeric, mostly_unique


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def theils_u(x: pd.Series, y: pd.Series) -> float:
    """U(x|y): the share of x's entropy that knowing y removes (0 = none, 1 = all)."""
    x, y = x.astype(str).where(x.notna(), "<null>"), y.astype(str).where(y.notna(), "<null>")
    h_x = _entropy(x.value_counts().to_numpy())
    if h_x == 0:
        return 1.0
    table = pd.crosstab(x, y).to_numpy()
    n = table.sum()
    h_x_given_y = sum(col.sum() / n * _entropy(col) for col in table.T)
    return (h_x - h_x_given_y) / h_x


def correlation_ratio(categories: pd.Series, values: pd.Series) -> float:
    """eta: how much of a numeric column's variance the categories explain (sqrt of between/total)."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    keep = v.notna()
    v, c = v[keep], categories[keep].astype(str)
    total = float(((v - v.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    groups = v.groupby(c)
    between = float((groups.count() * (groups.mean() - v.mean()) ** 2).sum())
    return float(np.sqrt(between / total))


def association(a: pd.Series, b: pd.Series) -> float:
    if is_numeric(a) and is_numeric(b):
        with np.errstate(divide="ignore", invalid="ignore"):  # a constant column: NaN, read as no correlation
            r = a.astype(float).corr(b.astype(float))
        return 0.0 if pd.isna(r) else float(r)
    if is_numeric(a):
        return correlation_ratio(b, a)
    if is_numeric(b):
        return correlation_ratio(a, b)
    return theils_u(a, b)


def usable_columns(real: pd.DataFrame) -> list[str]:
    return [c for c in real.columns if not mostly_unique(real[c])]


def matrix(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    out = np.eye(len(columns))
    for (i, a), (j, b) in itertools.permutations(enumerate(columns), 2):
        out[i, j] = association(df[a], df[b])
    return out


def measure(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    columns = usable_columns(real)
    if len(columns) < 2:
        return {"score": None, "columns": columns, "note": "fewer than two columns with associations"}
    r, s = matrix(real, columns), matrix(synthetic, columns)
    numeric = np.array([is_numeric(real[c]) for c in columns])
    scale = np.where(np.outer(numeric, numeric), 0.5, 1.0)  # Pearson spans [-1, 1]
    diff = np.abs(r - s) * scale
    off = ~np.eye(len(columns), dtype=bool)
    mean = float(diff[off].mean())
    return {
        "score": 10 * (1 - mean),
        "mean_abs_difference": mean,
        "columns": columns,
        "real": r.round(4).tolist(),
        "synthetic": s.round(4).tolist(),
    }
