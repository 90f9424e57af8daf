"""Tables as numbers for the distance-based measures (PCA, nearest neighbours, attacks).

Fitted on the real training rows only: numeric and temporal columns are standardized (nulls at
the mean, with a null indicator when the column has nulls), categorical and text columns one-hot
over their most frequent values (the rest share one "other" column). Columns are scaled so each
source column weighs the same in a distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

MAX_LEVELS = 30
MAX_UNIQUE_SHARE = 0.5  # a non-numeric column with more distinct values than this share of rows names rows


def frame(table: pa.Table) -> pd.DataFrame:
    """pandas with nullable ints and temporal values as numbers (days)."""
    df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for name in df.columns:
        column = df[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            df[name] = epoch_seconds(column) / 86400
        elif (
            column.dtype == object
            and column.dropna().map(lambda v: hasattr(v, "toordinal")).all()
            and len(column.dropna())
        ):
            df[name] = column.map(lambda v: None if v is None else v.toordinal()).astype(float)
    return df


def epoch_seconds(times: pd.Series) -> pd.Series:
    """Seconds since 1970 (NULL as NaN) whatever the unit: DuckDB and Parquet give microseconds,
    pandas nanoseconds, and a real and a synthetic table may differ."""
    return (times - pd.Timestamp(0, tz=times.dt.tz)) / pd.Timedelta(seconds=1)


def mostly_unique(series: pd.Series) -> bool:
    """Identifiers and free text: their values name rows rather than describe them, so comparing
    them value by value rewards copies and punishes fresh ones."""
    return not is_numeric(series) and series.nunique() > MAX_UNIQUE_SHARE * max(len(series), 1)


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


@dataclass
class Encoder:
    numeric: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # mean, std, has nulls
    levels: dict[str, list] = field(default_factory=dict)

    @classmethod
    def fit(cls, real: pd.DataFrame) -> Encoder:
        enc = cls()
        for name in real.columns:
            column = real[name]
            if is_numeric(column):
                values = column.astype(float)
                mean, std = float(values.mean()), float(values.std()) or 1.0  # NaN when every value is null
                enc.numeric[name] = (
                    mean if np.isfinite(mean) else 0.0,
                    std if np.isfinite(std) else 1.0,
                    bool(values.isna().any()),
                )
            else:
                counts = column.astype(str).where(column.notna(), "<null>").value_counts()
                enc.levels[name] = list(counts.index[:MAX_LEVELS])
        return enc

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        parts = []
        for name, (mean, std, has_nulls) in self.numeric.items():
            values = pd.to_numeric(df[name], errors="coerce").astype(float)
            block = [((values.fillna(mean) - mean) / std).to_numpy()]
            if has_nulls:
                block.append(values.isna().to_numpy(dtype=float))
            parts.append(np.column_stack(block) / np.sqrt(len(block)))
        for name, levels in self.levels.items():
            text = df[name].astype(str).where(df[name].notna(), "<null>")
            block = np.column_stack([(text == level).to_numpy(dtype=float) for level in levels])
            other = 1.0 - block.sum(axis=1, keepdims=True)
            parts.append(np.hstack([block, other]) / np.sqrt(2))  # a mismatch costs 1, like one std
        return np.hstack(parts) if parts else np.zeros((len(df), 0))
