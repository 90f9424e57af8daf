"""Incremental decoding for sampling: a lean Llama KV-cache decoder, and HF's StaticCache for the rest.

Every row of a batch continues the same prompt with one unit (see records.py), so the prompt is
run once and its keys/values are copied into every row. `KVDecoder` runs the Llama blocks straight
over the module weights (q/k/v and gate/up fused into single matmuls) with a position per row: a
row that finished its unit is restarted right after the prompt while the others go on
(continuous batching); attention masks each row's cache past the row's own position. `HFDecoder` (other
architectures) advances all rows in lockstep and cannot restart one, so its batches run in waves.
"""

from __future__ import annotations

import copy
import functools
import time

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, StaticCache
from transformers.activations import ACT2FN
from transformers.models.llama.modeling_llama import rotate_half

# RoPE types whose frequencies change with the sequence length seen so far: left to HF.
_LENGTH_DEPENDENT_ROPE = {"dynamic", "longrope"}


def _base_model(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def merged(model):
    """A peft model's adapters merged into a deep copy (the caller's trainable model is untouched)."""
    return copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _rope_type(config) -> str:
    return (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (else bf16 is emulated, and slow)."""
    caps = torch.cpu.get_capabilities()
    return any(caps.get(name, False) for name in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def matmul_dtype(precision: str, model) -> torch.dtype:
    """The dtype of the sampler's weight matmuls for `generation.precision`.

    auto: the model's own dtype on GPU; on CPU bfloat16 where the CPU has bf16 instructions (several
    times the float32 matmul rate there), else float32.
    """
    if precision != "auto":
        return getattr(torch, precision)
    weight = next(model.parameters())
    if weight.device.type == "cpu" and weight.dtype == torch.float32 and native_bf16():
        return torch.bfloat16
    return weight.dtype


def make_decoder(model, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVDecoder | HFDecoder:
    """`KVDecoder` for Llama-architecture models (plain or peft-wrapped), else `HFDecoder`.

    `dtype` sets the KV decoder's weight-matmul precision (the HF fallback runs the model as it is).
    """
    base = _base_model(model)
    if isinstance(base, LlamaForCausalLM) and _rope_type(base.config) not in _LENGTH_DEPENDENT_ROPE:
        return KVDecoder(model, batch_size, max_len, dtype)
    return HFDecoder(model, batch_size, max_len)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: normalise in float32, cast back, then scale (one fused op in float32)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _cat(*tensors: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat(tensors)


def _scaled(tensor: torch.Tensor | None, factor: float) -> torch.Tensor | None:
    return None if tensor is None else tensor * factor


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T (+ bias) in the weight's dtype (the result too: adding it to a float32 residual promotes)."""
    return F.linear(x.to(weight.dtype), weight, bias)


# How a step's attention reads the key/value cache: all of it with batched matmuls, or the prefix
# the rows have filled with batched matmuls, or that prefix through SDPA (in place, no copy).
WHOLE, PREFIX, SDPA = "whole cache", "cache prefix", "cache prefix through SDPA"
CALIBRATION_ROWS = 128  # rows timed when choosing: the cost per row ranks the ways alike at 128 and 512


def _attention_bias(positions: torch.Tensor, span: int, dtype: torch.dtype, sdpa: bool):
    """-inf on each row's keys past its position: [R, 1, 1, T, span] to add to the scores (one op that
    also lifts bfloat16 scores to a float32 softmax), and the same as SDPA's mask [R, 1, T, span]."""
    hidden = (torch.arange(span, device=positions.device) > positions[..., None])[:, None, None]
    bias = torch.zeros(hidden.shape, device=positions.device).masked_fill_(hidden, float("-inf"))
    return bias, (bias[:, 0].to(dtype) if sdpa else None)


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, mask) -> torch.Tensor:
    """Queries [R, H, T, D] over their row's cached keys and values [R, KV, S, D]; out [R, T, H, D].

    With `mask` through SDPA; else batched matmuls, the query heads that share a key/value head
    taken as that head's consecutive query rows, `bias` added to the scores.
    """
    n, h, width, d = q.shape
    kv, span = keys.shape[1], keys.shape[2]
    if mask is not None:
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=1.0, enable_gqa=True)
        return out.transpose(1, 2)
    q = q.reshape(n * kv, h // kv * width, d)
    keys, values = keys.reshape(n * kv, span, d), values.reshape(n * kv, span, d)
    scores = torch.bmm(q, keys.transpose(1, 2)).view(n, kv, h // kv, width, span)
    weights = torch.add(scores, bias).softmax(-1).to(keys.dtype).view(n * kv, h // kv * width, span)
    return torch.bmm(weights, values).view(n, h, width, d).transpose(1, 2)


def attention_ways(
    device: str, dtype: torch.dtype, rows: int, heads: int, kv_heads: int, head_dim: int, max_len: int
) -> tuple[str, str]:
    """The fastest way to read the cache (WHOLE, PREFIX or SDPA) while the rows fill at most half of
    it, and once they fill more: timed here, once per process, thread count and shape.

    The fastest differs between CPUs by up to 4x: SDPA's bfloat16 kernel beats batched matmuls over
    a prefix (which copy it first) on one, and is the slowest way on another; in float32 the whole
    cache is the fastest read on one and the slowest on another. On other devices: SDPA over the
    prefix in half precision, matmuls in float32, the whole cache past half.
    """
    if device != "cpu":
        return (PREFIX if dtype == torch.float32 else SDPA, WHOLE)
    shape = (min(rows, CALIBRATION_ROWS), heads, kv_heads, head_dim, max_len)
    return _fastest_ways(dtype, torch.get_num_threads(), *shape)


@functools.cache
def _fastest_ways(
    dtype: torch.dtype, threads: int, rows: int, heads: int, kv_heads: int, head_dim: int, max_len: int
) -> tuple[str, str]:
    generator = torch.Generator().manual_seed(0)  # leaves the global random state alone
    cache = torch.randn((2, rows, kv_heads, max_len, head_dim), generator=generator).to(dtype)
    q = torch.randn((rows, heads, 1, head_dim), generator=generator).to(dtype)
    chosen = []
    for filled in (max_len // 4, max_len * 3 // 4):  # the middle of each half
        positions = (torch.arange(rows) % max(filled, 1))[:, None]
        timings: dict[str, list[float]] = {way: [] for way in (WHOLE, PREFIX, SDPA)}
        for _ in range(4):  # interleaved; the first round warms up
            for way, times in timings.items():
                span = max_len if way == WHOLE else max(filled, 1)
                bias, mask = _attention_bias(positions, span, dtype, way == SDPA)
                start = time.perf_counter()
                _attend(q, cache[0, :, :, :span], cache[1, :, :, :span], bias, mask)
                times.append(time.perf_counter() - start)
        chosen.append(min(timings, key=lambda way: min(timings[way][1:])))
    return chosen[0], chosen[1]


def kv_shape(cfg) -> tuple[int, int]:
    """Key/value heads and head width of a model config (no grouping where it names none)."""
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads, head_dim


class KVDecoder:
    """Batched incremental decoding of a Llama model, one position per row, the prompt shared.

    prefill(ids [1, P]) -> logits [B, V] after the prompt; step(ids [B]) -> logits [B, V];
    restart(rows) puts rows back right after the prompt (their next logits are `prompt_logits`);
    keep(rows) drops the other rows. The prompt runs once and its keys/values are copied into every
    row's cache; attention reads every row's cache up to the longest live row, or all of it, in the
    way timed fastest on this machine (`attention_ways`). A peft model is merged into a deep copy,
    so the caller's (trainable) model is never touched. With `dtype` the matmuls (weights and
    attention) and the cache are in it (bfloat16 on a CPU with bf16 instructions: half the cache to
    read each step); the residual stream, norms and softmax stay in the model's.
    """

    refills = True

    @torch.no_grad()
    def __init__(self, model, batch_size: int, max_len: int, dtype: torch.dtype | None = None):
        model = merged(model)
        if not isinstance(model, LlamaForCausalLM):
            raise TypeError(f"KVDecoder needs a LlamaForCausalLM, got {type(model).__name__}")
        cfg = model.config
        inner = model.model
        self.batch_size, self.max_len, self.prompt_len = batch_size, max_len, 0
        self.heads = cfg.num_attention_heads
        self.kv_heads, self.head_dim = kv_shape(cfg)
        self.eps = cfg.rms_norm_eps
        self.act = ACT2FN[cfg.hidden_act]
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        dtype = dtype or self.embed.dtype

        def cast(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(dtype)

        self.lm_head = cast(model.lm_head.weight)
        self.layers = []
        scale = self.head_dim**-0.5  # attention's 1/sqrt(d), folded into the query projection
        for layer in inner.layers[: cfg.num_hidden_layers]:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append(
                (
                    layer.input_layernorm.weight,
                    cast(torch.cat([attn.q_proj.weight * scale, attn.k_proj.weight, attn.v_proj.weight])),
                    cast(_cat(_scaled(attn.q_proj.bias, scale), attn.k_proj.bias, attn.v_proj.bias)),
                    cast(attn.o_proj.weight),
                    cast(attn.o_proj.bias),
                    layer.post_attention_layernorm.weight,
                    cast(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    cast(_cat(mlp.gate_proj.bias, mlp.up_proj.bias)),
                    cast(mlp.down_proj.weight),
                    cast(mlp.down_proj.bias),
                )
            )
        # cos/sin for every position, from the model's own rotary module (keeps RoPE scaling).
        positions = torch.arange(max_len, device=self.embed.device)[None]
        cos, sin = inner.rotary_emb(self.embed[:1], position_ids=positions)
        self.cos, self.sin = cos[0].to(dtype), sin[0].to(dtype)
        # per layer [keys|values, B, kv_heads, max_len, head_dim]: one write per step for both. Zeroed:
        # unwritten values meet attention weight 0, and 0 x NaN (from garbage memory) would be NaN.
        shape = (2, batch_size, self.kv_heads, max_len, self.head_dim)
        self.caches = [self.embed.new_zeros(shape, dtype=dtype) for _ in self.layers]
        self.filled = torch.zeros(batch_size, dtype=torch.long, device=self.embed.device)  # own tokens per row
        self.ways = attention_ways(
            self.embed.device.type,
            dtype,
            batch_size,
            self.heads,
            self.kv_heads,
            self.head_dim,
            max_len,
        )
        self.prompt_logits: torch.Tensor | None = None

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        if self.prompt_logits is not None:
            raise RuntimeError("prefill must come first, and once")
        span = ids.shape[1]
        if span >= self.max_len:
            raise RuntimeError(f"the cache holds {self.max_len} positions")
        self.prompt_len = span
        positions = torch.arange(span, device=ids.device)[None]
        self.prompt_logits = self._forward(ids, positions, slice(0, 1))[0]
        for cache in self.caches:
            cache[:, 1:, :, :span] = cache[:, :1, :, :span]
        return self.prompt_logits.expand(self.batch_size, -1)

    @torch.inference_mode()
    def restart(self, rows: torch.Tensor) -> None:
        """Rows continue the prompt afresh."""
        self.filled[rows] = 0

    def rewind(self, row: int, filled: int) -> None:
        """The row keeps only its first `filled` tokens: the next step feeds its token `filled` (again)."""
        self.filled[row] = filled

    @torch.inference_mode()
    def keep(self, rows: torch.Tensor) -> None:
        """Only `rows` stay in the batch (cheaper steps once few rows are still needed)."""
        self.caches = [cache[:, rows] for cache in self.caches]
        self.filled = self.filled[rows]
        self.batch_size = len(rows)

    @torch.inference_mode()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        positions = (self.filled + self.prompt_len)[:, None]
        if int(positions.max()) >= self.max_len:
            raise RuntimeError(f"the cache holds {self.max_len} positions")
        logits = self._forward(ids[:, None], positions, slice(None))
        self.filled += 1
        return logits

    def _slots(self, positions: torch.Tensor, first_row: int) -> torch.Tensor:
        """Flat cache index [2 * R * kv_heads * T] of the keys and values of tokens at `positions` [R, T]."""
        n = positions.shape[0]
        rows = torch.arange(2, device=positions.device)[:, None] * self.batch_size + first_row
        rows = rows + torch.arange(n, device=positions.device)  # [2, R]
        heads = rows[..., None] * self.kv_heads + torch.arange(self.kv_heads, device=positions.device)
        return (heads[..., None] * self.max_len + positions[None, :, None]).view(-1)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, rows: slice) -> torch.Tensor:
        """Run tokens `ids` [R, T] at `positions` [R, T] for cache rows `rows`; logits [R, V] of the last.

        Each token's keys/values are written to the cache first; a query then attends to every
        cached key of its row up to its own position (the prompt, and the row's unit so far).
        """
        n, width = ids.shape
        h, d, kv = self.heads, self.head_dim, self.kv_heads
        needed = int(positions.max()) + 1
        way = self.ways[2 * needed > self.max_len] if width == 1 else PREFIX
        span = self.max_len if way == WHOLE else needed
        slots = self._slots(positions, rows.start or 0)
        bias, mask = _attention_bias(positions, span, self.caches[0].dtype, way == SDPA)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        x = F.embedding(ids, self.embed)
        for cache, (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down) in zip(
            self.caches, self.layers, strict=True
        ):
            qkv = _linear(_rms_norm(x, ln1, self.eps), w_qkv, b_qkv).view(n, width, -1, d).transpose(1, 2)
            qk = qkv[:, : h + kv]
            qk = qk * cos + rotate_half(qk) * sin
            cache.view(-1, d).index_copy_(0, slots, torch.stack([qk[:, h:], qkv[:, h + kv :]]).view(-1, d))
            out = _attend(qk[:, :h], cache[0, rows, :, :span], cache[1, rows, :, :span], bias, mask)
            x = x + _linear(out.reshape(n, width, h * d), w_o, b_o)
            gate, up = _linear(_rms_norm(x, ln2, self.eps), w_gu, b_gu).chunk(2, dim=-1)
            x = x + _linear(self.act(gate) * up, w_down, b_down)
        return _linear(_rms_norm(x[:, -1], self.norm, self.eps), self.lm_head).float()


class HFDecoder:
    """The same interface over HF's own forward and StaticCache, for non-Llama architectures.

    All rows share one position, so a finished row cannot restart: batches run in waves.
    """

    refills = False

    def __init__(self, model, batch_size: int, max_len: int):
        self.model, self.batch_size = model, batch_size
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.length = 0

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        return self._forward(ids.expand(self.batch_size, -1))

    @torch.inference_mode()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        return self._forward(ids[:, None])

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        position = torch.arange(self.length, self.length + ids.shape[1], device=ids.device)
        self.length += ids.shape[1]
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, cache_position=position)
        return out.logits[:, -1]
