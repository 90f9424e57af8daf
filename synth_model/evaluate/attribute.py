"""Attribute inference protection: from a few quasi-identifiers, guess a row's other values.

For real rows the attacker knows only the quasi-identifier columns of; each other column is
guessed from the nearest synthetic row on those columns (categories must match; numbers count as
right within a tenth of the column's standard deviation). Leakage is the accuracy on training
members minus the accuracy on holdout rows (what the synthetic data reveals about members beyond
what it teaches about anyone), weighted by each column's normalized entropy (a column that is
easy to guess anyway reveals less). Score = 10 x (1 - weighted leakage), clipped to [0, 10].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from synth_model.evaluate.encoding import Encoder, is_numeric

QUASI_IDENTIFIERS = 3
MAX_ROWS = 1000
MIN_ROWS = 30  # holdout rows below which the accuracy gap says more about chance than about leakage


def default_quasi_identifiers(real: pd.DataFrame) -> list[str]:
    """The columns with the most distinct values that are not nearly unique (age, zip, job...)."""
    candidates = [c for c in real.columns if 1 < real[c].nunique() < 0.5 * len(real)]
    return sorted(candidates, key=lambda c: -real[c].nunique())[:QUASI_IDENTIFIERS]


def _normalized_entropy(column: pd.Series) -> float:
    column = column.dropna()
    if column.empty:
        return 0.0
    values = pd.cut(column.astype(float), 10) if is_numeric(column) else column.astype(str)
    p = values.value_counts(normalize=True).to_numpy()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(len(p))) if len(p) > 1 else 0.0


def _accuracy(rows: pd.DataFrame, synthetic: pd.DataFrame, qi: list[str], column: str, tolerance: float) -> float:
    encoder = Encoder.fit(synthetic[qi])
    neighbours = NearestNeighbors(n_neighbors=1).fit(encoder.transform(synthetic[qi]))
    nearest = neighbours.kneighbors(encoder.transform(rows[qi]))[1][:, 0]
    guess, truth = synthetic[column].to_numpy()[nearest], rows[column].to_numpy()
    if is_numeric(rows[column]):
        g, t = pd.to_numeric(pd.Series(guess), errors="coerce"), pd.to_numeric(pd.Series(truth), errors="coerce")
        return float(((g - t).abs() <= tolerance).mean())
    return float((pd.Series(guess).astype(str).to_numpy() == pd.Series(truth).astype(str).to_numpy()).mean())


def measure(
    training: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, quasi_identifiers: list[str] | None = None
) -> dict:
    qi = quasi_identifiers or default_quasi_identifiers(training)
    if not qi:
        return {"score": None, "note": "no quasi-identifier columns"}
    if len(holdout) < MIN_ROWS:
        return {
            "score": None,
            "quasi_identifiers": qi,
            "note": f"too few holdout rows ({len(holdout)} < {MIN_ROWS}): hold out more rows (data.holdout)",
        }
    members = training.sample(min(MAX_ROWS, len(training)), random_state=0)
    others = holdout.sample(min(MAX_ROWS, len(holdout)), random_state=0)
    per_column, weights, leaks = {}, [], []
    for column in (c for c in training.columns if c not in qi):
        std = float(training[column].astype(float).std()) if is_numeric(training[column]) else 0.0
        tolerance = 0.1 * (std if np.isfinite(std) else 0.0)
        member_acc = _accuracy(members, synthetic, qi, column, tolerance)
        other_acc = _accuracy(others, synthetic, qi, column, tolerance)
        weight = _normalized_entropy(training[column])
        per_column[column] = {"member_accuracy": member_acc, "holdout_accuracy": other_acc, "weight": weight}
        weights.append(weight)
        leaks.append(max(0.0, member_acc - other_acc))
    risk = float(np.average(leaks, weights=weights)) if sum(weights) > 0 else 0.0
    return {
        "score": 10 * (1 - min(risk, 1.0)),
        "weighted_leakage": risk,
        "quasi_identifiers": qi,
        "per_column": per_column,
    }
