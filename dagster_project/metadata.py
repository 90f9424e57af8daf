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
