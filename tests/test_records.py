import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from synth_model import ContextFitError
from synth_model.records import (
    IGNORE_INDEX,
    Unit,
    assemble_examples,
    check_fit,
    prompt_text,
    records_to_table,
    rows_to_texts,
)
from synth_model.schema import infer_schema
from synth_model.validate import RecordValidator


def test_rows_round_trip_keeps_types_and_nulls():
    table = pa.table(
        {
            "n": pa.array([1, None, 3], pa.int16()),
            "x": pa.array([1.5, 2.25, None]),
            "d": pa.array([dt.date(2021, 5, 1), None, dt.date(2021, 5, 3)]),
            "t": pa.array([dt.datetime(2021, 5, 1, 8, 30), dt.datetime(2021, 5, 2), None], pa.timestamp("s")),
            "s": pa.array(["a", "b", None]),
            "b": pa.array([True, None, False]),
        }
    )
    schema = infer_schema(table)
    texts = rows_to_texts(table, schema)
    assert texts[0] == '{"n":1,"x":1.5,"d":"2021-05-01","t":"2021-05-01 08:30:00","s":"a","b":true}\n'
    validator = RecordValidator(schema)
    records = [validator.check(t)[0] for t in texts]
    assert all(r is not None for r in records)
    assert records_to_table(records, schema).equals(table)


def test_prompt_lists_the_columns():
    schema = infer_schema(pa.table({"a": [1, 2], "b": ["x", "y"]}))
    assert prompt_text(schema) == "columns: a,b\n"


def _units(lengths):
    return [Unit(list(range(n)), 1, i) for i, n in enumerate(lengths)]


def test_examples_respect_context_max_units_and_mask_the_prompt():
    units = _units([10] * 50)
    prompt = [900, 901, 902]
    rng = np.random.default_rng(0)
    examples = assemble_examples(units, prompt, 999, context=40, max_units=5, records_to_sample=120, rng=rng)
    assert sum(e.n_records for e in examples) >= 120
    for e in examples:
        assert len(e.input_ids) <= 40
        assert e.n_records <= 3  # 3 + 3*10 + 1 = 34 fits, a fourth unit would not
        assert e.input_ids[:3] == prompt and e.labels[:3] == [IGNORE_INDEX] * 3
        assert e.input_ids[-1] == 999 and e.labels[-1] == 999
        assert e.starts == list(range(3, 3 + 10 * e.n_records, 10))
        # every unit after the first teaches the end token where it begins; the rest are its own tokens
        for k, start in enumerate(e.starts):
            assert e.labels[start] == (e.input_ids[start] if k == 0 else 999)
            assert e.labels[start + 1 : start + 10] == e.input_ids[start + 1 : start + 10]
    capped = assemble_examples(units, prompt, 999, context=400, max_units=2, records_to_sample=10, rng=rng)
    assert max(e.n_records for e in capped) == 2


def test_record_that_cannot_fit_names_record_tokens_limit_and_remedy():
    with pytest.raises(ContextFitError) as err:
        check_fit(_units([10, 60, 80]), prompt_len=5, context=64)
    message = str(err.value)
    assert "2 record(s)" in message and "record 2 needs 80 tokens" in message
    assert "limit is 58" in message and "rope_scaling_factor" in message
    assert "training.tiny.context_length" in message


def test_a_prompt_longer_than_the_context_is_named_as_such():
    with pytest.raises(ContextFitError) as err:
        check_fit(_units([10]), prompt_len=691, context=512, tiny=False)
    message = str(err.value)
    assert "the prompt that lists the columns alone takes 691 of the 512 context tokens" in message
    assert "training.rope_scaling_factor" in message and "tiny" not in message


def test_nanosecond_timestamps_are_written_to_the_microsecond_the_grammar_allows():
    table = pa.table({"t": pa.array([1704067200123456789], pa.timestamp("ns"))})
    assert rows_to_texts(table, infer_schema(table)) == ['{"t":"2024-01-01 00:00:00.123456"}\n']
