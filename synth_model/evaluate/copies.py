"""Exact copies of training records, and distance to closest record (DCR) against the holdout.

- exact copy rate: share of synthetic rows equal (all columns) to some training row;
- DCR: each synthetic row's distance to its nearest training row; the holdout's DCR (real rows the
  model never saw) is the reference. `closer_than_holdout_share` is the share of synthetic rows
  at or below the holdout's 5th-percentile DCR; the holdout's own share there (5%, or more when the
  data has many duplicate rows and the threshold is 0) is what generalizing looks like. Score = 10
  when the synthetic share is no higher, falling linearly to 0 at 45 points above it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from synth_model.evaluate.encoding import Encoder

QUANTILE = 0.05
MAX_REFERENCE = 20_000


def _keys(df: pd.DataFrame) -> pd.Series:
    return df.astype(str).where(df.notna(), "<null>").agg("\x1f".join, axis=1)


def exact_copy_rate(training: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    known = set(_keys(training))
    return float(_keys(synthetic).isin(known).mean()) if len(synthetic) else 0.0


def nearest_distances(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = NearestNeighbors(n_neighbors=1).fit(reference)
    return index.kneighbors(queries)[0][:, 0]


def measure(training: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, encoder: Encoder) -> dict:
    rng = np.random.default_rng(0)
    reference = training.iloc[rng.permutation(len(training))[:MAX_REFERENCE]]
    x_train = encoder.transform(reference)
    dcr_synth = nearest_distances(x_train, encoder.transform(synthetic))
    dcr_holdout = nearest_distances(x_train, encoder.transform(holdout))
    threshold = float(np.quantile(dcr_holdout, QUANTILE))
    share = float((dcr_synth <= threshold).mean())
    reference = float((dcr_holdout <= threshold).mean())
    risk = min(max((share - reference) / (0.5 - QUANTILE), 0.0), 1.0)
    return {
        "score": 10 * (1 - risk),
        "exact_copy_rate": exact_copy_rate(training, synthetic),
        "closer_than_holdout_share": share,
        "holdout_share": reference,
        "dcr_synthetic_median": float(np.median(dcr_synth)),
        "dcr_holdout_median": float(np.median(dcr_holdout)),
    }
