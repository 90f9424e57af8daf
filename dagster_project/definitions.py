"""`dg.Definitions` built from synth.yaml (`SYNTH_SPEC`) against the warehouse (`SYNTH_WAREHOUSE`).

The spec is checked against the live warehouse when definitions load, so a wrong table, column or
SQL line shows up as one error in `dagster dev` before anything runs.
"""

from pathlib import Path

import dagster as dg

from dagster_project.assets import source_specs, table_assets
from dagster_project.resources import WarehouseResource
from dagster_project.schedules import refresh_jobs, schedules
from dagster_project.sensors import source_changed_sensor
from warehouse import Warehouse
from warehouse.spec import load_spec
from warehouse.sql_models import validate_spec


def build_definitions(
    spec_path: str | Path | None = None, warehouse_path: str | Path | None = None, models_dir: str | Path = ""
) -> dg.Definitions:
    warehouse = Warehouse(warehouse_path)
    plans = validate_spec(load_spec(spec_path), warehouse)
    assets = [a for plan in plans.values() for a in table_assets(plan)]
    jobs = refresh_jobs(plans)
    return dg.Definitions(
        assets=[*source_specs(plans), *assets],
        jobs=jobs,
        schedules=schedules(plans),
        sensors=[source_changed_sensor(plans, [j for j in jobs if j.name != "refresh_all"])],
        resources={"warehouse": WarehouseResource(path=str(warehouse.path), models_dir=str(models_dir))},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
