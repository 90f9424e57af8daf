"""SDMetrics' QualityReport (the SDV ecosystem's score), so users can compare with the tools they know.

The single-table report needs SDMetrics metadata; it is derived from the Arrow types here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from synth_model.schema import is_category_dictionary

MAX_NATIVE_CATEGORIES = 250  # HistGradientBoosting handles at most 255 categories natively
ID_LIKE_SHARE = 0.5  # a string column whose distinct values exceed this share of rows is ID-like


def column_kind(field: pa.Field, column: pa.ChunkedArray | None = None) -> str:
    """'numerical', 'categorical', 'boolean', 'datetime' or 'id' (free text, identifiers) from the
    Arrow type; `column`, when given, tells ID-like strings from categories."""
    typ = field.type
    if is_category_dictionary(typ):
        typ = pa.string()  # declared categories, codes included, are judged as categories
    elif pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "numerical"
    if pa.types.is_date(typ) or pa.types.is_timestamp(typ):
        return "datetime"
    if column is not None:
        values = column.drop_null()
        distinct = len(values.unique()) if len(values) else 0
        if distinct > MAX_NATIVE_CATEGORIES and distinct > ID_LIKE_SHARE * len(values):
            return "id"
    return "categorical"


def sdmetrics_metadata(table: pa.Table) -> dict:
    """SDMetrics single-table metadata from the Arrow types; booleans count as categorical, ID-like
    strings are left out (they have no shape or trend to compare)."""
    columns = {}
    for field in table.schema:
        kind = column_kind(field, table.column(field.name))
        if kind == "id":
            continue
        columns[field.name] = {"sdtype": "categorical" if kind == "boolean" else kind}
    return {"columns": columns}


def to_pandas(table: pa.Table, columns: Sequence[str]) -> pd.DataFrame:
    """Plain pandas dtypes: nulls as NaN/None, dates as datetime64, dictionaries decoded."""
    frame = table.select(list(columns)).to_pandas(date_as_object=False, strings_to_categorical=False)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def quality(real: pa.Table, other: pa.Table, metadata: dict | None = None) -> dict:
    """SDMetrics single-table QualityReport of `other` against `real`: the overall score and the
    'Column Shapes' and 'Column Pair Trends' property scores.

    In SDMetrics 0.32 Column Pair Trends averages only the pairs whose *real* |correlation| > 0.5 or
    Cramer's V > 0.3 (`pairs_counted` of `pairs_total` say how many); the set depends on `real` only,
    so it is the same for every table compared against the same real rows.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the single-table report is marked deprecated
        from sdmetrics.reports.single_table import QualityReport

    metadata = metadata or sdmetrics_metadata(real)
    names = list(metadata["columns"])
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(to_pandas(real, names), to_pandas(other, names), metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    details = report.get_details("Column Pair Trends")
    counted = details["Meets Threshold?"].astype("boolean").fillna(False).astype(bool) if len(details) else []
    return {
        "quality_overall": float(report.get_score()),
        "column_shapes": float(props["Column Shapes"]),
        "pair_trends": float(props["Column Pair Trends"]),
        "pairs_counted": int(np.sum(counted)),
        "pairs_total": len(details),
    }
