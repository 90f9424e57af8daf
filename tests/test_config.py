import pytest

from synth_model import ConfigError, SynthConfig
from synth_model.models import build_tiny, kv_heads_of


def test_defaults_use_established_names_and_auto():
    cfg = SynthConfig()
    assert cfg.data.holdout == 0.05 and cfg.data.max_holdout == 2000
    assert cfg.data.max_sequences_per_example == "auto"
    assert cfg.training.pretrained_model == "tiny"
    assert cfg.training.num_input_records_to_sample == "auto"
    assert cfg.training.learning_rate == "auto"
    assert cfg.generation.use_structured_generation is True


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key 'training.lora_rank'"):
        SynthConfig.from_any({"training": {"lora_rank": 8}})
    with pytest.raises(ConfigError, match=r"unknown config key 'privacy.dp_epsilon'"):
        SynthConfig.from_any({"privacy": {"dp_epsilon": 4}})
    with pytest.raises(ConfigError, match=r"unknown config key 'replace_pii.columns'"):
        SynthConfig.from_any({"replace_pii": {"columns": ["email"]}})
    with pytest.raises(ConfigError, match=r"'training.tiny.hidden_sise': did you mean 'hidden_size'\?"):
        SynthConfig.from_any({"training": {"tiny": {"hidden_sise": 64}}})
    with pytest.raises(ConfigError, match=r"unknown config key 'generaton': did you mean 'generation'\?"):
        SynthConfig.from_any({"generaton": {}})
    with pytest.raises(ConfigError, match=r"'training.zzz': remove it or check its spelling"):
        SynthConfig.from_any({"training": {"zzz": 1}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("training", "rope_scaling_factor", 7),
        ("training", "learning_rate", 2.0),
        ("generation", "top_p", 0),
        ("data", "max_sequences_per_example", 0),
        ("privacy", "delta", 1.5),
        ("privacy", "epsilon", 0),
        ("replace_pii", "min_share", 0),
        ("training", "num_input_records_to_sample", -1),
        ("generation", "temperature", "hot"),
        ("generation", "precision", "float16"),
        ("generation", "batch_size", 0),
        ("generation", "workers", 0),
        ("data", "holdout", 2.5),
        ("generation", "seed", -1),
    ],
)
def test_out_of_range_values_name_the_key(section, key, value):
    with pytest.raises(ConfigError, match=rf"'{section}.{key}'"):
        SynthConfig.from_any({section: {key: value}})


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  group_training_examples_by: tailnum\ngeneration:\n  num_records: 50\n")
    cfg = SynthConfig.from_any(path)
    assert cfg.data.group_training_examples_by == ["tailnum"]
    cfg.save(tmp_path / "saved.yaml")
    assert SynthConfig.from_any(tmp_path / "saved.yaml") == cfg


def test_missing_or_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SynthConfig.from_any(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        SynthConfig.from_any(bad)


def test_structured_generation_takes_only_a_boolean():
    free = SynthConfig.from_any({"generation": {"use_structured_generation": False}})
    assert free.generation.use_structured_generation is False
    with pytest.raises(ConfigError, match="generation.use_structured_generation"):
        SynthConfig.from_any({"generation": {"use_structured_generation": "sometimes"}})


@pytest.mark.parametrize(("heads", "kv_heads"), [(6, 1), (4, 1), (12, 2), (9, 3), (16, 4), (7, 7), (1, 1)])
def test_auto_kv_heads_share_each_among_at_most_six_query_heads(heads, kv_heads):
    shape = SynthConfig.from_any({"training": {"tiny": {"num_heads": heads}}}).training.tiny
    assert kv_heads_of(shape) == kv_heads


@pytest.mark.parametrize(("heads", "kv_heads"), [(6, 2), (4, 2), (2, 1), (9, 3), (1, 1)])
def test_auto_kv_heads_of_grouped_tables_share_each_among_at_most_three(heads, kv_heads):
    shape = SynthConfig.from_any({"training": {"tiny": {"num_heads": heads}}}).training.tiny
    assert kv_heads_of(shape, grouped=True) == kv_heads


def test_tiny_model_gets_grouped_query_attention_or_one_clear_error():
    config = SynthConfig.from_any({"training": {"tiny": {"hidden_size": 48, "num_layers": 1, "num_heads": 12}}})
    model = build_tiny(config.training, ["a,b\n1,2\n"] * 20).model
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (12, 2)
    assert model.model.layers[0].self_attn.k_proj.out_features == 2 * 4
    config.training.tiny.num_kv_heads = 5
    with pytest.raises(ConfigError, match=r"num_heads \(12\) must be divisible by num_kv_heads \(5\)"):
        build_tiny(config.training, ["a,b\n1,2\n"] * 20)
    with pytest.raises(ConfigError, match="training.tiny.num_kv_heads"):
        SynthConfig.from_any({"training": {"tiny": {"num_kv_heads": 0}}})


def test_ordering_by_the_group_column_is_refused():
    """Every record of a group shares that value; it used to train and then fail generation (KeyError)."""
    with pytest.raises(ConfigError, match=r"order_training_examples_by repeats the group column\(s\) \['g'\]"):
        SynthConfig.from_any({"data": {"group_training_examples_by": "g", "order_training_examples_by": ["t", "g"]}})
    SynthConfig.from_any({"data": {"group_training_examples_by": "g", "order_training_examples_by": "t"}})


def test_differential_privacy_per_window_is_refused():
    """Windows make one entity several training units: epsilon would cover a window, not an entity."""
    data = {"group_training_examples_by": "g", "max_records_per_group": 2, "group_cap_strategy": "windows"}
    with pytest.raises(ConfigError, match=r"^invalid config: privacy.dp_enabled with data.group_cap_strategy: windows"):
        SynthConfig.from_any({"data": data, "privacy": {"dp_enabled": True}})
    SynthConfig.from_any({"data": data})  # without DP windows stay
    SynthConfig.from_any({"data": {**data, "group_cap_strategy": "most_recent"}, "privacy": {"dp_enabled": True}})
