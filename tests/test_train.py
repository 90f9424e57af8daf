"""The compute layout of training batches: short rows carry exactly the packed examples' predictions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama

from synth_model import train as train_module
from synth_model.records import IGNORE_INDEX, Unit, assemble_examples, row_tokens, rows_per_compute
from synth_model.train import MIN_FORWARD_TOKENS, batch_loss, collate, forward_tokens, labelled, loss_sum, model_inputs

PROMPT, EOS, PAD = [5, 6, 7], 1, 0


def packed_examples(n_units: int = 30) -> list:
    rng = np.random.default_rng(0)
    units = [Unit(rng.integers(10, 90, rng.integers(4, 15)).tolist(), 1, i) for i in range(n_units)]
    return assemble_examples(units, PROMPT, EOS, context=120, max_units=9, records_to_sample=n_units, rng=rng)


def test_rows_keep_every_label_once_behind_their_own_prompt():
    example = max(packed_examples(), key=lambda e: len(e.starts))
    width = 3 + 20 + 1
    rows = rows_per_compute(example, width)
    assert len(rows) > 1 and rows[0].labels[3] == example.labels[3]  # the first unit still learns its first token
    for row in rows:
        assert row.input_ids[:3] == PROMPT and row.input_ids[-1] == EOS and row.starts[0] == 3
        assert len(row.input_ids) <= width
        assert row.labels[3] == IGNORE_INDEX or row is rows[0]
    labelled = Counter(t for row in rows for t in row.labels if t != IGNORE_INDEX)
    assert labelled == Counter(t for t in example.labels if t != IGNORE_INDEX)
    assert sum(len(row.starts) for row in rows) == len(example.starts)
    assert rows_per_compute(example, len(example.input_ids)) == [example]


def test_rows_are_as_wide_as_the_longest_unit_and_ten_prompts():
    examples = packed_examples()
    longest = max(b - a for e in examples for a, b in zip(e.starts, [*e.starts[1:], len(e.input_ids) - 1], strict=True))
    assert row_tokens(examples) == max(3 + longest + 1, 30)


def test_row_layout_gives_the_packed_loss_and_gradients():
    model = tiny_llama()
    examples = packed_examples()

    def loss_and_grads(width):
        model.zero_grad()
        batch = collate(examples, PAD, width)
        loss = loss_sum(model, batch) / labelled(batch)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    packed_loss, packed_grads = loss_and_grads(None)
    for width in (row_tokens(examples), 60):
        loss, grads = loss_and_grads(width)
        torch.testing.assert_close(loss, packed_loss, atol=1e-5, rtol=1e-5)
        for grad, packed in zip(grads, packed_grads, strict=True):
            torch.testing.assert_close(grad, packed, atol=1e-5, rtol=1e-4)
    assert collate(examples, PAD, 60)["input_ids"].shape[1] < collate(examples, PAD)["input_ids"].shape[1]


def test_every_unit_learns_its_first_token_from_the_prompt():
    """The packed layout learns a unit's first token from the prompt only for an example's first
    unit; sampling starts every unit there, so every unit's first token is learned there too."""
    model = tiny_llama()
    examples = packed_examples()
    units = sum(len(e.starts) for e in examples)
    for width in (None, row_tokens(examples), 30):
        batch = collate(examples, PAD, width)
        openers = batch["openers"] != IGNORE_INDEX
        assert int(openers.sum()) == units - len(examples)  # every unit but an example's first
        assert bool((batch["input_ids"][openers] == batch["openers"][openers]).all())
        assert labelled(batch) == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) + units - len(examples)
    batch = collate(examples, PAD, 30)
    plain = torch.nn.functional.cross_entropy(
        model(**model_inputs(batch)).logits[:, :-1].flatten(0, 1),
        batch["labels"][:, 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    logits = model(torch.tensor([PROMPT])).logits[0, -1]  # what sampling's first step reads
    first = torch.tensor([e.input_ids[s] for e in examples for s in e.starts[1:]])
    from_prompt = torch.nn.functional.cross_entropy(logits.expand(len(first), -1), first, reduction="sum")
    torch.testing.assert_close(loss_sum(model, batch), plain + from_prompt, rtol=1e-5, atol=1e-4)


def test_chunked_forwards_give_the_whole_batch_loss_and_gradients(monkeypatch):
    """A batch runs in chunks of length-sorted rows (less padding, bounded logits): same loss and gradient."""
    model = tiny_llama()
    batch = collate(packed_examples(), PAD, 30)

    def loss_and_grads():
        model.zero_grad()
        loss = batch_loss(model, batch, "cpu", backward_scale=0.5)
        return loss, [p.grad.clone() for p in model.parameters()]

    whole_loss, whole_grads = loss_and_grads()
    model.zero_grad()
    one_forward = loss_sum(model, batch) / labelled(batch)
    (one_forward * 0.5).backward()
    for grad, param in zip(whole_grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, param.grad, atol=1e-6, rtol=1e-4)
    assert whole_loss == pytest.approx(float(one_forward), rel=1e-6)
    width = batch["input_ids"].shape[1]
    monkeypatch.setattr(
        train_module, "LOGITS_PER_FORWARD", 3 * width * model.config.vocab_size
    )  # three rows per forward
    loss, grads = loss_and_grads()
    assert loss == pytest.approx(whole_loss, rel=1e-5)
    for grad, whole in zip(grads, whole_grads, strict=True):
        torch.testing.assert_close(grad, whole, atol=1e-6, rtol=1e-4)


def test_narrow_models_run_more_tokens_per_forward_and_wide_deep_ones_keep_to_the_floor():
    """Bigger chunks make bigger matmuls; the hidden states a chunk holds stay bounded for large models."""
    from transformers import LlamaConfig

    assert forward_tokens(LlamaConfig(hidden_size=192, num_hidden_layers=4)) == 4096  # the tiny default
    assert forward_tokens(LlamaConfig(hidden_size=576, num_hidden_layers=30)) == MIN_FORWARD_TOKENS  # SmolLM2-135M


def test_a_fit_is_reproducible_within_one_process(credit):
    """`data.random_state` seeds the initial weights too: the global RNG's state before a fit does not matter."""
    from synth_model import Synthesizer

    config = {
        "data": {"holdout": 20},
        "training": {"num_input_records_to_sample": 100, "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2}},
    }

    def weights():
        torch.rand(7)  # whatever ran before
        model = Synthesizer(config).fit(credit.slice(0, 200)).loaded.model
        return {k: v.clone() for k, v in model.state_dict().items()}

    first, second = weights(), weights()
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
