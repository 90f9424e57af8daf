"""How a run's steps get their processes: forked from one server that has imported the project.

Dagster runs each step in its own process. Spawned, every step imports torch, transformers and the
engine again (about 10 s a step on 2 cores, more on a busy machine): most of a small table's
refresh. A forkserver that preloads `dagster_project.definitions` pays that once per run and forks
every step from it. The run config keeps Dagster's multiprocess shape, so `start_method: {spawn: {}}`
in the launchpad goes back to spawning; platforms without a forkserver spawn by default.
"""

import importlib.util
import multiprocessing

import dagster as dg

PRELOAD = ["dagster_project.definitions"]
DEFAULT_START = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"

STEP_PROCESS_CONFIG = {
    "max_concurrent": dg.Field(
        dg.Noneable(int), default_value=None, description="Steps run at once (default: the number of CPUs)."
    ),
    "start_method": dg.Field(
        dg.Selector(
            {
                "spawn": dg.Field({}, description="A fresh interpreter per step (imports everything again)."),
                "forkserver": dg.Field(
                    {"preload_modules": dg.Field([str], default_value=PRELOAD)},
                    description="Fork each step from a server that imported `preload_modules` once per run.",
                ),
            }
        ),
        default_value={DEFAULT_START: {}},
    ),
}


@dg.configured(dg.multiprocess_executor, config_schema=STEP_PROCESS_CONFIG)
def step_processes(config: dict) -> dict:
    """Dagster's multiprocess executor, starting steps from a preloaded forkserver by default.

    Checks what Dagster leaves unchecked: a `max_concurrent` below 1 would start no step and wait
    forever, and a forkserver skips a preload module it cannot import without a word."""
    if config["max_concurrent"] is not None and config["max_concurrent"] < 1:
        raise dg.DagsterInvariantViolationError(
            f"max_concurrent is {config['max_concurrent']}: set at least 1, or leave it out (one per CPU)"
        )
    preload = config["start_method"].get("forkserver", {}).get("preload_modules", [])
    if missing := [name for name in preload if not _importable(name)]:
        raise dg.DagsterInvariantViolationError(f"preload_modules {missing} cannot be imported: fix the module names")
    return {"max_concurrent": config["max_concurrent"], "start_method": config["start_method"]}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a missing parent package of a dotted name
        return False
