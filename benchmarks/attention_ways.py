"""Sampling with each way of reading the key/value cache forced, against the way timed fastest here.

    python benchmarks/attention_ways.py [--runs 3] [--records 2000]

The sampler's attention reads the cache whole, or the filled prefix with batched matmuls, or that
prefix through SDPA; `decoder.attention_ways` times the three when sampling starts and keeps the
fastest, because which is fastest differs between CPUs. This fits the tiny default on credit_data
(records of one short unit) and on the event benchmark's flights (groups of long units), then
samples each (after one unmeasured warm-up) with the timed choice and with each way forced for every
fill, interleaved, `--runs` times each; credit in both precisions the CPU offers. Prints a table, writes
`benchmarks/results/attention_ways.json` and the section between the attention_ways markers in
`benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import publish_table  # noqa: E402
from events import config as flights_config  # noqa: E402
from events import load_flights  # noqa: E402

from synth_model import Synthesizer, decoder  # noqa: E402
from synth_model.decoder import PREFIX, SDPA, WHOLE, kv_shape, native_bf16  # noqa: E402
from synth_model.generate import sequence_len  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "attention_ways.json"
TIMED = "timed choice (default)"


def timed_choice(synth: Synthesizer, dtype: torch.dtype, threads: int) -> str:
    """The ways `attention_ways` picks for this model's cache at `threads` threads (the first fill / the rest)."""
    cfg = synth.loaded.model.config
    kv, head_dim = kv_shape(cfg)
    max_len = sequence_len(len(synth.prompt_ids), synth.max_unit_tokens)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ways = decoder.attention_ways("cpu", dtype, 512, cfg.num_attention_heads, kv, head_dim, max_len)
    finally:
        torch.set_num_threads(before)
    return " / ".join(ways)


def measure(name: str, synth: Synthesizer, records: int, runs: int, precision: str) -> dict:
    """Valid records/s with the timed choice and with each way forced, interleaved `runs` times."""
    timed = decoder.attention_ways
    variants = {TIMED: timed, **{way: (lambda *shape, way=way: (way, way)) for way in (WHOLE, PREFIX, SDPA)}}
    speeds: dict[str, list[float]] = {v: [] for v in variants}
    workers = 0
    generation = synth.config.generation
    synth.generate_with_stats(min(records, 200))  # warm-up (first allocations, grammar set-up): not measured
    try:
        for run in range(runs):
            order = list(variants) if run % 2 == 0 else list(reversed(variants))
            for variant in order:
                decoder.attention_ways = variants[variant]  # forked workers inherit it
                generation.seed, generation.precision = run, precision
                stats = synth.generate_with_stats(records).stats
                speeds[variant].append(stats["records_per_s"])
                workers = stats["workers"]
            print(f"{name}, {precision}: run {run + 1}/{runs} done", flush=True)
    finally:
        decoder.attention_ways = timed
        generation.precision = "auto"
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    threads = 1 if workers > 1 else torch.get_num_threads()
    medians = {v: statistics.median(s) for v, s in speeds.items()}
    return {
        "table": name,
        "precision": precision,
        "workers": workers,
        "timed_choice": timed_choice(synth, dtype, threads),
        "records_per_s": speeds,
        "median_records_per_s": medians,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=2000, help="valid records per sampling run (credit)")
    args = parser.parse_args()
    precisions = ["bfloat16", "float32"] if native_bf16() else ["float32"]
    credit = Synthesizer({"training": {"num_input_records_to_sample": 4000}}).fit(fetch("modeldata", "credit_data"))
    results = [measure("credit_data", credit, args.records, args.runs, p) for p in precisions]
    flights = Synthesizer(flights_config(0, 10000)).fit(load_flights())
    results.append(measure("flights (grouped)", flights, args.records // 2, args.runs, precisions[0]))
    lines = [
        "| table | matmuls | processes | timed choice (first half / rest of the cache) | "
        + " | ".join(f"{v} (records/s)" for v in (TIMED, WHOLE, PREFIX, SDPA))
        + " |",
        "|" + "---|" * 8,
    ]
    for r in results:
        m = r["median_records_per_s"]
        cells = [f"{m[TIMED]:.1f}"] + [f"{m[w]:.1f} ({m[w] / m[TIMED]:.2f}x)" for w in (WHOLE, PREFIX, SDPA)]
        lines.append(
            f"| {r['table']} | {r['precision']} | {r['workers']} | {r['timed_choice']} | " + " | ".join(cells) + " |"
        )

    def intro(saved: dict) -> str:
        m = saved["machine"]
        return (
            f"Valid records/s sampling {args.records:,} credit_data records (tiny default, 4,000 training records) "
            f"and {args.records // 2:,} flights records (the event benchmark's table, 10,000 training records), "
            f"medians of {args.runs} interleaved runs ({saved['date']}, {m['nproc']} CPU cores, {m['cpu']}). "
            "A forced way reads the cache that way at every fill; in brackets, the ratio to the timed choice."
        )

    publish_table(
        RESULTS,
        "attention_ways",
        "Attention over the key/value cache",
        "\n".join(lines),
        intro,
        runs=args.runs,
        records=args.records,
        results=results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
