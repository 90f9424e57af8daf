"""Sequence statistics of an event table (records grouped per entity, ordered), real vs synthetic.

- records per group: distribution summary and the KS distance between real and synthetic sizes;
- order violations: consecutive records of a group out of `order_by` order, in the rows as given
  (NULLs, which training sorts last, are not compared);
- gaps: differences between consecutive values of each numeric or temporal order column;
- first vs later: each other column's distance (KS for numbers, total variation for categories)
  between real and synthetic first records of groups, and between their later records;
- within groups: how each other column carries over from one record of a group to the next (the
  share of equal consecutive values for categories, a tier kept per customer; the correlation of
  consecutive values for numbers), real vs synthetic.
Distances are 0 for identical distributions and 1 for disjoint ones. `measure` turns them into one
0-10 score, as the other quality measures, so a table whose rows look right one by one but whose
entities do not hang together cannot grade well.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from synth_model.evaluate.encoding import epoch_seconds


def ks_distance(a, b) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return None  # nothing to compare (e.g. no group has two records)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def tv_distance(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance between two categorical distributions (nulls are a category)."""
    pa_, pb = a.fillna("<null>").value_counts(normalize=True), b.fillna("<null>").value_counts(normalize=True)
    return float(pa_.subtract(pb, fill_value=0).abs().sum() / 2)


def distance(a: pd.Series, b: pd.Series) -> float | None:
    numeric = pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)
    return ks_distance(a, b) if numeric and not pd.api.types.is_bool_dtype(a) else tv_distance(a, b)


def summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return {"n": 0}
    return {
        "n": int(len(v)),
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p90": float(np.quantile(v, 0.9)),
        "max": float(v.max()),
    }


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _contiguous(frame: pd.DataFrame, group_by: list[str]) -> pd.DataFrame:
    """Each group's rows together (a query without ORDER BY may interleave them), in their order."""
    return frame.sort_values(group_by, kind="stable").reset_index(drop=True)


def _continues(frame: pd.DataFrame, group_by: list[str]) -> pd.Series:
    """Whether each row belongs to the group of the row before it (never the first row)."""
    same = (frame[group_by] == frame[group_by].shift()).fillna(False).astype(bool).all(axis=1)
    return same & (np.arange(len(frame)) > 0)


def _numeric(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        return epoch_seconds(series)
    if series.dtype == object and len(series.dropna()) and hasattr(series.dropna().iloc[0], "toordinal"):
        return series.map(lambda d: None if d is None else d.toordinal()).astype(float)  # days
    return pd.to_numeric(series, errors="coerce").astype(float)


def order_violations(frame: pd.DataFrame, continues: pd.Series, order_by: list[str]) -> int:
    """Consecutive pairs within a group (rows as given; `continues` from `_continues`) whose order
    values decrease."""
    if not order_by:
        return 0
    keys = frame[order_by].apply(lambda c: _numeric(c) if not pd.api.types.is_string_dtype(c) else c)
    violations = 0
    rows = keys.itertuples(index=False, name=None)
    previous = None
    for same, current in zip(continues.tolist(), rows, strict=True):
        if same and previous is not None and not any(pd.isna(v) for v in previous + current) and current < previous:
            violations += 1
        previous = current
    return violations


def _gaps(frame: pd.DataFrame, continues: pd.Series, column: str) -> np.ndarray:
    return _numeric(frame[column]).diff()[continues].dropna().to_numpy()


def sequence_stats(real: pa.Table, synthetic: pa.Table, group_by: list[str], order_by: list[str] | None) -> dict:
    """Real vs synthetic sequence statistics; each group's records are taken in the order given."""
    order_by = order_by or []
    r, s = (_contiguous(_frame(t), group_by) for t in (real, synthetic))
    r_next, s_next = _continues(r, group_by), _continues(s, group_by)
    r_sizes = r.groupby(group_by, dropna=False, sort=False).size()
    s_sizes = s.groupby(group_by, dropna=False, sort=False).size()
    stats: dict = {
        "ordered_by": order_by,
        "groups": {"real": int(len(r_sizes)), "synthetic": int(len(s_sizes))},
        "records_per_group": {
            "real": summary(r_sizes),
            "synthetic": summary(s_sizes),
            "ks": ks_distance(r_sizes, s_sizes),
        },
        "order_violations": {
            "real": order_violations(r, r_next, order_by),
            "synthetic": order_violations(s, s_next, order_by),
        },
        "gaps": {},
        "first_vs_later": {},
    }
    for column in order_by:
        if pd.api.types.is_string_dtype(r[column]) and not hasattr(r[column].dropna().iloc[0], "toordinal"):
            continue
        rg, sg = _gaps(r, r_next, column), _gaps(s, s_next, column)
        stats["gaps"][column] = {"real": summary(rg), "synthetic": summary(sg), "ks": ks_distance(rg, sg)}
    stats["consecutive_pairs"] = {"real": int(r_next.sum()), "synthetic": int(s_next.sum())}
    stats["within_group"] = {}
    for column in (c for c in r.columns if c not in group_by and c not in order_by and c in s.columns):
        stats["first_vs_later"][column] = {
            "first": distance(r.loc[~r_next, column], s.loc[~s_next, column]),
            "later": distance(r.loc[r_next, column], s.loc[s_next, column]),
        }
        stats["within_group"][column] = {
            "measure": "correlation" if _is_number(r[column]) else "equal share",
            "real": carried_over(r[column], r_next),
            "synthetic": carried_over(s[column], s_next),
        }
    return stats


def carried_over(column: pd.Series, continues: pd.Series) -> float | None:
    """How a column carries over to the next record of a group: the correlation of consecutive values
    for numbers, the share of equal consecutive values (NULL equal to NULL) for anything else."""
    previous, current = column.shift()[continues], column[continues]
    if not len(current):
        return None
    if _is_number(column):
        pairs = pd.DataFrame({"a": previous.astype(float), "b": current.astype(float)}).dropna()
        if len(pairs) < 3 or pairs.a.std() == 0 or pairs.b.std() == 0:
            return None
        return float(np.corrcoef(pairs.a, pairs.b)[0, 1])
    same = (previous.astype(object) == current.astype(object)) | (previous.isna() & current.isna())
    return float(same.mean())


def measure(stats: dict) -> dict:
    """One 0-10 score from the sequence statistics: 10 x (1 - the mean of five families of distances,
    each in 0-1): group sizes (KS), order (the synthetic share of consecutive records out of order,
    beyond the real share), gaps of the order columns (KS), first and later records' columns, and
    how columns carry over within a group (difference of equal shares, half the correlation gap)."""
    pairs = stats["consecutive_pairs"]
    share = {k: stats["order_violations"][k] / pairs[k] if pairs[k] else 0.0 for k in pairs}
    carry = [
        abs(v["real"] - v["synthetic"]) / (2 if v["measure"] == "correlation" else 1)
        for v in stats["within_group"].values()
        if v["real"] is not None and v["synthetic"] is not None
    ]
    families = {
        "records_per_group": stats["records_per_group"]["ks"],
        "order": max(0.0, share["synthetic"] - share["real"]) if stats["ordered_by"] else None,
        "gaps": _mean([g["ks"] for g in stats["gaps"].values()]),
        "first_vs_later": _mean([d for v in stats["first_vs_later"].values() for d in (v["first"], v["later"])]),
        "within_group": _mean(carry),
    }
    known = [d for d in families.values() if d is not None]
    score = 10 * (1 - float(np.mean(known))) if known else None
    return {"score": score, "distances": families, **stats}


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None
