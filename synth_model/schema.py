"""Column kinds and validation rules learned from the training table.

The rules are what a generated record must satisfy to be kept; they are saved as a JSON Schema
(with `x-` annotations for what JSON Schema cannot say, such as the Arrow type to restore).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from synth_model.errors import DataError
from synth_model.layouts import identifier_pattern
from synth_model.tables import quote_identifier

KINDS = ("integer", "float", "categorical", "boolean", "date", "datetime", "text", "identifier")

MAX_CATEGORIES = 200  # a string column with at most this many distinct values ...
MAX_CATEGORY_SHARE = 0.2  # ... that are at most this share of its non-null values is categorical
MAX_IDENTIFIER_LENGTH = 40  # short strings without whitespace that are not categories are identifiers
MAX_DECIMALS = 6
MAX_MAGNITUDE = 2**53  # numbers the grammar (which bounds them in float64) and the text keep exactly
RESOLUTIONS = {"hour": 3600, "minute": 60, "second": 1}  # in seconds; finer than a second: "microsecond"


@dataclass
class ColumnRule:
    name: str
    kind: str
    arrow_type: str
    required: bool
    minimum: float | int | str | None = None  # numbers, or ISO strings for dates/datetimes
    maximum: float | int | str | None = None
    decimals: int | None = None
    categories: list | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    dictionary: list | None = None  # a dictionary column's entries, those that never occur included
    resolution: str | None = None  # datetimes: the coarsest of RESOLUTIONS every value is a whole number of

    def json_schema(self) -> dict:
        """This column as a JSON Schema property."""
        types = {
            "integer": "integer",
            "float": "number",
            "boolean": "boolean",
        }.get(self.kind, "string")
        prop: dict = {"type": types if self.required else [types, "null"], "x-kind": self.kind}
        prop["x-arrow-type"] = self.arrow_type
        if self.categories is not None:
            prop["enum"] = list(self.categories) + ([] if self.required else [None])
        if self.kind in ("integer", "float"):
            prop["minimum"], prop["maximum"] = self.minimum, self.maximum
            if self.decimals is not None:
                prop["x-decimals"] = self.decimals
        elif self.kind in ("date", "datetime"):
            prop["format"] = "date" if self.kind == "date" else "date-time"
            prop["formatMinimum"], prop["formatMaximum"] = self.minimum, self.maximum
        if self.min_length is not None:
            prop["minLength"], prop["maxLength"] = self.min_length, self.max_length
        if self.pattern is not None:
            prop["pattern"] = self.pattern
        return prop


@dataclass
class TableSchema:
    columns: list[ColumnRule] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def without(self, names) -> TableSchema:
        """The schema minus some columns (entity keys, which are not modelled but made afresh)."""
        return TableSchema([c for c in self.columns if c.name not in set(names)])

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _type_from_string(c.arrow_type)) for c in self.columns])

    def json_schema(self) -> dict:
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {c.name: c.json_schema() for c in self.columns},
            "required": self.names,
            "additionalProperties": False,
            "x-columns": [asdict(c) for c in self.columns],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.json_schema(), indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> TableSchema:
        return cls([ColumnRule(**c) for c in json.loads(path.read_text())["x-columns"]])


def infer_schema(table: pa.Table, layouts: bool = True) -> TableSchema:
    """Learn each column's kind and rules; refuse columns the engine cannot model. Without `layouts`
    identifiers get no pattern: a check of the input's kinds skips their costliest part."""
    if table.num_rows == 0:
        raise DataError("the input table is empty: it needs rows to learn from")
    if table.num_columns == 0:
        raise DataError("the input table has no columns")
    return TableSchema([_infer_column(name, table.column(name), layouts) for name in table.column_names])


def _infer_column(name: str, column: pa.ChunkedArray, layouts: bool) -> ColumnRule:
    typ = stored = column.type
    dictionary = None
    if pa.types.is_dictionary(typ):
        if column.num_chunks and is_category_dictionary(typ):  # categories in the dictionary's order
            dictionary = column.unify_dictionaries().chunk(0).dictionary.to_pylist()
        column = column.cast(typ.value_type)
        typ = typ.value_type
        stored = stored if dictionary is not None else typ  # other dictionaries come back as plain values
    if pa.types.is_null(typ) or column.null_count == len(column):
        raise DataError(f"column '{name}' is entirely null: drop it from the input, it carries nothing to learn")
    required = column.null_count == 0
    base = {"name": name, "arrow_type": str(stored), "required": required}
    values = column.drop_null()
    if dictionary is not None:
        present = set(pc.unique(values).to_pylist())
        categories = [v for v in dictionary if v in present]
        return ColumnRule(kind="categorical", categories=categories, dictionary=dictionary, **base)
    if pa.types.is_boolean(typ):
        return ColumnRule(kind="boolean", **base)
    if pa.types.is_integer(typ):
        mm = pc.min_max(values)
        _check_magnitude(name, column, mm["min"].as_py(), mm["max"].as_py())
        return ColumnRule(kind="integer", minimum=mm["min"].as_py(), maximum=mm["max"].as_py(), **base)
    if pa.types.is_floating(typ):
        values = values.cast(pa.float64())
        not_finite = pc.indices_nonzero(pc.invert(pc.fill_null(pc.is_finite(column.cast(pa.float64())), True)))
        if len(not_finite):
            raise DataError(
                f"column '{name}' holds {len(not_finite)} infinite or NaN value(s) (first in row "
                f"{not_finite[0].as_py()}): make them NULL or finite numbers before training"
            )
        mm = pc.min_max(values)
        low, high, decimals = mm["min"].as_py(), mm["max"].as_py(), _decimals(values)
        _check_magnitude(name, column, low, high)
        if 0 < max(abs(low), abs(high)) * 10**decimals < 0.5:
            raise DataError(
                f"column '{name}' holds numbers too small for the engine, which writes at most {MAX_DECIMALS} "
                f"decimals (the largest is {max(abs(low), abs(high)):.3g}): scale the column up before training "
                "(in SQL: multiply it by a power of ten) and back down afterwards"
            )
        return ColumnRule(kind="float", minimum=low, maximum=high, decimals=decimals, **base)
    if pa.types.is_date(typ):
        mm = pc.min_max(values)
        return ColumnRule(
            kind="date", minimum=mm["min"].as_py().isoformat(), maximum=mm["max"].as_py().isoformat(), **base
        )
    if pa.types.is_timestamp(typ):
        mm = pc.min_max(values)
        low, high = str(mm["min"].as_py()), str(mm["max"].as_py())
        return ColumnRule(kind="datetime", minimum=low, maximum=high, resolution=_resolution(values), **base)
    if _is_text(typ):
        return _infer_string(values, base, layouts)
    raise DataError(
        f"column '{name}' has type {typ}, which cannot be synthesized: cast it to a string, number or "
        "date in the preparation SQL, or drop it"
    )


def is_category_dictionary(typ: pa.DataType) -> bool:
    """A dictionary of text (an ENUM, a pandas Categorical) or of whole numbers (a Categorical of
    codes) declares its values as categories; other dictionaries are only a storage choice."""
    return pa.types.is_dictionary(typ) and (_is_text(typ.value_type) or pa.types.is_integer(typ.value_type))


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _infer_string(values: pa.ChunkedArray, base: dict, layouts: bool) -> ColumnRule:
    lengths = pc.utf8_length(values)
    mm = pc.min_max(lengths)
    length = {"min_length": mm["min"].as_py(), "max_length": mm["max"].as_py()}
    distinct = pc.unique(values)
    if len(distinct) <= MAX_CATEGORIES and len(distinct) <= max(2, MAX_CATEGORY_SHARE * len(values)):
        categories = sorted(distinct.to_pylist())
        return ColumnRule(kind="categorical", categories=categories, **base)
    has_space = pc.any(pc.match_substring_regex(values, r"\s")).as_py()
    if not has_space and length["max_length"] <= MAX_IDENTIFIER_LENGTH:
        pattern = identifier_pattern(distinct.to_pylist()) if layouts else None
        return ColumnRule(kind="identifier", pattern=pattern, **length, **base)
    return ColumnRule(kind="text", **length, **base)


NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
MIN_NUMBER_SHARE = 0.9  # a text column with at least this share of numbers (but not all) gets a warning


def numbers_learned_as_text(table: pa.Table, schema: TableSchema) -> list[str]:
    """Warnings for text columns that hold mostly numbers: a few stray strings ('n/a', '-') turn a
    number column into text, whose values the model then copies as strings instead of learning a
    distribution. Category columns keep their values exactly and are left alone."""
    found = []
    for rule in schema.columns:
        if rule.kind not in ("identifier", "text"):
            continue
        column = table.column(rule.name)
        values = column.drop_null()
        numeric = pc.match_substring_regex(values, NUMBER)
        share = pc.sum(numeric).as_py() / len(values)
        if not MIN_NUMBER_SHARE <= share < 1:
            continue
        others = pc.value_counts(values.filter(pc.invert(numeric))).to_pylist()
        others.sort(key=lambda c: -c["counts"])
        first = pc.index(column, others[0]["values"]).as_py()
        shown = ", ".join(f"{c['values']!r} ({c['counts']} row{'s' * (c['counts'] > 1)})" for c in others[:3])
        sql_name = rule.name if re.fullmatch(r"[A-Za-z_]\w*", rule.name) else quote_identifier(rule.name)
        found.append(
            f"column '{rule.name}' is learned as text, though {share:.1%} of its values are numbers; the others "
            f"are {shown}{', ...' if len(others) > 3 else ''}, first in row {first}: to learn it as a number, "
            f"make those values NULL (in SQL: TRY_CAST({sql_name} AS DOUBLE))"
        )
    return found


def _check_magnitude(name: str, column: pa.ChunkedArray, low, high) -> None:
    """Refuse numbers beyond +-2^53: the grammar bounds them in float64 and would round the range."""
    if max(abs(low), abs(high)) <= MAX_MAGNITUDE:
        return
    far = pc.greater(pc.abs(column.cast(pa.float64(), safe=False)), float(MAX_MAGNITUDE))
    first = pc.index(far, True).as_py()
    raise DataError(
        f"column '{name}' holds numbers beyond +-2^53 ({MAX_MAGNITUDE:,}; first in row {first}), which the "
        "engine cannot bound exactly: if it is an identifier, cast it to VARCHAR before training; if it is a "
        "measure, scale it down (or take its logarithm)"
    )


def _resolution(values: pa.ChunkedArray) -> str:
    """The coarsest clock unit every timestamp is a whole number of (an hourly column stays hourly).
    Zoned times count only to the second: a whole hour in UTC is not one at an offset of +05:30."""
    typ = values.type
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[typ.unit]
    ticks = values.cast(pa.int64())
    zoned = typ.tz is not None and typ.tz not in ("UTC", "+00:00")
    for name, seconds in RESOLUTIONS.items():
        if zoned and seconds > 1:
            continue
        if pc.all(pc.equal(pc.remainder(ticks, seconds * per_second), 0)).as_py():
            return name
    return "microsecond"


def _decimals(values: pa.ChunkedArray) -> int:
    """The most decimals any value needs (0 when every value is whole)."""
    for d in range(MAX_DECIMALS + 1):
        scaled = pc.multiply(values, 10.0**d)
        if pc.all(pc.less(pc.abs(pc.subtract(scaled, pc.round(scaled))), 1e-6)).as_py():
            return d
    return MAX_DECIMALS


def _type_from_string(name: str) -> pa.DataType:
    simple = {
        "bool": pa.bool_(),
        "int8": pa.int8(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "uint8": pa.uint8(),
        "uint16": pa.uint16(),
        "uint32": pa.uint32(),
        "uint64": pa.uint64(),
        "float": pa.float32(),
        "halffloat": pa.float16(),
        "double": pa.float64(),
        "string": pa.string(),
        "large_string": pa.large_string(),
        "date32[day]": pa.date32(),
        "date64[ms]": pa.date64(),
    }
    if name in simple:
        return simple[name]
    match = re.fullmatch(r"timestamp\[(\w+)(?:, tz=(.+))?\]", name)
    if match:
        return pa.timestamp(match.group(1), tz=match.group(2))
    match = re.fullmatch(r"dictionary<values=(.+), indices=(\w+), ordered=([01])>", name)
    if match:
        values, indices, ordered = match.groups()
        return pa.dictionary(_type_from_string(indices), _type_from_string(values), ordered=ordered == "1")
    raise DataError(f"cannot restore Arrow type {name!r}")
