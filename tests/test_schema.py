import datetime as dt

import pyarrow as pa
import pytest

from synth_model import DataError
from synth_model.records import records_to_table
from synth_model.schema import TableSchema, infer_schema, numbers_learned_as_text
from synth_model.validate import RecordValidator


def _table(n=100):
    return pa.table(
        {
            "age": pa.array([20 + i % 50 for i in range(n)], pa.int32()),
            "income": pa.array([None if i % 10 == 0 else 1000.25 + i for i in range(n)]),
            "whole": pa.array([float(i) for i in range(n)]),
            "home": pa.array(["rent", "owner", "other", "rent"] * (n // 4)),
            "member": pa.array([i % 2 == 0 for i in range(n)]),
            "day": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]),
            "at": pa.array([dt.datetime(2020, 1, 1, 12) + dt.timedelta(hours=i) for i in range(n)], pa.timestamp("us")),
            "code": pa.array([f"N{i:03d}AB" for i in range(n)]),
            "note": pa.array([f"free text number {i} with words" for i in range(n)]),
        }
    )


def test_kinds_and_rules():
    schema = infer_schema(_table())
    rules = {c.name: c for c in schema.columns}
    assert {n: r.kind for n, r in rules.items()} == {
        "age": "integer",
        "income": "float",
        "whole": "float",
        "home": "categorical",
        "member": "boolean",
        "day": "date",
        "at": "datetime",
        "code": "identifier",
        "note": "text",
    }
    assert (rules["age"].minimum, rules["age"].maximum) == (20, 69)
    assert rules["income"].required is False and rules["age"].required is True
    assert rules["income"].decimals == 2 and rules["whole"].decimals == 0
    assert rules["home"].categories == ["other", "owner", "rent"]
    assert rules["day"].minimum == "2020-01-01"
    assert rules["code"].pattern == "^N[0-9]{3}AB$"  # the N and AB every code has, then three digits
    assert (rules["note"].min_length, rules["note"].max_length) == (29, 30)
    quick = infer_schema(_table(), layouts=False)  # the input check: same kinds and rules, no layouts
    assert {c.name: c.kind for c in quick.columns} == {n: r.kind for n, r in rules.items()}
    assert quick.columns[7].pattern is None and [c for c in quick.columns if c.name != "code"] == [
        r for n, r in rules.items() if n != "code"
    ]


def test_text_dictionaries_are_categories_in_their_order_and_written_back_encoded(tmp_path):
    moods = pa.array(["sad", "ok", "happy", None] * 30).dictionary_encode()
    sizes = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2] * 40, pa.int16()), ["S", "M", "L", "XL"], ordered=True)
    codes = pa.array([f"c{i:03d}" for i in range(120)]).dictionary_encode()  # would be an identifier as text
    table = pa.table({"mood": moods, "size": sizes, "code": codes, "n": list(range(120))})
    schema = infer_schema(table)
    assert [c.kind for c in schema.columns] == ["categorical", "categorical", "categorical", "integer"]
    assert schema.columns[0].categories == ["sad", "ok", "happy"]
    assert schema.columns[1].categories == ["S", "M", "L"]  # the dictionary's order; XL never occurs
    schema.save(tmp_path / "schema.json")
    restored = TableSchema.load(tmp_path / "schema.json")
    assert restored.arrow_schema() == table.schema
    records = [{"mood": "ok", "size": "L", "code": "c007", "n": 3}, {"mood": None, "size": "M", "code": "c001", "n": 4}]
    out = records_to_table(records, restored)
    assert out.schema == table.schema and out.column("mood").to_pylist() == ["ok", None]
    size = out.column("size").chunk(0)
    assert size.type.ordered and size.dictionary.to_pylist() == ["S", "M", "L", "XL"]  # the source's entries


def test_a_categorical_of_codes_is_categories_and_other_dictionaries_plain_values():
    days = pa.array([dt.date(2024, 1, 1 + i % 3) for i in range(60)]).dictionary_encode()
    codes = pa.array([1, 50, 100] * 20).dictionary_encode()  # learned as a range, 1..100 would be allowed
    schema = infer_schema(pa.table({"day": days, "code": codes}))
    day, code = schema.columns
    assert (day.kind, day.arrow_type) == ("date", "date32[day]")
    assert (code.kind, code.categories) == ("categorical", [1, 50, 100])
    assert schema.json_schema()["properties"]["code"]["enum"] == [1, 50, 100]
    validator = RecordValidator(schema)
    assert validator.check('{"day":"2024-01-02","code":50}')[1] is None
    assert validator.check('{"day":"2024-01-02","code":7}')[1] == "unknown_category"
    assert validator.check('{"day":"2024-01-02","code":true}')[1] == "wrong_type"  # True == 1 in Python
    assert validator.check('{"day":"2024-01-02","code":"50"}')[1] == "wrong_type"
    out = records_to_table([{"day": "2024-01-02", "code": 50}], schema)
    assert out.column("day").to_pylist() == [dt.date(2024, 1, 2)]
    assert out.column("code").type == codes.type and out.column("code").to_pylist() == [50]


def test_json_schema_round_trip(tmp_path):
    schema = infer_schema(_table())
    schema.save(tmp_path / "schema.json")
    loaded = TableSchema.load(tmp_path / "schema.json")
    assert loaded == schema
    assert loaded.arrow_schema() == _table().schema
    js = schema.json_schema()
    assert js["properties"]["home"]["enum"] == ["other", "owner", "rent"]
    assert js["properties"]["income"]["type"] == ["number", "null"]
    assert js["additionalProperties"] is False


def test_bad_tables_are_refused_with_the_column_named():
    with pytest.raises(DataError, match="empty"):
        infer_schema(_table().slice(0, 0))
    with pytest.raises(DataError, match="'blob'.*binary"):
        infer_schema(pa.table({"blob": pa.array([b"x", b"y"])}))
    with pytest.raises(DataError, match="'tags'.*list"):
        infer_schema(pa.table({"tags": pa.array([[1], [2]])}))
    with pytest.raises(DataError, match="'gone' is entirely null"):
        infer_schema(pa.table({"a": [1, 2], "gone": pa.array([None, None], pa.float64())}))


@pytest.mark.parametrize(
    "values, problem",
    [
        (pa.array([-(2**63) + 5, -(2**63) + 900], pa.int64()), r"'n' holds numbers beyond \+-2\^53.*row 0.*VARCHAR"),
        (pa.array([1, 2**64 - 10], pa.uint64()), r"beyond \+-2\^53.*row 1"),
        (pa.array([1.5, None, 3e300]), r"beyond \+-2\^53.*row 2.*logarithm"),
        (pa.array([2e-13, 9e-13]), "too small for the engine.*9e-13.*scale the column up"),
        (pa.array([3e-7, 8e-7]), "too small for the engine"),
    ],
)
def test_numbers_the_grammar_cannot_bound_exactly_are_refused_before_training(values, problem):
    """Such columns used to train and then fail every generation (a grammar that cannot compile)."""
    with pytest.raises(DataError, match=problem):
        infer_schema(pa.table({"n": values}))


def test_numbers_within_the_exact_range_keep_their_rules():
    rules = infer_schema(pa.table({"i": [1, 2, 2**53], "f": [0.001, 0.002, 0.001], "mixed": [1.5, 1e-12, 0.3]})).columns
    assert [(r.kind, r.maximum, r.decimals) for r in rules] == [
        ("integer", 2**53, None),
        ("float", 0.002, 3),
        ("float", 1.5, 1),
    ]


def test_a_number_column_with_stray_strings_is_named_with_the_strays():
    numbers = [f"{1000 + 2.5 * i}" for i in range(300)]
    table = pa.table(
        {
            "income": numbers[:290] + ["n/a"] * 6 + ["-"] * 3 + ["?"] + [None] * 5,
            "zip code": [f"{i:05d}" for i in range(300)] + ["none"] * 5,
            "account": [f"{i:06d}" for i in range(305)],  # every value a number: a genuine identifier
            "grade": ["1", "2", "3", "x", "2"] * 61,  # a category keeps its values exactly
            "words": [f"value {i}" for i in range(305)],
        }
    )
    found = numbers_learned_as_text(table, infer_schema(table))
    assert found == [
        "column 'income' is learned as text, though 96.7% of its values are numbers; the others are "
        "'n/a' (6 rows), '-' (3 rows), '?' (1 row), first in row 290: to learn it as a number, make those "
        "values NULL (in SQL: TRY_CAST(income AS DOUBLE))",
        "column 'zip code' is learned as text, though 98.4% of its values are numbers; the others are "
        "'none' (5 rows), first in row 300: to learn it as a number, make those values NULL "
        '(in SQL: TRY_CAST("zip code" AS DOUBLE))',
    ]
