"""Short-lived DuckDB connections, Arrow reads, atomic table swaps and content checksums.

DuckDB allows one writer process per file, so connections open for one step and close at once;
a lock held by another process is retried briefly before the error reaches the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from synth_model.errors import DataError
from synth_model.tables import quote_identifier

SCHEMAS = ("raw", "prepared", "synthetic_raw", "synthetic", "meta")
LOCK_WAIT_S = 10.0


def default_path() -> Path:
    """`SYNTH_WAREHOUSE`, else `warehouse/warehouse.duckdb` next to this package."""
    return Path(os.environ.get("SYNTH_WAREHOUSE") or Path(__file__).parent / "warehouse.duckdb")


def qualified(name: str) -> str:
    """`schema.table` quoted part by part."""
    return ".".join(quote_identifier(part) for part in name.split("."))


def staging_name(name: str) -> str:
    schema, table = name.split(".")
    return f"{schema}.__staging_{table}"


def is_lock_error(err: BaseException) -> bool:
    return isinstance(err, duckdb.IOException) and "lock" in str(err).lower()


class Warehouse:
    """One DuckDB file. Every method opens its own connection and closes it before returning."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    @contextmanager
    def connect(self, read_only: bool = False, wait_s: float = LOCK_WAIT_S) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, waiting up to `wait_s` for another process's lock (then DuckDB's error)."""
        if read_only and not self.path.is_file():
            raise DataError(
                f"warehouse {self.path} does not exist: load the demo data with "
                "`python -m warehouse.demo_data` (or `make demo`), or point SYNTH_WAREHOUSE at your DuckDB file"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as err:
                if not is_lock_error(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            if not read_only:
                for schema in SCHEMAS:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            yield con
        finally:
            con.close()

    # ----------------------------------------------------------------- reads
    def catalog(self) -> dict[str, dict[str, dict[str, str]]]:
        with self.connect(read_only=True) as con:
            return catalog_of(con)

    def exists(self, name: str) -> bool:
        return self.path.is_file() and in_catalog(self.catalog(), name)

    def read(self, query: str) -> pa.Table:
        with self.connect(read_only=True) as con:
            return con.sql(query).to_arrow_table()

    def read_table(self, name: str) -> pa.Table:
        return self.read(f"SELECT * FROM {qualified(name)}")

    def scalar(self, query: str):
        with self.connect(read_only=True) as con:
            return con.execute(query).fetchone()[0]

    def checksum(self, name: str) -> dict:
        """Row count, content checksum and column checksum of one table (`table_checksum`)."""
        with self.connect(read_only=True) as con:
            return table_checksum(con, name)

    # ---------------------------------------------------------------- writes
    def write(self, name: str, data: pa.Table | str, check=None, after=None) -> int:
        """Replace table `name` atomically with an Arrow table or the result of a SELECT.

        The rows go to a staging table first and `check(con, staging)` may reject them; the swap
        (drop + rename) and `after(con)` (e.g. an audit row) commit in one transaction, so readers
        never see a half-written table and a failure leaves the previous table as it was.
        Returns the row count.
        """
        staging = staging_name(name)
        with self.connect() as con:
            con.execute(f"DROP TABLE IF EXISTS {qualified(staging)}")
            try:
                if isinstance(data, pa.Table):
                    con.register("incoming_rows", data)
                    con.execute(f"CREATE TABLE {qualified(staging)} AS SELECT * FROM incoming_rows")
                    con.unregister("incoming_rows")
                else:
                    con.execute(f"CREATE TABLE {qualified(staging)} AS {data}")
                rows = con.execute(f"SELECT count(*) FROM {qualified(staging)}").fetchone()[0]
                if check is not None:
                    check(con, staging)
                swap(con, staging, name, after)
            finally:
                con.execute(f"DROP TABLE IF EXISTS {qualified(staging)}")
            return rows


def swap(con: duckdb.DuckDBPyConnection, staging: str, name: str, after=None) -> None:
    """Rename `staging` over `name` (and run `after(con)`) in one transaction."""
    table = name.split(".")[1]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DROP TABLE IF EXISTS {qualified(name)}")
        con.execute(f"ALTER TABLE {qualified(staging)} RENAME TO {quote_identifier(table)}")
        if after is not None:
            after(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def table_checksum(con: duckdb.DuckDBPyConnection, name: str) -> dict:
    """Rows, a checksum of the values (sum of row hashes: order-independent) and one of the columns'
    names and types, which a row's hash does not see (a rename or a swap of two columns' names
    changes no value)."""
    query = f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {qualified(name)} t"
    rows, total = con.execute(query).fetchone()
    columns = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {qualified(name)})").fetchall()
    layout = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]
    return {"rows": int(rows), "checksum": f"{int(total) % 2**64:016x}", "columns": layout}


def in_catalog(catalog: dict[str, dict], name: str) -> bool:
    """Whether `schema.table` is in a `catalog_of` result."""
    schema, table = name.split(".")
    return table in catalog.get(schema, {})


def catalog_of(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, dict[str, str]]]:
    """{schema: {table: {column: type}}} of every table, in column order (sqlglot's schema shape)."""
    rows = con.sql(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall()
    catalog: dict[str, dict[str, dict[str, str]]] = {}
    for schema, table, column, dtype in rows:
        catalog.setdefault(schema, {}).setdefault(table, {})[column] = dtype
    return catalog
