"""The DuckDB warehouse side: table access, the `synth.yaml` spec, SQL models, transforms and audit tables.

Nothing here imports Dagster; `dagster_project` calls these functions and reports what they return.
"""

from warehouse.store import Warehouse, default_path

__all__ = ["Warehouse", "default_path"]
