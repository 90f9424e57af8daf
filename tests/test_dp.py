"""DP-SGD: clipping bounds each example, the noise meets the budget by Opacus' accountant, and a private fit works."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from synth_model import Synthesizer
from synth_model.config import PrivacyConfig, TrainingConfig
from synth_model.errors import ConfigError, DataError
from synth_model.models import build_tiny
from synth_model.privacy import dp
from synth_model.records import IGNORE_INDEX, Example
from synth_model.train import collate, model_inputs, train

TEXTS = [f'{{"id":{i},"kind":"k{i % 5}","note":"{"x" * (i % 9)}"}}\n' for i in range(60)]


def tiny_model():
    torch.manual_seed(0)
    return build_tiny(TrainingConfig(tiny={"hidden_size": 32, "num_layers": 1, "num_heads": 2}), TEXTS)


def test_each_example_gradient_is_clipped_to_the_bound():
    loaded = tiny_model()
    model, tok = loaded.model, loaded.tokenizer
    dp.freeze_norms(model)
    reference = copy.deepcopy(model)
    ids = [tok(t)["input_ids"] for t in TEXTS[:6]]
    batch = collate([Example(i, i, 1) for i in ids], tok.pad_token_id)
    bound = 0.05  # far below every example's gradient norm, so all of them are clipped
    plan = dp.DPPlan(8, 1e-5, 0.0, bound, 0.1, len(ids), 1, 100)  # no noise: the sum is exact
    params = [p for p in model.parameters() if p.requires_grad]
    private, optimizer = dp.make_private(model, torch.optim.SGD(params, lr=1.0), plan, seed=0)
    dp.per_example_loss(private(**model_inputs(batch)).logits, batch["labels"]).mean().backward()
    norms = torch.stack([p.grad_sample.flatten(1).norm(dim=1) for p in params]).norm(dim=0)
    assert (norms > bound).all()
    optimizer.pre_step()  # clip, sum, noise (zero), scale: what the optimizer step uses
    clipped = [p.grad.clone() for p in params]
    dp.release(private)

    # The same sum, one example at a time on an untouched copy: clip each gradient to the bound by hand.
    ref_params = [p for p in reference.parameters() if p.requires_grad]
    expected = [torch.zeros_like(p) for p in ref_params]
    for one in ids:
        reference.zero_grad()
        single = collate([Example(one, one, 1)], tok.pad_token_id)
        dp.per_example_loss(reference(input_ids=single["input_ids"]).logits, single["labels"]).sum().backward()
        grads = [p.grad for p in ref_params]
        scale = min(1.0, bound / float(torch.stack([g.norm() for g in grads]).norm()))
        for total, g in zip(expected, grads, strict=True):
            total += g * scale
    for got, want in zip(clipped, expected, strict=True):
        torch.testing.assert_close(got, want / len(ids), rtol=1e-3, atol=1e-7)
    assert float(torch.stack([g.norm() for g in clipped]).norm()) <= bound + 1e-6


def test_noise_multiplier_comes_from_the_accountant_and_meets_the_budget():
    from opacus.accountants.utils import get_noise_multiplier

    privacy = PrivacyConfig(dp_enabled=True, epsilon=2.0, expected_batch_size=64)
    plan = dp.plan(privacy, units=5000, epochs=3, grouped=False)
    assert plan.delta == pytest.approx(1 / 5000**1.2)
    assert plan.sample_rate == pytest.approx(64 / 5000) and plan.steps == round(3 / plan.sample_rate)
    direct = get_noise_multiplier(
        target_epsilon=2.0, target_delta=plan.delta, sample_rate=plan.sample_rate, steps=plan.steps, accountant="prv"
    )
    assert plan.noise_multiplier == pytest.approx(direct)
    spent = dp.spent_epsilon(plan, plan.steps)
    assert 1.9 < spent <= 2.0  # tight: the budget is used, not exceeded
    weaker = dp.DPPlan(**{**plan.as_dict(), "noise_multiplier": plan.noise_multiplier * 0.9})
    assert dp.spent_epsilon(weaker, plan.steps) > 2.0  # less noise would overspend
    assert dp.spent_epsilon(plan, plan.steps // 2) < spent  # stopping early spends less


def test_poisson_batches_sample_each_example_at_the_rate():
    plan = dp.DPPlan(8, 1e-5, 1.0, 1.0, 0.05, 50, 400, 1000)
    sizes = [len(b) for b in dp.poisson_batches(1000, plan, np.random.default_rng(0))]
    assert len(sizes) == 400 and abs(np.mean(sizes) - 50) < 2 and np.std(sizes) > 3  # variable, as Poisson is


def test_empty_poisson_batches_still_take_their_noisy_step():
    """Skipping an empty batch would show that no record was drawn; the accountant counts its noise."""
    loaded = tiny_model()
    model, tok = loaded.model, loaded.tokenizer
    examples = [Example(ids, ids, 1) for ids in (tok(t)["input_ids"] for t in TEXTS)]
    plan = dp.DPPlan(8, 1e-5, 1.0, 1.0, 0.02, 1, 10, len(examples))
    sizes = [len(b) for b in dp.poisson_batches(len(examples), plan, np.random.default_rng(0))]
    empty = [i + 1 for i, n in enumerate(sizes) if n == 0]  # steps (1-based) whose batch draws nobody
    assert empty and len(empty) < len(sizes)
    dp.freeze_norms(model)  # as `train` does under DP
    trained = [p for p in model.parameters() if p.requires_grad]
    weights = {0: [p.detach().clone() for p in trained]}
    progress = lambda info: weights.update({info["step"]: [p.detach().clone() for p in trained]})  # noqa: E731
    config = TrainingConfig(learning_rate=0.01)
    train(model, examples, [], config, tok.pad_token_id, torch.device("cpu"), seed=0, progress=progress, dp=plan)
    for step in empty:
        assert all(not torch.equal(a, b) for a, b in zip(weights[step - 1], weights[step], strict=True))


def test_records_sampled_counts_the_records_drawn():
    loaded = tiny_model()
    model, tok = loaded.model, loaded.tokenizer
    examples = [Example(ids, ids, 2) for ids in (tok(t)["input_ids"] for t in TEXTS)]
    plan = dp.DPPlan(8, 1e-5, 1.0, 1.0, 0.1, 6, 20, len(examples))
    metrics = train(
        model, examples, [], TrainingConfig(learning_rate=0.01), tok.pad_token_id, torch.device("cpu"), seed=0, dp=plan
    )
    drawn = sum(len(b) for b in dp.poisson_batches(len(examples), plan, np.random.default_rng(0)))
    assert metrics["records_sampled"] == 2 * drawn != 2 * len(examples)


def test_budget_and_data_errors_come_before_training(credit):
    with pytest.raises(DataError, match="at least 100 training records"):
        dp.plan(PrivacyConfig(dp_enabled=True), units=40, epochs=1, grouped=False)
    with pytest.raises(DataError, match="training groups"):
        dp.plan(PrivacyConfig(dp_enabled=True), units=40, epochs=1, grouped=True)
    with pytest.raises(ConfigError, match="epsilon=0.01 is too small for 300 records"):
        dp.plan(PrivacyConfig(dp_enabled=True, epsilon=0.01), units=300, epochs=10, grouped=False)
    with pytest.raises(ConfigError, match="privacy.delta"):
        dp.plan(PrivacyConfig(dp_enabled=True, delta=0.5), units=300, epochs=1, grouped=False)
    config = {"privacy": {"dp_enabled": True, "epsilon": 0.01}, "training": {"num_input_records_to_sample": 3000}}
    with pytest.raises(ConfigError, match="raise privacy.epsilon"):
        Synthesizer(config).fit(credit.slice(0, 300))


def test_private_fit_on_real_rows_generates_valid_records(credit, tmp_path):
    """Six credit columns and a small model: a private fit in about a minute on 2 cores."""
    credit = credit.select(["Status", "Seniority", "Home", "Time", "Age", "Marital"])
    config = {
        "data": {"holdout": 100},
        "training": {
            "num_input_records_to_sample": 40_000,
            "learning_rate": 0.005,
            "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 4},
        },
        "privacy": {"dp_enabled": True, "epsilon": 8, "expected_batch_size": 128},
        "generation": {"seed": 1},
    }
    synth = Synthesizer(config).fit(credit)
    spent = synth.metrics["dp"]
    assert 0 < spent["epsilon_spent"] <= 8 and spent["delta"] == pytest.approx(1 / (credit.num_rows - 100) ** 1.2)
    assert synth.config.data.max_sequences_per_example == 1  # one record per example: record-level privacy
    result = synth.generate_with_stats(200)
    assert result.table.num_rows >= 200 and result.stats["valid_fraction"] > 0.3  # 0.58 measured
    assert set(result.table.column_names) == set(credit.column_names)
    loaded = Synthesizer.load(synth.save(tmp_path / "model"))
    assert loaded.metrics["dp"]["epsilon_spent"] == spent["epsilon_spent"]


def test_per_example_loss_ignores_masked_positions():
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, 3, IGNORE_INDEX], [IGNORE_INDEX, 5, IGNORE_INDEX, IGNORE_INDEX]])
    loss = dp.per_example_loss(logits, labels)
    ce = torch.nn.functional.cross_entropy
    assert loss[1] == pytest.approx(float(ce(logits[1, 0:1], labels[1, 1:2])))
    assert loss[0] == pytest.approx(float(ce(logits[0, :2], labels[0, 1:3])))
