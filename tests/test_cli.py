"""The `synth` CLI on real files: success paths write outputs; every error path is one line and writes nothing."""

import json
import os
import re

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synth_model.cli import main
from synth_model.tables import read_duckdb

# Far too little training; without the grammar such a model mostly writes broken records.
SMALL = (
    "training:\n  num_input_records_to_sample: 600\n  tiny: {hidden_size: 64, num_layers: 2, num_heads: 2}\n"
    "generation:\n  use_structured_generation: false\n"
)


@pytest.fixture(scope="module")
def csv_input(credit, tmp_path_factory):
    import pyarrow.csv as pacsv

    path = tmp_path_factory.mktemp("cli") / "credit.csv"
    pacsv.write_csv(credit.slice(0, 400), path)
    return path


def test_train_then_generate(csv_input, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert main(["train", str(csv_input), "--config", str(config), "--output", str(tmp_path / "m")]) == 0
    assert "trained on 380 rows (20 held out)" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "training_metrics.json").read_text())["tokens"] > 0
    saved = (tmp_path / "m" / "config.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: 3\n")
    assert main(["train", str(csv_input), "--config", str(bad), "--output", str(tmp_path / "m")]) == 2
    assert "unknown config key" in _error_lines(capsys.readouterr().err)[0]
    assert (tmp_path / "m" / "config.yaml").read_text() == saved  # the earlier model folder is intact
    (tmp_path / "s.csv").write_text("earlier output\n")
    # Unconstrained, the undertrained model fails: the stop rule fires and nothing is written.
    code = main(
        [
            "generate",
            str(tmp_path / "m"),
            "--num-records",
            "5",
            "--seed",
            "0",
            "--output",
            str(tmp_path / "s.csv"),
        ]
    )
    assert code == 2
    assert "held nothing valid" in _error_lines(capsys.readouterr().err)[0]
    assert (tmp_path / "s.csv").read_text() == "earlier output\n"


def test_generate_writes_table_and_metrics(fitted_credit, credit, tmp_path, capsys):
    _, model_dir = fitted_credit
    out = tmp_path / "synthetic.parquet"
    argv = ["generate", str(model_dir), "--num-records", "40", "--seed", "3", "--workers", "2", "--output", str(out)]
    assert main(argv) == 0
    assert "40 records (" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.num_rows == 40 and table.schema == credit.schema
    metrics = json.loads((tmp_path / "synthetic.metrics.json").read_text())
    assert metrics["num_records"] == 40 and metrics["workers"] == 2


def test_generate_refuses_zero_workers_before_loading(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(tmp_path / "no-model"), "--workers", "0", "--output", str(tmp_path / "s.csv")])
    assert exit_.value.code == 2
    assert "argument --workers: expected a number >= 1 or auto, got '0'" in capsys.readouterr().err


def _error_lines(stderr: str) -> list[str]:
    """Lines starting with 'error:' (progress bars share stderr and redraw with carriage returns)."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.startswith("error: ")]


def test_duckdb_input(credit, tmp_path, capsys):
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.sql("CREATE SCHEMA raw")
        con.register("credit_view", credit.slice(0, 300))
        con.sql("CREATE TABLE raw.credit AS SELECT * FROM credit_view")
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert main(["train", f"duckdb:{db}:raw.credit", "--config", str(config), "--output", str(tmp_path / "m")]) == 0
    assert pq.read_table(tmp_path / "m" / "holdout.parquet").schema == credit.schema


def test_train_warns_of_numbers_stored_as_text(credit, tmp_path, capsys):
    import pyarrow.csv as pacsv

    rows = credit.slice(0, 300)
    assert rows.column("Price").null_count == 0
    price = [str(v) if i % 50 else "unknown" for i, v in enumerate(rows.column("Price").to_pylist())]
    path = tmp_path / "credit.csv"
    pacsv.write_csv(rows.set_column(rows.column_names.index("Price"), "Price", pa.array(price)), path)
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert main(["train", str(path), "--config", str(config), "--output", str(tmp_path / "m")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: column 'Price' is learned as text, though 98.0% of its values are")
    assert "'unknown' (6 rows), first in row 0" in captured.err and "trained on" in captured.out
    metrics = json.loads((tmp_path / "m" / "training_metrics.json").read_text())
    assert metrics["warnings"] == [captured.err.splitlines()[0].removeprefix("warning: ")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "missing.csv", "--output", "{out}"], "does not exist"),
        (["train", "data.xlsx", "--output", "{out}"], "must end in .csv"),
        (
            ["train", "duckdb:nope.duckdb:raw.t", "--output", "{out}"],
            "DuckDB file nope.duckdb does not exist",
        ),
        (
            ["train", "{csv}", "--config", "{badcfg}", "--output", "{out}"],
            "unknown config key 'training.epochs'",
        ),
        (["train", "{empty}", "--output", "{out}"], "empty"),
        (["generate", "{out}", "--output", "x.parquet"], "not a model folder"),
        (["train", "duckdb:{csv}:raw.t", "--output", "{out}"], "could not be opened as a DuckDB database"),
        (["train", "{odd}", "--output", "{out}"], "column 'b' holds 10 infinite or NaN value(s) (first in row 0)"),
        (["train", "{twice}", "--output", "{out}"], "column name(s) ['a'] appear more than once"),
        (["train", "{csv}", "--output", "{csv}/m"], "cannot create folder"),
        (["generate", "{out}", "--output", "{csv}/s.csv"], "cannot create folder"),
        (["generate", "{out}", "--output", "{folder}"], "is a folder: name a file"),
    ],
)
def test_errors_are_one_line_and_write_nothing(argv, message, csv_input, tmp_path, capsys):
    badcfg = tmp_path / "bad.yaml"
    badcfg.write_text("training:\n  epochs: 3\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    (odd := tmp_path / "odd.csv").write_text("a,b\n" + "x,inf\ny,2.5\n" * 10)
    (twice := tmp_path / "twice.csv").write_text("a,b,a\n" + "1,2,3\n" * 30)
    (folder := tmp_path / "s.parquet").mkdir()
    values = {"out": tmp_path / "out", "csv": csv_input, "badcfg": badcfg, "empty": empty}
    values |= {"odd": odd, "twice": twice, "folder": folder}
    code = main([a.format(**values) for a in argv])
    errors = _error_lines(capsys.readouterr().err)
    assert code == 2
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "out").exists()


def test_generate_refuses_no_records_and_keeps_the_earlier_output(fitted_credit, tmp_path, capsys):
    _, model_dir = fitted_credit
    out = tmp_path / "synthetic.parquet"
    out.write_bytes(b"earlier output")
    assert main(["generate", str(model_dir), "--num-records", "0", "--output", str(out)]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "num_records must be a whole number of at least 1, got 0" in errors[0]
    assert out.read_bytes() == b"earlier output"


def test_evaluate_writes_report_and_json(fitted_credit, credit, tmp_path, capsys):
    _, model_dir = fitted_credit
    real, synthetic = tmp_path / "real.parquet", tmp_path / "synthetic.parquet"
    pq.write_table(credit.slice(0, 3000), real)
    assert main(["generate", str(model_dir), "--num-records", "400", "--seed", "4", "--output", str(synthetic)]) == 0
    out = tmp_path / "report"
    argv = ["evaluate", str(model_dir), "--real", str(real), "--synthetic", str(synthetic), "--output", str(out)]
    assert main([*argv, "--target", "Status"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("quality ") and "privacy " in summary and "report.html" in summary
    result = json.loads((out / "evaluation.json").read_text())
    assert result["rows"]["holdout"] == 200 and result["rows"]["synthetic"] == 400
    assert 2790 <= result["rows"]["training"] <= 2800  # the input minus the holdout rows (and their duplicates)
    assert 0 <= result["quality"]["overall"]["score"] <= 10 and result["privacy"]["overall"]["grade"]
    assert result["utility"]["target"] == "Status"
    assert 'id="correlations"' in (out / "report.html").read_text()
    assert main([*argv, "--target", "nope"]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        "error: target column 'nope' is not in the table; columns: " + str(credit.column_names)
    ]


def test_train_refuses_an_output_that_is_not_a_model_folder(csv_input, tmp_path, capsys):
    (busy := tmp_path / "busy").mkdir()
    (busy / "important.csv").write_text("keep me\n")
    (file := tmp_path / "victim.csv").write_text("keep me too\n")
    for target, kind in ((busy, "a folder that is not a model folder"), (file, "a file")):
        assert main(["train", str(csv_input), "--output", str(target)]) == 2
        assert f"{target} exists and is {kind}" in _error_lines(capsys.readouterr().err)[0]
    assert (busy / "important.csv").read_text() == "keep me\n" and file.read_text() == "keep me too\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "victim.csv"]


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        ("schema.json", "FileNotFoundError"),
        ("holdout.parquet", "FileNotFoundError"),
        ("model", "FileNotFoundError: no model/ folder"),
        ("model/model.safetensors", "OSError"),
        ("truncate", "SafetensorError"),
    ],
)
def test_a_damaged_model_folder_is_one_error(damage, detail, fitted_credit, tmp_path, capsys):
    import shutil

    model_dir = shutil.copytree(fitted_credit[1], tmp_path / "m")
    if damage == "truncate":
        weights = model_dir / "model" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "model":
        shutil.rmtree(model_dir / damage)
    else:
        (model_dir / damage).unlink()
    assert main(["generate", str(model_dir), "--num-records", "5", "--output", str(tmp_path / "s.csv")]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and f"model folder {model_dir} is incomplete or damaged ({detail}" in errors[0]
    assert "train it again" in errors[0] and not (tmp_path / "s.csv").exists()


def test_generate_names_the_flag_of_an_out_of_range_setting(fitted_credit, tmp_path, capsys):
    argv = ["generate", str(fitted_credit[1]), "--output", str(tmp_path / "s.csv")]
    assert main([*argv, "--temperature", "0"]) == 2
    assert _error_lines(capsys.readouterr().err) == ["error: --temperature: Input should be greater than 0"]
    assert main([*argv, "--seed", str(2**64)]) == 2
    assert _error_lines(capsys.readouterr().err)[0].startswith("error: --seed: Input should be less than")


def test_an_interrupted_generate_writes_nothing_and_says_so(fitted_credit, tmp_path):
    import signal
    import subprocess
    import sys

    _, model_dir = fitted_credit
    out = tmp_path / "s.csv"
    command = [sys.executable, "-m", "synth_model.cli", "generate", str(model_dir), "--num-records", "1000000"]
    proc = subprocess.Popen([*command, "--output", str(out)], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while "rec/s" not in proc.stderr.read(200):  # the progress bar: sampling has started
            assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert err.rstrip().endswith("interrupted: nothing was written, earlier outputs are as they were")
    assert "Traceback" not in err and not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("found", "remedy"), [(1, "train it again"), (99, "the newer synth_model"), ("2", "train it")])
def test_a_model_of_another_format_names_both_formats(found, remedy, fitted_credit, tmp_path, capsys):
    import shutil

    model_dir = shutil.copytree(fitted_credit[1], tmp_path / "m")
    metrics = json.loads((model_dir / "training_metrics.json").read_text())
    (model_dir / "training_metrics.json").write_text(json.dumps(metrics | {"format": found}))
    assert main(["generate", str(model_dir), "--num-records", "5", "--output", str(tmp_path / "s.csv")]) == 2
    error = _error_lines(capsys.readouterr().err)[0]
    assert f"holds a model of format {found!r}; this version reads 2: " in error and remedy in error


def test_every_output_file_gets_the_umask_permissions(csv_input, fitted_credit, credit, tmp_path):
    probe = tmp_path / "probe"
    probe.touch()
    mode = probe.stat().st_mode & 0o777  # what any file written here gets (0o644 under umask 022)
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert main(["train", str(csv_input), "--config", str(config), "--output", str(tmp_path / "m")]) == 0
    model_dir = fitted_credit[1]
    assert main(["generate", str(model_dir), "--num-records", "20", "--output", str(tmp_path / "s.csv")]) == 0
    pq.write_table(credit.slice(0, 3000), tmp_path / "real.parquet")
    argv = [
        "evaluate",
        str(model_dir),
        "--real",
        str(tmp_path / "real.parquet"),
        "--synthetic",
        str(tmp_path / "s.csv"),
    ]
    assert main([*argv, "--output", str(tmp_path / "report")]) == 0
    written = [*(tmp_path / "m").rglob("*"), tmp_path / "s.csv", *(tmp_path / "report").iterdir()]
    assert {f.name: f.stat().st_mode & 0o777 for f in written if f.is_file()} == {
        f.name: mode for f in written if f.is_file()
    }


def test_a_duckdb_table_name_may_be_quoted_as_in_sql(tmp_path):
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(
            'CREATE SCHEMA raw; CREATE TABLE raw."Odd Name" AS SELECT 1 AS x; CREATE TABLE raw."a.b" AS SELECT 2 AS y'
        )
    assert read_duckdb(db, 'raw."Odd Name"').to_pylist() == read_duckdb(db, "raw.Odd Name").to_pylist() == [{"x": 1}]
    assert read_duckdb(db, 'raw."a.b"').to_pylist() == [{"y": 2}]
