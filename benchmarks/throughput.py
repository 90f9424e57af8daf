"""Throughput benchmark: training MFU and generation speed against this machine's own limits, in one run.

    python benchmarks/throughput.py [--runs 3] [--records 2000] [--smollm-records 60]

Measures, in the same process: the fp32 matmul peak (a 2048^3 GEMM, median of 20); training
tokens/s and model FLOPs utilisation (6 x parameters + causal attention per token, over that peak);
generation for three samplers, each run `--runs` times interleaved, medians quoted: a plain
`model.generate` loop (HF, batched, sampling, rows wait for the slowest), this engine without
the grammar, and with it (structured generation). Generation tokens/s is also put against the
compute bound (peak / (2 x parameters)). The tiny default model is fitted on credit_data (14
columns); the SmolLM2-135M LoRA path on a small slice (CPU is slow for it; skip with
--smollm-records 0). Prints a table, writes `benchmarks/results/throughput.json` and the section
between the throughput markers in `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import save_results, write_readme  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.decoder import merged  # noqa: E402
from synth_model.generate import split_units  # noqa: E402
from synth_model.validate import RecordValidator  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "throughput.json"
START, END = "<!-- throughput:start -->", "<!-- throughput:end -->"
SAMPLERS = ("plain model.generate", "engine, free", "engine, structured")


def matmul_peak(size: int = 2048, repeats: int = 20) -> float:
    """FLOP/s of an fp32 GEMM on this machine, median of `repeats` (after warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def flops_per_token(synth: Synthesizer, tokens_per_example: float) -> float:
    """Training FLOPs per token: 6 x parameters, plus causal attention (6 x layers x hidden x mean context)."""
    config = synth.loaded.model.config
    hidden = getattr(config, "hidden_size", 0)
    layers = getattr(config, "num_hidden_layers", 0)
    return 6 * synth.metrics["parameters"] + 6 * layers * hidden * tokens_per_example / 2


def plain_generate(synth: Synthesizer, records: int, seed: int) -> dict:
    """HF `model.generate` in batches of 256 prompts until `records` valid records exist."""
    model, tokenizer = merged(synth.loaded.model), synth.loaded.tokenizer
    validator = RecordValidator(synth.schema)
    prompt = torch.tensor([synth.prompt_ids] * synth.config.generation.batch_size)
    torch.manual_seed(seed)
    valid = seen = tokens = 0
    start = time.perf_counter()
    while valid < records:
        out = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=True,
            temperature=synth.config.generation.temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=synth.max_unit_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )[:, prompt.shape[1] :].tolist()
        finished = []
        for row in out:
            ended = tokenizer.eos_token_id in row
            ids = row[: row.index(tokenizer.eos_token_id)] if ended else row
            finished.append((ids, ended))
            tokens += len(ids)
        for lines, _ in split_units(finished, tokenizer):
            seen += 1
            valid += bool(lines) and validator.check(lines[0])[0] is not None
    seconds = time.perf_counter() - start
    return {"records_per_s": valid / seconds, "valid_fraction": valid / seen, "tokens_per_s": tokens / seconds}


def engine_generate(synth: Synthesizer, records: int, seed: int, structured: bool) -> dict:
    synth.config.generation.use_structured_generation = structured
    synth.config.generation.seed = seed
    stats = synth.generate_with_stats(records).stats
    return {k: stats[k] for k in ("records_per_s", "valid_fraction", "tokens_per_s")}


def measure(name: str, synth: Synthesizer, records: int, runs: int, peak: float, real) -> dict:
    """Training figures of the fitted model, then each sampler `runs` times, interleaved."""
    m = synth.metrics
    per_token = flops_per_token(synth, m["tokens"] / max(m["examples"], 1))
    result = {
        "model": name,
        "parameters": m["parameters"],
        "training_tokens_per_s": m["tokens_per_s"],
        "training_mfu": m["tokens_per_s"] * per_token / peak,
        "compute_bound_tokens_per_s": peak / (2 * m["parameters"]),
    }
    samples: dict[str, list[dict]] = {s: [] for s in SAMPLERS}
    for run in range(runs):
        samples[SAMPLERS[0]].append(plain_generate(synth, records, run))
        samples[SAMPLERS[1]].append(engine_generate(synth, records, run, structured=False))
        samples[SAMPLERS[2]].append(engine_generate(synth, records, run, structured=True))
        print(f"{name}: run {run + 1}/{runs} done", flush=True)
    for sampler, rows in samples.items():
        result[sampler] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        result[sampler]["share_of_compute_bound"] = (
            result[sampler]["tokens_per_s"] / result["compute_bound_tokens_per_s"]
        )
    plain = result[SAMPLERS[0]]
    for sampler in SAMPLERS[1:]:
        result[sampler]["tokens_per_s_vs_plain"] = result[sampler]["tokens_per_s"] / plain["tokens_per_s"]
        result[sampler]["valid_records_per_s_vs_plain"] = result[sampler]["records_per_s"] / plain["records_per_s"]
    quality = {}
    for structured in (False, True):
        synth.config.generation.use_structured_generation = structured
        synthetic = synth.generate(min(records, 1000))
        quality["structured" if structured else "free"] = synth.evaluate(real, synthetic)["quality"]["overall"]["score"]
    result["quality_score"] = quality
    return result


def fit(config: dict, table) -> Synthesizer:
    return Synthesizer(config).fit(table)


def table_rows(results: list[dict]) -> list[str]:
    lines = [
        "| model | sampler | valid records/s | valid fraction | tokens/s | x plain (tokens/s) "
        "| share of compute bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for sampler in SAMPLERS:
            s = r[sampler]
            ratio = f"{s['tokens_per_s_vs_plain']:.2f}" if "tokens_per_s_vs_plain" in s else "1"
            lines.append(
                f"| {r['model']} | {sampler} | {s['records_per_s']:.1f} | {s['valid_fraction']:.3f} | "
                f"{s['tokens_per_s']:,.0f} | {ratio} | {s['share_of_compute_bound']:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=2000, help="valid records per generation run (tiny)")
    parser.add_argument("--smollm-records", type=int, default=60, help="per run on the SmolLM2 path (0 skips it)")
    args = parser.parse_args()
    torch.manual_seed(0)
    peak = matmul_peak()
    credit = fetch("modeldata", "credit_data")
    print(f"matmul peak: {peak / 1e9:.0f} GFLOP/s", flush=True)
    results = [
        measure(
            "tiny (default)",
            fit({"training": {"num_input_records_to_sample": 16000}}, credit),
            args.records,
            args.runs,
            peak,
            credit,
        )
    ]
    if args.smollm_records:
        small = credit.slice(0, 400)
        lora = fit({"training": {"pretrained_model": "smollm2-135m", "num_input_records_to_sample": 200}}, small)
        lora.config.generation.batch_size = 32
        results.append(measure("SmolLM2-135M LoRA", lora, args.smollm_records, args.runs, peak, small))
    lines = table_rows(results)
    training = [
        f"- {r['model']}: {r['parameters']:,} parameters, training {r['training_tokens_per_s']:,.0f} tokens/s "
        f"= MFU {r['training_mfu']:.2f} of the measured peak; quality score without / with the grammar "
        f"{r['quality_score']['free']:.2f} / {r['quality_score']['structured']:.2f}"
        for r in results
    ]
    print("\n".join(lines + [""] + training))
    saved = save_results(RESULTS, matmul_peak_flops=peak, runs=args.runs, results=results)
    section = "\n".join(
        [
            START,
            "### Throughput (`python benchmarks/throughput.py`)",
            "",
            f"{saved['date']}, {saved['machine']['cpus']} CPU cores, fp32 matmul peak measured in the run: "
            f"{peak / 1e9:.0f} GFLOP/s. Generation cells are medians of {args.runs} interleaved runs.",
            "",
            *lines,
            "",
            *training,
            END,
        ]
    )
    write_readme(section, START, END)


if __name__ == "__main__":
    main()
