"""Sampling records: a lean batched loop over a preallocated KV cache (see decoder.py), then validation.

Every sequence starts from the same prompt, so a batch advances in lockstep with no padding; each
sequence yields several records (one per line) until the end token or the context runs out, just
as the training examples were packed. Lines are validated as they are decoded and only valid
records are kept, until `num_records` exist or the stop rules fire.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from synth_model.config import GenerationConfig
from synth_model.decoder import make_decoder, merged
from synth_model.errors import GenerationError
from synth_model.records import records_to_table
from synth_model.schema import TableSchema
from synth_model.validate import RecordValidator

ProgressFn = Callable[[dict], None]


@dataclass
class GenerationResult:
    table: pa.Table
    stats: dict = field(default_factory=dict)


def default_batch_size(device: torch.device) -> int:
    return 1024 if device.type == "cuda" else 256


def _filter_logits(logits: torch.Tensor, generated: torch.Tensor | None, cfg: GenerationConfig) -> torch.Tensor:
    if cfg.repetition_penalty != 1.0 and generated is not None:
        seen = logits.gather(1, generated)
        seen = torch.where(seen > 0, seen / cfg.repetition_penalty, seen * cfg.repetition_penalty)
        logits = logits.scatter(1, generated, seen)
    logits = logits / cfg.temperature
    if cfg.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > cfg.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    return logits


def _sample(scores: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One token per row of softmax(scores), by inverting the row's CDF at `uniform` [batch] in [0, 1).

    Needs one random number per row where torch.multinomial draws one per vocabulary entry.
    """
    cdf = (scores - scores.amax(-1, keepdim=True)).exp().cumsum(-1, dtype=torch.float64)
    token = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return token.clamp_(max=scores.shape[-1] - 1)


@torch.inference_mode()
def sample_batch(
    model,
    prompt_ids: list[int],
    batch_size: int,
    max_new_tokens: int,
    eos_id: int,
    cfg: GenerationConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Token ids [batch, <= max_new_tokens] continuing the prompt; positions after the end token are eos."""
    device = next(model.parameters()).device
    decoder = make_decoder(model, batch_size, len(prompt_ids) + max_new_tokens)
    logits = decoder.prefill(torch.tensor([prompt_ids], device=device))
    uniform = torch.rand(max_new_tokens, batch_size, generator=generator, device=device, dtype=torch.float64)
    out = torch.full((batch_size, max_new_tokens), eos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        scores = _filter_logits(logits.float(), out[:, :step] if step else None, cfg)
        token = _sample(scores, uniform[step]).masked_fill(done, eos_id)
        out[:, step] = token
        done |= token == eos_id
        if bool(done.all()) or step + 1 == max_new_tokens:
            return out[:, : step + 1]
        logits = decoder.step(token)
    return out


def split_lines(ids: torch.Tensor, tokenizer, eos_id: int) -> tuple[list[str], int]:
    """Complete lines from each sequence, and how many trailing partial lines were cut off."""
    lines, truncated = [], 0
    for row in ids.tolist():
        ended = eos_id in row
        if ended:
            row = row[: row.index(eos_id)]
        text = tokenizer.decode(row, skip_special_tokens=True)
        parts = text.split("\n")
        if parts[-1].strip():
            if not ended:
                truncated += 1
            else:
                lines.append(parts[-1])
        lines.extend(p for p in parts[:-1] if p.strip())
    return lines, truncated


def generate_records(
    model,
    tokenizer,
    schema: TableSchema,
    prompt_ids: list[int],
    max_new_tokens: int,
    cfg: GenerationConfig,
    num_records: int | None = None,
    progress: ProgressFn | None = None,
    records_per_sequence: float = 1.0,
) -> GenerationResult:
    """Sample until `num_records` valid records exist; raise GenerationError when the model keeps failing."""
    target = num_records or cfg.num_records
    model = merged(model)  # once per call, not once per batch
    device = next(model.parameters()).device
    batch_size = default_batch_size(device) if cfg.batch_size == "auto" else cfg.batch_size
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed if cfg.seed is not None else int(torch.seed() % 2**31))
    validator = RecordValidator(schema)
    eos_id = tokenizer.eos_token_id
    valid: list[dict] = []
    reasons: Counter[str] = Counter()
    bad_batches, batches, tokens, truncated = 0, 0, 0, 0
    start = time.perf_counter()
    with tqdm(total=target, unit="rec", desc="generate", mininterval=1.0) as bar:
        # sized from the expected lines per sequence (refined after each batch) so that small requests
        # do not sample a full batch
        lines_per_sequence = records_per_sequence
        while len(valid) < target:
            size = min(batch_size, max(8, math.ceil((target - len(valid)) * 1.3 / lines_per_sequence)))
            ids = sample_batch(model, prompt_ids, size, max_new_tokens, eos_id, cfg, generator)
            tokens += int((ids != eos_id).sum())
            lines, cut = split_lines(ids.cpu(), tokenizer, eos_id)
            truncated += cut
            lines_per_sequence = max(1.0, len(lines) / size)
            batch_valid = 0
            for line in lines:
                record, reason = validator.check(line)
                if record is None:
                    reasons[reason] += 1
                else:
                    batch_valid += 1
                    valid.append(record)
            batches += 1
            bar.update(min(batch_valid, target - bar.n))
            invalid_fraction = 1 - batch_valid / max(len(lines), 1)
            if batches == 1 and batch_valid == 0:
                raise GenerationError(
                    f"the first batch of {len(lines)} generated lines held no valid record "
                    f"(reasons: {dict(reasons.most_common(3))}): train longer (num_input_records_to_sample) "
                    "or lower generation.temperature"
                )
            bad_batches = bad_batches + 1 if invalid_fraction >= cfg.invalid_fraction_threshold else 0
            if bad_batches >= cfg.patience:
                raise GenerationError(
                    f"the invalid fraction stayed at or above {cfg.invalid_fraction_threshold} for {cfg.patience} "
                    f"batches (reasons: {dict(reasons.most_common(3))}); train longer, lower "
                    "generation.temperature, or raise invalid_fraction_threshold/patience"
                )
            if progress:
                elapsed = time.perf_counter() - start
                progress({"valid": len(valid), "target": target, "records_per_s": len(valid) / elapsed})
    seconds = time.perf_counter() - start
    n_invalid = sum(reasons.values())
    stats = {
        "num_records": target,
        "valid_records": len(valid),
        "invalid_records": n_invalid,
        "valid_fraction": len(valid) / max(len(valid) + n_invalid, 1),
        "rejections": dict(reasons.most_common()),
        "truncated_lines": truncated,
        "batches": batches,
        "batch_size": batch_size,
        "generated_tokens": tokens,
        "seconds": seconds,
        "records_per_s": target / seconds,
        "tokens_per_s": tokens / seconds,
    }
    return GenerationResult(records_to_table(valid[:target], schema), stats)
