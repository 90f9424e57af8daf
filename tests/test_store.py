"""Warehouse writes are atomic, checksums follow content and columns, readers get Arrow with types intact,
and another process's lock is waited for, then named."""

import datetime as dt
import subprocess
import sys

import duckdb
import pyarrow as pa
import pytest

from synth_model.errors import DataError
from warehouse import Warehouse, sql_models
from warehouse.spec import load_spec


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


def test_checksum_sees_column_names_and_types_that_row_hashes_do_not(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.connect() as con:
        con.execute("CREATE TABLE raw.t AS SELECT 1::BIGINT AS x, 2::BIGINT AS y")
        con.execute("CREATE TABLE raw.swapped AS SELECT 1::BIGINT AS y, 2::BIGINT AS x")
        con.execute("CREATE TABLE raw.narrow AS SELECT 1::INTEGER AS x, 2::INTEGER AS y")
    t, swapped, narrow = (wh.checksum(f"raw.{n}") for n in ("t", "swapped", "narrow"))
    assert t["checksum"] == swapped["checksum"] == narrow["checksum"]  # DuckDB's hash sees values only
    assert len({t["columns"], swapped["columns"], narrow["columns"]}) == 3


def test_loading_the_definitions_under_another_process_lock_waits_then_says_so(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("raw.t", pa.table({"a": [1, 2, 3]}))
    spec = tmp_path / "synth.yaml"
    spec.write_text("tables:\n  - name: t\n    source: raw.t\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(wh.path)!r}); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "1"  # the other process holds the write lock
        monkeypatch.setattr(sql_models, "CATALOG_WAIT_S", 1.0)
        with pytest.raises(DataError, match=r"stayed locked by another process for 1 s.*let that process finish"):
            sql_models.usable_plans(load_spec(spec), wh)
    finally:
        holder.kill()
        holder.wait()
    plans, broken = sql_models.usable_plans(load_spec(spec), wh)
    assert list(plans) == ["t"] and not broken
