"""The Llama KV decoder against HF's own forward, and seeded sampling through it."""

from __future__ import annotations

import time

import pytest
import torch
from tiny_models import VOCAB, lora_llama, tiny_llama

from synth_model import decoder as decoder_module
from synth_model.config import GenerationConfig
from synth_model.decoder import PREFIX, SDPA, WHOLE, HFDecoder, KVDecoder, attention_ways, make_decoder, matmul_dtype
from synth_model.generate import CACHE_BUDGET, _sample, cache_rows, default_batch_size, sample_units

PROMPT, STEPS, BATCH = 7, 6, 3
WAYS = [WHOLE, PREFIX, SDPA]


@pytest.fixture(params=WAYS)
def way(request, monkeypatch):
    """Attention reads the cache this way at every fill, whichever this machine would time fastest."""
    monkeypatch.setattr(decoder_module, "attention_ways", lambda *shape: (request.param, request.param))
    return request.param


def hf_last_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits[:, -1]


def assert_matches_hf(model, dtype: torch.dtype | None = None, tolerance: float = 1e-4, spare: int = 0) -> None:
    """Rows sharing one prompt, then each its own tokens: every step agrees with HF's full forward.

    With `spare` unused cache positions attention reads a prefix of the cache instead of all of it.
    """
    torch.manual_seed(1)
    prompt = torch.randint(0, VOCAB, (1, PROMPT))
    tokens = torch.randint(0, VOCAB, (BATCH, STEPS))
    decoder = KVDecoder(model, BATCH, PROMPT + STEPS + spare, dtype)
    expected = hf_last_logits(model, prompt).expand(BATCH, -1)
    torch.testing.assert_close(decoder.prefill(prompt), expected, atol=tolerance, rtol=tolerance)
    for t in range(STEPS - 1):
        full = torch.cat([prompt.expand(BATCH, -1), tokens[:, : t + 1]], dim=1)
        logits = decoder.step(tokens[:, t])
        torch.testing.assert_close(logits, hf_last_logits(model, full), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("spare", [0, 40], ids=["cache filled", "cache mostly empty"])
@pytest.mark.parametrize("rope", [None, {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}])
def test_decoder_matches_hf_forward(rope, spare, way):
    assert_matches_hf(tiny_llama(rope), spare=spare)


@pytest.mark.parametrize("spare", [0, 40], ids=["cache filled", "cache mostly empty"])
def test_bfloat16_matmuls_stay_close_to_the_float32_model(spare, way):
    model = tiny_llama()
    assert_matches_hf(model, torch.bfloat16, tolerance=0.05, spare=spare)
    with pytest.raises(AssertionError):
        assert_matches_hf(model, torch.bfloat16, spare=spare)  # the low precision is real, not a no-op


def test_precision_setting_picks_the_matmul_dtype(monkeypatch):
    model = tiny_llama()
    assert matmul_dtype("float32", model) == torch.float32
    assert matmul_dtype("bfloat16", model) == torch.bfloat16
    monkeypatch.setattr(decoder_module, "native_bf16", lambda: True)
    assert matmul_dtype("auto", model) == torch.bfloat16
    assert matmul_dtype("auto", model.to(torch.float16)) == torch.float16  # a half-precision model stays as it is
    monkeypatch.setattr(decoder_module, "native_bf16", lambda: False)  # emulated bf16 would be slower
    assert matmul_dtype("auto", model.float()) == torch.float32


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


def test_a_restarted_row_starts_afresh_while_the_others_go_on_and_dropped_rows_leave(way):
    """Continuous batching: row 1 restarts after the prompt mid-way, row 2 is rewound to its first
    token (a redrawn line), then row 0 is dropped."""
    model = tiny_llama()
    prompt = torch.arange(PROMPT)[None]
    decoder = KVDecoder(model, BATCH, PROMPT + 8)
    decoder.prefill(prompt)
    history = [[] for _ in range(BATCH)]

    def step(tokens: list[int]) -> None:
        for row, token in zip(history, tokens, strict=True):
            row.append(token)
        logits = decoder.step(torch.tensor(tokens))
        for i, row in enumerate(history):
            full = torch.cat([prompt, torch.tensor([row])], dim=1)
            torch.testing.assert_close(logits[i], hf_last_logits(model, full)[0], atol=1e-4, rtol=1e-4)

    step([3, 4, 5])
    step([6, 7, 8])
    decoder.restart(torch.tensor([1]))
    history[1] = []
    torch.testing.assert_close(decoder.prompt_logits, hf_last_logits(model, prompt)[0], atol=1e-4, rtol=1e-4)
    step([9, 10, 11])
    decoder.rewind(2, 1)  # row 2 keeps its first token (5) and feeds its second (8) again
    history[2] = history[2][:1]
    step([12, 13, 8])
    step([12, 13, 14])
    decoder.keep(torch.tensor([1, 2]))
    history = history[1:]
    step([15, 16])


@pytest.fixture
def fresh_timings():
    decoder_module._fastest_ways.cache_clear()
    yield
    decoder_module._fastest_ways.cache_clear()


@pytest.mark.parametrize("fastest", WAYS)
def test_attention_reads_the_cache_the_way_timed_fastest(monkeypatch, fresh_timings, fastest):
    """Each way but one is slowed down: that one is chosen for both fills, and timed once per shape."""
    attend, max_len, calls = decoder_module._attend, 40, []

    def slowed(q, keys, values, bias, mask):
        way = SDPA if mask is not None else WHOLE if keys.shape[2] == max_len else PREFIX
        calls.append(way)
        if way != fastest:
            time.sleep(0.003)
        return attend(q, keys, values, bias, mask)

    monkeypatch.setattr(decoder_module, "_attend", slowed)
    ways = attention_ways("cpu", torch.float32, 8, 4, 2, 8, max_len)
    assert ways == (fastest, fastest)
    assert set(calls) == set(WAYS)
    timed = len(calls)
    assert attention_ways("cpu", torch.float32, 8, 4, 2, 8, max_len) == ways and len(calls) == timed
    attention_ways("cpu", torch.bfloat16, 8, 4, 2, 8, max_len)  # another dtype is timed on its own
    assert len(calls) == 2 * timed


def test_attention_on_other_devices_follows_a_fixed_rule(monkeypatch, fresh_timings):
    monkeypatch.setattr(decoder_module, "_attend", lambda *args: pytest.fail("timed off the CPU"))
    assert attention_ways("cuda", torch.bfloat16, 512, 9, 3, 64, 600) == (SDPA, WHOLE)
    assert attention_ways("cuda", torch.float32, 512, 9, 3, 64, 600) == (PREFIX, WHOLE)


def test_other_rope_types_fall_back_to_hf():
    dynamic = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    assert isinstance(make_decoder(tiny_llama(dynamic), BATCH, 16), HFDecoder)
    assert isinstance(make_decoder(tiny_llama(), BATCH, 16), KVDecoder)


def _sample_all(model, seed: int, cfg: GenerationConfig, units: int = 12) -> list[tuple[list[int], bool]]:
    """Units sampled on 4 rows until `units` have finished (token 0 ends a unit)."""
    generator = torch.Generator().manual_seed(seed)
    finished: list = []

    def wanted(live: int) -> int:
        return max(0, units - len(finished) - live)

    for batch in sample_units(model, [1, 2, 3], 4, 10, 0, cfg, generator, wanted):
        finished.extend(batch)
    return finished


@pytest.mark.parametrize(
    "cfg", [GenerationConfig(), GenerationConfig(temperature=0.8, top_p=0.9, repetition_penalty=1.2)]
)
def test_sampling_is_reproducible_and_refills_rows(cfg):
    model = tiny_llama()
    first = _sample_all(model, 5, cfg)
    assert len(first) == 12  # 4 rows, refilled until twelve units finished
    assert first == _sample_all(model, 5, cfg)
    assert first != _sample_all(model, 6, cfg)
    for ids, ended in first:
        assert 0 not in ids and len(ids) <= 10
        assert ended or len(ids) == 10  # a unit either met the end token or hit the cap


@pytest.mark.parametrize("architecture", ["kv", "hf"])
def test_both_decoders_sample_the_same_units(architecture):
    """The HF fallback runs in waves, the KV decoder refills rows; seeded, each is deterministic."""
    model = tiny_llama({"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0} if architecture == "hf" else None)
    units = _sample_all(model, 3, GenerationConfig(), units=9)
    assert len(units) >= 9 and units == _sample_all(model, 3, GenerationConfig(), units=9)


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


def test_auto_batch_is_512_rows_on_cpu_unless_their_cache_passes_the_budget():
    model = tiny_llama()  # 2 layers x 2 key/value heads x 16 dims, float32: 512 bytes of cache per position
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_batch_size(model, 66, cpu) == 512 and default_batch_size(model, 66, cuda) == 1024
    per_row = 512 * 2**20
    assert default_batch_size(model, 2**20, cpu) == CACHE_BUDGET // per_row == 4
    assert cache_rows(model, 2**20, workers=2) == 2  # the workers' caches share the budget
    assert default_batch_size(model, 2**24, cuda) == 1  # never none
