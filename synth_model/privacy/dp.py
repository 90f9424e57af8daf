"""Differential privacy for fine-tuning: DP-SGD with Opacus (per-sample clipping, Gaussian noise, PRV accountant).

Each training example holds exactly one record (or one whole group), and batches are drawn by Poisson
sampling over those examples, so the guarantee is record-level (group-level when grouped): the
(epsilon, delta) bound covers everything one record or entity contributed. The noise multiplier is
solved from (epsilon, delta, sampling rate, steps) by Opacus' accountant, never by a formula of ours.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from synth_model.config import PrivacyConfig
from synth_model.errors import ConfigError, DataError
from synth_model.records import IGNORE_INDEX

ACCOUNTANT = "prv"  # Opacus' default: tighter than RDP for the same noise
MIN_UNITS = 100  # fewer records (groups) than this cannot be trained privately to any use
MAX_NOISE = 10.0  # above this noise multiplier the gradients drown: refuse instead of training noise
AUTO_BATCH_RECORDS = 256  # "auto" expected batch: larger batches average the noise away
MICRO_BATCH = 32  # examples per forward/backward under DP: fewer waste time in the per-sample hooks


@dataclass
class DPPlan:
    """What one private fit does, fixed before it starts, and saved with its metrics."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    expected_batch_size: int
    steps: int
    units: int
    accountant: str = ACCOUNTANT

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_delta(delta: float | str, units: int) -> float:
    """ "auto" is 1/n^1.2: well below 1/n, so no single record can be released outright."""
    return 1.0 / units**1.2 if delta == "auto" else float(delta)


def expected_batch(privacy: PrivacyConfig, units: int) -> int:
    if privacy.expected_batch_size != "auto":
        return min(privacy.expected_batch_size, units)
    return max(1, min(AUTO_BATCH_RECORDS, units // 10))


def plan(privacy: PrivacyConfig, units: int, epochs: float, grouped: bool) -> DPPlan:
    """Solve the noise multiplier for the budget; fail before training when the budget cannot work."""
    kind = "groups" if grouped else "records"
    if units < MIN_UNITS:
        raise DataError(
            f"differential privacy needs at least {MIN_UNITS} training {kind}; the training split has {units} "
            "(the table less its holdout): add rows, lower data.holdout, or set privacy.dp_enabled: false"
        )
    from opacus.accountants.utils import get_noise_multiplier

    delta = resolve_delta(privacy.delta, units)
    if delta >= 1.0 / units:
        raise ConfigError(
            f"privacy.delta={delta:g} is not below 1/n = {1 / units:g} ({units} {kind}): a delta that large lets a "
            "record leak outright; use 'auto' or a smaller value"
        )
    batch = expected_batch(privacy, units)
    rate = batch / units
    steps = max(1, round(epochs / rate))
    remedy = (
        f"raise privacy.epsilon, train on more {kind}, or lower training.num_input_records_to_sample "
        "(fewer steps spend less budget)"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noise = get_noise_multiplier(
                target_epsilon=privacy.epsilon,
                target_delta=delta,
                sample_rate=rate,
                steps=steps,
                accountant=ACCOUNTANT,
            )
    except ValueError as err:
        raise ConfigError(
            f"privacy.epsilon={privacy.epsilon} is too small for {units} {kind} and {steps} steps ({err}): {remedy}"
        ) from None
    if noise > MAX_NOISE:
        raise ConfigError(
            f"privacy.epsilon={privacy.epsilon} is too small for {units} {kind} and {steps} steps: it needs noise "
            f"multiplier {noise:.1f} (> {MAX_NOISE:g}), which would drown the training signal; {remedy}"
        )
    return DPPlan(
        epsilon=privacy.epsilon,
        delta=delta,
        noise_multiplier=noise,
        max_grad_norm=privacy.per_sample_max_grad_norm,
        sample_rate=rate,
        expected_batch_size=batch,
        steps=steps,
        units=units,
    )


def spent_epsilon(dp: DPPlan, steps_taken: int) -> float:
    """Epsilon actually spent after `steps_taken` noisy steps, by the same accountant."""
    from opacus.accountants import create_accountant

    if steps_taken == 0:
        return 0.0
    accountant = create_accountant(ACCOUNTANT)
    accountant.history = [(dp.noise_multiplier, dp.sample_rate, steps_taken)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta=dp.delta))


def poisson_batches(n: int, dp: DPPlan, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Indices of each logical batch: every example joins each step independently with the sampling rate."""
    for _ in range(dp.steps):
        yield np.flatnonzero(rng.random(n) < dp.sample_rate)


def empty_batch(optimizer) -> None:
    """Let an empty Poisson batch still take its noisy step: skipping it would show that no record was drawn,
    and the accountant counts every step as noised."""
    for p in optimizer.params:
        p.grad_sample = p.new_zeros((0, *p.shape))


def freeze_norms(model: torch.nn.Module) -> None:
    """Keep normalisation weights fixed under DP: Opacus has no fast per-sample rule for RMSNorm, and a
    third of the per-sample gradient time went to them (the LoRA path never trains them anyway)."""
    for name, parameter in model.named_parameters():
        if "norm" in name.rsplit(".", 2)[-2]:
            parameter.requires_grad_(False)


def make_private(model: torch.nn.Module, optimizer: torch.optim.Optimizer, dp: DPPlan, seed: int):
    """The model with per-sample gradient hooks and the optimizer that clips, sums and adds noise."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    noise = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    private = GradSampleModule(model, loss_reduction="mean")
    optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=dp.expected_batch_size,
        loss_reduction="mean",
        generator=noise,
    )
    return private, optimizer


def release(private) -> None:
    """Remove the per-sample hooks so the plain model can be saved and sampled."""
    private._close()


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of each example: clipping bounds what one example (one record) can move."""
    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), reduction="none", ignore_index=IGNORE_INDEX
    ).view(targets.shape)
    counted = (targets != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return token_loss.sum(dim=1) / counted


def micro_batches(indices: np.ndarray, size: int = MICRO_BATCH) -> Sequence[np.ndarray]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]
