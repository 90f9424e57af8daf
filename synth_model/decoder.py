"""Incremental decoding for sampling: a lean Llama KV-cache decoder, and HF's StaticCache for the rest.

Every row of a batch continues the same prompt with one unit (see records.py), so the prompt is
run once and its keys/values are shared by all rows. `KVDecoder` runs the Llama blocks straight
over the module weights (q/k/v and gate/up fused into single matmuls) with a position per row: a
row that finished its unit is restarted right after the prompt while the others go on
(continuous batching), and attention covers only the longest live prefix. `HFDecoder` (other
architectures) advances all rows in lockstep and cannot restart one, so its batches run in waves.
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
    """Batched incremental decoding of a Llama model, one position per row, the prompt shared.

    prefill(ids [1, P]) -> logits [B, V] after the prompt; step(ids [B]) -> logits [B, V];
    restart(rows) puts rows back right after the prompt (their next logits are `prompt_logits`);
    keep(rows) drops the other rows. The prompt's keys/values are stored once and every row's
    query meets them in one matmul; each row's own tokens have their own cache, read only up to
    the longest live row. A peft model is merged into a deep copy, so the caller's (trainable)
    model is never touched.
    """

    refills = True

    @torch.no_grad()
    def __init__(self, model, batch_size: int, max_len: int):
        model = merged(model)
        if not isinstance(model, LlamaForCausalLM):
            raise TypeError(f"KVDecoder needs a LlamaForCausalLM, got {type(model).__name__}")
        cfg = model.config
        inner = model.model
        self.batch_size, self.max_len, self.prompt_len = batch_size, max_len, 0
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
        cos, sin = inner.rotary_emb(self.embed[:1], position_ids=positions)
        self.cos, self.sin = cos[0], sin[0]
        self.prompt_keys: list[torch.Tensor] = []  # per layer [kv_heads, P, head_dim]
        self.prompt_values: list[torch.Tensor] = []
        self.keys: list[torch.Tensor] = []  # per layer [B, kv_heads, max_len - P, head_dim]
        self.values: list[torch.Tensor] = []
        self.filled = torch.zeros(batch_size, dtype=torch.long, device=self.embed.device)  # own tokens per row
        self.prompt_logits: torch.Tensor | None = None

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        if self.prompt_logits is not None:
            raise RuntimeError("prefill must come first, and once")
        span = ids.shape[1]
        if span >= self.max_len:
            raise RuntimeError(f"the cache holds {self.max_len} positions")
        self.prompt_len = span
        self.prompt_logits = self._prompt(ids)
        shape = (self.batch_size, self.kv_heads, self.max_len - span, self.head_dim)
        self.keys = [self.embed.new_empty(shape) for _ in self.layers]
        self.values = [self.embed.new_empty(shape) for _ in self.layers]
        return self.prompt_logits.expand(self.batch_size, -1)

    @torch.inference_mode()
    def restart(self, rows: torch.Tensor) -> None:
        """Rows continue the prompt afresh."""
        self.filled[rows] = 0

    @torch.inference_mode()
    def keep(self, rows: torch.Tensor) -> None:
        """Only `rows` stay in the batch (cheaper steps once few rows are still needed)."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]
        self.filled = self.filled[rows]
        self.batch_size = len(rows)

    @torch.inference_mode()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        rows, own = ids.shape[0], self.filled
        span = int(own.max()) + 1
        if self.prompt_len + span > self.max_len:
            raise RuntimeError(f"the cache holds {self.max_len} positions")
        h, d, kv = self.heads, self.head_dim, self.kv_heads
        g = h // kv
        every = torch.arange(rows, device=own.device)
        position = own + self.prompt_len
        cos, sin = self.cos[position][:, None], self.sin[position][:, None]
        hidden = (torch.arange(span, device=own.device) > own[:, None])[:, None, None]  # [B, 1, 1, span]
        scale = d**-0.5
        x = F.embedding(ids[:, None], self.embed)
        for i, (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down) in enumerate(self.layers):
            qkv = F.linear(_rms_norm(x, ln1, self.eps), w_qkv, b_qkv).view(rows, 1, -1, d).transpose(1, 2)
            q, k, v = qkv.split([h, kv, kv], dim=1)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            self.keys[i][every, :, own] = k[:, :, 0]
            self.values[i][every, :, own] = v[:, :, 0]
            q = q.reshape(rows, kv, g, d)  # the g heads sharing a kv head become g query rows
            # Scores against the shared prompt (one matmul over all rows) and against each row's own tokens.
            shared = torch.matmul(q.transpose(0, 1).reshape(kv, rows * g, d), self.prompt_keys[i].transpose(1, 2))
            shared = shared.view(kv, rows, g, -1).transpose(0, 1)
            keys, values = self.keys[i][:, :, :span], self.values[i][:, :, :span]
            mine = torch.matmul(q, keys.transpose(2, 3)).masked_fill_(hidden, float("-inf"))
            weights = (torch.cat([shared, mine], dim=-1) * scale).softmax(-1)
            w_shared, w_mine = weights.split([self.prompt_len, span], dim=-1)
            out = torch.matmul(w_mine, values)
            out += (
                torch.matmul(w_shared.transpose(0, 1).reshape(kv, rows * g, -1), self.prompt_values[i])
                .view(kv, rows, g, d)
                .transpose(0, 1)
            )
            x = x + F.linear(out.reshape(rows, 1, h * d), w_o, b_o)
            gate, up = F.linear(_rms_norm(x, ln2, self.eps), w_gu, b_gu).chunk(2, dim=-1)
            x = x + F.linear(self.act(gate) * up, w_down, b_down)
        self.filled = own + 1
        return F.linear(_rms_norm(x[:, -1], self.norm, self.eps), self.lm_head)

    def _prompt(self, ids: torch.Tensor) -> torch.Tensor:
        """Run the prompt once and keep its keys/values; logits [V] of its last position."""
        span = ids.shape[1]
        h, d = self.heads, self.head_dim
        cos, sin = self.cos[None, :span], self.sin[None, :span]
        x = F.embedding(ids, self.embed)
        for ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down in self.layers:
            qkv = F.linear(_rms_norm(x, ln1, self.eps), w_qkv, b_qkv).view(1, span, -1, d).transpose(1, 2)
            q, k, v = qkv.split([h, self.kv_heads, self.kv_heads], dim=1)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            self.prompt_keys.append(k[0].contiguous())
            self.prompt_values.append(v[0].contiguous())
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=h > self.kv_heads)
            x = x + F.linear(out.transpose(1, 2).reshape(1, span, h * d), w_o, b_o)
            gate, up = F.linear(_rms_norm(x, ln2, self.eps), w_gu, b_gu).chunk(2, dim=-1)
            x = x + F.linear(self.act(gate) * up, w_down, b_down)
        return F.linear(_rms_norm(x[0, -1], self.norm, self.eps), self.lm_head)


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
