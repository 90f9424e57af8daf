"""Column distribution stability: Jensen-Shannon distance per column, averaged, mapped to 0-10.

Categorical columns compare value frequencies; numeric and temporal columns compare counts on
bins shared by both tables (edges from the real values, synthetic values outside clipped into
the end bins). Identifier and free-text columns (mostly distinct values) compare their lengths so:
fresh ids are not disjoint from real ones, copied ids not identical. Nulls are one more bin.
10 = identical distributions, 0 = disjoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from synth_model.evaluate.encoding import is_numeric, mostly_unique

BINS = 20


def _histograms(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if is_numeric(real):
        r, s = real.astype(float), pd.to_numeric(synthetic, errors="coerce").astype(float)
        values = r.dropna().to_numpy()
        edges = np.histogram_bin_edges(values, bins=BINS) if len(values) else np.array([0.0, 1.0])
        clipped = s.dropna().clip(edges[0], edges[-1]).to_numpy()
        counts = [np.histogram(values, edges)[0], np.histogram(clipped, edges)[0]]
        return tuple(np.append(c, n) for c, n in zip(counts, (r.isna().sum(), s.isna().sum()), strict=True))
    r = real.astype(str).where(real.notna(), "<null>").value_counts()
    s = synthetic.astype(str).where(synthetic.notna(), "<null>").value_counts()
    levels = r.index.union(s.index)
    return r.reindex(levels, fill_value=0).to_numpy(), s.reindex(levels, fill_value=0).to_numpy()


def js_distance(real: pd.Series, synthetic: pd.Series) -> float:
    if mostly_unique(real):
        real, synthetic = (c.astype("string").str.len().astype(float) for c in (real, synthetic))
    p, q = _histograms(real, synthetic)
    if p.sum() == 0 or q.sum() == 0:
        return 1.0
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def measure(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    per_column = {name: js_distance(real[name], synthetic[name]) for name in real.columns}
    mean = float(np.mean(list(per_column.values())))
    return {"score": 10 * (1 - mean), "mean_js_distance": mean, "per_column": per_column}
