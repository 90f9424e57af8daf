"""Replay: how many real training PII values reappear in synthetic rows (a model that memorised them).

Pass the ORIGINAL training rows, before replacement: a value counts as replayed when a synthetic row holds it
verbatim, in the same column (whole-value PII) or anywhere in the same free-text column (spans). Score:
10 * (1 - share of synthetic rows holding at least one replayed value), so 10 means nothing replayed and
a synthetic table that copies 20% of the training rows scores about 8.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

from synth_model.privacy.pii.names import name_lists
from synth_model.privacy.pii.patterns import SPAN_ENTITIES, find_spans
from synth_model.privacy.pii.report import PiiReport
from synth_model.privacy.pii.values import as_text


def replay(training: pa.Table, synthetic: pa.Table, report: PiiReport) -> dict[str, Any]:
    """Per column and entity: training values/spans, how many reappear, and the share of synthetic rows holding
    one; then overall counts, share and score. Free-text columns are searched for every span entity."""
    rows = synthetic.num_rows
    hit = np.zeros(rows, dtype=bool)
    columns, text, notes = [], [], []
    for f in report.columns:
        if f.action == "skipped":
            continue
        if f.column not in synthetic.column_names or f.column not in training.column_names:
            notes.append(f"{f.column}: not in both tables, skipped")
            continue
        real = set(_texts(training, f.column)) - {None}
        generated = _texts(synthetic, f.column)
        held = np.array([v in real for v in generated], dtype=bool)
        columns.append(_entry(f.column, f.entity, len(real), len(real & set(generated)), held))
        hit |= held
    names = name_lists(report.locale)
    for column in sorted({f.column for f in report.text}):
        if column not in synthetic.column_names or column not in training.column_names:
            notes.append(f"{column}: not in both tables, skipped")
            continue
        real = {
            value[s.start : s.end]: s.entity
            for value in set(_texts(training, column)) - {None}
            for s in find_spans(value, SPAN_ENTITIES, names)
        }
        if not real:
            continue
        found = _find_verbatim(_texts(synthetic, column), real)
        for entity in sorted(set(real.values())):
            held = np.array([any(real[s] == entity for s in row) for row in found], dtype=bool)
            replayed = {s for row in found for s in row if real[s] == entity}
            total = sum(e == entity for e in real.values())
            text.append(_entry(column, entity, total, len(replayed), held))
            hit |= held
    share = float(hit.mean()) if rows else 0.0
    return {
        "columns": columns,
        "text": text,
        "replayed_values": sum(e["replayed"] for e in columns + text),
        "synthetic_rows_with_replay": int(hit.sum()),
        "share": round(share, 4),
        "score": round(min(10.0, max(0.0, 10 * (1 - share))), 2),
        "notes": notes,
    }


def _texts(table: pa.Table, column: str) -> list[str | None]:
    return [None if v is None else as_text(v) for v in table.column(column).to_pylist()]


def _find_verbatim(values: list[str | None], spans: dict[str, str]) -> list[set[str]]:
    """Per value, the training spans it contains as whole tokens (one alternation regex, longest first)."""
    alternation = "|".join(re.escape(s) for s in sorted(spans, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")
    return [set(pattern.findall(v)) if v else set() for v in values]


def _entry(column: str, entity: str, training: int, replayed: int, held: np.ndarray) -> dict[str, Any]:
    return {
        "column": column,
        "entity": entity,
        "training_values": training,
        "replayed": replayed,
        "synthetic_rows": int(held.sum()),
        "share": round(float(held.mean()), 4) if len(held) else 0.0,
    }
