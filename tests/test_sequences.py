"""Sequence statistics: zero distance on identical tables, large on broken ones."""

import datetime as dt

import numpy as np
import pyarrow as pa

from synth_model.evaluate.sequences import ks_distance, measure, sequence_stats

REAL = pa.table(
    {
        "id": ["a", "a", "a", "b", "b", "c"],
        "t": [1, 2, 5, 1, 3, 2],
        "kind": ["x", "y", "y", "x", "y", "x"],
        "amount": [1.0, 2.0, 3.0, 1.5, 2.5, 1.0],
    }
)


def test_identical_tables_have_zero_distances():
    stats = sequence_stats(REAL, REAL, ["id"], ["t"])
    assert stats["groups"] == {"real": 3, "synthetic": 3}
    assert stats["records_per_group"]["ks"] == 0
    assert stats["order_violations"] == {"real": 0, "synthetic": 0}
    assert stats["gaps"]["t"]["ks"] == 0 and stats["gaps"]["t"]["real"]["mean"] == 2.0
    assert all(d == {"first": 0.0, "later": 0.0} for d in stats["first_vs_later"].values())


def test_broken_sequences_score_badly():
    broken = pa.table(
        {
            "id": ["p", "q", "r", "s", "s", "s"],
            "t": [9, 9, 9, 7, 3, 1],  # one group out of order
            "kind": ["y", "y", "y", "x", "x", "x"],  # first records are y, later ones x: swapped
            "amount": [9.0, 9.0, 9.0, 8.0, 8.0, 8.0],
        }
    )
    stats = sequence_stats(REAL, broken, ["id"], ["t"])
    assert stats["order_violations"]["synthetic"] == 2
    assert stats["records_per_group"]["ks"] > 0.3
    assert stats["first_vs_later"]["kind"]["first"] > 0.5 and stats["first_vs_later"]["kind"]["later"] > 0.5
    assert stats["first_vs_later"]["amount"]["first"] == 1.0  # disjoint values


def test_ks_distance_bounds():
    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0
    assert ks_distance([1, 2], [5, 6]) == 1
    assert ks_distance([], [1]) is None


def test_timestamps_of_any_unit_and_null_order_values_and_interleaved_groups():
    """DuckDB gives microseconds, pandas nanoseconds; NULLs (sorted last in training) and rows of
    groups read without ORDER BY must not be counted as disorder."""
    times = [dt.datetime(2024, 1, 1) + dt.timedelta(days=d) for d in (0, 1, 3, 0, 2, 0)]
    times[2] = None
    real = REAL.set_column(1, "t", pa.array(times, pa.timestamp("us")))
    nanos = real.set_column(1, "t", real.column("t").cast(pa.timestamp("ns")))
    interleaved = nanos.take([0, 3, 1, 5, 4, 2])  # a: rows 0,1,2 and b: rows 3,4 stay in order
    stats = sequence_stats(real, interleaved, ["id"], ["t"])
    assert stats["order_violations"] == {"real": 0, "synthetic": 0}
    assert stats["gaps"]["t"]["real"]["mean"] == 86400 * 1.5  # one day and two days, in seconds
    assert stats["gaps"]["t"]["ks"] == 0 and stats["records_per_group"]["ks"] == 0
    assert all(d == {"first": 0.0, "later": 0.0} for d in stats["first_vs_later"].values())


def test_the_score_sees_entities_that_no_longer_hang_together():
    """Each customer keeps a tier and an amount level; shuffling them across records keeps every
    column's distribution and every group's size, and only the entities' structure breaks."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(200):
        tier, level = rng.choice(["gold", "silver", "bronze"]), rng.lognormal(4, 1)
        rows += [{"id": c, "t": k, "tier": tier, "amount": level * rng.lognormal(0, 0.1)} for k in range(1, 5)]
    real = pa.Table.from_pylist(rows)
    mixed = real
    for column in ("tier", "amount"):
        mixed = mixed.set_column(mixed.schema.get_field_index(column), column, real[column].take(rng.permutation(800)))
    same, broken = (
        measure(sequence_stats(real, real, ["id"], ["t"])),
        measure(sequence_stats(real, mixed, ["id"], ["t"])),
    )
    assert same["score"] == 10 and set(same["distances"]) == {
        "records_per_group",
        "order",
        "gaps",
        "first_vs_later",
        "within_group",
    }
    assert same["within_group"]["tier"] == {"measure": "equal share", "real": 1.0, "synthetic": 1.0}
    assert broken["within_group"]["tier"]["synthetic"] < 0.5 and broken["within_group"]["amount"]["synthetic"] < 0.2
    assert broken["distances"]["records_per_group"] == 0 and broken["distances"]["within_group"] > 0.4
    assert broken["score"] < same["score"] - 1
