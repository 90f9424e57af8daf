"""Sanity checks of the benchmark's fidelity measures (benchmarks/fidelity.py) on real credit rows.

No synthesizer is trained: real rows, their column-shuffled (marginal) copies and simple perturbations
stand in for synthetic data, with known answers.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fidelity as fid  # noqa: E402


@pytest.fixture(scope="module")
def halves(credit) -> tuple[pa.Table, pa.Table]:
    """Two disjoint random halves of 1,000 real rows each."""
    rows = fid.sample_rows(credit, 2000, seed=0)
    return rows.slice(0, 1000), rows.slice(1000, 1000)


def _corr(table: pa.Table, a: str, b: str) -> float:
    frame = table.select([a, b]).to_pandas().dropna()
    return float(np.corrcoef(frame[a], frame[b])[0, 1])


def test_marginal_sample_keeps_each_column_and_breaks_the_pairs(credit):
    floor = fid.marginal_sample(credit, 3000, seed=1)
    assert floor.schema == credit.schema and floor.num_rows == 3000
    for name in credit.column_names:
        assert set(floor[name].drop_null().to_pylist()) <= set(credit[name].drop_null().to_pylist())
    real_nulls = credit["Income"].null_count / credit.num_rows  # about 8.6% missing
    assert abs(floor["Income"].null_count / floor.num_rows - real_nulls) < 0.02
    assert _corr(credit, "Amount", "Price") > 0.6
    assert abs(_corr(floor, "Amount", "Price")) < 0.1
    assert fid.marginal_sample(credit, 50, seed=1).equals(fid.marginal_sample(credit, 50, seed=1))


def test_metadata_and_features_follow_the_arrow_types():
    table = pa.table(
        {
            "n": pa.array([1, None, 3, 4], pa.int64()),
            "x": [0.5, 1.5, None, 2.0],
            "s": ["a", None, "b", "a"],
            "flag": [True, False, None, True],
            "day": [dt.date(2020, 1, 1), dt.date(2020, 1, 2), None, dt.date(2020, 1, 4)],
        }
    )
    meta = fid.sdmetrics_metadata(table)["columns"]
    assert {k: v["sdtype"] for k, v in meta.items()} == {
        "n": "numerical",
        "x": "numerical",
        "s": "categorical",
        "flag": "categorical",
        "day": "datetime",
    }
    ids = pa.table({"id": [f"row{i}" for i in range(600)]})
    assert fid.sdmetrics_metadata(ids)["columns"] == {}  # ID-like strings have no shape to compare

    other = pa.table({"n": [7], "x": [1.0], "s": ["c"], "flag": [False], "day": [dt.date(2020, 1, 3)]})
    first, second = fid.features([table, other.cast(table.schema)], table.column_names)
    assert list(first["s"].cat.categories) == list(second["s"].cat.categories) == ["a", "b", "c"]
    assert first["s"].isna().tolist() == [False, True, False, False]  # null stays missing, not "None"
    assert math.isnan(first["n"][1]) and first["flag"].tolist()[:2] == [1.0, 0.0]
    assert first["day"][1] - first["day"][0] == 86400 and math.isnan(first["day"][2])


def test_gap_closed():
    assert fid.gap_closed(0.8, 0.6, 1.0) == pytest.approx(0.5)
    assert fid.gap_closed(0.6, 0.6, 1.0) == 0
    assert math.isnan(fid.gap_closed(0.8, 0.7, 0.7))
    assert math.isnan(fid.gap_closed(0.8, 0.85, 0.8))  # a ceiling below the floor: undefined
    assert math.isnan(fid.gap_closed(math.nan, 0.6, 1.0))


def test_copy_share(credit, halves):
    assert fid.copy_share(credit, credit) == 1.0
    assert fid.copy_share(halves[0], halves[1]) < 0.01
    assert fid.copy_share(credit, fid.marginal_sample(credit, 1000, seed=2)) < 0.01


def test_quality_of_a_table_against_itself_and_its_shuffled_copy(credit):
    pytest.importorskip("sdmetrics")
    same = fid.quality(credit, credit)
    assert same["column_shapes"] == pytest.approx(1.0)
    assert same["pair_trends"] == pytest.approx(1.0)
    assert 1 <= same["pairs_counted"] < same["pairs_total"] == 14 * 13 // 2
    shuffled = fid.quality(credit, fid.marginal_sample(credit, credit.num_rows, seed=3))
    assert shuffled["column_shapes"] > 0.97  # the marginals are kept ...
    assert shuffled["pair_trends"] < same["pair_trends"] - 0.15  # ... the dependence is not


def test_small_samples_score_lower_by_noise_alone(credit, halves):
    pytest.importorskip("sdmetrics")
    small = fid.quality_size_matched(credit, credit, 200, draws=2, seed=0)
    assert small["column_shapes"] < 0.98  # 200 real rows fall short of a perfect shape score
    assert fid.quality(halves[0], halves[1])["pair_trends"] > 0.9


def test_detection_auc(halves):
    real, other = halves
    assert abs(fid.detection_auc(real, other, seed=0)["detection_auc"] - 0.5) < 0.08
    column = other.schema.get_field_index("Amount")
    shifted = other.set_column(column, "Amount", pc.multiply(other["Amount"], 2))
    result = fid.detection_auc(real, shifted, seed=0)
    assert result["detection_auc"] > 0.85 and result["detection_rows"] == 1000
    # Rows copied from the real side land in the other fold with the other label: AUC well below 0.5.
    copied = fid.detection_auc(real.slice(0, 300), real.slice(0, 300), seed=0)["detection_auc"]
    assert copied < 0.4


def test_utility_real_beats_shuffled(halves):
    train, test = halves
    real = fid.utility(train, test, "Status", seed=0)
    floor = fid.utility(fid.marginal_sample(train, train.num_rows, seed=4), test, "Status", seed=0)
    assert fid.task_for(test, "Status") == "classification"
    assert real["utility_roc_auc"] > 0.75 and floor["utility_roc_auc"] < 0.65
    assert real["utility_accuracy"] > floor["utility_accuracy"] - 0.02
    assert fid.task_for(test, "Amount") == "regression"
    assert fid.utility(train, test, "Amount", seed=0)["utility_r2"] > 0.4
    shuffled = fid.marginal_sample(train, train.num_rows, seed=4)
    assert fid.utility(shuffled, test, "Amount", seed=0)["utility_r2"] < 0.05
    one_class = train.filter(pc.equal(train["Status"], "good"))
    assert math.isnan(fid.utility(one_class, test, "Status", seed=0)["utility_roc_auc"])
