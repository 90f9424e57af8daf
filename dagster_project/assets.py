"""The asset factory: per table in synth.yaml, prepared -> model -> synthetic_raw -> synthetic.

Assets pass table names, not data: each step reads and writes the warehouse through
`warehouse.pipeline`, and reports what it did as metadata. Mistakes a user can fix (bad SQL, empty
tables, a model that cannot learn the data) fail once with the message; anything else, such as
another process holding the DuckDB file lock, is retried by the RetryPolicy.
"""

import json
import time
from datetime import UTC, datetime

import dagster as dg
import duckdb

from dagster_project.metadata import column_lineage, preview, privacy_metadata, table_metadata
from dagster_project.resources import WarehouseResource
from synth_model.errors import SynthError
from synth_model.synthesizer import MODEL_FORMAT
from warehouse import pipeline
from warehouse.spec import digest
from warehouse.sql_models import Plan
from warehouse.store import is_lock_error

RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)
GPU_POOL = "gpu"
# generation metadata of event tables
GROUP_STATS = ("valid_group_fraction", "group_rejections", "redrawn_records", "surplus_groups")


def key(step: str, table: str) -> dg.AssetKey:
    return dg.AssetKey([step, table])


def source_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(name.split("."))


def source_specs(plans: dict[str, Plan]) -> list[dg.AssetSpec]:
    """The raw tables the preparation models read: external assets, so lineage starts at them."""
    sources = sorted({s for plan in plans.values() for s in plan.preparation.sources})
    return [
        dg.AssetSpec(
            key=source_key(name),
            group_name=name.split(".")[0],
            kinds={"duckdb"},
            description=f"Source table {name} in the warehouse.",
            metadata={"dagster/table_name": name},
        )
        for name in sources
    ]


def run_step(fn, *args, **kwargs):
    """Call a pipeline step; user-fixable errors fail once, lock errors go to the retry policy."""
    try:
        return fn(*args, **kwargs)
    except SynthError as err:
        raise dg.Failure(description=str(err), allow_retries=False) from err
    except duckdb.Error as err:
        if is_lock_error(err):
            raise
        raise dg.Failure(description=f"DuckDB: {err}", allow_retries=False) from err


def broken_table_asset(name: str, problem: str) -> dg.AssetsDefinition:
    """Stands in for a table whose synth.yaml entry cannot be used: its runs fail with the problem."""

    @dg.asset(
        key=key("synthetic", name),
        group_name=name,
        kinds={"duckdb"},
        description=f"Not built: {problem}",
    )
    def synthetic() -> None:
        raise dg.Failure(description=problem, allow_retries=False)

    return synthetic


def run_started(context: dg.AssetExecutionContext) -> datetime:
    stats = context.instance.get_run_stats(context.run.run_id)
    started = stats.start_time or stats.launch_time or time.time()
    return datetime.fromtimestamp(started, UTC).replace(tzinfo=None)


def table_assets(plan: Plan) -> list[dg.AssetsDefinition]:
    spec, prep = plan.spec, plan.preparation
    name = spec.name
    engine = spec.engine_config().dump()

    @dg.asset(
        key=key("prepared", name),
        deps=[source_key(s) for s in prep.sources],
        group_name=name,
        kinds={"duckdb", "sql"},
        code_version=digest(prep.sql_hash),
        description=prep.description,
        retry_policy=RETRY,
        metadata={
            "sql_file": prep.sql_file or "(none: all rows of the source)",
            "sql": dg.MetadataValue.md(f"```sql\n{prep.query}\n```"),
        },
    )
    def prepared(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        result = run_step(pipeline.prepare, warehouse.warehouse(), plan, context.run.run_id)
        lineage = {c: [(source_key(t), col) for t, col in prep.lineage.get(c, [])] for c in result["types"]}
        return dg.MaterializeResult(
            metadata={
                **table_metadata(result["table"], result["rows"], result["types"]),
                "dagster/column_lineage": column_lineage(lineage),
                "source_checksums": result["sources"],
                "seconds": round(result["seconds"], 2),
            }
        )

    @dg.asset(
        key=key("model", name),
        deps=[key("prepared", name)],
        group_name=name,
        kinds={"pytorch"},
        pool=GPU_POOL,
        code_version=digest(
            spec.mapped_columns,
            spec.group_by,
            spec.order_by,
            *(engine[k] for k in ("data", "replace_pii", "training", "privacy")),
            MODEL_FORMAT,
        ),
        description=f"Language model fitted on prepared.{name} (retrained only when its inputs change).",
        retry_policy=RETRY,
    )
    def model(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        result = run_step(
            pipeline.train, warehouse.warehouse(), plan, warehouse.models_root(), context.run.run_id, context.log.info
        )
        m = result["metrics"]
        for doubt in m.get("warnings", []):
            context.log.warning(f"{name}: {doubt}")
        return dg.MaterializeResult(
            metadata={
                "model_id": result["model_id"],
                "model_path": dg.MetadataValue.path(result["model_path"]),
                "retrained": result["retrained"],
                "why": result["why"],
                "final_loss": m["final_loss"],
                "validation_loss": m.get("validation_loss"),
                "tokens_per_s": round(m["tokens_per_s"]),
                "fit_seconds": round(m["fit_seconds"], 1),
                "training_rows": m["training_rows"],
                "holdout_rows": m["holdout_rows"],
                "tokens_per_record": round(m["tokens_per_record"], 1),
                "parameters": m["parameters"],
                "device": m["device"],
                "resolved_config": dg.MetadataValue.json(result["config"]),
                **({"data_warnings": dg.MetadataValue.json(m["warnings"])} if "warnings" in m else {}),
                **privacy_metadata(result["pii"], m),
            },
        )

    raw_key = key("synthetic_raw", name)

    @dg.asset(
        key=raw_key,
        deps=[key("model", name)],
        group_name=name,
        kinds={"duckdb", "pytorch"},
        pool=GPU_POOL,
        code_version=digest(engine["generation"]),
        description=f"Every valid record the model generated for {name}, in the training shape.",
        retry_policy=RETRY,
        check_specs=[
            dg.AssetCheckSpec(
                "valid_fraction_gate",
                asset=raw_key,
                blocking=True,
                description=f"valid fraction >= {spec.gates.min_valid_fraction}",
            )
        ],
    )
    def synthetic_raw(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        result = run_step(pipeline.generate, warehouse.warehouse(), plan, context.run.run_id, context.log.info)
        gate = spec.gates.min_valid_fraction
        passed = result["valid_fraction"] >= gate
        types = {f.name: str(f.type) for f in result["preview"].schema}
        return dg.MaterializeResult(
            metadata={
                **table_metadata(result["table"], result["rows"], types),
                "valid_fraction": result["valid_fraction"],
                "invalid_records": result["invalid_records"],
                "rejection_reasons": result["rejections"],
                **{k: result[k] for k in GROUP_STATS if k in result},
                "records_per_s": round(result["records_per_s"], 1),
                "sampling_workers": result["workers"],
                "generated_tokens_per_s": round(result["tokens_per_s"]),
                "seconds": round(result["seconds"], 1),
                "model_id": result["model_id"],
                "preview": preview(result["preview"]),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="valid_fraction_gate",
                    passed=passed,
                    description=f"valid fraction {result['valid_fraction']:.3f} {'>=' if passed else '<'} gate {gate}",
                    metadata={"valid_fraction": result["valid_fraction"], "gate": gate},
                )
            ],
        )

    report_key = key("report", name)
    gate_checks = [
        check
        for check, bound in (
            ("quality_gate", spec.gates.min_quality),
            ("privacy_gate", spec.gates.min_privacy),
            ("exact_copy_gate", spec.gates.max_exact_copy_rate),
        )
        if bound is not None
    ]

    @dg.asset(
        key=report_key,
        deps=[raw_key],
        group_name=name,
        kinds={"python"},
        code_version=digest(spec.evaluation.model_dump(), spec.gates.model_dump()),
        description=f"Quality and privacy report of the generated {name} rows (HTML + JSON, meta.evaluations).",
        retry_policy=RETRY,
        check_specs=[dg.AssetCheckSpec(c, asset=report_key, blocking=True) for c in gate_checks],
    )
    def report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        out = run_step(
            pipeline.evaluate,
            warehouse.warehouse(),
            plan,
            context.run.run_id,
            warehouse.reports_root(),
            context.log.info,
        )
        r, flat = out["result"], out["scores"]
        summary = "\n".join(
            [
                f"**Quality** {r['quality']['overall']['score']:.2f} ({r['quality']['overall']['grade']}) · "
                f"**Privacy** {r['privacy']['overall']['score']:.2f} ({r['privacy']['overall']['grade']}) · "
                f"exact copies {r['exact_copy_rate']:.2%}",
                "",
                "| measure | score |",
                "|---|---|",
                *(f"| {k.replace('_', ' ')} | {v:.3f} |" for k, v in flat.items() if v is not None),
            ]
        )
        return dg.MaterializeResult(
            metadata={
                **{k: float(v) for k, v in flat.items() if v is not None},
                "summary": dg.MetadataValue.md(summary),
                "report_path": dg.MetadataValue.path(str(out["paths"]["html"])),
                "evaluation_seconds": round(r["seconds"], 1),
            },
            check_results=[
                dg.AssetCheckResult(check_name=c.name, passed=c.passed, description=c.description)
                for c in out["checks"]
            ],
        )

    published_key = key("synthetic", name)
    checks = ["matches_source_schema", "has_rows"] + (["mapped_combinations_seen"] if spec.mapped_columns else [])
    checks += ["schema_unchanged"] if spec.on_schema_change == "fail" else []

    @dg.asset(
        key=published_key,
        deps=[key("prepared", name), raw_key, report_key],  # prepared: its columns and rows screen the output
        group_name=name,
        kinds={"duckdb"},
        code_version=digest(
            spec.mapped_columns, [(f.name, f.condition.sql()) for f in plan.filters], spec.on_schema_change
        ),
        description=spec.description or f"Synthetic {name}: post-processed, filtered and checked before publishing.",
        retry_policy=RETRY,
        check_specs=[dg.AssetCheckSpec(c, asset=published_key, blocking=True) for c in checks],
    )
    def synthetic(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        result = run_step(pipeline.publish, warehouse.warehouse(), plan, context.run.run_id, run_started(context))
        check_results = [
            dg.AssetCheckResult(check_name=c.name, passed=c.passed, description=c.description, metadata=c.metadata)
            for c in result["checks"]
        ]
        if not result["published"]:
            yield from check_results
            failed = "; ".join(f"{c.name}: {c.description}" for c in result["checks"] if not c.passed)
            raise dg.Failure(
                description=f"synthetic.{name} was not published (the previous version stays): {failed}",
                allow_retries=False,
            )
        row = result["lineage_row"]
        lineage = {c: [(raw_key, pipeline.raw_column(spec, c))] for c in result["types"]}
        if result["schema_change"]:
            context.log.warning(f"synthetic.{name} published with a new schema: {result['schema_change']}")
        yield dg.MaterializeResult(
            metadata={
                **table_metadata(result["table"], row["rows_out"], result["types"]),
                "dagster/column_lineage": column_lineage(lineage),
                "version": row["version"],
                "rows_generated": row["rows_generated"],
                "dropped_unseen_mappings": row["dropped_unseen_mappings"],
                "dropped_by_filters": json.loads(row["dropped_by_filters"]),
                "valid_fraction": row["valid_fraction"],
                "model_id": row["model_id"],
                "source_columns": {c: [f"{t}.{s}" for t, s in deps] for c, deps in result["column_lineage"].items()},
                "preview": preview(result["preview"]),
                **({"sequence_stats": dg.MetadataValue.json(result["sequences"])} if result["sequences"] else {}),
                **(
                    {"schema_change": dg.MetadataValue.json(result["schema_change"])} if result["schema_change"] else {}
                ),
            },
            check_results=check_results,
        )

    return [prepared, model, synthetic_raw, report, synthetic]
