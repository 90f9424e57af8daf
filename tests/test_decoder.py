"""The Llama KV decoder against HF's own forward, and seeded sampling through it."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from synth_model.config import GenerationConfig
from synth_model.decoder import HFDecoder, KVDecoder, make_decoder
from synth_model.generate import _sample, sample_batch

VOCAB, PROMPT, STEPS, BATCH = 100, 7, 6, 3


def tiny_llama(rope: dict | None = None, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def lora_llama():
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj"], use_rslora=True)
    model = get_peft_model(tiny_llama(), lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # nonzero, so the adapter changes the logits
    return model


def assert_matches_hf(model) -> None:
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (BATCH, PROMPT + STEPS))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    decoder = KVDecoder(model, BATCH, PROMPT + STEPS)
    torch.testing.assert_close(decoder.prefill(ids[:, :PROMPT]), expected[:, PROMPT - 1], atol=1e-4, rtol=1e-4)
    for t in range(PROMPT, PROMPT + STEPS - 1):
        torch.testing.assert_close(decoder.step(ids[:, t]), expected[:, t], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rope", [None, {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}])
def test_decoder_matches_hf_forward(rope):
    assert_matches_hf(tiny_llama(rope))


def test_decoder_matches_hf_forward_with_lora_and_leaves_the_model_alone():
    model = lora_llama()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        adapter_on = model(input_ids=torch.arange(PROMPT)[None]).logits
        with model.disable_adapter():
            adapter_off = model(input_ids=torch.arange(PROMPT)[None]).logits
    assert not torch.allclose(adapter_off, adapter_on, atol=1e-3)
    assert_matches_hf(model)
    after = dict(model.named_parameters())
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_single_prompt_row_is_broadcast_to_the_batch():
    model = tiny_llama()
    prompt = torch.arange(PROMPT)[None]
    decoder = KVDecoder(model, BATCH, PROMPT + 2)
    logits = decoder.prefill(prompt)
    assert logits.shape == (BATCH, VOCAB)
    tokens = torch.tensor([3, 5, 7])
    with torch.no_grad():
        expected = model(input_ids=torch.cat([prompt.expand(BATCH, -1), tokens[:, None]], 1)).logits[:, -1]
    torch.testing.assert_close(decoder.step(tokens), expected, atol=1e-4, rtol=1e-4)


def test_other_rope_types_fall_back_to_hf():
    dynamic = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    assert isinstance(make_decoder(tiny_llama(dynamic), BATCH, 16), HFDecoder)
    assert isinstance(make_decoder(tiny_llama(), BATCH, 16), KVDecoder)


@pytest.mark.parametrize(
    "cfg", [GenerationConfig(), GenerationConfig(temperature=0.8, top_p=0.9, repetition_penalty=1.2)]
)
def test_sample_batch_is_reproducible(cfg):
    model = tiny_llama()

    def sample(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return sample_batch(model, [1, 2, 3], 4, 20, eos_id=0, cfg=cfg, generator=generator)

    first = sample(5)
    assert first.shape[0] == 4 and first.shape[1] <= 20
    assert torch.equal(first, sample(5))
    assert not torch.equal(first, sample(6))
    for row in first.tolist():  # everything after the end token is the end token
        if 0 in row:
            assert set(row[row.index(0) :]) == {0}


def test_hf_fallback_agrees_with_kv_decoder():
    """The StaticCache path (kept for other architectures) gives the same logits as the KV decoder."""
    model = tiny_llama()
    prompt, max_len = torch.tensor([[1, 2, 3]]), 3 + 8
    kv, hf = KVDecoder(model, 2, max_len), HFDecoder(model, 2, max_len)
    torch.testing.assert_close(kv.prefill(prompt), hf.prefill(prompt), atol=1e-4, rtol=1e-4)
    for token in ([4, 5], [6, 7], [8, 9]):
        ids = torch.tensor(token)
        torch.testing.assert_close(kv.step(ids), hf.step(ids), atol=1e-4, rtol=1e-4)


def test_inverse_cdf_sampling_follows_the_distribution():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0])
    scores = probs.log().expand(80_000, -1)  # -inf where the probability is zero (as top_p leaves it)
    uniform = torch.rand(80_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    frequencies = torch.bincount(_sample(scores, uniform), minlength=5) / 80_000
    torch.testing.assert_close(frequencies, probs, atol=0.01, rtol=0)
    assert frequencies[1] == 0 and frequencies[4] == 0
