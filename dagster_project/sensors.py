"""A sensor that requests a refresh when a table's sources differ from those it was published from.

The comparison is against `meta.lineage` (row count + content checksum of each source table at
publication), so it survives restarts without a cursor. The run key (Dagster starts one run per key,
ever) is the sources' state and the published version: one request per change, and a return to an
earlier state after a later publication is a change again. A refresh that fails is not requested
again until the sources change or another refresh publishes: fix its cause and run the job.
"""

import json

import dagster as dg

from dagster_project.resources import WarehouseResource
from dagster_project.schedules import job_name
from warehouse import audit
from warehouse.spec import digest
from warehouse.sql_models import Plan
from warehouse.store import is_lock_error, table_checksum


def source_changed_sensor(plans: dict[str, Plan], jobs: list) -> dg.SensorDefinition:
    @dg.sensor(
        name="source_changed",
        jobs=jobs,
        minimum_interval_seconds=60,
        description="Refresh a synthetic table when its source tables changed since it was published.",
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def source_changed(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
        try:
            with warehouse.warehouse().connect(read_only=True) as con:
                requests = []
                for name, plan in plans.items():
                    current = {s: table_checksum(con, s) for s in plan.preparation.sources}
                    published = audit.latest_publication(con, f"synthetic.{name}")
                    before = json.loads(published["source_checksums"]) if published else None
                    if current != before:
                        reason = "never published" if before is None else "sources changed"
                        context.log.info(f"{name}: {reason}; requesting {job_name(name)}")
                        requests.append(
                            dg.RunRequest(
                                run_key=f"{name}:{digest(current)}:v{published['version'] if published else 0}",
                                job_name=job_name(name),
                                tags={"synth/reason": reason},
                            )
                        )
        except Exception as err:
            if is_lock_error(err):
                return dg.SkipReason(f"the warehouse is locked by a writer; checking again next tick ({err})")
            raise
        return requests or dg.SkipReason("every synthetic table matches its sources")

    return source_changed
