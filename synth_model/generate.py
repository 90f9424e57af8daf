"""Sampling records: a lean batched loop over a preallocated KV cache (see decoder.py), then validation.

Every sequence starts from the same prompt, so a batch advances in lockstep with no padding; each
sequence yields several records (one per line) until the end token or the context runs out, just
as the training examples were packed. Lines are validated as they are decoded and only valid
records are kept, until `num_records` exist or the stop rules fire.
"""

from __future__ import annotations

import math
import random
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
from synth_model.groups import GroupRules, KeyFactory, assign_keys, check_group, split_groups
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


def split_sequences(ids: torch.Tensor, tokenizer, eos_id: int) -> list[tuple[list[str], bool]]:
    """Each sequence's complete lines, and whether it ended (a cut-off sequence loses its partial line)."""
    out = []
    for row in ids.tolist():
        ended = eos_id in row
        if ended:
            row = row[: row.index(eos_id)]
        parts = tokenizer.decode(row, skip_special_tokens=True).split("\n")
        lines = [p for p in parts[:-1] if p.strip()]
        if ended and parts[-1].strip():
            lines.append(parts[-1])
        out.append((lines, ended))
    return out


@dataclass
class Collector:
    """Turns decoded sequences into valid records: line by line, or group by group when grouped."""

    validator: RecordValidator
    groups: GroupRules | None = None
    records: list[dict] = field(default_factory=list)
    valid_groups: list[list[dict]] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    group_reasons: Counter = field(default_factory=Counter)
    units: int = 0  # records, or groups when grouped
    invalid_units: int = 0
    truncated: int = 0

    @property
    def n_valid(self) -> int:
        return len(self.records)

    def add(self, sequences: list[tuple[list[str], bool]]) -> tuple[int, int]:
        """Validate one batch; returns (units seen, valid units) for the stop rules."""
        seen, valid = 0, 0
        for lines, ended in sequences:
            if self.groups is None:
                self.truncated += not ended
                for line in lines:
                    record, reason = self.validator.check(line)
                    seen += 1
                    if record is None:
                        self.reasons[reason] += 1
                    else:
                        valid += 1
                        self.records.append(record)
                continue
            found, problems = split_groups(lines, ended, self.groups.accept_no_delineator)
            self.truncated += problems.pop("truncated", 0)
            self.group_reasons.update(problems)
            seen += sum(problems.values())
            for group in found:
                records, reason, record_reasons = check_group(group, self.validator, self.groups)
                self.reasons.update(record_reasons)
                seen += 1
                if records is None:
                    self.group_reasons[reason] += 1
                else:
                    valid += 1
                    self.valid_groups.append(records)
                    self.records.extend(records)
        self.units += seen
        self.invalid_units += seen - valid
        return seen, valid


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
    groups: GroupRules | None = None,
    keys: list[KeyFactory] | None = None,
    output_schema: TableSchema | None = None,
) -> GenerationResult:
    """Sample until `num_records` valid records exist (whole groups when grouped); raise
    GenerationError when the model keeps failing. `schema` holds the modelled columns; the output
    has `output_schema`'s (default: the same), entity keys filled in by `keys`."""
    target = num_records or cfg.num_records
    model = merged(model)  # once per call, not once per batch
    device = next(model.parameters()).device
    batch_size = default_batch_size(device) if cfg.batch_size == "auto" else cfg.batch_size
    generator = torch.Generator(device=device)
    seed = cfg.seed if cfg.seed is not None else int(torch.seed() % 2**31)
    generator.manual_seed(seed)
    collector = Collector(RecordValidator(schema), groups)
    what = "groups" if groups else "lines"
    eos_id = tokenizer.eos_token_id
    bad_batches, batches, tokens = 0, 0, 0
    start = time.perf_counter()
    with tqdm(total=target, unit="rec", desc="generate", mininterval=1.0) as bar:
        # sized from the expected records per sequence (refined after each batch) so that small
        # requests do not sample a full batch
        per_sequence = records_per_sequence
        while collector.n_valid < target:
            size = min(batch_size, max(8, math.ceil((target - collector.n_valid) * 1.3 / per_sequence)))
            ids = sample_batch(model, prompt_ids, size, max_new_tokens, eos_id, cfg, generator)
            tokens += int((ids != eos_id).sum())
            before = collector.n_valid
            seen, valid = collector.add(split_sequences(ids.cpu(), tokenizer, eos_id))
            per_sequence = max(1.0, (collector.n_valid - before) / size)
            batches += 1
            bar.update(min(collector.n_valid, target) - bar.n)
            top = dict((collector.group_reasons + collector.reasons).most_common(3))
            if batches == 1 and valid == 0:
                raise GenerationError(
                    f"the first batch of {seen} generated {what} held nothing valid (reasons: {top}): train "
                    "longer (num_input_records_to_sample) or lower generation.temperature"
                )
            bad_batches = bad_batches + 1 if 1 - valid / max(seen, 1) >= cfg.invalid_fraction_threshold else 0
            if bad_batches >= cfg.patience:
                raise GenerationError(
                    f"the invalid fraction of {what} stayed at or above {cfg.invalid_fraction_threshold} for "
                    f"{cfg.patience} batches (reasons: {top}); train longer, lower generation.temperature, or "
                    "raise invalid_fraction_threshold/patience"
                )
            if progress:
                elapsed = time.perf_counter() - start
                progress({"valid": collector.n_valid, "target": target, "records_per_s": collector.n_valid / elapsed})
    seconds = time.perf_counter() - start
    if groups is None:
        records = collector.records[:target]
    else:
        assign_keys(collector.valid_groups, keys or [], random.Random(seed))
        records = [r for g in collector.valid_groups for r in g]
    n_invalid = sum(collector.reasons.values())
    stats = {
        "num_records": target,
        "valid_records": len(records),
        "invalid_records": n_invalid,
        "valid_fraction": collector.n_valid / max(collector.n_valid + n_invalid, 1),
        "rejections": dict(collector.reasons.most_common()),
        "truncated_sequences": collector.truncated,
        "batches": batches,
        "batch_size": batch_size,
        "generated_tokens": tokens,
        "seconds": seconds,
        "records_per_s": len(records) / seconds,
        "tokens_per_s": tokens / seconds,
    }
    if groups is not None:
        stats |= {
            "groups": collector.units,
            "valid_groups": len(collector.valid_groups),
            "valid_group_fraction": len(collector.valid_groups) / max(collector.units, 1),
            "group_rejections": dict(collector.group_reasons.most_common()),
        }
    return GenerationResult(records_to_table(records, output_schema or schema), stats)
