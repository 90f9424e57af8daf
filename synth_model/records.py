"""Rows <-> JSONL text, and training-example assembly.

One record is one compact JSON object on one line, keys in column order. A training example is a
prompt (masked from the loss) followed by whole *units* and an end token. A unit is one record, or,
for grouped tables, all records of one entity; so grouped events slot in without a second code path.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synth_model.errors import ContextFitError
from synth_model.schema import TableSchema

IGNORE_INDEX = -100


def prompt_text(schema: TableSchema) -> str:
    """The short prompt every example starts with: the columns, in order."""
    return "columns: " + ",".join(schema.names) + "\n"


def _encoder(kind: str, decimals: int | None) -> Callable:
    if kind == "float":
        if decimals == 0:
            return lambda v: int(round(v)) if math.isfinite(v) else None
        return lambda v: round(v, decimals) if math.isfinite(v) else None
    if kind == "date":
        return lambda v: v.isoformat()
    if kind == "datetime":
        return lambda v: v.isoformat(sep=" ")
    return lambda v: v


def rows_to_texts(table: pa.Table, schema: TableSchema) -> list[str]:
    """Each row as one JSON line (newline included), values in the learned number format."""
    encoders = [_encoder(c.kind, c.decimals) for c in schema.columns]
    columns = [table.column(name).to_pylist() for name in schema.names]
    texts = []
    for values in zip(*columns, strict=True):
        obj = {name: None if v is None else enc(v) for name, v, enc in zip(schema.names, values, encoders, strict=True)}
        texts.append(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    return texts


def schema_texts(schema: TableSchema) -> list[str]:
    """Text made from the schema alone (keys and category values), to learn a tokenizer without the rows."""
    texts = [json.dumps({name: None for name in schema.names}, separators=(",", ":")) + "\n"]
    for column in schema.columns:
        for value in column.categories or []:
            texts.append(json.dumps({column.name: value}, separators=(",", ":"), ensure_ascii=False) + "\n")
    return texts


def records_to_table(records: Sequence[dict], schema: TableSchema) -> pa.Table:
    """Validated records back to an Arrow table with the source's column names and types."""
    arrays = []
    for rule, field in zip(schema.columns, schema.arrow_schema(), strict=True):
        values = [r[rule.name] for r in records]
        if rule.kind == "date":
            values = [None if v is None else dt.date.fromisoformat(v) for v in values]
        elif rule.kind == "datetime":
            values = [None if v is None else dt.datetime.fromisoformat(v) for v in values]
        elif rule.kind == "float":
            values = [None if v is None else float(v) for v in values]
        elif rule.kind == "integer":
            values = [None if v is None else int(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema.arrow_schema())


@dataclass
class Unit:
    """Token ids of one record or one whole group, and where it came from (for error messages)."""

    ids: list[int]
    n_records: int
    source_index: int


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    n_records: int


def check_fit(units: Sequence[Unit], prompt_len: int, context: int, grouped: bool = False) -> None:
    """Fail before training if any unit cannot fit the context window, with the remedies."""
    limit = context - prompt_len - 1
    too_long = [u for u in units if len(u.ids) > limit]
    if not too_long:
        return
    worst = max(too_long, key=lambda u: len(u.ids))
    budget = f"the limit is {limit} tokens ({context} context - {prompt_len} prompt - 1 end token)"
    if grouped:
        raise ContextFitError(
            f"{len(too_long)} of {len(units)} groups do not fit the model context: the largest (starting at row "
            f"{worst.source_index}) has {worst.n_records} records = {len(worst.ids)} tokens; {budget}. Remedies: "
            "raise training.rope_scaling_factor (1-6), cap rows per group (data.max_records_per_group with "
            "data.group_cap_strategy most_recent or windows), or drop or shorten columns"
        )
    raise ContextFitError(
        f"{len(too_long)} record(s) do not fit the model context: record {worst.source_index} needs "
        f"{len(worst.ids)} tokens; {budget}. Remedies: raise training.rope_scaling_factor (1-6), use fewer or "
        "shorter columns, or truncate long text in the preparation SQL"
    )


def assemble_examples(
    units: Sequence[Unit],
    prompt_ids: list[int],
    eos_id: int,
    context: int,
    max_units: int,
    records_to_sample: int,
    rng: np.random.Generator,
) -> list[Example]:
    """Pack shuffled units into examples until `records_to_sample` records are covered.

    Each pass over the data is a fresh shuffle, so repeated epochs see different neighbours.
    """
    examples: list[Example] = []
    covered = 0
    prompt_labels = [IGNORE_INDEX] * len(prompt_ids)
    while covered < records_to_sample:
        ids, n_units, n_records = list(prompt_ids), 0, 0
        for i in rng.permutation(len(units)):
            unit = units[i]
            if n_units and (len(ids) + len(unit.ids) + 1 > context or n_units >= max_units):
                examples.append(Example(ids + [eos_id], prompt_labels + ids[len(prompt_ids) :] + [eos_id], n_records))
                covered += n_records
                ids, n_units, n_records = list(prompt_ids), 0, 0
                if covered >= records_to_sample:
                    break
            ids.extend(unit.ids)
            n_units += 1
            n_records += unit.n_records
        else:
            examples.append(Example(ids + [eos_id], prompt_labels + ids[len(prompt_ids) :] + [eos_id], n_records))
            covered += n_records
    return examples
