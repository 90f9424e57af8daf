"""Rows <-> JSONL text, and training-example assembly.

One record is one compact JSON object on one line, keys in column order. A training example is a
prompt (masked from the loss) followed by whole *units* and an end token. A unit is one record, or,
for grouped tables, all records of one entity; so grouped events slot in without a second code path.

Units packed into one example are isolated: each attends to the prompt and to itself only, at
positions counted from the end of the prompt (see `train.collate`), and each is followed by the
end token in the labels. So the model learns p(unit | prompt) exactly as sampling uses it: every
sampled row continues the prompt with one unit and stops, and a finished row can be refilled at
once (continuous batching) without attending over earlier, unrelated records.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    if kind == "datetime":  # at most microseconds, as the grammar writes them (Arrow's ns come as pandas Timestamps)
        return lambda v: (v.to_pydatetime(warn=False) if hasattr(v, "to_pydatetime") else v).isoformat(sep=" ")
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
    for rule, column in zip(schema.columns, schema.arrow_schema(), strict=True):
        values = [r[rule.name] for r in records]
        if rule.kind == "date":
            values = [None if v is None else dt.date.fromisoformat(v) for v in values]
        elif rule.kind == "datetime":
            values = [None if v is None else dt.datetime.fromisoformat(v) for v in values]
        elif rule.kind == "float":
            values = [None if v is None else float(v) for v in values]
        elif rule.kind == "integer":
            values = [None if v is None else int(v) for v in values]
        arrays.append(_array(values, column.type, rule.dictionary or rule.categories))
    return pa.Table.from_arrays(arrays, schema=schema.arrow_schema())


def _array(values: list, typ: pa.DataType, dictionary: list | None) -> pa.Array:
    """A column of `typ`; a dictionary (ENUM) column indexes the source's dictionary, so it keeps
    the source's entries and order (what an ordered one sorts by)."""
    if not pa.types.is_dictionary(typ):
        return pa.array(values, typ)
    index = {c: i for i, c in enumerate(dictionary)}
    indices = pa.array([None if v is None else index[v] for v in values], typ.index_type)
    return pa.DictionaryArray.from_arrays(indices, pa.array(dictionary, typ.value_type), ordered=typ.ordered)


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
    starts: list[int] = field(default_factory=list)  # where each unit begins (empty: one unit after the prompt)


def _unit_spans(example: Example) -> list[tuple[int, int]]:
    """(begin, end) of each unit in a packed example (it ends with one end token)."""
    bounds = [*example.starts, len(example.input_ids) - 1]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def rows_per_compute(example: Example, row_tokens: int) -> list[Example]:
    """The same example as rows of at most `row_tokens` tokens, each behind its own copy of the prompt.

    Units are isolated, so this changes no prediction and no loss, only the layout: attention over a
    packed example costs its length squared, most of it masked out; over short rows it does not.
    Units are packed first-fit, longest first, so rows come out about equally long (little padding);
    the example's first unit (the one whose first token is learned from the prompt) opens the first
    row. Every unit is followed by the end token it must predict; the first token of a unit that
    opens a later row stays unlabelled here, as it was in the packed example (`train.collate` has it
    learned from the prompt, with every other unit's).
    """
    if not example.starts or len(example.input_ids) <= row_tokens:
        return [example]
    ids, labels = example.input_ids, example.labels
    prompt, eos = example.starts[0], ids[-1]
    spans = _unit_spans(example)
    room = row_tokens - prompt - 1
    rows, free = [[0]], [room - (spans[0][1] - spans[0][0])]
    for k in sorted(range(1, len(spans)), key=lambda k: spans[k][0] - spans[k][1]):
        size = spans[k][1] - spans[k][0]
        row = next((r for r, left in enumerate(free) if size <= left), None)
        if row is None:
            rows.append([k])
            free.append(room - size)
        else:
            rows[row].append(k)
            free[row] -= size
    out = []
    for units in rows:
        row_ids, row_labels, starts = list(ids[:prompt]), list(labels[:prompt]), []
        for j, k in enumerate(units):
            begin, end = spans[k]
            starts.append(len(row_ids))
            opener = labels[begin] if k == 0 else IGNORE_INDEX
            row_ids += ids[begin:end]
            row_labels += [opener if j == 0 else labels[begin], *labels[begin + 1 : end]]
        out.append(Example(row_ids + [eos], row_labels + [labels[-1]], 0, starts))
    return out


def row_tokens(examples: Sequence[Example]) -> int:
    """Row width for `rows_per_compute`: the longest unit with the prompt and end token, and at least
    ten prompts long, so the repeated prompt stays within a tenth of a full row."""
    prompt = examples[0].starts[0] if examples[0].starts else 0
    longest = max(end - begin for e in examples for begin, end in _unit_spans(e)) if examples[0].starts else 0
    return max(prompt + longest + 1, 10 * prompt)


def unit_token_cap(units: Sequence[Unit], limit: int) -> int:
    """Most tokens a sampled unit may take: the longest unit training saw, plus a quarter for slack."""
    return min(limit, math.ceil(1.25 * max(len(u.ids) for u in units)) + 1)


def sequence_len(prompt_len: int, max_unit_tokens: int) -> int:
    """Positions one sampled row can fill: the prompt, a unit at its cap, and the end token."""
    return prompt_len + max_unit_tokens + 1


def check_fit(units: Sequence[Unit], prompt_len: int, context: int, grouped: bool = False, tiny: bool = True) -> None:
    """Fail before training if any unit cannot fit the context window, with the remedies."""
    limit = context - prompt_len - 1
    too_long = [u for u in units if len(u.ids) > limit]
    if not too_long:
        return
    worst = max(too_long, key=lambda u: len(u.ids))
    budget = (
        f"the limit is {limit} tokens ({context} context - {prompt_len} prompt - 1 end token)"
        if limit > 0
        else f"the prompt that lists the columns alone takes {prompt_len} of the {context} context tokens"
    )
    longer = (
        "raise "
        + ("training.tiny.context_length (e.g. 2048) or " if tiny else "")
        + "training.rope_scaling_factor (1-6)"
    )
    if grouped:
        raise ContextFitError(
            f"{len(too_long)} of {len(units)} groups do not fit the model context: the largest (starting at row "
            f"{worst.source_index}) has {worst.n_records} records = {len(worst.ids)} tokens; {budget}. Remedies: "
            f"{longer}, cap rows per group (data.max_records_per_group with "
            "data.group_cap_strategy most_recent or windows), or drop or shorten columns"
        )
    raise ContextFitError(
        f"{len(too_long)} record(s) do not fit the model context: record {worst.source_index} needs "
        f"{len(worst.ids)} tokens; {budget}. Remedies: {longer}, use fewer or "
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

    Each pass over the data is a fresh shuffle, so repeated epochs see different neighbours. The
    first token of every unit after the first is labelled with the end token instead: it is what
    the previous unit's last position must predict (a unit's own first token is learned from the
    prompt's last position: see `train.collate`).
    """
    examples: list[Example] = []
    covered = 0
    prompt_labels = [IGNORE_INDEX] * len(prompt_ids)

    def close(ids: list[int], labels: list[int], starts: list[int], n_records: int) -> None:
        nonlocal covered
        examples.append(Example(ids + [eos_id], labels + [eos_id], n_records, starts))
        covered += n_records

    def fresh() -> tuple[list[int], list[int], list[int], int]:
        return list(prompt_ids), list(prompt_labels), [], 0

    ids, labels, starts, n_records = fresh()
    while covered < records_to_sample:
        for i in rng.permutation(len(units)):
            unit = units[i]
            if starts and (len(ids) + len(unit.ids) + 1 > context or len(starts) >= max_units):
                close(ids, labels, starts, n_records)
                ids, labels, starts, n_records = fresh()
                if covered >= records_to_sample:
                    break
            starts.append(len(ids))
            labels.extend([eos_id if len(starts) > 1 else unit.ids[0], *unit.ids[1:]])
            ids.extend(unit.ids)
            n_records += unit.n_records
        else:
            close(ids, labels, starts, n_records)
            ids, labels, starts, n_records = fresh()
    return examples
