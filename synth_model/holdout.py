"""Hold out real rows that training never sees (whole groups when the table is grouped)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synth_model.config import DataConfig
from synth_model.errors import DataError

MIN_TRAINING_ROWS = 10


def group_ids(table: pa.Table, columns: list[str] | None) -> np.ndarray | None:
    """A dense integer id per row for its group (rows of one entity share an id); None when ungrouped."""
    if not columns:
        return None
    rows = table.select(columns).append_column("__row", pa.array(np.arange(table.num_rows)))
    groups = rows.group_by(columns, use_threads=False).aggregate([("__row", "list")])
    gids = np.empty(table.num_rows, dtype=np.int64)
    for gid, members in enumerate(groups.column("__row_list").to_pylist()):
        gids[members] = gid
    return gids


def holdout_size(n_units: int, config: DataConfig) -> int:
    size = round(config.holdout * n_units) if config.holdout < 1 else int(config.holdout)
    return min(size, config.max_holdout)


def split_holdout(table: pa.Table, config: DataConfig) -> tuple[pa.Table, pa.Table]:
    """(training rows, holdout rows); groups are never split between the two."""
    gids = group_ids(table, config.group_training_examples_by)
    n_units = table.num_rows if gids is None else int(gids.max()) + 1
    size = holdout_size(n_units, config)
    what = "rows" if gids is None else "groups"
    if n_units - size < MIN_TRAINING_ROWS:
        remedy = (
            f"add {what} (at least {MIN_TRAINING_ROWS} are needed)"
            if size == 0
            else f"add {what}, or lower data.holdout (0 disables the holdout)"
        )
        held = f"; holding out {size} leaves fewer than {MIN_TRAINING_ROWS} to train on" if size else ""
        raise DataError(f"the table has {n_units} {what[:-1] if n_units == 1 else what}{held}: {remedy}")
    rng = np.random.default_rng(config.random_state)
    held_units = rng.choice(n_units, size=size, replace=False)
    held = np.zeros(n_units, dtype=bool)
    held[held_units] = True
    row_held = held if gids is None else held[gids]
    mask = pa.array(row_held)
    return table.filter(pc.invert(mask)), table.filter(mask)
