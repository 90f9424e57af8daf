"""Audit tables in `meta`: what each step did, and what produced each published table version.

- `meta.steps`: one row per finished step (prepared, model, synthetic_raw, synthetic) with details.
- `meta.lineage`: one row per published table version: run, sources and their checksums, SQL,
  model, config, rows in and out, valid fraction, post-processing counts, times.
- `meta.column_lineage`: synthetic column -> source table and column, per version.
- `meta.evaluations`: one row per evaluation run and metric (quality, privacy and their parts).
Rows are written in the same transaction as the table swap they describe.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb

DDL = """
CREATE TABLE IF NOT EXISTS meta.steps (
    table_name VARCHAR, step VARCHAR, run_id VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP, details VARCHAR
);
CREATE TABLE IF NOT EXISTS meta.lineage (
    table_name VARCHAR, version INTEGER, run_id VARCHAR,
    source_tables VARCHAR[], source_checksums VARCHAR,
    sql_file VARCHAR, sql_hash VARCHAR,
    model_path VARCHAR, model_id VARCHAR, config_hash VARCHAR,
    rows_in BIGINT, rows_generated BIGINT, rows_out BIGINT, valid_fraction DOUBLE,
    dropped_unseen_mappings BIGINT, dropped_by_filters VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS meta.evaluations (
    table_name VARCHAR, run_id VARCHAR, model_id VARCHAR, metric VARCHAR, value DOUBLE, evaluated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS meta.column_lineage (
    table_name VARCHAR, version INTEGER, column_name VARCHAR, source_table VARCHAR, source_column VARCHAR
);
"""

LINEAGE_COLUMNS = [
    "table_name", "version", "run_id", "source_tables", "source_checksums", "sql_file", "sql_hash",
    "model_path", "model_id", "config_hash", "rows_in", "rows_generated", "rows_out", "valid_fraction",
    "dropped_unseen_mappings", "dropped_by_filters", "started_at", "finished_at",
]  # fmt: skip


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def log_step(
    con: duckdb.DuckDBPyConnection, table: str, step: str, run_id: str, started_at: datetime, details: dict
) -> None:
    ensure(con)
    con.execute(
        "INSERT INTO meta.steps VALUES (?, ?, ?, ?, ?, ?)",
        [table, step, run_id, started_at, now(), json.dumps(details, default=str)],
    )


def latest_step(con: duckdb.DuckDBPyConnection, table: str, step: str) -> dict | None:
    """Details of the most recent finished `step` for `table`, or None if it never ran."""
    if not _has(con, "steps"):
        return None
    row = con.execute(
        "SELECT run_id, details FROM meta.steps WHERE table_name = ? AND step = ? ORDER BY finished_at DESC LIMIT 1",
        [table, step],
    ).fetchone()
    return None if row is None else {"run_id": row[0], **json.loads(row[1])}


def ran_step(con: duckdb.DuckDBPyConnection, table: str, step: str, run_id: str) -> bool:
    """Whether run `run_id` finished `step` for `table`."""
    query = "SELECT count(*) FROM meta.steps WHERE table_name = ? AND step = ? AND run_id = ?"
    return _has(con, "steps") and con.execute(query, [table, step, run_id]).fetchone()[0] > 0


def next_version(con: duckdb.DuckDBPyConnection, table_name: str) -> int:
    ensure(con)
    query = "SELECT coalesce(max(version), 0) + 1 FROM meta.lineage WHERE table_name = ?"
    return con.execute(query, [table_name]).fetchone()[0]


def record_publication(con: duckdb.DuckDBPyConnection, row: dict, columns: dict[str, list[tuple[str, str]]]) -> None:
    """Insert the lineage row and one column-lineage row per (column, source column)."""
    ensure(con)
    placeholders = ", ".join("?" for _ in LINEAGE_COLUMNS)
    con.execute(
        f"INSERT INTO meta.lineage ({', '.join(LINEAGE_COLUMNS)}) VALUES ({placeholders})",
        [row[c] for c in LINEAGE_COLUMNS],
    )
    rows = [
        (row["table_name"], row["version"], column, source_table, source_column)
        for column, sources in columns.items()
        for source_table, source_column in (sources or [(None, None)])
    ]
    con.executemany("INSERT INTO meta.column_lineage VALUES (?, ?, ?, ?, ?)", rows)


def latest_publication(con: duckdb.DuckDBPyConnection, table_name: str) -> dict | None:
    if not _has(con, "lineage"):
        return None
    cursor = con.execute("SELECT * FROM meta.lineage WHERE table_name = ? ORDER BY version DESC LIMIT 1", [table_name])
    row = cursor.fetchone()
    return None if row is None else dict(zip([d[0] for d in cursor.description], row, strict=True))


def _has(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'meta' AND table_name = ?", [table]
        ).fetchone()[0]
    )


def record_evaluation(con: duckdb.DuckDBPyConnection, table: str, run_id: str, model_id: str, metrics: dict) -> None:
    ensure(con)
    at = now()
    rows = [(table, run_id, model_id, name, value, at) for name, value in metrics.items() if value is not None]
    con.executemany("INSERT INTO meta.evaluations VALUES (?, ?, ?, ?, ?, ?)", rows)
