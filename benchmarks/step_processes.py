"""A table's refresh from the command line with steps spawned vs forked from a preloaded forkserver.

    python benchmarks/step_processes.py [--repeats 3] [--records 2000]

Runs `dagster job execute -j refresh_planes` (what a schedule, sensor or the UI launches: every step
in its own process) on a temporary warehouse holding the demo's `raw.planes`, with the project's
default (a forkserver that preloads `dagster_project.definitions`) and with `start_method: spawn`,
alternating, `--repeats` times each. Every run trains a fresh small model (the training sample size
changes by one record per run, so no step reuses an earlier model). Reported: the run's wall time
and, per step, the time from Dagster launching the step's process to the step starting (read from
the run's event log). Prints a table, writes `benchmarks/results/step_processes.json` and the
section between the step_processes markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from engine import publish_table  # noqa: E402

from warehouse import Warehouse  # noqa: E402
from warehouse.demo_data import DATASETS, fetch  # noqa: E402

RESULTS = HERE / "results" / "step_processes.json"
START_METHODS = {"forkserver (default)": "", "spawn": "execution: {config: {start_method: {spawn: {}}}}\n"}
SPEC = """\
tables:
  - name: planes
    source: raw.planes
    sql: planes.sql
    training: {{num_input_records_to_sample: {records}, tiny: {{hidden_size: 64, num_layers: 2, num_heads: 2}}}}
    generation: {{num_records: 200, seed: {seed}}}
    gates: {{min_valid_fraction: 0, min_quality: 0, min_privacy: 0}}
"""


def step_startups(dagster_home: Path) -> list[float]:
    """Seconds from each step's process launch to its start, in the latest run of `dagster_home`."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_runs(limit=1)[0]
        launched, started = {}, {}
        for entry in instance.all_logs(run.run_id):
            kind = entry.dagster_event.event_type_value if entry.dagster_event else None
            if kind == "STEP_WORKER_STARTING":
                launched[entry.step_key] = entry.timestamp
            elif kind == "STEP_START":
                started[entry.step_key] = entry.timestamp
        return [started[step] - launched[step] for step in launched if step in started]


def refresh(root: Path, run: int, records: int, run_config: str) -> dict:
    """One `dagster job execute` of refresh_planes; its wall time and per-step startup times."""
    (root / "synth.yaml").write_text(SPEC.format(records=records + run, seed=run))
    config = root / "run_config.yaml"
    config.write_text(run_config or "{}\n")
    env = {
        **os.environ,
        "SYNTH_SPEC": str(root / "synth.yaml"),
        "SYNTH_WAREHOUSE": str(root / "warehouse.duckdb"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "dagster_project.definitions"]
    command += ["-j", "refresh_planes", "-c", str(config)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"refresh_planes failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return {"seconds": seconds, "step_startups": step_startups(root / "dagster_home")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--records", type=int, default=2000, help="training records sampled per run")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="step_processes_"))
    try:
        shutil.copytree(ROOT / "sql", root / "sql")
        (root / "dagster_home").mkdir()
        shutil.copy(ROOT / "dagster_project" / "dagster.yaml", root / "dagster_home")
        Warehouse(root / "warehouse.duckdb").write("raw.planes", fetch(*DATASETS["raw.planes"]))
        runs: dict[str, list[dict]] = {name: [] for name in START_METHODS}
        for repeat in range(args.repeats):
            for index, (name, run_config) in enumerate(START_METHODS.items()):
                result = refresh(root, 2 * repeat + index, args.records, run_config)
                runs[name].append(result)
                startups = result["step_startups"]
                print(
                    f"{name}: {result['seconds']:.1f} s, {len(startups)} steps, "
                    f"median step start {statistics.median(startups):.1f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {
        name: {
            "seconds": statistics.median(r["seconds"] for r in by),
            "step_startup": statistics.median(s for r in by for s in r["step_startups"]),
            "steps": len(by[0]["step_startups"]),
        }
        for name, by in runs.items()
    }
    base = medians["spawn"]["seconds"]
    lines = ["| steps started by | refresh_planes | step start (median) | steps | spawn / this |", "|" + "---|" * 5]
    for name, m in medians.items():
        lines.append(
            f"| {name} | {m['seconds']:.1f} s | {m['step_startup']:.1f} s | {m['steps']} | {base / m['seconds']:.2f}x |"
        )
    publish_table(
        RESULTS,
        "step_processes",
        "Step processes",
        "\n".join(lines),
        lambda saved: (
            f"`dagster job execute -j refresh_planes` on a temporary warehouse with the demo's raw.planes "
            f"(3,322 rows), a 64-wide 2-layer model fitted on ~{args.records:,} records and 200 generated per run; "
            f"medians of {args.repeats} alternating runs ({saved['date']}, {saved['machine']['nproc']} CPU cores). "
            "Step start: from Dagster launching a step's process to the step starting."
        ),
        repeats=args.repeats,
        records=args.records,
        runs=runs,
        medians=medians,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
