"""Sampling on vLLM (GPU): the same units, grammar and stop rules as `generate.sample_units`.

`generation.backend: vllm` hands vLLM a model folder (the base model, and for a LoRA model its
adapter as a LoRA request) and the unit grammar of structured generation (vLLM's llguidance
backend, "guidance", reads the same Lark grammar), and turns its outputs into the
(token ids, ended) units the Collector validates. vLLM batches and pages its KV cache itself.
Installed with the `vllm` extra; it needs an NVIDIA GPU, and CPU runs never import it.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from synth_model.config import GenerationConfig
from synth_model.errors import ConfigError
from synth_model.records import sequence_len

if TYPE_CHECKING:
    from synth_model.generate import Finished
INSTALL = "pip install -e '.[vllm]' on a machine with an NVIDIA GPU, or set generation.backend: engine"


@dataclass
class VllmFolders:
    """What vLLM loads: a Hugging Face model folder, and the LoRA adapter folder when there is one."""

    model: Path
    adapter: Path | None
    lora_rank: int | None


def export_for_vllm(model, tokenizer, directory: Path) -> VllmFolders:
    """Write the model the way vLLM loads it: a plain model as it is; a peft model as its unmodified
    base plus the adapter (served as a LoRA request, so the base stays shareable)."""
    base_dir = directory / "model"
    if hasattr(model, "peft_config"):
        adapter_dir = directory / "adapter"
        model.save_pretrained(adapter_dir)
        base = copy.deepcopy(model).unload()  # the base weights without the adapters, not merged
        base.save_pretrained(base_dir)
        rank = max(cfg.r for cfg in model.peft_config.values())
    else:
        model.save_pretrained(base_dir)
        adapter_dir, rank = None, None
    tokenizer.save_pretrained(base_dir)
    return VllmFolders(base_dir, adapter_dir, rank)


def vllm_dtype(cfg: GenerationConfig) -> str:
    """The precision vLLM runs in: bfloat16 (a GPU's native one) unless float32 is asked for."""
    return "float32" if cfg.precision == "float32" else "bfloat16"


def engine_args(folders: VllmFolders, cfg: GenerationConfig, seed: int, max_len: int) -> dict:
    """vLLM's engine settings from this package's: `generation.batch_size` caps the sequences it
    runs at once (auto: vLLM sizes the batch from free GPU memory), `generation.precision` sets
    the dtype, and the grammar goes to its llguidance backend."""
    args = {
        "model": str(folders.model),
        "tokenizer": str(folders.model),
        "dtype": vllm_dtype(cfg),
        "seed": seed,
        "max_model_len": max_len,
        "enable_lora": folders.adapter is not None,
        "max_lora_rank": folders.lora_rank or 16,
        "structured_outputs_config": {"backend": "guidance"},
    }
    if cfg.batch_size != "auto":
        args["max_num_seqs"] = cfg.batch_size
    return args


def _import_vllm():
    try:
        import vllm
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        raise ConfigError(f"generation.backend 'vllm' needs vLLM, which is not installed: {INSTALL}") from None
    if not torch.cuda.is_available():
        raise ConfigError(f"generation.backend 'vllm' needs a CUDA GPU and none is visible: {INSTALL}")
    return vllm, LoRARequest, StructuredOutputsParams


def vllm_units(
    model,
    tokenizer,
    prompt_ids: list[int],
    max_unit_tokens: int,
    eos_id: int,
    cfg: GenerationConfig,
    seed: int,
    wanted: Callable[[int], int],
    grammar: str | None,
) -> Iterator[list[Finished]]:
    """Units sampled by vLLM, one request per unit, in rounds of what `wanted(0)` still asks for."""
    vllm, lora_request, structured_params = _import_vllm()
    with tempfile.TemporaryDirectory(prefix="synth-vllm-") as tmp:
        folders = export_for_vllm(model, tokenizer, Path(tmp))
        llm = vllm.LLM(**engine_args(folders, cfg, seed, sequence_len(len(prompt_ids), max_unit_tokens)))
        params = vllm.SamplingParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            repetition_penalty=cfg.repetition_penalty,
            max_tokens=max_unit_tokens,
            stop_token_ids=[eos_id],
            detokenize=False,
            structured_outputs=structured_params(grammar=grammar) if grammar else None,
        )
        lora = lora_request("synth", 1, str(folders.adapter)) if folders.adapter else None
        while (count := wanted(0)) > 0:
            outputs = llm.generate(
                [{"prompt_token_ids": prompt_ids}] * count, params, lora_request=lora, use_tqdm=False
            )
            units = []
            for output in outputs:
                sample = output.outputs[0]
                ids = [t for t in sample.token_ids if t != eos_id]
                units.append((ids, sample.finish_reason == "stop"))
            yield units
