import pyarrow as pa
import pytest

from synth_model.schema import infer_schema
from synth_model.validate import RecordValidator


@pytest.fixture(scope="module")
def validator():
    table = pa.table(
        {
            "age": [20, 30, 40, 50] * 5,
            "price": [1.5, 2.25, None, 10.0] * 5,
            "home": ["rent", "owner", "rent", "owner"] * 5,
            "day": pa.array(["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"] * 5).cast(pa.date32()),
            "code": [f"AB{i}" for i in range(20)],
        }
    )
    return RecordValidator(infer_schema(table))


GOOD = '{"age":25,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB7"}'


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (GOOD, None),
        ('{"age":25,"price":null,"home":"rent","day":"2020-01-15","code":"AB7"}', None),
        ('{"age":25,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB7"', "bad_json"),
        ("[1,2]", "bad_json"),
        ('{"age":25,"price":3.5,"home":"rent","day":"2020-01-15"}', "missing_field"),
        ('{"age":25,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB7","x":1}', "unknown_field"),
        ('{"age":"25","price":3.5,"home":"rent","day":"2020-01-15","code":"AB7"}', "wrong_type"),
        ('{"age":25.5,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB7"}', "wrong_type"),
        ('{"age":99,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB7"}', "out_of_range"),
        ('{"age":25,"price":3.125,"home":"rent","day":"2020-01-15","code":"AB7"}', "too_many_decimals"),
        ('{"age":25,"price":3.5,"home":"castle","day":"2020-01-15","code":"AB7"}', "unknown_category"),
        ('{"age":null,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB7"}', "missing_value"),
        ('{"age":25,"price":3.5,"home":"rent","day":"2020-13-15","code":"AB7"}', "bad_format"),
        ('{"age":25,"price":3.5,"home":"rent","day":"2021-01-15","code":"AB7"}', "out_of_range"),
        ('{"age":25,"price":3.5,"home":"rent","day":"2020-01-15","code":"ab7"}', "pattern_mismatch"),
        ('{"age":25,"price":3.5,"home":"rent","day":"2020-01-15","code":"AB77777"}', "bad_length"),
    ],
)
def test_each_rejection_reason(validator, line, reason):
    record, why = validator.check(line)
    assert why == reason
    assert (record is None) == (reason is not None)
