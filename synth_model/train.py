"""The training loop: AdamW, warmup + cosine/linear schedule, gradient accumulation, validation loss.

Examples arrive packed near the context length; batches are padded only to their longest example
(examples are sorted into length buckets first), so little compute is spent on padding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from synth_model.config import TrainingConfig
from synth_model.records import IGNORE_INDEX, Example

ProgressFn = Callable[[dict], None]


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def make_batches(examples: Sequence[Example], batch_size: int, rng: np.random.Generator) -> list[list[Example]]:
    """Shuffled batches of similar-length examples (bucketed in windows of 50 batches)."""
    order = rng.permutation(len(examples))
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i].input_ids))
        batches += [[examples[i] for i in chunk[j : j + batch_size]] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def evaluate_loss(model, examples: Sequence[Example], batch_size: int, pad_id: int, device) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
        n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(model(**batch).loss) * n
        count += n
    model.train()
    return total / max(count, 1)


def train(
    model,
    examples: Sequence[Example],
    val_examples: Sequence[Example],
    config: TrainingConfig,
    pad_id: int,
    device: torch.device,
    seed: int,
    progress: ProgressFn | None = None,
) -> dict:
    """Train in place; return the training metrics (losses, tokens/s, wall time)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device)
    model.train()
    batches = make_batches(examples, config.batch_size, rng)
    steps = math.ceil(len(batches) / config.gradient_accumulation_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * steps),
        num_training_steps=steps,
    )
    tokens_total = sum(len(e.input_ids) for e in examples)
    start = time.perf_counter()
    losses: list[float] = []
    val_losses: list[dict] = []
    eval_every = max(1, steps // 5)
    seen = 0
    step = 0
    with tqdm(total=tokens_total, unit="tok", unit_scale=True, desc="train", mininterval=1.0) as bar:
        for i, batch_examples in enumerate(batches):
            batch = {k: v.to(device) for k, v in collate(batch_examples, pad_id).items()}
            loss = model(**batch).loss
            (loss / config.gradient_accumulation_steps).backward()
            seen += int(batch["attention_mask"].sum())
            bar.update(int(batch["attention_mask"].sum()))
            losses.append(loss.item())
            if (i + 1) % config.gradient_accumulation_steps and i + 1 < len(batches):
                continue
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            elapsed = time.perf_counter() - start
            recent = float(np.mean(losses[-20:]))
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
                        "eta_s": elapsed / seen * (tokens_total - seen),
                    }
                )
    wall = time.perf_counter() - start
    model.eval()
    return {
        "steps": steps,
        "examples": len(examples),
        "records_sampled": sum(e.n_records for e in examples),
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
