"""Incremental decoding for sampling: a lean Llama KV-cache decoder, and HF's StaticCache for the rest.

Every sequence of a batch continues the same prompt in lockstep (no padding), so after `t` tokens
each attention only needs the filled prefix 0..t of the cache. HF's StaticCache attends over the
whole preallocated length at every step; `KVDecoder` runs the Llama blocks straight over the
module weights, with q/k/v and gate/up fused into single matmuls, and attends over the prefix only.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, StaticCache
from transformers.activations import ACT2FN
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

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


def make_decoder(model, batch_size: int, max_len: int) -> KVDecoder | HFDecoder:
    """`KVDecoder` for Llama-architecture models (plain or peft-wrapped), else `HFDecoder`."""
    base = _base_model(model)
    if isinstance(base, LlamaForCausalLM) and _rope_type(base.config) not in _LENGTH_DEPENDENT_ROPE:
        return KVDecoder(model, batch_size, max_len)
    return HFDecoder(model, batch_size, max_len)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: normalise in float32, cast back, then scale."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _cat(*tensors: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat(tensors)


class KVDecoder:
    """Batched incremental decoding of a Llama model over a preallocated KV cache.

    prefill(ids [B or 1, P]) -> logits [B, V] of the last prompt position (a single prompt row is
    run once and its keys/values broadcast to the whole batch); step(ids [B]) -> logits [B, V].
    A peft model is merged into a deep copy, so the caller's (trainable) model is never touched.
    """

    @torch.no_grad()
    def __init__(self, model, batch_size: int, max_len: int):
        model = merged(model)
        if not isinstance(model, LlamaForCausalLM):
            raise TypeError(f"KVDecoder needs a LlamaForCausalLM, got {type(model).__name__}")
        cfg = model.config
        inner = model.model
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.act = ACT2FN[cfg.hidden_act]
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = []
        for layer in inner.layers[: cfg.num_hidden_layers]:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append(
                (
                    layer.input_layernorm.weight,
                    torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                    _cat(attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias),
                    attn.o_proj.weight,
                    attn.o_proj.bias,
                    layer.post_attention_layernorm.weight,
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                    _cat(mlp.gate_proj.bias, mlp.up_proj.bias),
                    mlp.down_proj.weight,
                    mlp.down_proj.bias,
                )
            )
        # cos/sin for every position, from the model's own rotary module (keeps RoPE scaling).
        positions = torch.arange(max_len, device=self.embed.device)[None]
        self.cos, self.sin = inner.rotary_emb(self.embed[:1], position_ids=positions)
        shape = (batch_size, self.kv_heads, max_len, self.head_dim)
        self.keys = [self.embed.new_empty(shape) for _ in self.layers]
        self.values = [self.embed.new_empty(shape) for _ in self.layers]

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        if self.length:
            raise RuntimeError("prefill must come first")
        logits = self._forward(ids)
        return logits.expand(self.batch_size, -1)

    @torch.inference_mode()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        return self._forward(ids[:, None])

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows, span = ids.shape
        start, end = self.length, self.length + span
        if end > self.max_len:
            raise RuntimeError(f"the cache holds {self.max_len} positions")
        h, d, g = self.heads, self.head_dim, self.heads // self.kv_heads
        cos, sin = self.cos[:, start:end], self.sin[:, start:end]
        x = F.embedding(ids, self.embed)
        for i, (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down) in enumerate(self.layers):
            qkv = F.linear(_rms_norm(x, ln1, self.eps), w_qkv, b_qkv).view(rows, span, -1, d).transpose(1, 2)
            q, k, v = qkv.split([h, self.kv_heads, self.kv_heads], dim=1)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            self.keys[i][:, :, start:end] = k
            self.values[i][:, :, start:end] = v
            keys, values = self.keys[i][:rows, :, :end], self.values[i][:rows, :, :end]
            if span == 1:
                # One query per head: the g heads sharing a kv head become g query rows (no mask needed).
                q = q.reshape(rows, self.kv_heads, g, d)
                out = F.scaled_dot_product_attention(q, keys, values).reshape(rows, 1, h * d)
            else:
                out = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=g > 1)
                out = out.transpose(1, 2).reshape(rows, span, h * d)
            x = x + F.linear(out, w_o, b_o)
            gate, up = F.linear(_rms_norm(x, ln2, self.eps), w_gu, b_gu).chunk(2, dim=-1)
            x = x + F.linear(self.act(gate) * up, w_down, b_down)
        self.length = end
        return F.linear(_rms_norm(x[:, -1], self.norm, self.eps), self.lm_head)


class HFDecoder:
    """The same interface over HF's own forward and StaticCache, for non-Llama architectures."""

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
