"""The sqlglot-built transforms on a real DuckDB file: concat/split round trip, unseen drops, filters."""

import datetime as dt

import pyarrow as pa
import sqlglot

from warehouse import Warehouse
from warehouse.transforms import (
    mapped_name,
    seen_condition,
    separator_check_query,
    split_query,
    training_query,
    where_query,
)

ROWS = pa.table(
    {
        "city": ["Lyon", "Paris", None, "Lyon"],
        "zip": pa.array([69001, 75001, 13001, None], pa.int64()),
        "day": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), None, dt.date(2024, 1, 4)],
        "amount": [1.5, 2.25, 3.0, None],
    }
)
GROUP = [["city", "zip", "day"]]


def test_concat_then_split_restores_values_types_and_nulls(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("prepared.t", ROWS)
    joined = wh.read(training_query("prepared.t", ROWS.column_names, GROUP, ["amount"]))
    assert joined.column_names == [mapped_name(GROUP[0]), "amount"]
    assert joined.column(0).to_pylist()[0] == "Lyon | 69001 | 2024-01-01"
    wh.write("synthetic_raw.t", joined)
    with wh.connect(read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 't' AND table_schema = 'prepared'"
            ).fetchall()
        )
    back = wh.read(split_query("synthetic_raw.t", types, GROUP) + " ORDER BY amount")
    expected = wh.read("SELECT * FROM prepared.t ORDER BY amount")
    assert back.schema == expected.schema
    assert back.to_pylist() == expected.to_pylist()


def test_separator_inside_a_value_is_found(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("prepared.t", pa.table({"a": ["x | y", "z", "\\N"], "b": ["1", "2", "3"]}))
    assert wh.read(separator_check_query("prepared.t", [["a", "b"]])).to_pylist() == [{"a": 2, "b": 0}]


def test_unseen_combinations_are_dropped_and_filters_count(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("prepared.t", ROWS)
    generated = pa.table(
        {
            "city": ["Lyon", "Lyon", None, "Paris"],
            "zip": pa.array([69001, 75001, 13001, 75001], pa.int64()),  # Lyon/75001 never occurs
            "day": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), None, dt.date(2024, 1, 2)],
            "amount": [1.0, 2.0, 3.0, -4.0],
        }
    )
    wh.write("synthetic_raw.t", generated)
    with wh.connect() as con:
        con.execute("CREATE TEMP TABLE g AS SELECT * FROM synthetic_raw.t")
        kept = con.sql(where_query("g", "s", seen_condition("s", "prepared.t", GROUP))).fetchall()
        assert [r[0] for r in kept] == ["Lyon", None, "Paris"]  # the NULL city matches the NULL city
        condition = sqlglot.parse_one("amount > 0", dialect="duckdb")
        con.execute("CREATE TEMP TABLE k AS " + where_query("g", "s", seen_condition("s", "prepared.t", GROUP)))
        dropped = con.sql(f"SELECT count(*) FROM ({where_query('k', 's', condition, keep=False)})").fetchall()[0][0]
        remaining = con.sql(f"SELECT count(*) FROM ({where_query('k', 's', condition)})").fetchall()[0][0]
    assert (dropped, remaining) == (1, 2)


def test_a_generated_mapped_value_whose_parts_do_not_parse_is_left_out(tmp_path):
    """A many-valued mapped group is learned as free text: garbage must not fail the split."""
    wh = Warehouse(tmp_path / "w.duckdb")
    name = mapped_name(GROUP[0])
    generated = pa.table(
        {
            name: ["Lyon | 69001 | 2024-01-01", "Lyon | x9 | 2024-01-01", "Paris | 75001 | 2024-13-45", "Paris"],
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    wh.write("synthetic_raw.t", generated)
    types = {"city": "VARCHAR", "zip": "BIGINT", "day": "DATE", "amount": "DOUBLE"}
    back = wh.read(split_query("synthetic_raw.t", types, GROUP))
    assert back.to_pylist() == [{"city": "Lyon", "zip": 69001, "day": dt.date(2024, 1, 1), "amount": 1.0}]
