"""Throughput benchmark: training MFU and generation speed against this machine's own limits, in one run.

    python benchmarks/throughput.py [--runs 3] [--records 2000] [--smollm-records 40]

Measures, in the same process: the float32 matmul peak (a 2048^3 GEMM, median of 20), and the
bfloat16 one where the CPU has bf16 instructions; training tokens/s and model FLOPs utilisation
over the float32 peak (see `flops_per_token`); generation for five samplers, each run `--runs`
times interleaved, medians quoted: a plain `model.generate` loop (HF, batched, sampling, rows wait
for the slowest, one process on every core), this engine without the grammar, with it (structured
generation), with it in one process (`generation.workers: 1`; auto samples in one single-thread
process per core, see synth_model/workers.py), and with it in float32 matmuls. Generation
tokens/s is put against the compute bound of the precision the sampler ran in (that peak /
(2 x parameters)). The tiny default model is fitted on credit_data (14 columns); the SmolLM2-135M
LoRA path on a small slice (CPU is slow for it; skip with
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

from engine import save_results, write_section  # noqa: E402

from synth_model import Synthesizer  # noqa: E402
from synth_model.decoder import merged, native_bf16  # noqa: E402
from synth_model.generate import split_units  # noqa: E402
from synth_model.validate import RecordValidator  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "throughput.json"
SAMPLERS = (
    "plain model.generate",
    "engine, free",
    "engine, structured",
    "engine, structured, 1 process",
    "engine, structured, float32",
)


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 20) -> float:
    """FLOP/s of a GEMM in `dtype` on this machine, median of `repeats` (after warm-up)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def flops_per_token(synth: Synthesizer) -> float:
    """Training FLOPs per token: 2 x parameters forward, 2 x backward through them, 2 x trainable
    parameters for their gradients (6 x parameters when all train, ~4 x with LoRA), plus attention
    over the keys a token may see.

    Units are isolated (each sees the prompt and itself), so a token's context averages the prompt
    plus half a unit; attention costs 4 x hidden FLOPs per key and layer forward, x3 with backward.
    Masked-out keys a kernel may still compute are overhead, not model FLOPs.
    """
    m, config = synth.metrics, synth.loaded.model.config
    unit_tokens = m["tokens_per_record"] * m.get("records_per_group_mean", 1)
    context = len(synth.prompt_ids) + unit_tokens / 2
    attention = 12 * config.num_hidden_layers * config.hidden_size * context
    return 4 * m["parameters"] + 2 * m["trainable_parameters"] + attention


def plain_generate(synth: Synthesizer, records: int, seed: int) -> dict:
    """HF `model.generate` in batches of `generation.batch_size` prompts until `records` valid records
    exist, or 20 x `records` units were drawn (a weak model may rarely write a valid one unaided)."""
    model, tokenizer = merged(synth.loaded.model), synth.loaded.tokenizer
    validator = RecordValidator(synth.schema)
    prompt = torch.tensor([synth.prompt_ids] * synth.config.generation.batch_size)
    torch.manual_seed(seed)
    valid = seen = tokens = 0
    start = time.perf_counter()
    while valid < records and seen < 20 * records:
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
    return {
        "records_per_s": valid / seconds,
        "valid_fraction": valid / seen,
        "tokens_per_s": tokens / seconds,
        "workers": 1,
        "precision": str(model.dtype).removeprefix("torch."),
    }


def engine_generate(
    synth: Synthesizer, records: int, seed: int, structured: bool, precision: str = "auto", workers: int | str = "auto"
) -> dict:
    generation = synth.config.generation
    generation.use_structured_generation, generation.seed = structured, seed
    generation.precision, generation.workers = precision, workers
    stats = synth.generate_with_stats(records).stats
    generation.precision, generation.workers = "auto", "auto"
    return {k: stats[k] for k in ("records_per_s", "valid_fraction", "tokens_per_s", "workers", "precision")}


def measure(name: str, synth: Synthesizer, records: int, runs: int, peaks: dict[str, float], real) -> dict:
    """Training figures of the fitted model, then each sampler `runs` times, interleaved.

    Each sampler's share of the compute bound is taken against the peak of the precision it ran in.
    """
    m = synth.metrics
    per_token = flops_per_token(synth)
    result = {
        "model": name,
        "parameters": m["parameters"],
        "training_tokens_per_s": m["tokens_per_s"],
        "training_mfu": m["tokens_per_s"] * per_token / peaks["float32"],
        "compute_bound_tokens_per_s": {p: peak / (2 * m["parameters"]) for p, peak in peaks.items()},
    }
    samples: dict[str, list[dict]] = {s: [] for s in SAMPLERS}
    for run in range(runs):
        samples[SAMPLERS[0]].append(plain_generate(synth, records, run))
        samples[SAMPLERS[1]].append(engine_generate(synth, records, run, structured=False))
        samples[SAMPLERS[2]].append(engine_generate(synth, records, run, structured=True))
        samples[SAMPLERS[3]].append(engine_generate(synth, records, run, structured=True, workers=1))
        samples[SAMPLERS[4]].append(engine_generate(synth, records, run, structured=True, precision="float32"))
        print(f"{name}: run {run + 1}/{runs} done", flush=True)
    for sampler, rows in samples.items():
        numbers = [k for k in rows[0] if k != "precision"]
        result[sampler] = {k: statistics.median(r[k] for r in rows) for k in numbers}
        result[sampler]["precision"] = precision = rows[0]["precision"]
        result[sampler]["share_of_compute_bound"] = (
            result[sampler]["tokens_per_s"] / result["compute_bound_tokens_per_s"][precision]
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
        "| model | sampler | processes | matmuls | valid records/s | valid fraction | tokens/s "
        "| x plain (valid records/s) | share of compute bound (same precision) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for sampler in SAMPLERS:
            s = r[sampler]
            ratio = f"{s['valid_records_per_s_vs_plain']:.2f}" if "valid_records_per_s_vs_plain" in s else "1"
            lines.append(
                f"| {r['model']} | {sampler} | {s['workers']:.0f} | {s['precision']} | {s['records_per_s']:.1f} | "
                f"{s['valid_fraction']:.3f} | {s['tokens_per_s']:,.0f} | {ratio} | {s['share_of_compute_bound']:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=2000, help="valid records per generation run (tiny)")
    parser.add_argument("--smollm-records", type=int, default=40, help="per run on the SmolLM2 path (0 skips it)")
    args = parser.parse_args()
    torch.manual_seed(0)
    peaks = {"float32": matmul_peak(torch.float32)}
    if native_bf16():
        peaks["bfloat16"] = matmul_peak(torch.bfloat16)
    credit = fetch("modeldata", "credit_data")
    print(", ".join(f"{p} matmul peak: {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()), flush=True)
    results = [
        measure(
            "tiny (default)",
            fit({"training": {"num_input_records_to_sample": 16000}}, credit),
            args.records,
            args.runs,
            peaks,
            credit,
        )
    ]
    if args.smollm_records:
        small = credit.slice(0, 400)
        lora = fit(
            {
                "data": {"max_sequences_per_example": 8},
                "training": {"pretrained_model": "smollm2-135m", "num_input_records_to_sample": 400, "batch_size": 1},
            },
            small,
        )
        lora.config.generation.batch_size = 32
        results.append(measure("SmolLM2-135M LoRA", lora, args.smollm_records, args.runs, peaks, small))
    lines = table_rows(results)
    training = [
        f"- {r['model']}: {r['parameters']:,} parameters, training {r['training_tokens_per_s']:,.0f} tokens/s "
        f"= MFU {r['training_mfu']:.2f} of the measured peak; quality score without / with the grammar "
        f"{r['quality_score']['free']:.2f} / {r['quality_score']['structured']:.2f}"
        for r in results
    ]
    print("\n".join(lines + [""] + training))
    saved = save_results(RESULTS, matmul_peak_flops=peaks, runs=args.runs, results=results)
    intro = (
        f"{saved['date']}, {saved['machine']['nproc']} CPU cores ({saved['machine']['cpu']}"
        f"{'' if native_bf16() else ', without bf16 instructions, so every sampler multiplies in float32'}); "
        "matmul peaks measured "
        "in the run: "
        + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items())
        + f". Generation cells are medians of {args.runs} interleaved runs; training MFU is against the "
        "float32 peak (training runs in float32 on CPU)."
    )
    write_section("throughput", "Throughput", saved, intro, "\n".join(lines), "\n".join(training))


if __name__ == "__main__":
    main()
