"""The four steps of one synthetic table, each reading and writing the warehouse by table name.

prepare (SQL model -> `prepared.T`) -> train (`model` folder, reused when its inputs are unchanged)
-> generate (`synthetic_raw.T`: every valid record) -> publish (split, drop unseen mappings, filter,
check, swap into `synthetic.T` with lineage). Each returns plain values for whoever reports them
(Dagster metadata, the CLI); each writes atomically and logs itself in `meta.steps`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from synth_model import Synthesizer
from synth_model.errors import DataError
from synth_model.evaluate.report import save_report
from synth_model.evaluate.sequences import sequence_stats
from synth_model.privacy.pii import PiiMapper
from synth_model.synthesizer import MODEL_FORMAT
from warehouse import audit
from warehouse.spec import digest
from warehouse.sql_models import Plan
from warehouse.store import Warehouse, qualified, staging_name, swap, table_checksum
from warehouse.transforms import (
    DIALECT,
    concat_expr,
    distinct_query,
    mapped_name,
    seen_condition,
    separator_check_query,
    split_query,
    training_query,
    where_query,
)

Log = Callable[[str], None]
MODELS_KEPT = 3  # model folders kept per table (the newest), so a rollback needs no retraining
PII_SECRET_ENV = "SYNTH_PII_SECRET"  # key of the PII mapping; else a random one kept in the models folder


@dataclass
class Check:
    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def names(table: str) -> dict[str, str]:
    return {step: f"{step}.{table}" for step in ("prepared", "synthetic_raw", "synthetic")}


def column_types(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    schema, table = name.split(".")
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return dict(rows)


def _require_step(con: duckdb.DuckDBPyConnection, table: str, step: str, before: str) -> dict:
    details = audit.latest_step(con, table, step)
    if details is None:
        raise DataError(f"table '{table}' has no {step} step yet: materialize {step}/{table} before {before}")
    return details


# --------------------------------------------------------------------------- prepare
def prepare(warehouse: Warehouse, plan: Plan, run_id: str) -> dict:
    """Run the preparation model into `prepared.T`; refuse rows the mapped-column join cannot carry."""
    started = audit.now()
    t0 = time.perf_counter()
    prep, spec = plan.preparation, plan.spec
    target = names(spec.name)["prepared"]
    with warehouse.connect(read_only=True) as con:
        sources = {name: table_checksum(con, name) for name in prep.sources}

    def check(con: duckdb.DuckDBPyConnection, staging: str) -> None:
        if con.execute(f"SELECT count(*) FROM {qualified(staging)}").fetchone()[0] == 0:
            raise DataError(
                f"table '{spec.name}': the preparation {prep.sql_file or spec.source} returned no rows; "
                "fix its WHERE clause or load the source table"
            )
        if spec.mapped_columns:
            counts = con.execute(separator_check_query(staging, spec.mapped_columns)).fetchone()
            bad = {c: n for c, n in zip([c for g in spec.mapped_columns for c in g], counts, strict=True) if n}
            if bad:
                raise DataError(
                    f"table '{spec.name}': mapped column value(s) contain the join separator ' | ' or equal '\\N' "
                    f"(rows per column: {bad}); replace those characters in the preparation SQL"
                )

    details = {"sources": sources, "sql_file": prep.sql_file, "sql_hash": prep.sql_hash}
    rows = warehouse.write(
        target,
        prep.query,
        check=check,
        after=lambda con: audit.log_step(con, spec.name, "prepared", run_id, started, details | _content(con, target)),
    )
    with warehouse.connect(read_only=True) as con:
        types = column_types(con, target)
    return {"table": target, "rows": rows, "types": types, "sources": sources, "seconds": time.perf_counter() - t0}


def _content(con: duckdb.DuckDBPyConnection, name: str) -> dict:
    return {"content": table_checksum(con, name)}


# ----------------------------------------------------------------------------- train
def run_pii_mapper(models_root: Path, run_id: str, locale: str) -> PiiMapper:
    """One PII mapping per run: every table trained in the run maps a real value to the same fake.

    The run's secret is HMAC(key, run id); the key comes from $SYNTH_PII_SECRET, or from a random file
    created once (mode 600) in the models folder. Without the key nobody can test a guessed real value.
    """
    key = os.environ.get(PII_SECRET_ENV, "").encode()
    if not key:
        path = Path(models_root) / ".pii_secret"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        key = path.read_text().strip().encode()
    return PiiMapper(hmac.new(key, run_id.encode(), hashlib.sha256).digest(), locale)


def train(warehouse: Warehouse, plan: Plan, models_root: Path, run_id: str, log: Log = print) -> dict:
    """Fit the engine on the prepared rows, or reuse the model already fitted on the same inputs."""
    started = audit.now()
    spec = plan.spec
    prepared = names(spec.name)["prepared"]
    with warehouse.connect(read_only=True) as con:
        _require_step(con, spec.name, "prepared", f"model/{spec.name}")
        content = table_checksum(con, prepared)
        columns = list(column_types(con, prepared))
    query = training_query(prepared, columns, spec.mapped_columns, (spec.group_by or []) + (spec.order_by or []))
    config = spec.engine_config()
    model_id = digest(content, query, config.dump(), MODEL_FORMAT)
    model_dir = Path(models_root) / spec.name / model_id
    retrained = not (model_dir / "config.yaml").is_file()
    if retrained:
        table = warehouse.read(query)
        log(f"{spec.name}: training on {table.num_rows} prepared rows ({table.num_columns} columns)")
        mapper = run_pii_mapper(models_root, run_id, config.replace_pii.locale)
        synth = Synthesizer(config, pii_mapper=mapper)
        synth.fit(table, progress=_every(log, spec.name, "training", "step", "steps"))
        synth.save(model_dir)
        metrics = synth.metrics
        resolved = synth.config.dump()
        _prune(model_dir.parent, keep=model_dir)
    else:
        log(f"{spec.name}: inputs unchanged since model {model_id} was trained; reusing it")
        synth = Synthesizer.load(model_dir)
        metrics, resolved = synth.metrics, synth.config.dump()
    details = {
        "model_id": model_id,
        "model_path": str(model_dir),
        "retrained": retrained,
        "content": content,
        "config_hash": digest(resolved),
        "training_query": query,
    }
    with warehouse.connect() as con:
        audit.log_step(con, spec.name, "model", run_id, started, details)
    return details | {"metrics": metrics, "config": resolved, "pii": synth.pii}


def _every(log: Log, table: str, what: str, done_key: str, total_key: str, parts: int = 10):
    """A progress callback that logs about `parts` times over a long step, with rate and ETA."""
    state = {"next": 0.0}

    def report(info: dict) -> None:
        fraction = info[done_key] / max(info[total_key], 1)
        if fraction >= state["next"] or fraction >= 1:
            state["next"] = fraction + 1 / parts
            rate = info.get("tokens_per_s") or info.get("records_per_s") or 0
            unit = "tokens/s" if "tokens_per_s" in info else "records/s"
            eta = f", ETA {info['eta_s']:.0f}s" if "eta_s" in info else ""
            loss = f", loss {info['loss']:.3f}" if "loss" in info else ""
            log(f"{table}: {what} {info[done_key]}/{info[total_key]} ({rate:.0f} {unit}{loss}{eta})")

    return report


def _prune(folder: Path, keep: Path) -> None:
    others = sorted((p for p in folder.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
    for old in others[: max(0, len(others) - (MODELS_KEPT - 1))]:
        shutil.rmtree(old, ignore_errors=True)


# -------------------------------------------------------------------------- generate
def generate(warehouse: Warehouse, plan: Plan, run_id: str, log: Log = print) -> dict:
    """Sample `generation.num_records` valid records into `synthetic_raw.T` (the engine's shape)."""
    started = audit.now()
    spec = plan.spec
    with warehouse.connect(read_only=True) as con:
        model = _require_step(con, spec.name, "model", f"synthetic_raw/{spec.name}")
    model_dir = Path(model["model_path"])
    if not (model_dir / "config.yaml").is_file():
        raise DataError(f"model folder {model_dir} is gone: materialize model/{spec.name} again")
    synth = Synthesizer.load(model_dir)
    log(f"{spec.name}: generating {synth.config.generation.num_records} records with model {model['model_id']}")
    result = synth.generate_with_stats(progress=_every(log, spec.name, "generation", "valid", "target"))
    stats = result.stats | {"model_id": model["model_id"], "model_path": str(model_dir)}
    target = names(spec.name)["synthetic_raw"]
    rows = warehouse.write(
        target, result.table, after=lambda con: audit.log_step(con, spec.name, "synthetic_raw", run_id, started, stats)
    )
    return stats | {"table": target, "rows": rows, "preview": result.table.slice(0, 10)}


# -------------------------------------------------------------------------- evaluate
def scores(result: dict) -> dict[str, float | None]:
    """The evaluation's numbers, flat: overall and per-measure scores, copy rate, utility."""
    flat = {"quality": result["quality"]["overall"]["score"], "privacy": result["privacy"]["overall"]["score"]}
    for section in ("quality", "privacy"):
        flat |= {name: part.get("score") for name, part in result[section].items() if name != "overall"}
    flat["exact_copy_rate"] = result["exact_copy_rate"]
    flat["sdmetrics_quality"] = result["sdmetrics"]["quality_overall"]
    if result.get("utility"):
        for side in ("train_real", "train_synthetic"):
            flat |= {f"utility_{side}_{k}": v for k, v in result["utility"][side].items()}
    return flat


def evaluate(warehouse: Warehouse, plan: Plan, run_id: str, reports_root: Path, log: Log = print) -> dict:
    """Quality and privacy of `synthetic_raw.T` against the prepared rows; report files + meta rows + gates."""
    started = audit.now()
    spec = plan.spec
    with warehouse.connect(read_only=True) as con:
        model = _require_step(con, spec.name, "model", f"report/{spec.name}")
        generated = _require_step(con, spec.name, "synthetic_raw", f"report/{spec.name}")
    synth = Synthesizer.load(model["model_path"])
    real = warehouse.read(model["training_query"])
    synthetic = warehouse.read_table(names(spec.name)["synthetic_raw"])
    log(f"{spec.name}: evaluating {synthetic.num_rows} synthetic rows against {real.num_rows} real rows")
    result = synth.evaluate(real, synthetic, spec.evaluation.target, spec.evaluation.quasi_identifiers)
    paths = save_report(result, Path(reports_root) / spec.name / run_id, title=f"synthetic.{spec.name}")
    flat = scores(result)
    with warehouse.connect() as con:
        audit.record_evaluation(con, spec.name, run_id, generated["model_id"], flat)
        audit.log_step(con, spec.name, "report", run_id, started, {"report": str(paths["html"]), **flat})
    gates = spec.gates
    checks = []
    for name, value, floor, ceiling in (
        ("quality_gate", flat["quality"], gates.min_quality, None),
        ("privacy_gate", flat["privacy"], gates.min_privacy, None),
        ("exact_copy_gate", flat["exact_copy_rate"], None, gates.max_exact_copy_rate),
    ):
        if floor is None and ceiling is None:
            continue
        passed = value is not None and (floor is None or value >= floor) and (ceiling is None or value <= ceiling)
        bound = f">= {floor}" if floor is not None else f"<= {ceiling}"
        shown = "no score" if value is None else f"{value:.3f}"
        checks.append(Check(name, passed, f"{shown} {'meets' if passed else 'misses'} the gate {bound}", {}))
    return {"result": result, "scores": flat, "paths": paths, "checks": checks}


# --------------------------------------------------------------------------- publish
def publish(warehouse: Warehouse, plan: Plan, run_id: str, started_at: datetime | None = None) -> dict:
    """Post-process `synthetic_raw.T`, run the publication checks, and swap into `synthetic.T` if all pass.

    Returns counts, the checks and whether the table was published; a failed check leaves the
    previously published table and its lineage as they were.
    """
    started = started_at or audit.now()
    spec = plan.spec
    table = names(spec.name)
    target = table["synthetic"]
    staging = staging_name(target)
    with warehouse.connect() as con:
        prepared_step = _require_step(con, spec.name, "prepared", f"synthetic/{spec.name}")
        model_step = _require_step(con, spec.name, "model", f"synthetic/{spec.name}")
        generated = _require_step(con, spec.name, "synthetic_raw", f"synthetic/{spec.name}")
        types = column_types(con, table["prepared"])
        split = split_query(table["synthetic_raw"], types, spec.mapped_columns)
        con.execute(f"CREATE TEMP TABLE split_rows AS {split}")
        generated_rows = con.execute("SELECT count(*) FROM split_rows").fetchone()[0]
        seen = seen_condition("s", table["prepared"], spec.mapped_columns)
        con.execute(f"CREATE TEMP TABLE kept AS {where_query('split_rows', 's', seen)}")
        kept = con.execute("SELECT count(*) FROM kept").fetchone()[0]
        dropped_by_filters = {}
        for rule in plan.filters:
            dropped = con.execute(f"SELECT count(*) FROM ({where_query('kept', 's', rule.condition, keep=False)})")
            dropped_by_filters[rule.name] = dropped.fetchone()[0]
            con.execute(f"CREATE OR REPLACE TEMP TABLE kept AS {where_query('kept', 's', rule.condition)}")
        con.execute(f"DROP TABLE IF EXISTS {qualified(staging)}")
        order = ", ".join(f'"{c}"' for c in (spec.group_by or []) + (spec.order_by or []))
        con.execute(f"CREATE TABLE {qualified(staging)} AS SELECT * FROM kept{' ORDER BY ' + order if order else ''}")
        rows_out = con.execute(f"SELECT count(*) FROM {qualified(staging)}").fetchone()[0]
        checks = publication_checks(con, plan, staging, types, rows_out)
        published = all(c.passed for c in checks)
        version = audit.next_version(con, target)
        row = {
            "table_name": target,
            "version": version,
            "run_id": run_id,
            "source_tables": sorted(prepared_step["sources"]),
            "source_checksums": json.dumps(prepared_step["sources"], sort_keys=True),
            "sql_file": prepared_step["sql_file"],
            "sql_hash": prepared_step["sql_hash"],
            "model_path": model_step["model_path"],
            "model_id": generated["model_id"],
            "config_hash": model_step["config_hash"],
            "rows_in": prepared_step["content"]["rows"],
            "rows_generated": generated_rows,
            "rows_out": rows_out,
            "valid_fraction": generated["valid_fraction"],
            "dropped_unseen_mappings": generated_rows - kept,
            "dropped_by_filters": json.dumps(dropped_by_filters),
            "started_at": started,
            "finished_at": audit.now(),
        }
        lineage = {c: plan.preparation.lineage.get(c, []) for c in types}
        if published:

            def record(con: duckdb.DuckDBPyConnection) -> None:
                audit.record_publication(con, row, lineage)
                audit.log_step(con, spec.name, "synthetic", run_id, started, {"version": version})

            swap(con, staging, target, after=record)
        else:
            con.execute(f"DROP TABLE IF EXISTS {qualified(staging)}")
        preview = con.sql(f"SELECT * FROM {qualified(target)} LIMIT 10").to_arrow_table() if published else None
        sequences = None
        if published and spec.group_by:
            real = con.sql(f"SELECT * FROM {qualified(table['prepared'])} ORDER BY {order}").to_arrow_table()
            sequences = sequence_stats(
                real, con.sql(f"SELECT * FROM {qualified(target)}").to_arrow_table(), spec.group_by, spec.order_by
            )
    return {
        "sequences": sequences,
        "table": target,
        "published": published,
        "checks": checks,
        "lineage_row": row,
        "column_lineage": lineage,
        "types": types,
        "dropped_unseen_mappings": generated_rows - kept,
        "dropped_by_filters": dropped_by_filters,
        "rows_generated": generated_rows,
        "rows_out": rows_out,
        "preview": preview,
    }


def publication_checks(
    con: duckdb.DuckDBPyConnection, plan: Plan, staging: str, types: dict[str, str], rows_out: int
) -> list[Check]:
    """The blocking checks run on the staged rows before they replace the published table."""
    spec = plan.spec
    prepared = names(spec.name)["prepared"]
    staged = column_types(con, staging)
    mismatched = {c: (types.get(c), staged.get(c)) for c in {*types, *staged} if types.get(c) != staged.get(c)}
    schema_ok = not mismatched and list(staged) == list(types)
    checks = [
        Check(
            "matches_source_schema",
            schema_ok,
            "columns and types equal the prepared source's"
            if schema_ok
            else f"columns/types differ from {prepared}: {mismatched or 'column order'}",
            {"columns": len(staged)},
        ),
        Check(
            "has_rows",
            rows_out > 0,
            f"{rows_out} rows survived post-processing"
            if rows_out
            else "no generated row survived the mapping and filter steps; relax the filters or train longer",
            {"rows": rows_out},
        ),
    ]
    if spec.mapped_columns:
        unseen = {}
        for group in spec.mapped_columns:
            known = distinct_query(concat_expr(group), prepared)
            joined = concat_expr(group, "s").sql(DIALECT)
            query = f"SELECT count(*) FROM {qualified(staging)} s WHERE {joined} NOT IN ({known})"
            unseen[mapped_name(group)] = con.execute(query).fetchone()[0]
        total = sum(unseen.values())
        checks.append(
            Check(
                "mapped_combinations_seen",
                total == 0,
                "every mapped combination occurs in the training data"
                if total == 0
                else f"{total} published rows carry combinations absent from {prepared}: {unseen}",
                {"unseen_rows": total},
            )
        )
    return checks


def raw_column(spec, column: str) -> str:
    """The `synthetic_raw` column a published column comes from (its mapped group's joined column)."""
    for group in spec.mapped_columns:
        if column in group:
            return mapped_name(group)
    return column
