"""Run a SQL query (text or a .sql file) against the warehouse, read-only, and print the result.

python -m warehouse.query sql/examples/what_produced_this_table.sql
python -m warehouse.query "SELECT count(*) FROM synthetic.planes"
python -m warehouse.query --all "SELECT * FROM meta.lineage"
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import duckdb

from synth_model.errors import SynthError
from warehouse.store import Warehouse

WIDE = 6  # columns beyond which a single-row result prints vertically


def run(query: str, warehouse: Warehouse, everything: bool = False) -> str:
    """The result as a text table (DuckDB's own rendering: 20 rows and the columns that fit, unless
    `everything`); one wide row is shown as `column: value` lines."""
    path = Path(query)
    if query.endswith(".sql"):
        if not path.is_file():
            raise SynthError(f"SQL file {path} does not exist")
        query = path.read_text()
    with warehouse.connect(read_only=True) as con:
        if (statements := len(con.extract_statements(query))) > 1:
            raise SynthError(f"the query holds {statements} statements and only one result can be shown: give one")
        result = con.sql(query)
        if result is None:
            raise SynthError(
                "the query returns no rows to show (it is empty, only comments, or not a query): give a SELECT"
            )
        if len(result.columns) > WIDE:
            rows = result.fetchall()
            if len(rows) == 1:
                width = max(len(c) for c in result.columns)
                values = ["NULL" if v is None else v for v in rows[0]]
                return "\n".join(f"{c:>{width}}: {v}" for c, v in zip(result.columns, values, strict=True))
        if not everything:
            return str(result)
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown):
            result.show(max_rows=sys.maxsize, max_width=sys.maxsize, max_col_width=sys.maxsize)
        return shown.getvalue().rstrip("\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", help="SQL text or a .sql file")
    parser.add_argument("--warehouse", help="DuckDB file (default: SYNTH_WAREHOUSE or warehouse/warehouse.duckdb)")
    parser.add_argument("--all", action="store_true", help="every row, column and whole value (default: 20 rows)")
    args = parser.parse_args(argv)
    try:
        print(run(args.query, Warehouse(args.warehouse), args.all))
    except (SynthError, duckdb.Error) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
