import pyarrow as pa
import pytest

from synth_model import DataError, Synthesizer
from synth_model.config import DataConfig
from synth_model.holdout import split_holdout


def test_fraction_and_cap():
    table = pa.table({"x": list(range(1000))})
    train, held = split_holdout(table, DataConfig(holdout=0.1))
    assert (train.num_rows, held.num_rows) == (900, 100)
    assert set(train["x"].to_pylist()).isdisjoint(held["x"].to_pylist())
    _, capped = split_holdout(table, DataConfig(holdout=0.5, max_holdout=30))
    assert capped.num_rows == 30
    _, counted = split_holdout(table, DataConfig(holdout=12))
    assert counted.num_rows == 12
    _, none = split_holdout(table, DataConfig(holdout=0))
    assert none.num_rows == 0


def test_split_is_seeded():
    table = pa.table({"x": list(range(200))})
    a = split_holdout(table, DataConfig(random_state=3))[1]
    b = split_holdout(table, DataConfig(random_state=3))[1]
    assert a.equals(b)


def test_groups_are_never_split():
    table = pa.table({"entity": [i // 5 for i in range(500)], "x": list(range(500))})
    train, held = split_holdout(table, DataConfig(holdout=0.2, group_training_examples_by="entity"))
    assert held.num_rows == 100  # 20 whole groups of 5
    assert set(train["entity"].to_pylist()).isdisjoint(held["entity"].to_pylist())


def test_too_few_rows_for_the_holdout():
    with pytest.raises(DataError, match="holding out 10 leaves fewer than 10 to train on: add rows, or lower"):
        split_holdout(pa.table({"x": list(range(15))}), DataConfig(holdout=10))
    with pytest.raises(DataError, match=r"^the table has 3 rows: add rows \(at least 10 are needed\)$"):
        split_holdout(pa.table({"x": list(range(3))}), DataConfig(holdout=0))
    with pytest.raises(DataError, match=r"^the table has 1 row: add rows \(at least 10"):
        split_holdout(pa.table({"x": [1]}), DataConfig())


def test_held_out_values_never_reach_the_schema():
    """The schema (and so the grammar, the validator and a DP tokenizer) comes from the training rows:
    a category or an extreme only a held-out row has is not learned."""
    n = 300
    table = pa.table(
        {
            "grade": [f"SECRET{i}" if i % 10 == 0 else "AB"[i % 2] for i in range(n)],
            "amount": [float(i) for i in range(n)],
        }
    )
    config = {
        "data": {"holdout": 0.2},
        "training": {"num_input_records_to_sample": 200, "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2}},
    }
    synth = Synthesizer(config).fit(table)
    held = set(synth.holdout.column("grade").to_pylist()) - {"A", "B"}
    grade, amount = synth.schema.columns
    assert held and not held & set(grade.categories)
    assert amount.maximum == max(
        set(table.column("amount").to_pylist()) - set(synth.holdout.column("amount").to_pylist())
    )
