"""`make demo`: load the demo tables, materialize every asset of synth.yaml in-process, show SQL.

Runs are recorded in `DAGSTER_HOME` when it is set (the Makefile points it at `.dagster_home/`),
so `make ui` afterwards shows the demo's materializations, metadata and checks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import dagster as dg

from dagster_project.definitions import build_definitions
from warehouse import Warehouse
from warehouse.demo_data import load_demo
from warehouse.query import run

EXAMPLES = Path(__file__).resolve().parent.parent / "sql" / "examples"
QUERIES = ["carrier_delays.sql", "what_produced_this_table.sql", "column_lineage.sql"]
LOG_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", help="synth.yaml to build (default: SYNTH_SPEC or the repository's synth.yaml)")
    parser.add_argument("--warehouse", help="DuckDB file (default: SYNTH_WAREHOUSE or warehouse/warehouse.duckdb)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    warehouse = Warehouse(args.warehouse)
    for name, rows in load_demo(warehouse, only_missing=True).items():
        print(f"loaded {name}: {rows} rows")
    defs = build_definitions(args.spec, warehouse.path)
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("refresh_all").execute_in_process(
        instance=instance, run_config=LOG_INFO, raise_on_error=False
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        print("\nthe demo run failed:\n" + "\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"\nmaterialized every asset in {time.perf_counter() - started:.0f}s; tables written to {warehouse.path}:")
    catalog = warehouse.catalog()
    for schema in ("prepared", "synthetic_raw", "synthetic", "meta"):
        for table, columns in catalog.get(schema, {}).items():
            rows = warehouse.scalar(f"SELECT count(*) FROM {schema}.{table}")
            print(f"  {schema + '.' + table:<26} {rows:>7} rows  {len(columns):>3} columns")
    for name in QUERIES:
        path = EXAMPLES / name
        print(f"\n-- sql/examples/{name}\n{path.read_text().strip()}\n{run(str(path), warehouse)}")


if __name__ == "__main__":
    main()
