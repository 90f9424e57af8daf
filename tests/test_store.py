"""Warehouse writes are atomic, checksums follow content, and readers get Arrow with types intact."""

import datetime as dt

import duckdb
import pyarrow as pa
import pytest

from synth_model.errors import DataError
from warehouse import Warehouse


def test_arrow_round_trip_keeps_types_and_nulls(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    table = pa.table(
        {
            "n": pa.array([1, None, 3], pa.int64()),
            "x": pa.array([0.5, 1.25, None]),
            "d": pa.array([dt.date(2024, 1, 2), None, dt.date(2023, 5, 6)]),
            "s": pa.array(["a", None, "c"]),
        }
    )
    assert wh.write("raw.t", table) == 3
    back = wh.read_table("raw.t")
    assert back.schema.types == table.schema.types
    assert back.to_pylist() == table.to_pylist()


def test_failed_write_leaves_the_previous_table_and_no_staging(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("synthetic.t", pa.table({"a": [1, 2]}))
    with pytest.raises(duckdb.ConversionException):
        wh.write("synthetic.t", "SELECT CAST('not a number' AS INTEGER) AS a")

    def refuse(con, staging):
        raise DataError("no")

    with pytest.raises(DataError):
        wh.write("synthetic.t", pa.table({"a": [9]}), check=refuse)
    assert wh.read_table("synthetic.t").column("a").to_pylist() == [1, 2]
    assert "__staging_t" not in wh.catalog()["synthetic"]


def test_audit_hook_rolls_back_with_the_swap(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("synthetic.t", pa.table({"a": [1]}))

    def broken_audit(con):
        con.execute("INSERT INTO meta.nowhere VALUES (1)")

    with pytest.raises(duckdb.CatalogException):
        wh.write("synthetic.t", pa.table({"a": [5, 6]}), after=broken_audit)
    assert wh.read_table("synthetic.t").column("a").to_pylist() == [1]


def test_checksum_follows_content_not_order(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("raw.t", pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    first = wh.checksum("raw.t")
    wh.write("raw.t", pa.table({"a": [3, 1, 2], "b": ["z", "x", "y"]}))
    assert wh.checksum("raw.t") == first
    wh.write("raw.t", pa.table({"a": [3, 1, 2], "b": ["z", "x", "Y"]}))
    changed = wh.checksum("raw.t")
    assert changed["rows"] == 3 and changed["checksum"] != first["checksum"]
    wh.write("raw.t", pa.table({"a": [1, 1, 2, 3], "b": ["x", "x", "y", "z"]}))
    assert wh.checksum("raw.t")["rows"] == 4
