"""`synth train`, `synth generate` and `synth evaluate`: progress bars while running, one summary line at the end,
metrics as JSON, and one clear `error:` line with a non-zero exit on anything a user can fix."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from pydantic import ValidationError

from synth_model.config import SynthConfig
from synth_model.errors import DataWarning, SynthError
from synth_model.synthesizer import Synthesizer, model_folder_target
from synth_model.tables import output_file, read_input, write_output


def _train(args: argparse.Namespace) -> str:
    config = SynthConfig.from_any(args.config)
    model_folder_target(args.output)
    table = read_input(args.input)
    synth = Synthesizer(config).fit(table)
    out = synth.save(args.output)
    m = synth.metrics
    return (
        f"trained on {m['training_rows']} rows ({m['holdout_rows']} held out) in {m['fit_seconds']:.0f}s, "
        f"{m['tokens_per_s']:.0f} tokens/s, final loss {m['final_loss']:.3f} -> {out}"
    )


def _generate(args: argparse.Namespace) -> str:
    output = output_file(args.output)
    synth = Synthesizer.load(args.model_dir)
    gen = synth.config.generation
    for key in ("temperature", "top_p", "seed", "workers"):
        if getattr(args, key) is not None:
            try:
                setattr(gen, key, getattr(args, key))
            except ValidationError as err:
                raise SynthError(f"--{key.replace('_', '-')}: {err.errors()[0]['msg']}") from None
    result = synth.generate_with_stats(args.num_records)
    write_output(result.table, output)
    metrics_path = output.with_name(output.stem + ".metrics.json")
    metrics_path.write_text(json.dumps(result.stats, indent=2))
    s = result.stats
    return (
        f"{result.table.num_rows} records ({s['valid_fraction']:.1%} of generated records valid) "
        f"at {s['records_per_s']:.0f} records/s -> {output} (metrics: {metrics_path})"
    )


def _evaluate(args: argparse.Namespace) -> str:
    from synth_model.evaluate.report import save_report

    synth = Synthesizer.load(args.model_dir)
    result = synth.evaluate(read_input(args.real), read_input(args.synthetic), args.target)
    paths = save_report(result, args.output)
    q, p = result["quality"]["overall"], result["privacy"]["overall"]
    return (
        f"quality {q['score']:.1f} ({q['grade']}), privacy {p['score']:.1f} ({p['grade']}), "
        f"exact copies {result['exact_copy_rate']:.2%} in {result['seconds']:.0f}s -> {paths['html']}, {paths['json']}"
    )


def _workers(text: str) -> int | str:
    """`--workers`: a number >= 1, or auto (as `generation.workers`)."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a number >= 1 or auto, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="fit a model on a table and save the artifact folder")
    train.add_argument("input", help=".csv, .parquet, .jsonl file, or duckdb:FILE.duckdb:schema.table")
    train.add_argument("--config", help="YAML config (sections data, training, generation)")
    train.add_argument("--output", required=True, help="model folder to write")
    train.set_defaults(run=_train)
    gen = sub.add_parser("generate", help="sample valid synthetic records from a trained model folder")
    gen.add_argument("model_dir")
    gen.add_argument("--num-records", type=int, default=None, help="default: generation.num_records")
    gen.add_argument("--output", required=True, help="FILE.parquet or FILE.csv")
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--top-p", dest="top_p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--workers", type=_workers, default=None, help="sampling processes on a CPU: a number or auto")
    gen.set_defaults(run=_generate)
    ev = sub.add_parser("evaluate", help="quality and privacy report of synthetic rows (HTML + JSON)")
    ev.add_argument("model_dir")
    ev.add_argument("--real", required=True, help="the table the model was fitted on (same forms as train's input)")
    ev.add_argument("--synthetic", required=True, help="the synthetic table (.csv, .parquet, .jsonl, duckdb:...)")
    ev.add_argument("--output", required=True, help="folder for report.html and evaluation.json")
    ev.add_argument("--target", help="column for the machine-learning utility test")
    ev.set_defaults(run=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        other = warnings.showwarning
        warnings.showwarning = lambda message, category, *where: (
            print(f"warning: {message}", file=sys.stderr)
            if issubclass(category, DataWarning)
            else other(message, category, *where)
        )
        try:
            print(args.run(args))
        except (SynthError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: nothing was written, earlier outputs are as they were", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
