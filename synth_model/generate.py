"""Sampling records: continuous batching over a KV cache (see decoder.py), then validation.

Every row continues the shared prompt with one unit (a record, or one entity's group) and stops at
the end token; a finished row is validated and, while more records are needed, restarted at once
(continuous batching), so the batch stays full instead of waiting for its slowest row. A row is
cut at `max_unit_tokens` (set from the longest unit training saw). With structured generation a
grammar (see grammar.py) masks every token that would break the record's form, and in grouped
tables a record line that would sink its group is drawn again (see LineChecks, groups.GroupGuard).
On a CPU a request is split into shares sampled in forked worker processes (see workers.py).
"""

from __future__ import annotations

import math
import numbers
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from synth_model.config import GenerationConfig
from synth_model.decoder import kv_shape, make_decoder, matmul_dtype, merged
from synth_model.errors import ConfigError, GenerationError
from synth_model.grammar import Constraint, unit_grammar
from synth_model.groups import (
    GroupGuard,
    GroupRules,
    KeyFactory,
    assign_keys,
    check_group,
    pick_groups,
    split_groups,
)
from synth_model.records import records_to_table, sequence_len
from synth_model.schema import TableSchema
from synth_model.validate import RecordValidator
from synth_model.vllm_sampler import vllm_dtype, vllm_units
from synth_model.workers import run_forked, seeds, split_target, worker_count

ProgressFn = Callable[[dict], None]
Finished = tuple[list[int], bool]  # a unit's token ids, and whether it ended (False: cut at the length cap)


@dataclass
class GenerationResult:
    table: pa.Table
    stats: dict = field(default_factory=dict)


CACHE_BUDGET = 2 * 2**30  # bytes of key/value cache an "auto" sampling batch may take
HEAD_REDRAWS = 8  # redraws of a refused line that keep its first character (see LineChecks)
MAX_REDRAWS = 16  # refusals of one line after which it stays (and its group is judged as a whole)
PROGRESS_EVERY_S = 0.5  # the progress callback, at most this often


def default_batch_size(model, max_len: int, device: torch.device) -> int:
    """`generation.batch_size: auto`: 1024 rows on CUDA, 512 on CPU (of 128-1024, the fastest for
    1,000 records of the tiny model on 2 cores), fewer where their key/value cache would pass
    `CACHE_BUDGET` (see `cache_rows`)."""
    return min(1024 if device.type == "cuda" else 512, cache_rows(model, max_len))


def cache_rows(model, max_len: int, workers: int = 1) -> int:
    """Rows (at least one) whose key/value caches of `max_len` positions keep to `CACHE_BUDGET`, shared
    by `workers` processes. Counted at the model's dtype: an upper bound where the cache is bfloat16."""
    kv_heads, head_dim = kv_shape(model.config)
    per_row = (
        2 * model.config.num_hidden_layers * kv_heads * head_dim * max_len * next(model.parameters()).element_size()
    )
    return max(1, CACHE_BUDGET // (per_row * workers))


def _filter_logits(logits: torch.Tensor, seen: torch.Tensor | None, cfg: GenerationConfig) -> torch.Tensor:
    """Repetition penalty on the tokens each row's unit already holds (`seen` [batch, vocab]), temperature, top-p."""
    if cfg.repetition_penalty != 1.0 and seen is not None:
        penalised = torch.where(logits > 0, logits / cfg.repetition_penalty, logits * cfg.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
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


class LineChecks:
    """Checks each line a row writes with a `GroupGuard`, and says which rows to rewind.

    A record line's order columns are checked as soon as they are written (the token holding the
    `:` of the key after them), the whole line when its newline is drawn. A refused line is drawn
    again from its first character on (the tokens up to it stay) for its first `HEAD_REDRAWS`
    refusals: the model had chosen to write another record there rather than end the group, and
    a redraw from the line's very start would let it end the group instead, so the groups of a
    model that often errs would come out too short. Later redraws start at the line's start (the
    group may end there); a line with no kept line before it (nothing to rewind to) or refused
    `MAX_REDRAWS` times stays. Per row: the index of the token that ended its last kept line (-1:
    none yet), how often its current line was refused, and whether its order columns await a check.
    """

    def __init__(self, guard: GroupGuard, marks: TokenMarks, decode: Callable[[list[int]], str], rows: int):
        self.guard, self.marks, self.decode = guard, marks, decode
        self.ends, self.refusals = [-1] * rows, [0] * rows
        self.pending = torch.ones(rows, dtype=torch.bool, device=marks.newline.device)
        self.redrawn = 0

    def refused(self, token: torch.Tensor, live: torch.Tensor, units: torch.Tensor, length: torch.Tensor):
        """(row, tokens to keep) for each live row whose line, as far as `token` took it, was refused."""
        out = []
        ending = live & self.marks.newline[token]
        for r in (ending.logical_not() & live & self.pending & self.marks.colon[token]).nonzero().squeeze(1).tolist():
            start, n = self.ends[r], int(length[r])
            verdict = self.guard.in_order(r, self._text(units[r], start, n).rsplit("\n", 1)[-1]) if start >= 0 else True
            if verdict is not None:
                self.pending[r] = False
                if not verdict and self.refusals[r] < MAX_REDRAWS:
                    out.append(self._redraw(r, units[r], start, n))
        for r in ending.nonzero().squeeze(1).tolist():
            start, n = self.ends[r], int(length[r])
            if start >= 0 and self.refusals[r] < MAX_REDRAWS:
                lines = self._text(units[r], start, n).split("\n")[1:-1]  # [0] ends the kept line
                if not all(self.guard.admit(r, line) for line in lines):
                    out.append(self._redraw(r, units[r], start, n))
                    continue
            self.ends[r], self.refusals[r] = n - 1, 0
            self.pending[r] = True
        return out

    def _text(self, ids: torch.Tensor, start: int, n: int) -> str:
        """The row's text from its last kept line's newline token (`ids[start]`) on."""
        return self.decode(ids[start:n].tolist())

    def _redraw(self, r: int, ids: torch.Tensor, start: int, n: int) -> tuple[int, int]:
        self.refusals[r] += 1
        self.redrawn += 1
        self.pending[r] = True
        return r, start + 1 + (self._head(ids[start:n].tolist()) if self.refusals[r] <= HEAD_REDRAWS else 0)

    def _head(self, ids: list[int]) -> int:
        """How many tokens after the kept line's newline token (`ids[0]`) the next line's text begins."""
        if self.decode(ids[:1]).rsplit("\n", 1)[-1]:
            return 0  # the newline token itself starts the next line
        return next(j for j in range(1, len(ids)) if self.decode(ids[1 : 1 + j]).strip())

    def reset(self, rows: list[int]) -> None:
        for r in rows:
            self.ends[r], self.refusals[r] = -1, 0
        self.pending[rows] = True
        self.guard.reset(rows)

    def keep(self, rows: list[int]) -> None:
        self.ends = [self.ends[r] for r in rows]
        self.refusals = [self.refusals[r] for r in rows]
        self.pending = self.pending[rows]
        self.guard.keep(rows)


@dataclass
class TokenMarks:
    """[vocab] bool masks: the tokens whose text holds a newline (they can end a line), and a `:`
    (they can end a JSON key)."""

    newline: torch.Tensor
    colon: torch.Tensor

    @classmethod
    def of(cls, tokenizer, vocab: int, device: torch.device) -> TokenMarks:
        texts = tokenizer.batch_decode([[i] for i in range(min(vocab, len(tokenizer)))])

        def holding(char: str) -> torch.Tensor:
            mask = torch.zeros(vocab, dtype=torch.bool)
            mask[[i for i, text in enumerate(texts) if char in text]] = True
            return mask.to(device)

        return cls(holding("\n"), holding(":"))


@torch.inference_mode()
def sample_units(
    model,
    prompt_ids: list[int],
    batch_size: int,
    max_unit_tokens: int,
    eos_id: int,
    cfg: GenerationConfig,
    generator: torch.Generator,
    wanted: Callable[[int], int],
    constraint_of: Callable[[int], Constraint] | None = None,
    dtype: torch.dtype | None = None,
    checks_of: Callable[[int], LineChecks] | None = None,
) -> Iterator[list[Finished]]:
    """Sample units on up to `batch_size` rows; yields the units finished at each step that finished any.

    After each yield, `wanted(live)` says how many more units the caller needs beyond the `live`
    rows still running: that many finished rows restart (continuous batching), the others go idle,
    and idle rows are dropped from the batch once they are half of it. Decoders that cannot restart
    a row (HFDecoder) finish the batch and start a new one while units are wanted. `checks_of(rows)`
    makes the line checks (see LineChecks) of a batch; a decoder that cannot rewind a row skips them.
    """
    device = next(model.parameters()).device
    rows = min(batch_size, wanted(0))
    while rows > 0:
        decoder = make_decoder(model, rows, sequence_len(len(prompt_ids), max_unit_tokens), dtype)
        logits = decoder.prefill(torch.tensor([prompt_ids], device=device))
        prompt_logits = logits[0]
        constraint = constraint_of(rows) if constraint_of else None
        checks = checks_of(rows) if checks_of and decoder.refills else None
        units = torch.full((rows, max_unit_tokens), eos_id, dtype=torch.long, device=device)
        length = torch.zeros(rows, dtype=torch.long, device=device)
        live = torch.ones(rows, dtype=torch.bool, device=device)
        seen = torch.zeros_like(logits, dtype=torch.bool) if cfg.repetition_penalty != 1.0 else None
        while bool(live.any()):
            scores = _filter_logits(logits.float(), seen, cfg)
            uniform = torch.rand(2, len(live), generator=generator, device=device, dtype=torch.float64)
            token = _sample(scores, uniform[0]).masked_fill_(~live, eos_id)
            if constraint:
                live_rows = live.nonzero().squeeze(1).tolist()
                refused = constraint.accept(token.tolist(), live_rows)
                if refused:  # draw again from the masked distribution (see Constraint)
                    index = torch.tensor(refused, device=device)
                    masked = scores[index]
                    constraint.mask(masked, refused)
                    empty = masked.isneginf().all(-1)
                    if bool(empty.any()):  # top-p kept no token the grammar allows: the allowed tokens' nucleus
                        stuck, at = index[empty], empty.nonzero().squeeze(1).tolist()
                        allowed = logits[stuck].float()
                        constraint.mask(allowed, [refused[i] for i in at])
                        masked[empty] = _filter_logits(allowed, seen[stuck] if seen is not None else None, cfg)
                    token[index] = _sample(masked, uniform[1][index])
                    constraint.consume(token[index].tolist(), refused)
            ended = live & (token == eos_id)
            if constraint:
                ended[[r for r, stop in zip(live_rows, constraint.stopped(live_rows), strict=True) if stop]] = True
            writing = live & (token != eos_id)
            every = torch.arange(len(live), device=device)
            units[every, length.clamp(max=max_unit_tokens - 1)] = token  # past a row's end: ignored
            length += writing
            if seen is not None:
                seen[every[writing], token[writing]] = True
            for r, kept in checks.refused(token, live, units, length) if checks else ():
                if constraint:
                    constraint.rollback(r, int(length[r]) - kept)
                token[r], length[r] = units[r, kept - 1], kept  # feeds the kept line's last token again
                decoder.rewind(r, kept - 1)
                if seen is not None:
                    seen[r] = False
                    seen[r, units[r, :kept]] = True
            finished = ended | (live & (length >= max_unit_tokens))
            fresh = torch.zeros_like(live)
            if bool(finished.any()):
                done = finished.nonzero().squeeze(1)
                yield [(units[r, : length[r]].tolist(), bool(ended[r])) for r in done.tolist()]
                live &= ~finished
                if decoder.refills:
                    fresh[done[: max(0, min(len(done), wanted(int(live.sum()))))]] = True
                    live |= fresh
                    length[fresh] = 0
                    if seen is not None:
                        seen[fresh] = False
                    restarted = fresh.nonzero().squeeze(1).tolist()
                    if constraint:
                        constraint.reset(restarted)
                    if checks:
                        checks.reset(restarted)
            logits = decoder.step(token)
            if decoder.refills:
                back = fresh | ~live  # idle rows wait right after the prompt, so they never run out of cache
                if bool(back.any()):
                    decoder.restart(back.nonzero().squeeze(1))
                    logits[fresh] = prompt_logits
                if rows > 8 and 2 * int(live.sum()) <= rows:
                    keep = live.nonzero().squeeze(1)
                    decoder.keep(keep)
                    if constraint:
                        constraint.keep(keep.tolist())
                    if checks:
                        checks.keep(keep.tolist())
                    logits, units, length, live = logits[keep], units[keep], length[keep], live[keep]
                    seen = seen[keep] if seen is not None else None
                    rows = len(keep)
        rows = min(batch_size, wanted(0))


def split_units(finished: list[Finished], tokenizer) -> list[tuple[list[str], bool]]:
    """Each unit's complete lines, and whether it ended (a cut-off unit loses its partial line)."""
    out = []
    for text, (_, ended) in zip(tokenizer.batch_decode([ids for ids, _ in finished]), finished, strict=True):
        parts = text.split("\n")
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

    def __getstate__(self) -> dict:
        """A worker's collector goes back without its validator and rules (closures; the parent has them)."""
        return self.__dict__ | {"validator": None, "groups": None}

    @staticmethod
    def merge(parts: list[Collector]) -> Collector:
        """The collectors of a request's shares as one (the first, extended), records in the order of the shares."""
        whole = parts[0]
        for part in parts[1:]:
            whole.records += part.records
            whole.valid_groups += part.valid_groups
            whole.reasons += part.reasons
            whole.group_reasons += part.group_reasons
            whole.units += part.units
            whole.invalid_units += part.invalid_units
            whole.truncated += part.truncated
        return whole

    def add(self, sequences: list[tuple[list[str], bool]]) -> tuple[int, int]:
        """Validate one batch; returns (units seen, valid units) for the stop rules."""
        seen, valid = 0, 0
        for lines, ended in sequences:
            if ended and not lines:  # ended before writing anything: a failed unit, or the stop rules never fire
                (self.reasons if self.groups is None else self.group_reasons)["empty"] += 1
                seen += 1
                continue
            if self.groups is None:
                if not ended:  # cut at the length cap: its record is incomplete
                    self.truncated += 1
                    self.reasons["truncated"] += 1
                    seen += 1
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
            self.truncated += problems.get("truncated", 0)
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
    max_unit_tokens: int,
    cfg: GenerationConfig,
    num_records: int | None = None,
    progress: ProgressFn | None = None,
    records_per_unit: float = 1.0,
    max_group_records: int | None = None,
    groups: GroupRules | None = None,
    keys: list[KeyFactory] | None = None,
    output_schema: TableSchema | None = None,
) -> GenerationResult:
    """Sample until `num_records` valid records exist (whole groups when grouped: a random pick of
    them, `pick_groups`, holds `num_records`); raise GenerationError when the model keeps failing.
    `schema` holds the modelled columns; the output has `output_schema`'s (default: the same),
    entity keys filled in by `keys`. With structured generation a group holds at most
    `max_group_records` (the largest training group). On a CPU the request is split between
    `generation.workers` forked processes (see workers.py)."""
    target = cfg.num_records if num_records is None else num_records
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or target < 1:
        raise ConfigError(f"num_records must be a whole number of at least 1, got {target!r}")
    if cfg.backend == "engine":  # vLLM takes a LoRA model as base + adapter
        model = merged(model)  # once per call, not once per batch
    device = next(model.parameters()).device
    workers = worker_count(cfg.workers, device, cfg.backend, target, records_per_unit)
    max_len = sequence_len(len(prompt_ids), max_unit_tokens)
    batch_size = default_batch_size(model, max_len, device) if cfg.batch_size == "auto" else cfg.batch_size
    if workers > 1:  # each worker has its own cache: together they keep to the budget
        batch_size = min(batch_size, cache_rows(model, max_len, workers))
    dtype = getattr(torch, vllm_dtype(cfg)) if cfg.backend == "vllm" else matmul_dtype(cfg.precision, model)
    seed = cfg.seed if cfg.seed is not None else int(torch.seed() % 2**31)
    redraws = cfg.use_structured_generation and groups is not None and cfg.backend == "engine"
    marks = TokenMarks.of(tokenizer, model.get_output_embeddings().weight.shape[0], device) if redraws else None
    sampling = Sampling(
        model,
        tokenizer,
        schema,
        prompt_ids,
        max_unit_tokens,
        cfg,
        batch_size,
        dtype,
        records_per_unit,
        max_group_records,
        groups,
        marks,
    )

    start, last_progress = time.perf_counter(), 0.0
    with tqdm(total=target, unit="rec", desc="generate", mininterval=1.0) as bar:

        def report(valid: int) -> None:
            nonlocal last_progress
            done = min(valid, target)  # past it: the running groups finish, for the pick
            reached = done == target > bar.n
            bar.update(done - bar.n)
            now = time.perf_counter()
            if progress and (reached or (done < target and now - last_progress >= PROGRESS_EVERY_S)):
                last_progress = now
                progress({"valid": done, "target": target, "records_per_s": valid / (now - start)})

        if workers == 1:
            shares = [sampling.run(target, seed, report)]
        else:
            parts = zip(split_target(target, workers), seeds(seed, workers), strict=True)
            tasks = [partial(sampling.run, n, s) for n, s in parts]
            shares = run_forked(tasks, report)
        collector = Collector.merge([s.collector for s in shares])
        report(collector.n_valid)
    seconds = time.perf_counter() - start
    if groups is None:
        records = collector.records[:target]
    else:
        rng = random.Random(seed)
        picked = pick_groups(collector.valid_groups, target, rng)
        assign_keys(picked, keys or [], rng)
        records = [r for g in picked for r in g]
    n_invalid = sum(collector.reasons.values())
    tokens = sum(s.tokens for s in shares)
    stats = {
        "num_records": target,
        "valid_records": len(records),
        "invalid_records": n_invalid,
        "valid_fraction": collector.n_valid / max(collector.n_valid + n_invalid, 1),
        "rejections": dict(collector.reasons.most_common()),
        "truncated_units": collector.truncated,
        "structured": cfg.use_structured_generation,
        "seed": seed,  # the one drawn when generation.seed is null: set it to sample these records again
        "backend": cfg.backend,
        "workers": workers,
        "batch_size": batch_size,
        "precision": str(dtype).removeprefix("torch."),
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
            "surplus_groups": len(collector.valid_groups) - len(picked),
            "group_rejections": dict(collector.group_reasons.most_common()),
            "redrawn_records": sum(s.redrawn for s in shares),
        }
    return GenerationResult(records_to_table(records, output_schema or schema), stats)


@dataclass
class Share:
    """What sampling one share of a request gives back (from a worker process, pickled)."""

    collector: Collector
    tokens: int
    redrawn: int  # grouped tables: record lines drawn again (see LineChecks)


@dataclass
class Sampling:
    """One request's model and settings, fixed before sampling starts (and before workers fork)."""

    model: torch.nn.Module
    tokenizer: object
    schema: TableSchema
    prompt_ids: list[int]
    max_unit_tokens: int
    cfg: GenerationConfig
    batch_size: int
    dtype: torch.dtype
    records_per_unit: float
    max_group_records: int | None
    groups: GroupRules | None
    marks: TokenMarks | None  # grouped structured tables on the engine: lines are checked and redrawn

    def run(self, target: int, seed: int, report: Callable[[int], None]) -> Share:
        """Sample until `target` valid records exist; `report` gets the valid count after each finished batch."""
        cfg, tokenizer, groups = self.cfg, self.tokenizer, self.groups
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        collector = Collector(RecordValidator(self.schema), groups)
        rules = StopRules(cfg, "groups" if groups else "records", min(self.batch_size, max(32, target)))
        structured, grouped = cfg.use_structured_generation, groups is not None
        constraint_of = (
            (lambda rows: Constraint(tokenizer, self.schema, grouped, rows, self.max_group_records))
            if structured
            else None
        )
        line_checks: list[LineChecks] = []  # one per sampling batch, for the redraw count
        checks_of = None
        if self.marks is not None:

            def checks_of(rows: int) -> LineChecks:
                guard = GroupGuard(collector.validator, groups, rows)
                line_checks.append(LineChecks(guard, self.marks, tokenizer.decode, rows))
                return line_checks[-1]

        def wanted(live: int) -> int:
            return units_to_start(target - collector.n_valid, live, self.records_per_unit, collector)

        eos_id = tokenizer.eos_token_id
        if cfg.backend == "vllm":
            grammar = unit_grammar(self.schema, grouped, self.max_group_records) if structured else None
            rounds = vllm_units(
                self.model, tokenizer, self.prompt_ids, self.max_unit_tokens, eos_id, cfg, seed, wanted, grammar
            )
        else:
            rounds = sample_units(
                self.model,
                self.prompt_ids,
                self.batch_size,
                self.max_unit_tokens,
                eos_id,
                cfg,
                generator,
                wanted,
                constraint_of,
                self.dtype,
                checks_of,
            )
        tokens = 0
        for finished in rounds:
            tokens += sum(len(ids) for ids, _ in finished)
            seen, valid = collector.add(split_units(finished, tokenizer))
            rules.check(seen, valid, collector)
            report(collector.n_valid)
        return Share(collector, tokens, sum(c.redrawn for c in line_checks))


def units_to_start(missing: int, live: int, records_per_unit: float, collector: Collector) -> int:
    """Units to start so that the `live` ones plus these should yield `missing` more valid records.

    Short units finish first, so early on the valid records per finished unit understate what
    the running ones will yield (and too many would start); the training's records per unit times
    the share of valid units is the floor of the estimate. The running units that finish last are
    the long ones, so more records than missing come back (`pick_groups` leaves the surplus out).
    """
    per_unit = records_per_unit
    if collector.units >= 32:
        valid_share = 1 - collector.invalid_units / collector.units
        per_unit = max(collector.n_valid / collector.units, records_per_unit * valid_share)
    return 0 if missing <= 0 else max(0, math.ceil(missing / max(per_unit, 0.05)) - live)


@dataclass
class StopRules:
    """Give up when the model keeps failing, judged over rounds of `round_size` finished units."""

    cfg: GenerationConfig
    what: str
    round_size: int
    seen: int = 0
    valid: int = 0
    rounds: int = 0
    bad_rounds: int = 0

    def check(self, seen: int, valid: int, collector: Collector) -> None:
        self.seen, self.valid = self.seen + seen, self.valid + valid
        if self.seen < self.round_size:
            return
        top = dict((collector.group_reasons + collector.reasons).most_common(3))
        share = 1 - self.valid / self.seen
        self.rounds += 1
        if self.rounds == 1 and self.valid == 0:
            remedy = "train longer (num_input_records_to_sample) or lower generation.temperature"
            self._fail(f"the first {self.seen} generated {self.what} held nothing valid (reasons: {top})", remedy)
        self.bad_rounds = self.bad_rounds + 1 if share >= self.cfg.invalid_fraction_threshold else 0
        if self.bad_rounds >= self.cfg.patience:
            self._fail(
                f"the invalid fraction of {self.what} stayed at or above {self.cfg.invalid_fraction_threshold} for "
                f"{self.cfg.patience} rounds of {self.round_size} (reasons: {top})",
                "train longer, lower generation.temperature, "
                + ("" if self.cfg.use_structured_generation else "turn on generation.use_structured_generation, ")
                + "or raise invalid_fraction_threshold/patience",
            )
        self.seen = self.valid = 0

    @staticmethod
    def _fail(problem: str, remedy: str) -> None:
        raise GenerationError(f"{problem}; {remedy}")
