"""The training loop: AdamW, warmup + cosine/linear schedule, gradient accumulation, validation loss.

Examples arrive packed near the context length and are sorted into length buckets; each is computed
as short rows of its isolated units (`collate`), and a batch's rows run in length-sorted chunks cut
to their own width (`batch_loss`), so little compute goes to padding or masked-out attention.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_scheduler

from synth_model.config import TrainingConfig
from synth_model.privacy.dp import (
    DPPlan,
    empty_batch,
    freeze_norms,
    make_private,
    micro_batches,
    per_example_loss,
    poisson_batches,
    release,
)
from synth_model.records import IGNORE_INDEX, Example, row_tokens, rows_per_compute

ProgressFn = Callable[[dict], None]
PROMPT_SEGMENT, PAD_SEGMENT = -1, -2
LOGITS_PER_FORWARD = 2**27  # float32 logits held by one forward (0.5 GiB, x3 with softmax and gradient)
# Padded tokens per forward: chunks of similar rows pad little; the bigger the chunk, the larger and
# fewer its matmuls. Sized by the hidden states it holds (tokens x width x layers), so the tiny default
# runs ~4k tokens at once (~15% more tokens/s on 2 cores than 1k) and large models keep to 1k.
FORWARD_ACTIVATIONS = 3 * 2**20
MIN_FORWARD_TOKENS = 1024


def collate(batch: Sequence[Example], pad_id: int, row_width: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch; each unit attends to the prompt and itself, at positions counted from the prompt.

    With `row_width`, packed examples are first laid out as shorter rows (`rows_per_compute`:
    same predictions, far less masked-out attention); without it, one row per example (DP-SGD needs
    that for per-example gradients). The attention mask is 4-D ([batch, 1, query, key], True = may
    attend): causal, restricted to the query's own unit plus the prompt, padding hidden (a padded
    query sees only itself).

    `openers` holds, at each unit's first token that the packed layout does not learn from the
    prompt (every unit but an example's first: the position before it predicts the end of the unit
    before), that token: `loss_sum` learns it from the prompt's last position, which every unit
    sees alike, so sampling's first step (from the prompt) is trained once per unit, not per example.
    """
    if row_width:
        batch = [row for e in batch for row in rows_per_compute(e, row_width)]
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    openers = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    segment = torch.full((len(batch), width), PAD_SEGMENT, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        starts = e.starts or [0]
        segment[i, : starts[0]] = PROMPT_SEGMENT
        positions[i, : starts[0]] = torch.arange(starts[0])
        for k, (begin, end) in enumerate(zip(starts, [*starts[1:], n], strict=True)):
            segment[i, begin:end] = k
            positions[i, begin:end] = torch.arange(starts[0], starts[0] + end - begin)
            if e.starts and e.labels[begin] != e.input_ids[begin]:
                openers[i, begin] = e.input_ids[begin]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    same_unit = segment[:, :, None] == segment[:, None, :]
    visible = same_unit | (segment == PROMPT_SEGMENT)[:, None, :]
    mask = causal & visible & (segment != PAD_SEGMENT)[:, None, :] | torch.eye(width, dtype=torch.bool)
    return {
        "input_ids": ids,
        "labels": labels,
        "openers": openers,
        "attention_mask": mask[:, None],
        "position_ids": positions,
    }


def make_batches(examples: Sequence[Example], batch_size: int, rng: np.random.Generator) -> list[list[Example]]:
    """Shuffled batches of similar-length examples (bucketed in windows of 50 batches)."""
    order = rng.permutation(len(examples))
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i].input_ids))
        batches += [[examples[i] for i in chunk[j : j + batch_size]] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def labelled(batch: dict[str, torch.Tensor]) -> int:
    """Predictions a collated batch trains: next tokens, and units' first tokens from the prompt."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum() + (batch["openers"] != IGNORE_INDEX).sum())


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("labels", "openers")}


def loss_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed loss of a collated batch's `labelled` predictions (HF's shifted next-token loss, plus
    `openers` from the logits at the prompt's last position, the index before their position id)."""
    logits = model(**model_inputs(batch)).logits.float()
    targets = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)  # shift the labels, not the logits
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    openers = batch["openers"]
    rows, at = (openers != IGNORE_INDEX).nonzero(as_tuple=True)
    if len(rows):
        prompt_end = batch["position_ids"][rows, at] - 1
        loss = loss + F.cross_entropy(logits[rows, prompt_end], openers[rows, at], reduction="sum")
    return loss


def forward_tokens(config) -> int:
    """Padded tokens per forward for a model of this width and depth (see FORWARD_ACTIVATIONS)."""
    return max(MIN_FORWARD_TOKENS, FORWARD_ACTIVATIONS // (config.hidden_size * config.num_hidden_layers))


def batch_loss(model, batch: dict[str, torch.Tensor], device, backward_scale: float | None = None) -> float:
    """Mean token loss of a collated batch, run in chunks of rows of about the same length.

    Rows are sorted by length and each chunk is cut to its own longest row, so a batch pads little;
    a chunk holds about `forward_tokens` tokens and at most `LOGITS_PER_FORWARD` logits (a 49k
    vocabulary makes the logits the biggest tensor of a step). The result does not change. With
    `backward_scale`, each chunk's share of the mean (times the scale) is backpropagated, so the
    gradient is the whole batch's.
    """
    config = model.config
    tokens = forward_tokens(config)
    positions = batch["position_ids"]
    rows, width = positions.shape
    lengths = width - (positions > 0).int().flip(1).argmax(1)  # padding trails each row at position 0
    order = lengths.argsort(descending=True, stable=True)
    count = max(labelled(batch), 1)
    total, start = 0.0, 0
    while start < rows:
        longest = int(lengths[order[start]])
        per_chunk = max(1, min(LOGITS_PER_FORWARD // (longest * config.vocab_size), tokens // longest))
        index = order[start : start + per_chunk]
        start += per_chunk
        chunk = {
            k: (v[index, :, :longest, :longest] if v.dim() == 4 else v[index, :longest]).to(device)
            for k, v in batch.items()
        }
        if labelled(chunk) == 0:
            continue
        loss = loss_sum(model, chunk) / count
        if backward_scale is not None:
            (loss * backward_scale).backward()
        total += loss.item()
    return total


@torch.no_grad()
def evaluate_loss(model, examples: Sequence[Example], batch_size: int, pad_id: int, device) -> float:
    model.eval()
    total, count = 0.0, 0
    width = row_tokens(examples)
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_id, width)
        n = labelled(batch)
        total += batch_loss(model, batch, device) * n
        count += n
    model.train()
    return total / max(count, 1)


Step = list[list[Example]]  # the micro-batches of one optimizer step


def plain_steps(examples: Sequence[Example], config: TrainingConfig, rng: np.random.Generator) -> list[Step]:
    """Optimizer steps, each a list of micro-batches (gradient accumulation)."""
    batches = make_batches(examples, config.batch_size, rng)
    accumulate = config.gradient_accumulation_steps
    return [batches[i : i + accumulate] for i in range(0, len(batches), accumulate)]


def private_steps(
    examples: Sequence[Example], config: TrainingConfig, dp: DPPlan, rng: np.random.Generator
) -> Iterator[Step]:
    """Poisson-sampled logical batches (one record or group per example), split into micro-batches."""
    for indices in poisson_batches(len(examples), dp, rng):
        yield [[examples[i] for i in chunk] for chunk in micro_batches(indices)]


def train(
    model,
    examples: Sequence[Example],
    val_examples: Sequence[Example],
    config: TrainingConfig,
    pad_id: int,
    device: torch.device,
    seed: int,
    progress: ProgressFn | None = None,
    dp: DPPlan | None = None,
) -> dict:
    """Train in place; return the training metrics (losses, tokens/s, wall time).

    With a `dp` plan every step is DP-SGD: per-example gradients are
    clipped to the plan's bound, summed, and noised before the optimizer sees them.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device)
    model.train()
    if dp is not None:
        freeze_norms(model)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
        fused=device.type in ("cpu", "cuda"),  # one kernel for all parameters: a third of the per-tensor loop's time
    )
    if dp is None:
        step_batches = plain_steps(examples, config, rng)
        steps, forward, step_optimizer = len(step_batches), model, optimizer
        tokens_total = sum(len(e.input_ids) for e in examples)
        width = row_tokens(examples)
    else:
        step_batches = private_steps(examples, config, dp, rng)
        steps = dp.steps
        forward, step_optimizer = make_private(model, optimizer, dp, seed)
        mean_tokens = float(np.mean([len(e.input_ids) for e in examples]))
        tokens_total = int(steps * dp.expected_batch_size * mean_tokens)  # expected: batches vary in size
        width = None  # one unit per example already, and one row per example for per-example gradients
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * steps),
        num_training_steps=steps,
    )
    start = time.perf_counter()
    losses: list[float] = []
    val_losses: list[dict] = []
    eval_every = max(1, steps // 5)
    seen = 0
    records = 0
    step = 0
    with tqdm(total=tokens_total, unit="tok", unit_scale=True, desc="train", mininterval=1.0) as bar:
        for micro in step_batches:
            for j, batch_examples in enumerate(micro):
                batch = collate(batch_examples, pad_id, width)
                if dp is None:
                    loss = batch_loss(forward, batch, device, backward_scale=1 / len(micro))
                else:
                    batch = {k: v.to(device) for k, v in batch.items()}
                    dp_loss = per_example_loss(forward(**model_inputs(batch)).logits, batch["labels"]).mean()
                    with warnings.catch_warnings():  # Opacus' per-sample hooks fire as designed
                        warnings.filterwarnings("ignore", message="Full backward hook is firing")
                        dp_loss.backward()  # per-example gradients land in p.grad_sample
                    loss = dp_loss.item()
                    if j + 1 < len(micro):  # clip and sum this micro-batch; noise once per logical batch
                        step_optimizer.signal_skip_step(do_skip=True)
                        step_optimizer.step()
                        step_optimizer.zero_grad(set_to_none=True)
                tokens = sum(len(e.input_ids) for e in batch_examples)
                seen += tokens
                records += sum(e.n_records for e in batch_examples)
                bar.update(tokens)
                losses.append(loss)
            if dp is None:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            if not micro:
                empty_batch(step_optimizer)
            step_optimizer.step()
            step_optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - start
            recent = float(np.mean(losses[-20:])) if losses else float("nan")
            bar.set_postfix(loss=f"{recent:.3f}", step=f"{step}/{steps}")
            if val_examples and (step % eval_every == 0 or step == steps):
                val_losses.append(
                    {
                        "step": step,
                        "loss": evaluate_loss(model, val_examples, config.batch_size, pad_id, device),
                    }
                )
            if progress:
                progress(
                    {
                        "step": step,
                        "steps": steps,
                        "loss": recent,
                        "tokens_per_s": seen / elapsed,
                        "eta_s": elapsed / max(seen, 1) * max(tokens_total - seen, 0),
                    }
                )
    if dp is not None:
        release(forward)
    wall = time.perf_counter() - start
    model.eval()
    return {
        "steps": steps,
        "examples": len(examples),
        "records_sampled": records,
        "tokens": seen,
        "tokens_per_s": seen / wall,
        "train_seconds": wall,
        "final_loss": float(np.mean(losses[-20:])),
        "first_loss": losses[0],
        "validation_loss": val_losses[-1]["loss"] if val_losses else None,
        "validation_curve": val_losses,
        "trainable_parameters": sum(p.numel() for p in params),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
