"""Swap the detected PII for consistent fakes: whole columns value by value, free text span by span.

The report is the plan: columns marked "replace" or "forced" are replaced, "kept_as_key" and "skipped" ones
are left alone, and free-text columns marked "replace" have every span of an enabled entity swapped (all of
their values are searched, not just the sample detection looked at). Nulls stay null and Arrow types stay.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from synth_model.config import ReplacePiiConfig
from synth_model.errors import DataError
from synth_model.privacy.pii.fake import PiiMapper
from synth_model.privacy.pii.hints import is_surname_column
from synth_model.privacy.pii.names import name_lists
from synth_model.privacy.pii.patterns import SPAN_ENTITIES, Span, find_spans
from synth_model.privacy.pii.report import PiiReport
from synth_model.privacy.pii.values import as_text, distinct_counts, like, remap

REPLACED = ("replace", "forced")


def replace(
    table: pa.Table,
    report: PiiReport,
    config: ReplacePiiConfig,
    secret: bytes | None = None,
    *,
    mapper: PiiMapper | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """The table with its PII replaced, and counts:
    {"columns": {column: {"entity", "values_replaced", "distinct"}}, "text": {column: {"values_changed", "spans":
    {entity: n}}}}. Pass `secret`, or a `mapper` shared with other tables so one value gets one fake in all.
    """
    if (secret is None) == (mapper is None):
        raise TypeError("replace needs exactly one of secret and mapper")
    mapper = mapper or PiiMapper(secret, config.locale)
    columns = [f for f in report.columns if f.action in REPLACED]
    text_columns = sorted({f.column for f in report.text if f.action == "replace"})
    missing = [c for c in [f.column for f in columns] + text_columns if c not in table.column_names]
    if missing:
        raise DataError(
            f"the PII report names {missing}, not columns of this table ({table.column_names}): "
            "detect PII on the table being replaced"
        )
    names = name_lists(report.locale)
    entities = [e for e in SPAN_ENTITIES if e in config.entities]
    distinct = {c: distinct_counts(table.column(c)) for c in [f.column for f in columns] + text_columns}
    spans = {c: {v: find_spans(v, entities, names) for v in distinct[c]} for c in text_columns}
    # every real value is reserved before the first fake is drawn, so no fake can land on one
    for f in columns:
        mapper.reserve(f.entity, map(as_text, distinct[f.column]))
    for found in spans.values():
        for value, value_spans in found.items():
            for s in value_spans:
                mapper.reserve(s.entity, [value[s.start : s.end]])

    counts: dict[str, Any] = {"columns": {}, "text": {}}
    for f in columns:
        surname = is_surname_column(f.column)
        mapping = {v: like(mapper.fake(f.entity, as_text(v), surname=surname), v) for v in distinct[f.column]}
        table = _swap(table, f.column, mapping)
        counts["columns"][f.column] = {
            "entity": f.entity,
            "values_replaced": sum(distinct[f.column].values()),
            "distinct": len(mapping),
        }
    for column in text_columns:
        found = {v: s for v, s in spans[column].items() if s}
        table = _swap(table, column, {v: _splice(v, s, mapper) for v, s in found.items()})
        per_entity: Counter[str] = Counter()
        for value, value_spans in found.items():
            for s in value_spans:
                per_entity[s.entity] += distinct[column][value]
        counts["text"][column] = {
            "values_changed": sum(distinct[column][v] for v in found),
            "spans": dict(per_entity),
        }
    return table, counts


def _swap(table: pa.Table, column: str, mapping: dict[Any, Any]) -> pa.Table:
    index = table.column_names.index(column)
    return table.set_column(index, table.schema.field(column), remap(table.column(column), mapping))


def _splice(text: str, spans: list[Span], mapper: PiiMapper) -> str:
    pieces, position = [], 0
    for s in spans:
        pieces += [text[position : s.start], mapper.fake(s.entity, text[s.start : s.end])]
        position = s.end
    return "".join(pieces) + text[position:]
