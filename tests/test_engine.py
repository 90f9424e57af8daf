"""End to end on real data: fit the tiny model on credit rows, generate, and check what users rely on."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from synth_model import SynthError, Synthesizer
from synth_model.config import GenerationConfig
from synth_model.generate import StopRules

NUM = 1000


@pytest.fixture(scope="module")
def generated(fitted_credit):
    synth, _ = fitted_credit
    return synth.generate_with_stats(NUM)


def test_valid_fraction_and_count(generated):
    assert generated.table.num_rows == NUM
    assert generated.stats["valid_fraction"] >= 0.9, generated.stats["rejections"]


def test_names_and_types_identical_to_source(generated, credit):
    assert generated.table.schema == credit.schema


def test_values_within_learned_rules(generated, fitted_credit):
    synth, _ = fitted_credit
    for rule in synth.schema.columns:
        column = generated.table.column(rule.name).drop_null()
        if rule.categories is not None:
            assert set(column.to_pylist()) <= set(rule.categories), rule.name
        if rule.kind in ("integer", "float"):
            mm = pc.min_max(column)
            assert rule.minimum <= mm["min"].as_py() and mm["max"].as_py() <= rule.maximum, rule.name


def _frequencies(column: pa.ChunkedArray) -> dict:
    counts = Counter(column.to_pylist())
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def test_marginals_close_to_training(generated, credit, fitted_credit):
    """Categorical total variation distance below 0.1 and numeric medians inside the real IQR.

    With 1,000 draws the sampling noise alone gives a TVD of about 0.02-0.04 for these 2-6 category
    columns; a model that ignored a column (uniform categories) would score 0.2 or more on `Status`.
    """
    synth, _ = fitted_credit
    real = credit.slice(0, 3000)
    for rule in synth.schema.columns:
        real_col, syn_col = real.column(rule.name), generated.table.column(rule.name)
        if rule.kind == "categorical":
            p, q = _frequencies(real_col), _frequencies(syn_col)
            tvd = 0.5 * sum(abs(p.get(k, 0) - q.get(k, 0)) for k in set(p) | set(q))
            assert tvd < 0.1, (rule.name, tvd)
        elif rule.kind in ("integer", "float"):
            r = real_col.drop_null().to_numpy()
            s = np.median(syn_col.drop_null().to_numpy())
            assert np.percentile(r, 25) <= s <= np.percentile(r, 75), rule.name


def test_saved_folder_holds_every_artifact(fitted_credit):
    synth, model_dir = fitted_credit
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.yaml", "schema.json", "model", "holdout.parquet", "training_metrics.json"} <= names
    resolved = yaml.safe_load((model_dir / "config.yaml").read_text())
    # every data-dependent "auto" was resolved once and saved; the device stays a per-machine setting
    assert resolved["data"]["max_sequences_per_example"] >= 1
    assert resolved["training"]["num_input_records_to_sample"] >= 1
    assert resolved["training"]["learning_rate"] > 0
    assert resolved["generation"]["batch_size"] >= 1
    assert synth.holdout.num_rows == 200
    assert synth.metrics["final_loss"] < synth.metrics["first_loss"]


def test_load_generates_the_same_records(fitted_credit):
    synth, model_dir = fitted_credit
    loaded = Synthesizer.load(model_dir)
    assert loaded.config == synth.config
    assert loaded.generate(50).equals(synth.generate(50))


def test_generate_before_fit_is_a_clear_error():
    with pytest.raises(SynthError, match="not fitted"):
        Synthesizer().generate(5)


def test_a_dataframe_column_of_mixed_types_is_a_clear_error():
    import pandas as pd

    frame = pd.DataFrame({"age": [31, "unknown", 45] * 10, "city": ["Oslo", "Rome", "Paris"] * 10})
    with pytest.raises(SynthError, match="Conversion failed for column age.*give each column one type"):
        Synthesizer().fit(frame)


def test_null_group_keys_are_refused_before_training():
    table = pa.table({"plane": ["N1", None, "N2", None] * 10, "hours": list(range(40))})
    config = {"data": {"group_training_examples_by": "plane"}}
    with pytest.raises(SynthError, match=r"group column 'plane' .* is NULL in 20 row\(s\), which would be learned"):
        Synthesizer(config).fit(table)


def test_a_table_of_group_keys_only_is_refused_before_training():
    table = pa.table({"plane": [f"N{i % 20}" for i in range(200)]})
    with pytest.raises(SynthError, match=r"no columns to learn besides the group column\(s\) \['plane'\]"):
        Synthesizer({"data": {"group_training_examples_by": "plane"}}).fit(table)


@pytest.mark.parametrize("count", [2.5, "5", True, 0])
def test_a_record_count_that_is_not_a_whole_number_is_refused(fitted_credit, count):
    synth, _ = fitted_credit
    with pytest.raises(SynthError, match=f"num_records must be a whole number of at least 1, got {count!r}"):
        synth.generate(count)


def test_a_refit_resolves_its_autos_afresh_and_the_saved_config_holds_none(credit, tmp_path):
    import yaml

    small = {
        "training": {"num_input_records_to_sample": 300, "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2}}
    }
    synth = Synthesizer(small)
    wide = synth.fit(credit.slice(0, 300)).config.data.max_sequences_per_example
    narrow = synth.fit(credit.slice(0, 300).select(["Status", "Age"])).config.data.max_sequences_per_example
    assert narrow > wide  # fewer columns: more records fit one example, as a fresh fit would find
    assert (
        narrow
        == Synthesizer(small).fit(credit.slice(0, 300).select(["Status", "Age"])).config.data.max_sequences_per_example
    )
    saved = yaml.safe_load((synth.save(tmp_path / "m") / "config.yaml").read_text())
    saved["training"].pop("device")  # decided where the model runs, like generation.precision and workers
    for section in ("data", "training"):  # every other "auto" replaced by the value used
        assert "auto" not in yaml.safe_dump(saved[section]), section


@pytest.mark.parametrize("structured", [True, False])
def test_giving_up_suggests_structured_generation_only_when_it_is_off(structured):
    cfg = GenerationConfig(use_structured_generation=structured, patience=1)
    rules = StopRules(cfg, "records", 10)
    found = SimpleNamespace(reasons=Counter(out_of_range=9), group_reasons=Counter())
    with pytest.raises(SynthError, match="stayed at or above") as raised:
        rules.check(10, 1, found)
    assert ("turn on generation.use_structured_generation" in str(raised.value)) is not structured
