"""Arrow columns as Python text and back: entities are matched and faked as strings whatever the column type."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Kind = Literal["text", "integer", "temporal"]


def kind(type_: pa.DataType) -> Kind | None:
    """How a column can hold PII: as text, as digits (postcodes, phones) or as a date; None for the rest."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return "text"
    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_date(type_) or pa.types.is_timestamp(type_):
        return "temporal"
    return None


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def as_text(value: Any) -> str:
    """Dates (and the date part of timestamps) as ISO strings, integers as digits."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)


def like(text: str, original: Any) -> Any:
    """`text` back in the Python type of `original` (a timestamp keeps its time of day and zone)."""
    if isinstance(original, datetime):
        return datetime.combine(date.fromisoformat(text), original.timetz())
    if isinstance(original, date):
        return date.fromisoformat(text)
    return int(text) if isinstance(original, int) else text


def sample_texts(column: pa.ChunkedArray, size: int) -> list[str]:
    """Up to `size` distinct non-null values, evenly spread over their first appearances (deterministic)."""
    distinct = pc.unique(_decoded(column)).drop_null()
    if len(distinct) > size:
        distinct = distinct.take(np.linspace(0, len(distinct) - 1, size).astype(np.int64))
    return [as_text(v).strip() for v in distinct.to_pylist()]


def distinct_counts(column: pa.ChunkedArray) -> dict[Any, int]:
    """Each distinct non-null value (as Python) with its number of rows."""
    counts = pc.value_counts(_decoded(column))
    pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    return {value: n for value, n in pairs if value is not None}


def remap(column: pa.ChunkedArray, mapping: dict[Hashable, Any]) -> pa.ChunkedArray:
    """The column with each value found in `mapping` swapped; other values and nulls stay, the type is kept."""
    values = _decoded(column)
    keys = pa.array(list(mapping), type=values.type)
    swapped = pa.array(list(mapping.values()), type=values.type).take(pc.index_in(values, value_set=keys))
    out = pc.if_else(pc.is_null(swapped), values, swapped)
    return out.cast(column.type) if out.type != column.type else out
