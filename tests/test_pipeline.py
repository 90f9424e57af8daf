"""Pipeline steps refuse bad input with one clear message and leave earlier tables as they were."""

import json
from functools import partial

import pyarrow as pa
import pytest

from synth_model.errors import DataError
from warehouse import pipeline
from warehouse.spec import load_spec
from warehouse.sql_models import validate_spec


def small_plan(tmp_path, warehouse, extra: str = "", gates: str = "{min_valid_fraction: 0.5}"):
    """Table t: 300 plane rows (a, b, c) and a very small model, so a whole refresh takes seconds
    (and may write fewer valid records than the default gate asks)."""
    if not warehouse.exists("raw.t"):
        warehouse.write("raw.t", "SELECT manufacturer AS a, seats AS b, year AS c FROM raw.planes LIMIT 300")
    spec = tmp_path / "synth.yaml"
    spec.write_text(
        "tables:\n  - name: t\n    source: raw.t\n"
        "    training: {num_input_records_to_sample: 300, tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, "
        f"vocab_size: 300}}}}\n    generation: {{num_records: 20}}\n    gates: {gates}\n    {extra}\n"
    )
    return validate_spec(load_spec(spec), warehouse)["t"]


def refresh(warehouse, plan, models, run_id: str) -> dict:
    """Every step but the report, as `refresh_t` runs them; the publication's result with the model id."""
    pipeline.prepare(warehouse, plan, run_id)
    model = pipeline.train(warehouse, plan, models, run_id)
    pipeline.generate(warehouse, plan, run_id)
    return pipeline.publish(warehouse, plan, run_id) | {"model_id": model["model_id"]}


def plan_for(tmp_path, warehouse, mapped="[[a, b]]"):
    spec = tmp_path / "synth.yaml"
    spec.write_text(f"tables:\n  - name: t\n    source: raw.t\n    mapped_columns: {mapped}\n")
    return validate_spec(load_spec(spec), warehouse)["t"]


def test_empty_source_is_refused_and_the_prepared_table_kept(tmp_path, raw_warehouse):
    raw_warehouse.write("raw.t", pa.table({"a": ["x", "y"], "b": [1, 2]}))
    plan = plan_for(tmp_path, raw_warehouse)
    pipeline.prepare(raw_warehouse, plan, "run-1")
    raw_warehouse.write("raw.t", "SELECT * FROM raw.t WHERE false")
    with pytest.raises(DataError, match="source table raw.t has no rows; load rows into it"):
        pipeline.prepare(raw_warehouse, plan, "run-2")
    assert raw_warehouse.read_table("prepared.t").num_rows == 2


def test_a_source_changed_since_the_definitions_loaded_is_named(tmp_path, raw_warehouse):
    raw_warehouse.write("raw.t", pa.table({"a": ["x", "y"], "b": [1, 2]}))
    plan = plan_for(tmp_path, raw_warehouse)
    pipeline.prepare(raw_warehouse, plan, "run-1")
    raw_warehouse.write("raw.t", pa.table({"a": ["x", "y"]}))  # mapped column b dropped
    with pytest.raises(DataError, match=r"preparation raw.t no longer runs \(Binder Error.*\bb\b.*reload them"):
        pipeline.prepare(raw_warehouse, plan, "run-2")
    with raw_warehouse.connect() as con:
        con.execute("DROP TABLE raw.t")
    with pytest.raises(DataError, match=r"source table\(s\) \['raw.t'\] are no longer in the warehouse"):
        pipeline.prepare(raw_warehouse, plan, "run-3")
    assert raw_warehouse.read_table("prepared.t").num_columns == 2


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
    with pytest.raises(DataError, match="no prepared step yet: materialize prepared/t before synthetic_raw/t"):
        pipeline.generate(raw_warehouse, plan, "run-1")
    pipeline.prepare(raw_warehouse, plan, "run-1")
    with pytest.raises(DataError, match="no model step yet: materialize model/t before synthetic_raw/t"):
        pipeline.generate(raw_warehouse, plan, "run-1")


def test_steps_from_different_source_states_are_not_combined(tmp_path, raw_warehouse):
    """Materializing assets one at a time must not publish a stale model's rows with new lineage."""
    plan, models = small_plan(tmp_path, raw_warehouse), tmp_path / "models"
    first = refresh(raw_warehouse, plan, models, "run-1")
    assert first["published"]
    published = raw_warehouse.checksum("synthetic.t")

    raw_warehouse.write("raw.t", "SELECT * FROM raw.t LIMIT 200")
    pipeline.prepare(raw_warehouse, plan, "run-2")
    stale = rf"prepared.t changed \(rows 300 -> 200, checksum .*\) since model {first['model_id']} was trained"
    for step in (pipeline.generate, pipeline.publish):
        with pytest.raises(DataError, match=stale + ".*materialize model/t"):
            step(raw_warehouse, plan, "run-2")
    with pytest.raises(DataError, match=stale):
        pipeline.evaluate(raw_warehouse, plan, "run-2", tmp_path / "reports")

    second = pipeline.train(raw_warehouse, plan, models, "run-2")
    with pytest.raises(
        DataError,
        match=f"generated by model {first['model_id']}, not by the latest model "
        f"{second['model_id']}: materialize synthetic_raw/t before synthetic/t",
    ):
        pipeline.publish(raw_warehouse, plan, "run-2")
    assert raw_warehouse.checksum("synthetic.t") == published
    assert raw_warehouse.scalar("SELECT count(*) FROM meta.lineage") == 1

    pipeline.generate(raw_warehouse, plan, "run-3")
    with raw_warehouse.connect() as con:  # the same values under swapped names: no row hash changes
        con.execute(
            "ALTER TABLE raw.t RENAME a TO tmp; ALTER TABLE raw.t RENAME b TO a; ALTER TABLE raw.t RENAME tmp TO b"
        )
    pipeline.prepare(raw_warehouse, plan, "run-4")
    with pytest.raises(DataError, match=r"prepared.t changed \(columns [0-9a-f]+ -> [0-9a-f]+\) since model"):
        pipeline.publish(raw_warehouse, plan, "run-4")


def test_a_schema_change_is_recorded_or_refused(tmp_path, raw_warehouse):
    plan, models = small_plan(tmp_path, raw_warehouse), tmp_path / "models"
    assert refresh(raw_warehouse, plan, models, "run-1")["schema_change"] == {}  # nothing published before
    published = raw_warehouse.checksum("synthetic.t")
    raw_warehouse.write("raw.t", "SELECT a, b::VARCHAR AS b FROM raw.t")

    strict = small_plan(tmp_path, raw_warehouse, "on_schema_change: fail")
    result = refresh(raw_warehouse, strict, models, "run-2")
    check = next(c for c in result["checks"] if c.name == "schema_unchanged")
    assert not result["published"] and not check.passed
    assert "{'removed': ['c'], 'retyped': {'b': 'BIGINT -> VARCHAR'}}" in check.description
    assert "set `on_schema_change: publish` for table 't'" in check.description
    assert raw_warehouse.checksum("synthetic.t") == published

    result = pipeline.publish(raw_warehouse, small_plan(tmp_path, raw_warehouse), "run-3")
    assert result["published"] and result["schema_change"] == {"removed": ["c"], "retyped": {"b": "BIGINT -> VARCHAR"}}
    recorded = raw_warehouse.scalar("SELECT details FROM meta.steps WHERE step = 'synthetic' AND run_id = 'run-3'")
    assert json.loads(recorded)["schema_change"] == result["schema_change"]


def test_a_decimal_column_is_learned_as_a_number_and_published_as_decimal(tmp_path, raw_warehouse):
    raw_warehouse.write(
        "raw.t", "SELECT manufacturer AS a, seats AS b, (year / 7)::DECIMAL(10, 2) AS c FROM raw.planes LIMIT 300"
    )
    plan = small_plan(tmp_path, raw_warehouse)
    refresh(raw_warehouse, plan, tmp_path / "models", "run-1")
    with raw_warehouse.connect(read_only=True) as con:
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE synthetic.t)").fetchall())
        rows, scale_ok = con.execute("SELECT count(*), bool_and(c * 100 = round(c * 100)) FROM synthetic.t").fetchone()
    assert types["c"] == "DECIMAL(10,2)" and rows > 0 and scale_ok


def test_an_enum_column_is_learned_as_categories_and_published_as_the_enum(tmp_path, raw_warehouse):
    raw_warehouse.write(
        "raw.t",
        "SELECT manufacturer AS a, seats AS b, (CASE WHEN year < 2000 THEN 'old' ELSE 'new' END)"
        "::ENUM('old', 'new', 'unused') AS c FROM raw.planes WHERE year IS NOT NULL LIMIT 300",
    )
    plan = small_plan(tmp_path, raw_warehouse)
    refresh(raw_warehouse, plan, tmp_path / "models", "run-1")
    with raw_warehouse.connect(read_only=True) as con:
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE synthetic.t)").fetchall())
        values = {v for (v,) in con.execute("SELECT DISTINCT c::VARCHAR FROM synthetic.t").fetchall()}
    assert types["c"] == "ENUM('old', 'new', 'unused')" and values <= {"old", "new"} and values


def test_an_enum_of_names_that_pii_replacement_replaces_is_published_as_text(tmp_path, raw_warehouse):
    """Fakes are no members of the ENUM: casting them back failed the publication with a message that
    listed the ENUM's real names."""
    names = ["James Smith", "Mary Johnson", "Robert Brown", "Linda Davis", "Michael Miller", "Susan Wilson"]
    listed = ", ".join(f"'{n}'" for n in names)
    raw_warehouse.write(
        "raw.t",
        f"SELECT manufacturer AS a, seats AS b, ([{listed}])[1 + (rowid % 6)::INT]::ENUM({listed}) AS c "
        "FROM raw.planes LIMIT 300",
    )
    plan = small_plan(tmp_path, raw_warehouse, gates="{min_valid_fraction: 0.0}")
    published = refresh(raw_warehouse, plan, tmp_path / "models", "run-1")
    assert published["published"], published["checks"]
    with raw_warehouse.connect(read_only=True) as con:
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE synthetic.t)").fetchall())
        values = {v for (v,) in con.execute("SELECT DISTINCT c FROM synthetic.t").fetchall()}
    assert types["c"] == "VARCHAR" and values and not values & set(names)


def test_a_publication_on_its_own_needs_a_passing_report_of_the_same_rows(tmp_path, raw_warehouse):
    """Dagster's blocking gate checks guard a job, not `synthetic/t` materialized alone."""
    plan = small_plan(tmp_path, raw_warehouse, gates="{min_valid_fraction: 0.5, min_quality: 9.9}")
    pipeline.prepare(raw_warehouse, plan, "run-1")
    pipeline.train(raw_warehouse, plan, tmp_path / "models", "run-1")
    pipeline.generate(raw_warehouse, plan, "run-1")
    with pytest.raises(DataError, match="rows have no report, and the quality, privacy or copy gates need one"):
        pipeline.publish(raw_warehouse, plan, "run-2")
    out = pipeline.evaluate(raw_warehouse, plan, "run-3", tmp_path / "reports", log=lambda _: None)
    assert [c.passed for c in out["checks"]] == [False]
    with pytest.raises(DataError, match=r"fail their gates \(quality_gate: .* misses the gate >= 9.9\)"):
        pipeline.publish(raw_warehouse, plan, "run-4")
    assert not raw_warehouse.exists("synthetic.t")
    (tmp_path / "passing").mkdir()
    passing = small_plan(tmp_path / "passing", raw_warehouse, gates="{min_valid_fraction: 0.5, min_quality: 0.0}")
    pipeline.evaluate(raw_warehouse, passing, "run-5", tmp_path / "reports", log=lambda _: None)
    with pytest.raises(DataError, match=r"fail their gates \(quality_gate"):  # a gate raised since the report
        pipeline.publish(raw_warehouse, plan, "run-5b")
    assert pipeline.publish(raw_warehouse, passing, "run-6")["published"]
    pipeline.generate(raw_warehouse, passing, "run-7")  # new rows: the report judged the earlier ones
    with pytest.raises(DataError, match="rows have no report"):
        pipeline.publish(raw_warehouse, passing, "run-8")


def test_overlapping_refreshes_never_take_each_others_output_as_their_own(tmp_path, raw_warehouse):
    plan, models = small_plan(tmp_path, raw_warehouse, gates="{min_valid_fraction: 0.0}"), tmp_path / "models"
    for step in (pipeline.prepare, partial(pipeline.train, models_root=models), pipeline.generate):
        step(raw_warehouse, plan, run_id="run-a")
    pipeline.generate(raw_warehouse, plan, "run-b")  # a second refresh overwrites synthetic_raw.t
    with pytest.raises(DataError, match="run run-b made synthetic_raw/t again after this run did"):
        pipeline.evaluate(raw_warehouse, plan, "run-a", tmp_path / "reports", log=lambda _: None)
    with pytest.raises(DataError, match="two refreshes of 't' overlap"):
        pipeline.publish(raw_warehouse, plan, "run-a")
    assert pipeline.publish(raw_warehouse, plan, "run-b")["published"]
    with raw_warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT run_id FROM meta.lineage").fetchall() == [("run-b",)]


def test_a_generation_change_reuses_the_model_and_samples_with_the_new_settings(tmp_path, raw_warehouse):
    plan, models = small_plan(tmp_path, raw_warehouse, gates="{min_valid_fraction: 0.0}"), tmp_path / "models"
    first = refresh(raw_warehouse, plan, models, "run-1")
    spec = tmp_path / "synth.yaml"
    spec.write_text(spec.read_text().replace("{num_records: 20}", "{num_records: 35, seed: 4}"))
    changed = validate_spec(load_spec(spec), raw_warehouse)["t"]
    again = pipeline.train(raw_warehouse, changed, models, "run-2")
    assert again["model_id"] == first["model_id"] and not again["retrained"] and again["why"] == "inputs unchanged"
    generated = pipeline.generate(raw_warehouse, changed, "run-2")
    assert generated["rows"] == 35 and generated["generation"]["seed"] == 4 == generated["seed"]
    pipeline.publish(raw_warehouse, changed, "run-2")
    with raw_warehouse.connect(read_only=True) as con:
        hashes = con.execute("SELECT config_hash FROM meta.lineage ORDER BY version").fetchall()
        steps = [
            json.loads(d)
            for (d,) in con.execute(
                "SELECT details FROM meta.steps WHERE step = 'synthetic_raw' ORDER BY finished_at"
            ).fetchall()
        ]
    assert len(set(hashes)) == 2  # the lineage tells the two versions' settings apart
    assert [s["generation"]["num_records"] for s in steps] == [20, 35]
    assert isinstance(steps[0]["generation"]["seed"], int)  # the seed drawn where none was set
    spec.write_text(spec.read_text().replace("num_layers: 1", "num_layers: 2"))
    deeper = pipeline.train(raw_warehouse, validate_spec(load_spec(spec), raw_warehouse)["t"], models, "run-3")
    assert deeper["retrained"] and deeper["why"].startswith("the training settings")


def test_a_filter_that_fails_on_the_rows_is_named_and_nothing_is_published(tmp_path, raw_warehouse):
    (tmp_path / "sql" / "filters").mkdir(parents=True)
    (tmp_path / "sql" / "filters" / "bad.sql").write_text("-- years as words\nc > 'many'\n")
    plan = small_plan(tmp_path, raw_warehouse, extra="filters: [bad.sql]")
    with pytest.raises(DataError, match=r"filter bad.sql fails on the generated rows \(Conversion Error.*'many'"):
        refresh(raw_warehouse, plan, tmp_path / "models", "run-1")
    assert not raw_warehouse.exists("synthetic.t")
