"""Preparation models and filters: `.sql` files checked with sqlglot against the live warehouse.

A preparation model is one SELECT with a header comment (its description). A filter is one
condition over the prepared columns; generated rows where it is not true are dropped. Every
problem is reported as `FILE:LINE[:COL]` with the table it belongs to, before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify

from synth_model.errors import DataError
from warehouse.spec import Spec, SpecError, TableSpec, digest
from warehouse.store import Warehouse, catalog_of, in_catalog, is_lock_error
from warehouse.store import qualified as qualified_name
from warehouse.transforms import DIALECT, mapped_name, table_ref

Catalog = dict[str, dict[str, dict[str, str]]]
CATALOG_WAIT_S = 60.0  # how long loading the definitions waits for another process's write lock


@dataclass
class Preparation:
    """What one table's preparation step runs, and what it is known to produce."""

    table: str
    query: str  # the SELECT to run, as qualified, re-rendered SQL
    description: str
    columns: list[str]
    sources: list[str]  # schema.table read by the query
    lineage: dict[str, list[tuple[str, str]]]  # output column -> [(source table, source column)]
    sql_file: str | None = None
    sql_hash: str = ""


@dataclass
class Filter:
    name: str
    condition: exp.Expression
    description: str = ""


@dataclass
class Plan:
    """A validated table spec joined with what the warehouse says about it."""

    spec: TableSpec
    preparation: Preparation
    filters: list[Filter] = field(default_factory=list)


def header(text: str) -> str:
    """The leading `--` comment lines, joined: the model's description."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            lines.append(stripped.lstrip("-").strip())
        elif stripped:
            break
    return " ".join(line for line in lines if line)


def _located(path: Path, err: Exception, table: str, text: str) -> SpecError:
    """Turn a sqlglot error into `FILE:LINE:COL: table 'x': message`."""
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        return SpecError(f"{path}:{first['line']}:{first['col']}: table '{table}': SQL error: {first['description']}")
    message = str(err)
    found = re.search(r"Line: (\d+), Col: (\d+)", message)
    if found:
        message = message[: found.start()].rstrip(" .")
        return SpecError(f"{path}:{found[1]}:{found[2]}: table '{table}': {message}")
    name = re.search(r"'([^']+)'", message)
    return SpecError(f"{path}:{_line_of(text, name[1]) if name else 1}: table '{table}': {message}")


def _line_of(text: str, word: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(rf"\b{re.escape(word)}\b", line):
            return number
    return 1


def _sources(expression: exp.Expression) -> list[exp.Table]:
    ctes = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
    return [t for t in expression.find_all(exp.Table) if t.name not in ctes or t.db]


def prepare_plan(spec: Spec, table: TableSpec, con: duckdb.DuckDBPyConnection) -> Preparation:
    """Parse and check the table's preparation SQL (or `SELECT * FROM source`) against the warehouse.

    The SQL runs as written (DuckDB keeps the case of column names; sqlglot's qualified form
    would lowercase them); sqlglot's qualified form serves the checks and the column lineage.
    """
    catalog = catalog_of(con)
    _require_table(table, catalog, spec.where(table.name, "source"))
    if table.sql is None:
        path, text = None, f"-- all rows of {table.source}\nSELECT * FROM {qualified_name(table.source)}"
        parsed = exp.select(exp.Star()).from_(table_ref(table.source))
    else:
        path = spec.sql_path(table.sql)
        if not path.is_file():
            raise SpecError(
                f"{spec.where(table.name, 'sql')}: table '{table.name}': SQL file {path} does not exist; "
                f"preparation models live under {spec.root / 'sql'}"
            )
        text = path.read_text()
        if not header(text):
            raise SpecError(f"{path}:1: table '{table.name}': start the model with a `--` comment saying what it does")
        try:
            statements = [s for s in sqlglot.parse(text, dialect=DIALECT) if s is not None]
        except ParseError as err:
            raise _located(path, err, table.name, text) from None
        if len(statements) != 1 or not isinstance(statements[0], exp.Query):
            raise SpecError(f"{path}:1: table '{table.name}': a preparation model is exactly one SELECT statement")
        parsed = statements[0]
        for ref in _sources(parsed):
            name = f"{ref.db}.{ref.name}" if ref.db else ref.name
            if not ref.db or ref.name not in catalog.get(ref.db, {}):
                line = ref.this.meta.get("line") or _line_of(text, ref.name)
                known = sorted(f"{s}.{t}" for s, tables in catalog.items() for t in tables)
                raise SpecError(
                    f"{path}:{line}: table '{table.name}': unknown table {name} (write schema.table); "
                    f"warehouse tables: {known}"
                )
    where = path or Path(spec.where(table.name, "source"))
    try:
        qualified = qualify(parsed.copy(), schema=catalog, dialect=DIALECT)
    except (OptimizeError, ParseError) as err:
        raise _located(where, err, table.name, text) from None
    query = text.strip().rstrip(";").strip()
    try:
        columns = [row[0] for row in con.execute(f"DESCRIBE {query}\n").fetchall()]
    except duckdb.Error as err:
        raise SpecError(f"{where}: table '{table.name}': DuckDB cannot run the preparation: {err}") from None
    if len({c.lower() for c in columns}) != len(columns):
        raise SpecError(f"{where}: table '{table.name}': output columns repeat: {columns}; give each a unique alias")
    return Preparation(
        table=table.name,
        query=query,
        description=header(text) or f"All rows of {table.source}.",
        columns=columns,
        sources=sorted({f"{t.db}.{t.name}" for t in _sources(qualified)}),
        lineage=column_lineage(qualified, columns, catalog),
        sql_file=str(path) if path else None,
        sql_hash=digest(text),
    )


def column_lineage(query: exp.Expression, columns: list[str], catalog: Catalog) -> dict[str, list[tuple[str, str]]]:
    """Output column -> the source (table, column) pairs it is computed from, via `sqlglot.lineage`.

    sqlglot lowercases DuckDB's case-insensitive names; names are mapped back to the warehouse's.
    """
    selects = {name.lower(): name for name in query.named_selects}
    result = {}
    for column in columns:
        node = lineage(selects.get(column.lower(), column), query, schema=catalog, dialect=DIALECT)
        pairs = set()
        for leaf in node.walk():
            if not leaf.downstream and isinstance(leaf.expression, exp.Table):
                source = leaf.expression
                known = {c.lower(): c for c in catalog.get(source.db, {}).get(source.name, {})}
                name = exp.to_column(leaf.name).name
                pairs.add((f"{source.db}.{source.name}", known.get(name.lower(), name)))
        result[column] = sorted(pairs)
    return result


def load_filter(spec: Spec, table: TableSpec, name: str, columns: list[str]) -> Filter:
    path = spec.filter_path(name)
    if not path.is_file():
        raise SpecError(
            f"{spec.where(table.name, 'filters')}: table '{table.name}': filter file {path} does not exist; "
            f"filters live under {spec.root / 'sql' / 'filters'}"
        )
    text = path.read_text()
    try:
        condition = sqlglot.parse_one(text, dialect=DIALECT)
    except ParseError as err:
        raise _located(path, err, table.name, text) from None
    if isinstance(condition, (exp.Query, exp.DDL, exp.DML)) or condition is None:
        raise SpecError(f"{path}:1: table '{table.name}': a filter is one condition (`seats > 0`), not a statement")
    known = {c.lower() for c in columns}  # DuckDB matches column names ignoring case
    for column in condition.find_all(exp.Column):
        if column.name.lower() not in known:
            raise SpecError(
                f"{path}:{_line_of(text, column.name)}: table '{table.name}': filter uses column '{column.name}' "
                f"that the prepared rows do not have; columns: {columns}"
            )
    return Filter(name=name, condition=condition, description=header(text))


def validate_spec(spec: Spec, warehouse: Warehouse) -> dict[str, Plan]:
    """Check every table against the live warehouse; returns one Plan per table, in spec order."""
    plans, broken = usable_plans(spec, warehouse)
    if broken:
        raise next(iter(broken.values()))
    return plans


def usable_plans(spec: Spec, warehouse: Warehouse) -> tuple[dict[str, Plan], dict[str, SpecError]]:
    """The Plan of each table that passes the checks, and the error of each that does not.

    The checks need the warehouse's catalog, which another process's write lock hides: they wait
    for it longer than a step does (a step's failure is retried, a failed load is not).
    """
    plans, broken = {}, {}
    try:
        with warehouse.connect(read_only=True, wait_s=CATALOG_WAIT_S) as con:
            for table in spec.tables:
                try:
                    plans[table.name] = _plan(spec, table, con)
                except SpecError as err:
                    broken[table.name] = err
    except duckdb.IOException as err:
        if not is_lock_error(err):
            raise
        raise DataError(
            f"warehouse {warehouse.path} stayed locked by another process for {CATALOG_WAIT_S:.0f} s, and synth.yaml "
            f"is checked against its catalog ({str(err).splitlines()[0]}): let that process finish or stop it, "
            "then run again (or reload the code location)"
        ) from None
    return plans, broken


def _plan(spec: Spec, table: TableSpec, con: duckdb.DuckDBPyConnection) -> Plan:
    prep = prepare_plan(spec, table, con)
    keys = {
        "mapped_columns": [c for g in table.mapped_columns for c in g],
        "group_by": table.group_by or [],
        "order_by": table.order_by or [],
    }
    for key, names in keys.items():
        missing = [c for c in names if c not in prep.columns]
        if missing:
            raise SpecError(
                f"{spec.where(table.name, key)}: table '{table.name}': {key} names column(s) {missing} that the "
                f"prepared rows do not have; columns: {prep.columns}"
            )
    mapped = set(keys["mapped_columns"])
    clash = [c for c in keys["group_by"] + keys["order_by"] if c in mapped]
    if clash:
        raise SpecError(
            f"{spec.where(table.name, 'mapped_columns')}: table '{table.name}': column(s) {clash} are both mapped "
            "and used to group/order events; keep grouping and ordering columns out of mapped_columns"
        )
    taken = [mapped_name(g) for g in table.mapped_columns if mapped_name(g) in prep.columns]
    if taken:
        raise SpecError(
            f"{spec.where(table.name, 'mapped_columns')}: table '{table.name}': the joined column name(s) {taken} "
            "already exist in the prepared rows; rename those columns in the preparation SQL"
        )
    evaluated = [c for c in [table.evaluation.target, *(table.evaluation.quasi_identifiers or [])] if c]
    mapped_members = {c for g in table.mapped_columns for c in g}
    unusable = [c for c in evaluated if c not in prep.columns or c in mapped_members]
    if unusable:
        raise SpecError(
            f"{spec.where(table.name, 'evaluation')}: table '{table.name}': evaluation names column(s) {unusable} "
            f"that are not (unmapped) prepared columns; columns: {prep.columns}"
        )
    if grouped := sorted(set(evaluated) & set(keys["group_by"])):
        raise SpecError(
            f"{spec.where(table.name, 'evaluation')}: table '{table.name}': evaluation names the group_by "
            f"column(s) {grouped}, which are made afresh for each synthetic entity and left out of the "
            "evaluation: choose other columns"
        )
    filters = [load_filter(spec, table, name, prep.columns) for name in table.filters]
    for rule in filters:  # bound (not run) against the prepared rows: types, functions, aggregates
        try:
            con.execute(f"EXPLAIN SELECT * FROM ({prep.query}) AS s WHERE {rule.condition.sql(DIALECT)}")
        except duckdb.Error as err:
            raise SpecError(
                f"{spec.filter_path(rule.name)}:1: table '{table.name}': the filter does not run on the prepared "
                f"rows ({str(err).splitlines()[0]}); fix its condition"
            ) from None
    return Plan(spec=table, preparation=prep, filters=filters)


def _require_table(table: TableSpec, catalog: Catalog, where: str) -> None:
    name = table.source
    if not in_catalog(catalog, name):
        known = sorted(f"{s}.{t}" for s, tables in catalog.items() for t in tables if s == "raw") or ["(none)"]
        raise SpecError(
            f"{where}: table '{table.name}': source table {name} is not in the warehouse; raw tables: {known}. "
            "Load it (the demo: `python -m warehouse.demo_data`) or fix `source`"
        )
