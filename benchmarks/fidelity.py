"""Fidelity measures for synthetic tables, used by `benchmarks/engine.py`.

Every function takes Arrow tables (the engine's own format) and a seed, and is deterministic for a
given seed. The comparisons are always *real training rows* versus something else: synthetic rows,
the real holdout (the ceiling) or a column-by-column marginal sample (the floor).

- `quality`: SDMetrics single-table QualityReport (overall, Column Shapes, Column Pair Trends).
- `detection_auc`: how well a gradient-boosted classifier tells real rows from the other rows
  (5-fold stratified ROC AUC on balanced samples; 0.5 means indistinguishable).
- `utility`: train-on-X / test-on-real-holdout for a target column (accuracy and ROC AUC, or R^2).
- `marginal_sample`: the floor, each column drawn independently from its own marginal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from synth_model.evaluate.sdmetrics_quality import (  # noqa: F401 - re-exported for the benchmark
    MAX_NATIVE_CATEGORIES,
    column_kind,
    quality,
    sdmetrics_metadata,
    to_pandas,
)

# OpenMP threads for the gradient-boosted models. One thread keeps them fast and predictable on busy
# shared machines (with every core claimed while other processes compete, a fit ran 30x slower).
MODEL_THREADS = 1
QUALITY_KEYS = ("quality_overall", "column_shapes", "pair_trends")


# ---------------------------------------------------------------- sampling
def sample_rows(table: pa.Table, n: int, seed: int) -> pa.Table:
    """`n` rows drawn without replacement (all rows, shuffled, when n >= the row count)."""
    rng = np.random.default_rng(seed)
    n = min(n, table.num_rows)
    return table.take(pa.array(rng.choice(table.num_rows, size=n, replace=False)))


def marginal_sample(table: pa.Table, n: int, seed: int) -> pa.Table:
    """The floor: `n` rows whose columns are drawn independently (with replacement) from the table's
    own columns, so every marginal (nulls included) is kept and every dependence between columns is
    lost."""
    rng = np.random.default_rng(seed)
    picks = [pa.array(rng.integers(0, table.num_rows, size=n)) for _ in table.column_names]
    columns = [table.column(i).take(rows) for i, rows in enumerate(picks)]
    return pa.Table.from_arrays(columns, schema=table.schema)


def gap_closed(synthetic: float, floor: float, ceiling: float, min_margin: float = 0.01) -> float:
    """(synthetic - floor) / (ceiling - floor): 0 at the independent-marginals floor, 1 at the real
    ceiling. NaN when a value is missing or the ceiling does not beat the floor by `min_margin`
    (the ratio would then be noise, or of the wrong sign)."""
    values = (synthetic, floor, ceiling)
    if any(v is None or not math.isfinite(v) for v in values) or ceiling - floor < min_margin:
        return math.nan
    return (synthetic - floor) / (ceiling - floor)


def quality_size_matched(real: pa.Table, other: pa.Table, n: int, draws: int, seed: int) -> dict:
    """`quality` averaged over `draws` random n-row subsamples of `other`. This puts `other` on the
    same sample-size footing as an n-row holdout: a small sample scores lower on shapes and pair
    trends by sampling noise alone, so a full-size table and a small holdout are not comparable."""
    metadata = sdmetrics_metadata(real)
    scores = [quality(real, sample_rows(other, n, seed + i), metadata) for i in range(draws)]
    return {key: float(np.nanmean([s[key] for s in scores])) for key in QUALITY_KEYS}


def copy_share(real: pa.Table, other: pa.Table) -> float:
    """Share of `other` rows that equal some `real` row in every column (nulls equal). High values
    mean copied training rows; they also push the detection AUC below 0.5 (a copied row's twin sits
    in the training fold with the other label)."""
    if other.num_rows == 0:
        return math.nan
    names = real.column_names
    seen = set(zip(*(real.column(c).to_pylist() for c in names), strict=True))
    rows = zip(*(other.column(c).to_pylist() for c in names), strict=True)
    return sum(row in seen for row in rows) / other.num_rows


# ---------------------------------------------------------------- features
def features(tables: Sequence[pa.Table], columns: Sequence[str]) -> list[pd.DataFrame]:
    """Model-ready frames for HistGradientBoosting, encoded consistently across `tables`.

    Numbers and booleans become float (null -> NaN); dates and times float seconds; strings a pandas
    categorical over the union of the values in all tables (native categorical support, null ->
    missing), or ordinal codes when there are too many distinct values for native support.
    """
    frames: list[dict] = [{} for _ in tables]
    for name in columns:
        kind = column_kind(tables[0].schema.field(name))
        cols = [t.column(name) for t in tables]
        if kind in ("numerical", "boolean"):
            for frame, col in zip(frames, cols, strict=True):
                frame[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif kind == "datetime":
            for frame, col in zip(frames, cols, strict=True):
                stamps = pd.Series(col.to_pandas(date_as_object=False))
                if getattr(stamps.dt, "tz", None) is not None:
                    stamps = stamps.dt.tz_convert(None)
                frame[name] = (stamps - pd.Timestamp(0)).dt.total_seconds().to_numpy(dtype=float)
        else:
            values = [[None if v is None else str(v) for v in col.to_pylist()] for col in cols]
            categories = sorted({v for vs in values for v in vs if v is not None})
            for frame, vs in zip(frames, values, strict=True):
                cat = pd.Categorical(vs, categories=categories)
                if len(categories) > MAX_NATIVE_CATEGORIES:
                    frame[name] = np.where(cat.codes < 0, np.nan, cat.codes).astype(float)
                else:
                    frame[name] = cat
    return [pd.DataFrame(frame) for frame in frames]


# -------------------------------------------------------------- detection
def round_floats(table: pa.Table, decimals: dict[str, int]) -> pa.Table:
    """`table` with the named float columns rounded to the given decimals."""
    for name, places in decimals.items():
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.round(table.column(name), places))
    return table


def detection_auc(real: pa.Table, other: pa.Table, seed: int, folds: int = 5, max_rows: int | None = None):
    """ROC AUC of a gradient-boosted classifier separating `real` from `other` rows.

    Both sides are sampled to the same size (the smaller table, capped at `max_rows`), and the AUC
    is the mean over `folds` stratified folds. 0.5: indistinguishable; 1.0: trivially separable.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    n = min(real.num_rows, other.num_rows, max_rows or real.num_rows)
    if n < folds:
        return {"detection_auc": math.nan, "detection_rows": n}
    a, b = sample_rows(real, n, seed), sample_rows(other, n, seed + 1)
    fa, fb = features([a, b], real.column_names)
    x = pd.concat([fa, fb], ignore_index=True)
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    model = HistGradientBoostingClassifier(random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=MODEL_THREADS, user_api="openmp"):
        scores = cross_val_score(model, x, y, cv=cv, scoring="roc_auc")
    return {"detection_auc": float(np.mean(scores)), "detection_rows": n}


# ---------------------------------------------------------------- utility
def task_for(table: pa.Table, target: str) -> str:
    """'classification' for string/boolean targets, 'regression' for numbers."""
    kind = column_kind(table.schema.field(target))
    return "regression" if kind in ("numerical", "datetime") else "classification"


def utility(train: pa.Table, test: pa.Table, target: str, seed: int, task: str | None = None) -> dict:
    """Train a gradient-boosted model on `train` to predict `target`, score it on `test`.

    Classification: accuracy and ROC AUC (one-vs-rest macro when there are more than two classes);
    regression: R^2. Rows with a null target are dropped. A training set with a single class, or a
    test set the score is undefined on, gives NaN rather than an error.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    task = task or task_for(test, target)
    train = train.filter(train.column(target).is_valid())
    test = test.filter(test.column(target).is_valid())
    feature_names = [c for c in test.column_names if c != target]
    x_train, x_test = features([train, test], feature_names)
    if task == "regression":
        y_train = np.asarray(train.column(target).cast(pa.float64()).to_numpy(zero_copy_only=False))
        y_test = np.asarray(test.column(target).cast(pa.float64()).to_numpy(zero_copy_only=False))
        if len(y_train) < 2 or len(y_test) < 2:
            return {"utility_r2": math.nan}
        with threadpool_limits(limits=MODEL_THREADS, user_api="openmp"):
            model = HistGradientBoostingRegressor(random_state=seed).fit(x_train, y_train)
            return {"utility_r2": float(r2_score(y_test, model.predict(x_test)))}
    y_train = np.array([str(v) for v in train.column(target).to_pylist()], dtype=object)
    y_test = np.array([str(v) for v in test.column(target).to_pylist()], dtype=object)
    if len(set(y_train)) < 2 or len(y_test) == 0:
        return {"utility_accuracy": math.nan, "utility_roc_auc": math.nan}
    with threadpool_limits(limits=MODEL_THREADS, user_api="openmp"):
        model = HistGradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
        accuracy = float(accuracy_score(y_test, model.predict(x_test)))
        proba = model.predict_proba(x_test)
    classes = list(model.classes_)
    try:
        if len(classes) == 2:
            auc = roc_auc_score(y_test == classes[1], proba[:, 1])
        else:
            auc = roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)
    except ValueError:  # a class missing from the test set, or from training
        auc = math.nan
    return {"utility_accuracy": accuracy, "utility_roc_auc": float(auc)}
