"""`python -m warehouse.query`: read-only SQL on a real warehouse file, one `error:` line on a mistake."""

import pyarrow as pa
import pytest

from warehouse import Warehouse
from warehouse.query import main, run


@pytest.fixture
def warehouse(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.write("synthetic.t", pa.table({f"c{i}": [i, None] if i == 3 else [i, i] for i in range(8)}))
    return wh


def test_results_print_as_a_table_and_one_wide_row_as_lines(warehouse, tmp_path):
    lines = run("SELECT count(*) AS n FROM synthetic.t", warehouse).splitlines()
    assert lines[1].split() == ["│", "n", "│"] and lines[4].split() == ["│", "2", "│"]
    (tmp_path / "q.sql").write_text("-- the second row\nSELECT * FROM synthetic.t WHERE c0 = 0 AND c3 IS NULL\n")
    assert run(str(tmp_path / "q.sql"), warehouse).splitlines()[3] == "c3: NULL"


def test_all_shows_every_row_and_column(warehouse, capsys):
    warehouse.write("synthetic.long", pa.table({f"column_{i}": list(range(50)) for i in range(30)}))
    query = "SELECT * FROM synthetic.long"
    assert "50 rows (20 shown)" in run(query, warehouse)
    main([query, "--all", "--warehouse", str(warehouse.path)])
    shown = capsys.readouterr().out
    assert "column_29" in shown and "rows (" not in shown
    assert [line.split()[1] for line in shown.splitlines() if line.startswith("│ ")][-1] == "49"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "returns no rows to show (it is empty"),
        ("-- only a comment", "returns no rows to show"),
        ("missing.sql", "SQL file missing.sql does not exist"),
        ("DROP TABLE synthetic.t", "read-only"),
        ("SELECT nope FROM synthetic.t", 'column "nope" not found'),
        ("SELECT 1; SELECT 2", "holds 2 statements and only one result can be shown"),
    ],
)
def test_mistakes_are_one_error_line(warehouse, capsys, query, message):
    with pytest.raises(SystemExit) as exit_:
        main([query, "--warehouse", str(warehouse.path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert warehouse.scalar("SELECT count(*) FROM synthetic.t") == 2
