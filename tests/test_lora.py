"""The pretrained + LoRA path on a small randomly initialised Llama checkpoint saved locally (no download)."""

import pytest
import torch
from tiny_models import tiny_llama

from synth_model import Synthesizer
from synth_model.models import train_tokenizer
from synth_model.records import rows_to_texts
from synth_model.schema import infer_schema


@pytest.fixture(scope="module")
def checkpoint(credit, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny-llama"
    table = credit.slice(0, 500)
    tokenizer = train_tokenizer(rows_to_texts(table, infer_schema(table)), 500)
    model = tiny_llama(
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_lora_fit_save_load(credit, checkpoint, tmp_path):
    config = {
        "training": {
            "pretrained_model": str(checkpoint),
            "num_input_records_to_sample": 400,
            "lora_r": 8,
            "rope_scaling_factor": 2.0,
        }
    }
    synth = Synthesizer(config).fit(credit.slice(0, 400))
    model = synth.loaded.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert synth.loaded.is_lora and 0 < trainable < synth.metrics["parameters"] / 2
    assert synth.metrics["final_loss"] < synth.metrics["first_loss"]
    assert synth.loaded.context_length == 512  # 256 positions x rope_scaling_factor 2
    assert synth.config.training.learning_rate == 5e-4
    out = synth.save(tmp_path / "m")
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "model").exists()
    assert synth.save(tmp_path / "m") == out  # saving over an earlier folder swaps it in whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    loaded = Synthesizer.load(out)
    ids = torch.tensor([synth.prompt_ids])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, loaded.loaded.model(input_ids=ids).logits, atol=1e-5)


@pytest.mark.slow
def test_smollm2_lora_fit_and_generate(credit, tmp_path):
    """The packaged SmolLM2-135M with LoRA: short examples keep CPU sampling to minutes."""
    config = {
        "data": {"max_sequences_per_example": 2},
        "training": {"pretrained_model": "smollm2-135m", "num_input_records_to_sample": 240, "learning_rate": 2e-3},
        "generation": {"batch_size": 16, "seed": 0, "temperature": 0.7, "patience": 10},
    }
    synth = Synthesizer(config).fit(credit.slice(0, 300))
    assert synth.loaded.is_lora and synth.metrics["final_loss"] < synth.metrics["first_loss"]
    result = synth.generate_with_stats(3)
    assert result.table.num_rows == 3 and result.table.schema == credit.schema
    loaded = Synthesizer.load(synth.save(tmp_path / "smol"))
    assert loaded.loaded.is_lora and (tmp_path / "smol" / "adapter").is_dir()


def test_lora_fit_under_differential_privacy(credit, checkpoint):
    """DP-SGD on the adapters only: per-sample gradients of the LoRA weights, the base frozen."""
    config = {
        "training": {"pretrained_model": str(checkpoint), "num_input_records_to_sample": 1200, "lora_r": 4},
        "privacy": {"dp_enabled": True, "epsilon": 4, "expected_batch_size": 40},
    }
    synth = Synthesizer(config).fit(credit.slice(0, 600))
    budget = synth.metrics["dp"]
    assert synth.loaded.is_lora and budget["steps"] == round(1200 / (600 - 30) / budget["sample_rate"])
    assert 0 < budget["epsilon_spent"] <= 4 and budget["noise_multiplier"] > 0
    lora = [p for n, p in synth.loaded.model.named_parameters() if "lora_" in n]
    assert lora and all(not hasattr(p, "grad_sample") or p.grad_sample is None for p in lora)  # hooks released
    assert synth.metrics["final_loss"] < synth.metrics["first_loss"]


def test_a_missing_model_directory_is_named_without_a_hub_lookup(credit, tmp_path):
    from synth_model.errors import ConfigError

    missing = tmp_path / "no-such-model"
    config = {"training": {"pretrained_model": str(missing)}}
    with pytest.raises(ConfigError, match=f"pretrained_model '{missing}' is not a directory"):
        Synthesizer(config).fit(credit.slice(0, 100))
