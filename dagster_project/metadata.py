"""Turning pipeline results into Dagster metadata: schemas, lineage, previews."""

import dagster as dg
import pyarrow as pa

PREVIEW_ROWS = 10


def column_schema(types: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in types.items()])


def column_lineage(deps: dict[str, list[tuple[dg.AssetKey, str]]]) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=key, column_name=source) for key, source in sources]
            for column, sources in deps.items()
        }
    )


def preview(table: pa.Table | None) -> dg.MetadataValue:
    """The first rows as a markdown table (the UI renders it in the materialization's metadata)."""
    if table is None or table.num_rows == 0:
        return dg.MetadataValue.md("_no rows_")
    rows = table.slice(0, PREVIEW_ROWS).to_pylist()
    lines = ["| " + " | ".join(table.column_names) + " |", "|" + "---|" * table.num_columns]
    lines += [
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row.values()) + " |" for row in rows
    ]
    return dg.MetadataValue.md("\n".join(lines))


def table_metadata(name: str, rows: int, types: dict[str, str]) -> dict:
    return {"dagster/table_name": name, "dagster/row_count": rows, "dagster/column_schema": column_schema(types)}


def privacy_metadata(pii: dict, metrics: dict) -> dict:
    """What the fit protected: the PII found and replaced, and the differential privacy budget spent."""
    out: dict = {}
    if pii:
        report = pii["report"]
        rows = [
            f"| {f['column']} | {f['entity']} | {f['share']:.2f} | {f['confidence']:.2f} | {f['action']} |"
            for f in report["columns"]
        ] + [f"| {f['column']} (text) | {f['entity']} | {f['share']:.2f} | – | {f['action']} |" for f in report["text"]]
        head = "| column | entity | share matched | confidence | action |\n|---|---|---|---|---|\n"
        out["pii_detected"] = dg.MetadataValue.md(head + "\n".join(rows) if rows else "_no PII detected_")
        out["pii_values_replaced"] = metrics["pii"]["values_replaced"]
        out["pii_text_spans_replaced"] = metrics["pii"]["text_spans_replaced"]
    if "dp" in metrics:
        budget = metrics["dp"]
        out |= {
            "dp_epsilon_spent": round(budget["epsilon_spent"], 3),
            "dp_epsilon_target": budget["epsilon"],
            "dp_delta": budget["delta"],
            "dp_noise_multiplier": round(budget["noise_multiplier"], 4),
        }
    return out
