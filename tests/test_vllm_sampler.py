"""The vLLM backend's side that runs without a GPU: the model export, and the error when vLLM is absent."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from peft import PeftModel
from tiny_models import lora_llama, tiny_llama
from transformers import AutoModelForCausalLM

from synth_model import ConfigError, SynthConfig, Synthesizer
from synth_model.vllm_sampler import engine_args, export_for_vllm


class _Tokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{}")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_lora_model_is_exported_as_its_untouched_base_plus_the_adapter(tmp_path):
    model = lora_llama()
    ids = torch.arange(9)[None]
    folders = export_for_vllm(model, _Tokenizer(), tmp_path)
    assert folders.lora_rank == 4 and (folders.model / "tokenizer.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(folders.model)
    with model.disable_adapter():
        torch.testing.assert_close(_logits(base, ids), _logits(model, ids))
    adapted = PeftModel.from_pretrained(base, folders.adapter)
    torch.testing.assert_close(_logits(adapted, ids), _logits(model, ids))
    assert any("lora_" in name for name, _ in model.named_parameters())  # the caller's model keeps its adapters


def test_a_plain_model_is_exported_whole(tmp_path):
    model = tiny_llama()
    folders = export_for_vllm(model, _Tokenizer(), tmp_path)
    assert folders.adapter is None and folders.lora_rank is None
    ids = torch.arange(5)[None]
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(folders.model), ids), _logits(model, ids))


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None and torch.cuda.is_available(), reason="vLLM can run here"
)
def test_the_vllm_backend_without_vllm_or_a_gpu_is_one_clear_error(fitted_credit):
    synth = Synthesizer.load(fitted_credit[1])
    synth.config.generation.backend = "vllm"
    with pytest.raises(ConfigError, match=r"generation.backend 'vllm' needs .*pip install -e '\.\[vllm\]'.*engine"):
        synth.generate(10)


def test_the_backend_is_engine_or_vllm():
    assert SynthConfig().generation.backend == "engine"
    with pytest.raises(ConfigError, match="'generation.backend'"):
        SynthConfig.from_any({"generation": {"backend": "tgi"}})


def test_vllm_gets_the_batch_size_and_precision_of_the_generation_settings(tmp_path):
    folders = export_for_vllm(lora_llama(), _Tokenizer(), tmp_path)
    settings = SynthConfig.from_any({"generation": {"batch_size": 64, "precision": "float32"}}).generation
    args = engine_args(folders, settings, seed=7, max_len=99)
    assert args["max_num_seqs"] == 64 and args["dtype"] == "float32" and args["seed"] == 7
    assert args["enable_lora"] and args["max_lora_rank"] == 4 and args["max_model_len"] == 99
    assert args["structured_outputs_config"] == {"backend": "guidance"}
    defaults = engine_args(folders, SynthConfig().generation, seed=0, max_len=99)
    assert "max_num_seqs" not in defaults and defaults["dtype"] == "bfloat16"


def test_fitting_for_vllm_leaves_the_batch_to_vllm_and_for_the_engine_picks_one(credit):
    small = {"num_input_records_to_sample": 100, "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2}}
    rows = credit.slice(0, 200)
    for backend, batch in (("vllm", "auto"), ("engine", 512)):
        synth = Synthesizer({"training": small, "generation": {"backend": backend}}).fit(rows)
        assert synth.config.generation.batch_size == batch
