"""Pipeline steps refuse bad input with one clear message and leave earlier tables as they were."""

import pyarrow as pa
import pytest

from synth_model.errors import DataError
from warehouse import pipeline
from warehouse.spec import load_spec
from warehouse.sql_models import validate_spec


def plan_for(tmp_path, warehouse, mapped="[[a, b]]"):
    spec = tmp_path / "synth.yaml"
    spec.write_text(f"tables:\n  - name: t\n    source: raw.t\n    mapped_columns: {mapped}\n")
    return validate_spec(load_spec(spec), warehouse)["t"]


def test_empty_source_is_refused_and_the_prepared_table_kept(tmp_path, raw_warehouse):
    raw_warehouse.write("raw.t", pa.table({"a": ["x", "y"], "b": [1, 2]}))
    plan = plan_for(tmp_path, raw_warehouse)
    pipeline.prepare(raw_warehouse, plan, "run-1")
    raw_warehouse.write("raw.t", "SELECT * FROM raw.t WHERE false")
    with pytest.raises(DataError, match="returned no rows"):
        pipeline.prepare(raw_warehouse, plan, "run-2")
    assert raw_warehouse.read_table("prepared.t").num_rows == 2


def test_separator_inside_a_mapped_value_is_refused(tmp_path, raw_warehouse):
    raw_warehouse.write("raw.t", pa.table({"a": ["x | y", "z"], "b": [1, 2]}))
    with pytest.raises(DataError, match=r"separator ' \| '.*\{'a': 1\}"):
        pipeline.prepare(raw_warehouse, plan_for(tmp_path, raw_warehouse), "run-1")
    assert not raw_warehouse.exists("prepared.t")


def test_steps_out_of_order_name_the_missing_step(tmp_path, raw_warehouse):
    raw_warehouse.write("raw.t", pa.table({"a": ["x"], "b": [1]}))
    plan = plan_for(tmp_path, raw_warehouse)
    with pytest.raises(DataError, match="materialize prepared/t before model/t"):
        pipeline.train(raw_warehouse, plan, tmp_path / "models", "run-1")
    with pytest.raises(DataError, match="no model step yet"):
        pipeline.generate(raw_warehouse, plan, "run-1")
