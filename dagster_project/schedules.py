"""One refresh job per table (its asset group), and a schedule for each table with `schedule:`."""

import dagster as dg

from warehouse.sql_models import Plan


def job_name(table: str) -> str:
    return f"refresh_{table}"


def refresh_jobs(tables: list[str]) -> list:
    jobs = [
        dg.define_asset_job(
            job_name(name),
            selection=dg.AssetSelection.groups(name),
            description=f"Prepare, train (if inputs changed), generate and publish synthetic.{name}.",
            tags={"synth/table": name},
        )
        for name in tables
    ]
    jobs.append(
        dg.define_asset_job(
            "refresh_all",
            selection=dg.AssetSelection.groups(*tables),
            description="Every synthetic table of synth.yaml.",
        )
    )
    return jobs


def schedules(plans: dict[str, Plan]) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name=f"{name}_schedule",
            job_name=job_name(name),
            cron_schedule=plan.spec.schedule,
            execution_timezone="UTC",
            description=f"Scheduled refresh of synthetic.{name} ({plan.spec.schedule}, UTC).",
            default_status=dg.DefaultScheduleStatus.STOPPED,
        )
        for name, plan in plans.items()
        if plan.spec.schedule
    ]
