"""The Dagster project end to end: real DuckDB files, real (small) training, real materializations.

One module-scoped project materializes both demo tables once (about a minute of training on 2
cores); later tests rerun parts of it, break it on purpose, and evaluate schedules and sensors.
"""

import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from warehouse import Warehouse
from warehouse.spec import digest

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
SMALL_MODEL = "{hidden_size: 128, num_layers: 2, num_heads: 4, vocab_size: 400, context_length: CONTEXT}"
SPEC = f"""\
tables:
  - name: planes
    source: raw.planes
    sql: planes.sql
    mapped_columns:
      - [manufacturer, model]
    training: {{num_input_records_to_sample: 15000, batch_size: 2, tiny: {SMALL_MODEL.replace("CONTEXT", "512")}}}
    generation: {{num_records: 150, seed: 3}}
    filters: [planes_single_engine_seats.sql]
    gates: {{min_valid_fraction: 0.5}}
    schedule: "0 3 * * 1"
  - name: flights
    source: raw.flights
    sql: flights_day.sql
    mapped_columns:
      - [carrier, origin, dest]
    group_by: tailnum
    order_by: sched_dep_time
    training: {{num_input_records_to_sample: 10000, batch_size: 2, tiny: {SMALL_MODEL.replace("CONTEXT", "512")}}}
    generation: {{num_records: 60, seed: 3}}
    filters: [flights_plausible_speed.sql]
    gates: {{min_valid_fraction: 0.2}}
"""
FLIGHTS_DAY = (
    (REPO / "sql" / "flights.sql").read_text().replace("day <= 7", "day = 1").replace("first week", "first day")
)


def make_project(root: Path, spec_text: str = SPEC) -> Path:
    shutil.copytree(REPO / "sql", root / "sql", dirs_exist_ok=True)
    (root / "sql" / "flights_day.sql").write_text(FLIGHTS_DAY)
    (root / "synth.yaml").write_text(spec_text)
    return root / "synth.yaml"


def materialize(project, job: str, spec_path: Path | None = None):
    defs = build_definitions(spec_path or project.spec, project.warehouse.path, project.models)
    return defs, defs.resolve_job_def(job).execute_in_process(instance=project.instance, raise_on_error=False)


def publish_alone(project, spec_path: Path, table: str = "planes"):
    """`synthetic/<table>` materialized on its own, as from the asset graph in the UI."""
    defs = build_definitions(spec_path, project.warehouse.path, project.models)
    job = defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey(["synthetic", table])]
    return job.execute_in_process(instance=project.instance, asset_selection=selection, raise_on_error=False)


def failure_text(result) -> str:
    return " ".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def latest_metadata(instance, *key) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
    return event.asset_materialization.metadata


@pytest.fixture(scope="module")
def project(raw_warehouse_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    shutil.copy(raw_warehouse_file, root / "warehouse.duckdb")
    project = SimpleNamespace(
        root=root,
        spec=make_project(root),
        warehouse=Warehouse(root / "warehouse.duckdb"),
        models=root / "models",
        instance=dg.DagsterInstance.ephemeral(),
    )
    project.defs, project.result = materialize(project, "refresh_all")
    return project


def test_every_asset_materializes_and_publishes(project):
    assert project.result.success, [e.message for e in project.result.all_events if e.is_failure]
    wh = project.warehouse
    for table in ("planes", "flights"):
        for step in ("prepared", "model", "synthetic_raw", "report", "synthetic"):
            assert project.instance.get_latest_materialization_event(dg.AssetKey([step, table])) is not None
        prepared = wh.read_table(f"prepared.{table}")
        published = wh.read_table(f"synthetic.{table}")
        assert published.schema == prepared.schema  # names, order and types
        assert published.num_rows > 0
    checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in project.result.get_asset_check_evaluations()}
    assert checks == {
        ("planes", "valid_fraction_gate"): True,
        ("planes", "matches_source_schema"): True,
        ("planes", "has_rows"): True,
        ("planes", "mapped_combinations_seen"): True,
        ("flights", "valid_fraction_gate"): True,
        ("flights", "matches_source_schema"): True,
        ("flights", "has_rows"): True,
        ("flights", "mapped_combinations_seen"): True,
    }


def test_materializations_carry_rich_metadata(project):
    wh, instance = project.warehouse, project.instance
    prepared = latest_metadata(instance, "prepared", "planes")
    assert prepared["dagster/row_count"].value == wh.checksum("prepared.planes")["rows"]
    assert prepared["dagster/table_name"].value == "prepared.planes"
    schema = prepared["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == wh.read_table("prepared.planes").column_names
    deps = prepared["dagster/column_lineage"].value.deps_by_column["manufacturer"]
    assert [(d.asset_key, d.column_name) for d in deps] == [(dg.AssetKey(["raw", "planes"]), "manufacturer")]
    model = latest_metadata(instance, "model", "planes")
    assert model["retrained"].value is True and model["why"].value == "no model yet"
    assert model["tokens_per_s"].value > 0 and model["final_loss"].value < 2.0
    raw = latest_metadata(instance, "synthetic_raw", "planes")
    assert 0.5 <= raw["valid_fraction"].value <= 1
    assert isinstance(raw["rejection_reasons"].value, dict)
    assert "valid_group_fraction" not in raw and "redrawn_records" not in raw  # planes are not grouped
    events = latest_metadata(instance, "synthetic_raw", "flights")
    assert 0 < events["valid_group_fraction"].value <= 1 and events["redrawn_records"].value >= 0
    largest = wh.scalar("SELECT max(n) FROM (SELECT count(*) AS n FROM synthetic_raw.flights GROUP BY tailnum)")
    assert 60 <= events["dagster/row_count"].value < 60 + largest  # num_records 60, whole groups
    assert isinstance(events["surplus_groups"].value, int)
    assert events["sampling_workers"].value == 1  # 60 records of groups: too few to share between processes
    published = latest_metadata(instance, "synthetic", "planes")
    assert published["dagster/row_count"].value == wh.checksum("synthetic.planes")["rows"]
    assert "| year | type |" in published["preview"].value
    counts = published["rows_generated"].value - published["dropped_unseen_mappings"].value
    counts -= sum(published["dropped_by_filters"].value.values())
    assert counts == published["dagster/row_count"].value


def test_lineage_rows_say_what_produced_each_table(project):
    wh = project.warehouse
    rows = wh.read("SELECT * FROM meta.lineage ORDER BY table_name").to_pylist()
    assert [r["table_name"] for r in rows] == ["synthetic.flights", "synthetic.planes"]
    planes = rows[1]
    assert planes["version"] == 1
    assert planes["source_tables"] == ["raw.planes"]
    assert json.loads(planes["source_checksums"]) == {"raw.planes": wh.checksum("raw.planes")}
    assert planes["sql_hash"] == digest((project.root / "sql" / "planes.sql").read_text())
    assert Path(planes["model_path"]).name == planes["model_id"]
    assert (Path(planes["model_path"]) / "config.yaml").is_file()
    assert planes["rows_in"] == wh.checksum("prepared.planes")["rows"]
    assert planes["rows_out"] == wh.checksum("synthetic.planes")["rows"]
    assert planes["rows_generated"] == wh.checksum("synthetic_raw.planes")["rows"]
    assert planes["started_at"] <= planes["finished_at"]
    run_ids = {r["run_id"] for r in rows}
    assert run_ids == {project.result.run_id}
    columns = wh.read(
        "SELECT column_name, source_table, source_column FROM meta.column_lineage "
        "WHERE table_name = 'synthetic.planes' ORDER BY column_name"
    ).to_pylist()
    assert {r["column_name"] for r in columns} == set(wh.read_table("synthetic.planes").column_names)
    assert all(r["source_table"] == "raw.planes" and r["source_column"] == r["column_name"] for r in columns)
    answer = wh.read((REPO / "sql" / "examples" / "what_produced_this_table.sql").read_text())
    assert answer.num_rows == 1 and answer.column("model_id")[0].as_py() == rows[0]["model_id"]


def test_published_mappings_all_occur_in_the_training_data(project):
    unseen = project.warehouse.scalar(
        "SELECT count(*) FROM synthetic.flights s ANTI JOIN prepared.flights p USING (carrier, origin, dest)"
    )
    assert unseen == 0
    speed = project.warehouse.scalar(
        "SELECT count(*) FROM synthetic.flights WHERE distance / (air_time / 60.0) NOT BETWEEN 100 AND 700"
    )
    assert speed == 0


def test_report_scores_reach_metadata_files_and_sql(project):
    metadata = latest_metadata(project.instance, "report", "planes")
    assert 0 <= metadata["quality"].value <= 10 and 0 <= metadata["privacy"].value <= 10
    assert "**Quality**" in metadata["summary"].value
    report = Path(metadata["report_path"].value)
    assert report.is_file() and 'id="privacy"' in report.read_text()
    assert (report.parent / "evaluation.json").is_file()
    metrics = project.warehouse.read(
        f"SELECT metric, value FROM meta.evaluations WHERE table_name = 'planes' AND run_id = '{project.result.run_id}'"
    ).to_pylist()
    assert {m["metric"] for m in metrics} >= {
        "quality",
        "privacy",
        "exact_copy_rate",
        "membership_inference_protection",
    }


def test_failing_quality_gate_keeps_the_published_table(project, tmp_path):
    before = project.warehouse.checksum("synthetic.planes")
    strict = make_project(
        tmp_path, SPEC.replace("min_valid_fraction: 0.5", "min_valid_fraction: 0.5, min_quality: 9.99")
    )
    _, result = materialize(project, "refresh_planes", strict)
    assert not result.success
    assert [
        (e.check_name, e.passed) for e in result.get_asset_check_evaluations() if e.check_name == "quality_gate"
    ] == [("quality_gate", False)]
    assert project.warehouse.checksum("synthetic.planes") == before
    alone = publish_alone(project, strict)  # no blocking check guards an asset materialized on its own
    assert not alone.success and "fail their gates (quality_gate" in failure_text(alone)
    assert project.warehouse.checksum("synthetic.planes") == before


def test_rerun_reuses_the_model_and_adds_a_version(project, tmp_path):
    same_schema = make_project(
        tmp_path, SPEC.replace('schedule: "0 3 * * 1"', 'schedule: "0 3 * * 1"\n    on_schema_change: fail')
    )
    _, result = materialize(project, "refresh_planes", same_schema)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["schema_unchanged"] is True
    assert latest_metadata(project.instance, "model", "planes")["retrained"].value is False
    versions = project.warehouse.read("SELECT version FROM meta.lineage WHERE table_name = 'synthetic.planes'")
    assert sorted(versions.column("version").to_pylist()) == [1, 2]


def test_failing_gate_keeps_the_published_table(project, tmp_path):
    before = project.warehouse.checksum("synthetic.planes")
    versions = project.warehouse.scalar("SELECT count(*) FROM meta.lineage")
    # Sampling freely (no grammar), this small model writes some invalid records: a gate of 1.0 fails.
    free = SPEC.replace("{num_records: 150, seed: 3}", "{num_records: 150, seed: 3, use_structured_generation: false}")
    strict = make_project(tmp_path, free.replace("min_valid_fraction: 0.5", "min_valid_fraction: 1.0"))
    _, result = materialize(project, "refresh_planes", strict)
    assert not result.success
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "valid_fraction_gate"]
    assert [e.passed for e in gate] == [False]
    assert project.warehouse.checksum("synthetic.planes") == before
    alone = publish_alone(project, strict)
    assert not alone.success and "valid, under the gate 1.0" in failure_text(alone)
    assert project.warehouse.checksum("synthetic.planes") == before
    assert project.warehouse.scalar("SELECT count(*) FROM meta.lineage") == versions


def test_failing_publication_check_keeps_the_published_table(project, tmp_path):
    before = project.warehouse.checksum("synthetic.planes")
    spec = make_project(tmp_path)
    (tmp_path / "sql" / "filters" / "planes_single_engine_seats.sql").write_text("-- drop every row\nseats < 0\n")
    _, result = materialize(project, "refresh_planes", spec)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["has_rows"] is False and checks["matches_source_schema"] is True
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert "was not published (the previous version stays): has_rows" in failure.user_failure_data.description
    assert project.warehouse.checksum("synthetic.planes") == before
    assert not project.warehouse.exists("synthetic.__staging_planes")


def test_schedule_requests_the_table_refresh(project):
    schedule = project.defs.resolve_schedule_def("planes_schedule")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "UTC"
    with dg.build_schedule_context(instance=project.instance) as context:
        data = schedule.evaluate_tick(context)
    assert schedule.job_name == "refresh_planes" and len(data.run_requests) == 1
    assert {s.name for s in project.defs.schedules} == {"planes_schedule"}  # flights has no schedule


def test_sensor_requests_a_refresh_only_when_a_source_changes(project):
    sensor = project.defs.resolve_sensor_def("source_changed")
    resources = {"warehouse": project.defs.resources["warehouse"]}

    def evaluate():
        with dg.build_sensor_context(instance=project.instance, resources=resources) as context:
            return sensor.evaluate_tick(context)

    quiet = evaluate()
    assert quiet.run_requests == [] and "matches its sources" in quiet.skip_message
    with project.warehouse.connect() as con:
        con.execute("DELETE FROM raw.flights WHERE rowid IN (SELECT rowid FROM raw.flights LIMIT 1)")
    first, again = evaluate(), evaluate()
    assert [r.job_name for r in first.run_requests] == ["refresh_flights"]
    assert first.run_requests[0].run_key == again.run_requests[0].run_key  # one request per change
    # Dagster starts one run per key, ever: after a publication the same sources are a change again
    # (a return to data published before the last version, or a refresh that failed since)
    assert publish_alone(project, project.spec, "flights").success
    later = evaluate()
    assert [r.job_name for r in later.run_requests] == ["refresh_flights"]
    assert later.run_requests[0].run_key != first.run_requests[0].run_key


def test_definitions_snapshot(raw_warehouse):
    """Asset keys, deps, checks, kinds, pools and groups of the repository's synth.yaml.

    A change here is a lineage change: review it, then refresh with SNAPSHOT_UPDATE=1.
    """
    defs = build_definitions(REPO / "synth.yaml", raw_warehouse.path)
    graph = defs.resolve_asset_graph()
    snapshot = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        snapshot[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "pools": sorted(node.pools or []),
            "checks": sorted(c.name for c in node.check_keys),
            "blocking": sorted(c.name for c in node.check_keys if graph.get_check_spec(c).blocking),
        }
    snapshot["jobs"] = sorted(j.name for j in defs.jobs)
    snapshot["schedules"] = sorted(s.name for s in defs.schedules)
    snapshot["sensors"] = sorted(s.name for s in defs.sensors)
    if os.environ.get("SNAPSHOT_UPDATE"):
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text())


def test_steps_fork_from_a_preloaded_server_unless_told_to_spawn(raw_warehouse):
    """Launched runs (UI, schedules, sensors, `dagster job execute`) fork each step from a server that
    imported the project once; a run's config can still ask for spawned steps."""
    job = build_definitions(REPO / "synth.yaml", raw_warehouse.path).resolve_job_def("refresh_planes")
    default = dg.validate_run_config(job, {})["execution"]["step_processes"]
    assert default["start_method"] == {"forkserver": {"preload_modules": ["dagster_project.definitions"]}}
    spawn = dg.validate_run_config(job, {"execution": {"config": {"start_method": {"spawn": {}}}}})
    assert spawn["execution"]["step_processes"]["start_method"] == {"spawn": {}}
    for config, problem in [
        ({"max_concurrent": 0}, "max_concurrent is 0: set at least 1"),  # Dagster would start no step, ever
        ({"start_method": {"forkserver": {"preload_modules": ["no_such.mod"]}}}, r"\['no_such.mod'\] cannot be"),
    ]:
        with pytest.raises(dg.DagsterInvariantViolationError, match=problem):
            dg.validate_run_config(job, {"execution": {"config": config}})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webserver_launches_a_materialization_over_graphql(project, tmp_path):
    """`dagster dev` on loopback; launch refresh_planes through GraphQL; read the result with SQL."""
    import signal
    import subprocess
    import time
    import urllib.request

    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(project.warehouse.path, warehouse)
    before = Warehouse(warehouse).scalar("SELECT count(*) FROM meta.lineage WHERE table_name = 'synthetic.planes'")
    port = free_port()
    env = os.environ | {
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SYNTH_SPEC": str(project.spec),
        "SYNTH_WAREHOUSE": str(warehouse),
        "SYNTH_MODELS": str(project.models),
    }
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", tmp_path / "dagster_home")
    dagster = Path(sys.executable).parent / "dagster"
    log = open(tmp_path / "dagster_dev.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [str(dagster), "dev", "-m", "dagster_project.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        run_id = None
        while run_id is None:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "dagster_dev.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                run_id = client.submit_job_execution("refresh_planes")
            except (OSError, DagsterGraphQLClientError):
                time.sleep(2)
        status = None
        while status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            assert time.monotonic() < deadline + 300, f"run {run_id} still {status}"
            time.sleep(3)
            status = client.get_run_status(run_id)
        assert status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "dagster_dev.log").read_text()[-5000:]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    wh = Warehouse(warehouse)
    assert wh.scalar("SELECT count(*) FROM synthetic.planes") > 0
    latest = wh.read("SELECT run_id, version FROM meta.lineage WHERE table_name = 'synthetic.planes' ORDER BY version")
    assert latest.num_rows == before + 1
    assert latest.column("run_id")[-1].as_py() == run_id


def test_a_spec_mistake_fails_only_its_table(raw_warehouse, tmp_path):
    text = SPEC.replace("[manufacturer, model]", "[manufacturer, model_name]")
    spec = make_project(tmp_path, text + "  - name: loans\n    source: raw.credit\n    generaton: {num_records: 5}\n")
    defs = build_definitions(spec, raw_warehouse.path)
    problems = {
        "planes": r"synth.yaml:5: table 'planes': mapped_columns names column\(s\) \['model_name'\]",
        "loans": r"synth.yaml:\d+: table 'loans': unknown key 'generaton'",
    }
    for table, problem in problems.items():
        asset = defs.resolve_assets_def(dg.AssetKey(["synthetic", table]))
        assert re.search(problem, asset.descriptions_by_key[dg.AssetKey(["synthetic", table])])
        result = defs.resolve_job_def(f"refresh_{table}").execute_in_process(raise_on_error=False)
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
        assert not result.success and re.search(problem, failure.user_failure_data.description)
    # flights is built as usual, with its jobs and the sensor; planes' schedule waits for the fix
    assert defs.resolve_assets_def(dg.AssetKey(["model", "flights"]))
    assert {j.name for j in defs.jobs} >= {"refresh_flights", "refresh_planes", "refresh_loans", "refresh_all"}
    assert [s.name for s in defs.schedules] == [] and [s.name for s in defs.sensors] == ["source_changed"]
    assert not raw_warehouse.exists("prepared.planes")


def test_numbers_stored_as_text_are_warned_of_in_the_model_step(raw_warehouse, tmp_path):
    with raw_warehouse.connect() as con:
        con.sql(
            "CREATE TABLE raw.loans AS SELECT * REPLACE (CASE WHEN row_number() OVER () % 50 = 0 THEN 'unknown' "
            "ELSE Price::VARCHAR END AS Price) FROM (FROM raw.credit LIMIT 300)"
        )
    small = "{hidden_size: 64, num_layers: 1, num_heads: 2}"
    training = f"{{num_input_records_to_sample: 300, tiny: {small}}}"
    spec = make_project(tmp_path, f"tables:\n  - {{name: loans, source: raw.loans, training: {training}}}\n")
    defs = build_definitions(spec, raw_warehouse.path, tmp_path / "models")
    instance = dg.DagsterInstance.ephemeral()
    selection = [dg.AssetKey(["prepared", "loans"]), dg.AssetKey(["model", "loans"])]
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(selection))
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    warned = latest_metadata(instance, "model", "loans")["data_warnings"].value
    assert len(warned) == 1 and warned[0].startswith("column 'Price' is learned as text, though")
    logged = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert f"loans: {warned[0]}" in logged
