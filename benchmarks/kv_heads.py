"""Key/value heads of the tiny default: quality and sampling speed with 2 (3 query heads each) and 1 (6 each).

    python benchmarks/kv_heads.py [--seeds 2] [--runs 3] [--records 2000] [--train-records 16000]

Sampling a small model on CPU spends much of each step reading every row's key/value cache in
batched matmuls of one query per head; a key/value head shared by 6 query heads gives those
matmuls 6 rows instead of 3 (the same cost per matmul on AVX2: its kernels fill 6 rows) and halves
the cache. For each dataset and seed (`data.random_state`) this fits the tiny default with each
count of key/value heads, scores `--records` records with the product's quality score against the
real table, and samples `--records` valid records `--runs` times per model, interleaved, for
the median valid records/s. Cells are medians over seeds (range in brackets). Prints a table,
writes `benchmarks/results/kv_heads.json` and the section between the kv_heads markers in
`benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import publish_table  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "kv_heads.json"
KV_HEADS = (2, 1)
QUALITY = ("overall", "column_distribution_stability", "column_correlation_stability", "deep_structure_stability")
COLUMNS = {
    "overall": ("quality score", "{:.3f}"),
    "column_distribution_stability": ("column distribution stability", "{:.3f}"),
    "column_correlation_stability": ("column correlation stability", "{:.3f}"),
    "deep_structure_stability": ("deep structure stability", "{:.3f}"),
    "records_per_s": ("valid records/s", "{:.1f}"),
    "tokens_per_s": ("sampling tokens/s", "{:,.0f}"),
    "training_tokens_per_s": ("training tokens/s", "{:,.0f}"),
}


def datasets() -> dict:
    wage = fetch("ISLR", "Wage")
    return {
        "credit_data": fetch("modeldata", "credit_data"),
        "Wage": wage.drop_columns(["logwage", "region"]),  # log of the target; one value
    }


def fitted(table, kv_heads: int, seed: int, train_records: int) -> Synthesizer:
    config = {
        "data": {"random_state": seed},
        "training": {"num_input_records_to_sample": train_records, "tiny": {"num_kv_heads": kv_heads}},
    }
    return Synthesizer(config).fit(table)


def quality(synth: Synthesizer, table, records: int) -> dict:
    synth.config.generation.seed = 0
    scores = synth.evaluate(table, synth.generate(records))["quality"]
    return {k: scores[k]["score"] for k in QUALITY}


def one_seed(table, seed: int, args: argparse.Namespace) -> dict[int, dict]:
    """Both models fitted with one seed: their quality, then their sampling speed, runs interleaved."""
    models = {kv: fitted(table, kv, seed, args.train_records) for kv in KV_HEADS}
    out = {kv: quality(s, table, args.records) for kv, s in models.items()}
    speeds: dict[int, list[dict]] = {kv: [] for kv in KV_HEADS}
    for run in range(args.runs):
        for kv, synth in models.items():
            synth.config.generation.seed = run
            speeds[kv].append(synth.generate_with_stats(args.records).stats)
    for kv, runs in speeds.items():
        out[kv] |= {k: statistics.median(r[k] for r in runs) for k in ("records_per_s", "tokens_per_s")}
        metrics = models[kv].metrics
        heads = models[kv].loaded.model.config.num_attention_heads
        out[kv] |= {
            "training_tokens_per_s": metrics["tokens_per_s"],
            "parameters": metrics["parameters"],
            "heads": heads,
        }
    return out


def cell(values: list[float], form: str) -> str:
    middle = form.format(statistics.median(values))
    return middle if len(values) == 1 else f"{middle} ({form.format(min(values))}–{form.format(max(values))})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="sampling runs per model, interleaved")
    parser.add_argument("--records", type=int, default=2000, help="records scored, and valid records per sampling run")
    parser.add_argument("--train-records", type=int, default=16000, help="training records sampled per fit")
    args = parser.parse_args()
    results: dict[str, dict[int, list[dict]]] = {}
    for name, table in datasets().items():
        results[name] = {kv: [] for kv in KV_HEADS}
        for seed in range(args.seeds):
            for kv, figures in one_seed(table, seed, args).items():
                results[name][kv].append(figures)
            print(f"{name}: seed {seed + 1}/{args.seeds} done", flush=True)
    lines = [
        "| dataset | key/value heads (query heads each) | parameters | "
        + " | ".join(label for label, _ in COLUMNS.values())
        + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, by_kv in results.items():
        for kv, seeds in by_kv.items():
            lines.append(
                f"| {name} | {kv} ({seeds[0]['heads'] // kv}) | {seeds[0]['parameters']:,} | "
                + " | ".join(cell([s[k] for s in seeds], form) for k, (_, form) in COLUMNS.items())
                + " |"
            )

    def intro(saved: dict) -> str:
        return (
            f"The tiny default (6 query heads) fitted on {args.train_records:,} training records per dataset and "
            f"seed, {args.seeds} seeds; quality of {args.records:,} generated records against the real table; "
            f"valid records/s: median of {args.runs} interleaved sampling runs of {args.records:,} per model "
            f"(structured, `generation.workers: auto`); cells are medians over seeds, ranges in brackets "
            f"({saved['date']}, {saved['machine']['nproc']} CPU cores, {saved['machine']['cpu']})."
        )

    publish_table(
        RESULTS,
        "kv_heads",
        "Key/value heads of the tiny model",
        "\n".join(lines),
        intro,
        seeds=args.seeds,
        runs=args.runs,
        records=args.records,
        train_records=args.train_records,
        results={name: {str(kv): seeds for kv, seeds in by_kv.items()} for name, by_kv in results.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
