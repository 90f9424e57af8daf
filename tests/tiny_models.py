"""Small random Llama models (plain and with a LoRA adapter) shared by the decoder, training and vLLM tests."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 100


def tiny_llama(rope: dict | None = None, seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A 2-layer, 64-wide Llama with random weights; `overrides` replace LlamaConfig fields."""
    torch.manual_seed(seed)
    fields = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "rope_parameters": rope or {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": True,
    }
    return LlamaForCausalLM(LlamaConfig(**fields | overrides)).eval()


def lora_llama():
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj"], use_rslora=True)
    model = get_peft_model(tiny_llama(), lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # nonzero, so the adapter changes the logits
    return model
