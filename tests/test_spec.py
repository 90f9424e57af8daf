"""synth.yaml and its SQL files: valid specs plan correctly, every mistake names file, line and table."""

import shutil
from pathlib import Path

import pytest

from warehouse.spec import SpecError, default_spec_path, load_spec
from warehouse.sql_models import validate_spec

REPO = Path(__file__).resolve().parent.parent

PLANES = """\
tables:
  - name: planes
    source: raw.planes
    sql: planes.sql
    mapped_columns:
      - [manufacturer, model]
    filters: [planes_single_engine_seats.sql]
"""


def write_spec(folder: Path, text: str) -> Path:
    """A spec in `folder` with a copy of the repository's sql/ folder beside it."""
    shutil.copytree(REPO / "sql", folder / "sql", dirs_exist_ok=True)
    path = folder / "synth.yaml"
    path.write_text(text)
    return path


def plan(tmp_path, raw_warehouse, text):
    return validate_spec(load_spec(write_spec(tmp_path, text)), raw_warehouse)


def error(tmp_path, raw_warehouse, text) -> str:
    with pytest.raises(SpecError) as caught:
        plan(tmp_path, raw_warehouse, text)
    return str(caught.value)


def test_repository_spec_plans_against_the_demo_warehouse(raw_warehouse):
    plans = validate_spec(load_spec(REPO / "synth.yaml"), raw_warehouse)
    assert list(plans) == ["planes", "flights"]
    planes = plans["planes"].preparation
    assert planes.columns == ["year", "type", "manufacturer", "model", "engines", "seats", "engine"]
    assert planes.sources == ["raw.planes"]
    assert planes.lineage["manufacturer"] == [("raw.planes", "manufacturer")]
    assert planes.description.startswith("Aircraft that flew from New York")
    flights = plans["flights"]
    assert flights.spec.engine_config().data.group_training_examples_by == ["tailnum"]
    assert flights.spec.engine_config().data.order_training_examples_by == ["day", "sched_dep_time"]
    assert [f.name for f in flights.filters] == ["flights_plausible_speed.sql"]


def test_lineage_follows_joins_ctes_and_expressions(tmp_path, raw_warehouse):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "joined.sql").write_text(
        "-- flights with the age of their plane\n"
        "WITH f AS (SELECT tailnum, year AS flight_year, dep_delay FROM raw.flights)\n"
        "SELECT f.tailnum, f.flight_year - p.year AS plane_age, f.dep_delay * 60 AS delay_s, 'x' AS tag\n"
        "FROM f JOIN raw.planes p USING (tailnum)\n"
    )
    path = tmp_path / "synth.yaml"
    path.write_text("tables:\n  - name: joined\n    source: raw.flights\n    sql: joined.sql\n")
    prep = validate_spec(load_spec(path), raw_warehouse)["joined"].preparation
    assert prep.lineage["plane_age"] == [("raw.flights", "year"), ("raw.planes", "year")]
    assert prep.lineage["delay_s"] == [("raw.flights", "dep_delay")]
    assert prep.lineage["tag"] == []
    assert prep.sources == ["raw.flights", "raw.planes"]


def test_no_sql_means_every_source_column(tmp_path, raw_warehouse):
    plans = plan(tmp_path, raw_warehouse, "tables:\n  - name: credit\n    source: raw.credit\n")
    prep = plans["credit"].preparation
    assert prep.columns[:3] == ["Status", "Seniority", "Home"]
    assert prep.lineage["Home"] == [("raw.credit", "Home")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("    sql: planes.sql\n", "    sql: planes.sql\n    epochs: 3\n"), ["synth.yaml:5:", "unknown key 'epochs'"]),
        (("mapped_columns:", "mapped_column:"), ["synth.yaml:5:", "'mapped_column': did you mean 'mapped_columns'?"]),
        (("source: raw.planes", "source: raw.plane"), ["synth.yaml:3:", "raw.plane is not in the warehouse"]),
        (("source: raw.planes", "source: planes"), ["synth.yaml:3:", "schema.table"]),
        (("[manufacturer, model]", "[manufacturer, modle]"), ["synth.yaml:5:", "['modle']", "'planes'"]),
        (("sql: planes.sql", "sql: plane.sql"), ["synth.yaml:4:", "plane.sql does not exist"]),
        (("[planes_single_engine_seats.sql]", "[nope.sql]"), ["synth.yaml:7:", "nope.sql does not exist"]),
        (("    sql: planes.sql\n", "    sql: planes.sql\n    schedule: daily\n"), ["5-field cron"]),
        (
            ("    sql: planes.sql\n", "    sql: planes.sql\n    schedule: '99 3 * * MON-FRI'\n"),
            ["synth.yaml:5:", "cron field minute '99' is not valid: use *, numbers 0-59"],
        ),
        (
            ("    sql: planes.sql\n", "    sql: planes.sql\n    schedule: '0 3 * * FOO'\n"),
            ["synth.yaml:5:", "cron field day of week 'FOO' is not valid", "names SUN-SAT"],
        ),
        (
            ("    sql: planes.sql\n", "    sql: planes.sql\n    training: {lerning_rate: 0.1}\n"),
            ["synth.yaml:5:", "table 'planes'", "unknown config key 'training.lerning_rate'"],
        ),
        (
            ("    sql: planes.sql\n", "    sql: planes.sql\n    privacy: {dp_enabled: true, epsilon: -1}\n"),
            ["synth.yaml:5:", "table 'planes'", "config key 'privacy.epsilon'"],
        ),
        (
            ("    sql: planes.sql\n", "    sql: planes.sql\n    group_by: manufacturer\n"),
            ["both mapped and used to group"],
        ),
        (
            ("    sql: planes.sql\n", "    sql: planes.sql\n    group_by: year\n    evaluation: {target: year}\n"),
            ["evaluation names the group_by column(s) ['year'], which are made afresh"],
        ),
    ],
)
def test_spec_mistakes_name_the_line_and_table(tmp_path, raw_warehouse, change, expected):
    message = error(tmp_path, raw_warehouse, PLANES.replace(*change))
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("-- broken\nSELECT year\nFROM raw.planes WHERE (\n", "planes.sql:3:"),
        ("-- typo\nSELECT year,\n  seatz\nFROM raw.planes\n", "planes.sql:3:"),
        ("-- unknown table\nSELECT year\nFROM raw.aircraft\n", "planes.sql:3:"),
        ("SELECT year FROM raw.planes\n", "start the model with a `--` comment"),
        ("-- two\nSELECT 1;\nSELECT 2;\n", "exactly one SELECT"),
    ],
)
def test_sql_errors_name_the_file_and_line(tmp_path, raw_warehouse, sql, expected):
    path = write_spec(tmp_path, PLANES.replace("    filters: [planes_single_engine_seats.sql]\n", ""))
    (tmp_path / "sql" / "planes.sql").write_text(sql)
    with pytest.raises(SpecError) as caught:
        validate_spec(load_spec(path), raw_warehouse)
    assert expected in str(caught.value)
    assert "table 'planes'" in str(caught.value)


def test_filter_with_unknown_column_names_it(tmp_path, raw_warehouse):
    path = write_spec(tmp_path, PLANES)
    (tmp_path / "sql" / "filters" / "planes_single_engine_seats.sql").write_text("-- x\nengines > 1 OR\n  seets < 2\n")
    with pytest.raises(SpecError, match=r"planes_single_engine_seats.sql:3: .*'seets'"):
        validate_spec(load_spec(path), raw_warehouse)


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("no_such_fn(seats) > 1", "no_such_fn"),
        ("count(*) > 1", "aggregate"),
    ],
)
def test_a_filter_that_cannot_run_is_refused_at_load(tmp_path, raw_warehouse, condition, problem):
    path = write_spec(tmp_path, PLANES)
    (tmp_path / "sql" / "filters" / "planes_single_engine_seats.sql").write_text(f"-- x\n{condition}\n")
    with pytest.raises(SpecError) as caught:
        validate_spec(load_spec(path), raw_warehouse)
    message = str(caught.value)
    assert "planes_single_engine_seats.sql:1: table 'planes': the filter does not run on the prepared rows" in message
    assert problem in message


def test_filter_columns_ignore_case_as_duckdb_does(tmp_path, raw_warehouse):
    path = write_spec(tmp_path, PLANES)
    (tmp_path / "sql" / "filters" / "planes_single_engine_seats.sql").write_text("-- x\nSEATS > 0\n")
    assert validate_spec(load_spec(path), raw_warehouse)["planes"].filters[0].name == "planes_single_engine_seats.sql"


def test_missing_warehouse_names_the_remedy(tmp_path):
    from warehouse import Warehouse

    with pytest.raises(Exception, match="python -m warehouse.demo_data"):
        Warehouse(tmp_path / "none.duckdb").catalog()


def test_spec_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_SPEC", str(tmp_path / "other.yaml"))
    assert default_spec_path() == tmp_path / "other.yaml"
    with pytest.raises(SpecError, match="SYNTH_SPEC"):
        load_spec()


def test_duplicate_names_and_empty_specs_are_refused(tmp_path):
    path = tmp_path / "synth.yaml"
    path.write_text("tables: []\n")
    with pytest.raises(SpecError, match="non-empty `tables:`"):
        load_spec(path)
    path.write_text("tables:\n  - {name: a, source: raw.x}\n  - {name: a, source: raw.y}\n")
    with pytest.raises(SpecError, match=r"\['a'\] appear more than once"):
        load_spec(path)
    path.write_text("tables:\n  - {name: small, source: raw.x}\n  - {name: SMALL, source: raw.y}\n")
    with pytest.raises(SpecError, match=r"\['small'\] appear more than once \(names ignore case"):
        load_spec(path)
