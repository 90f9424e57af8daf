"""Reading input tables (.csv, .parquet, .jsonl, DuckDB) and writing outputs atomically."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from synth_model.errors import DataError

READERS = {".csv": pacsv.read_csv, ".parquet": pq.read_table, ".jsonl": pajson.read_json}
WRITERS = {".parquet": pq.write_table, ".csv": pacsv.write_csv}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_duckdb(database: str | Path, table: str) -> pa.Table:
    """`schema.table` (or `table`) from a DuckDB file, opened read-only and closed at once."""
    import duckdb

    path = Path(database)
    if not path.is_file():
        raise DataError(f"DuckDB file {path} does not exist")
    # split on dots outside double quotes; a quoted part is unquoted ("" stands for a quote)
    parts = [q.replace('""', '"') if q else p for q, p in re.findall(r'"((?:[^"]|"")*)"|([^.]+)', table)]
    qualified = ".".join(quote_identifier(part) for part in parts)
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise DataError(f"{path} could not be opened as a DuckDB database ({err})") from None
    with con:
        try:
            return con.sql(f"SELECT * FROM {qualified}").to_arrow_table()
        except duckdb.CatalogException:
            names = [".".join(r) for r in con.sql("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()]
            raise DataError(f"table {table} is not in {path}; tables there: {names}") from None


def read_input(spec: str) -> pa.Table:
    """A table from `FILE.csv|.parquet|.jsonl` or `duckdb:FILE.duckdb:schema.table`."""
    if spec.startswith("duckdb:"):
        parts = spec.split(":")
        if len(parts) != 3:
            raise DataError(f"'{spec}' is not of the form duckdb:FILE.duckdb:schema.table")
        return read_duckdb(parts[1], parts[2])
    path = Path(spec)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"input {path} must end in .csv, .parquet or .jsonl, or be duckdb:FILE:schema.table")
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    try:
        return reader(str(path))
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"could not read {path}: {err}") from None


def writable_parent(path: Path) -> None:
    """Create `path`'s folder if needed and make sure files can be written there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create folder {path.parent} ({err.strerror}): choose a writable path") from None
    if not os.access(path.parent, os.W_OK):
        raise DataError(f"folder {path.parent} is not writable: choose a writable path")


def output_file(path: str | Path) -> Path:
    """Where `write_output` can write: a .parquet or .csv path that is not a folder, in a writable folder.
    Checked before the work that produces the rows, too."""
    path = Path(path)
    if path.suffix.lower() not in WRITERS:
        raise DataError(f"output {path} must end in .parquet or .csv")
    if path.is_dir():
        raise DataError(f"output {path} is a folder: name a file")
    writable_parent(path)
    return path


def write_output(table: pa.Table, path: str | Path) -> Path:
    """Write .parquet or .csv whole or not at all (see `replace_whole`)."""
    path = output_file(path)
    writer = WRITERS[path.suffix.lower()]
    replace_whole(path, lambda tmp: writer(table, str(tmp)))
    return path


def replace_whole(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a temp file beside `path`, then rename it into place, so no half-written file remains.
    The temp file gets the umask's permissions, as a file written directly would (mkstemp's are 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def as_arrow(table) -> pa.Table:
    """Accept an Arrow table or a pandas frame (the pandas index is dropped). Decimal columns become
    float64: the model learns them as numbers with the decimals they use, and a warehouse casts the
    published rows back to its DECIMAL type."""
    if isinstance(table, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(table, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise DataError(
                f"the DataFrame cannot be converted to a table ({err}); give each column one type "
                "(e.g. pd.to_numeric(..., errors='coerce') for numbers with stray strings)"
            ) from None
    if not isinstance(table, pa.Table):
        raise DataError(f"expected a pyarrow.Table or pandas.DataFrame, got {type(table).__name__}")
    decimal = [i for i, f in enumerate(table.schema) if pa.types.is_decimal(f.type)]
    for i in decimal:
        table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.float64()))
    return table
