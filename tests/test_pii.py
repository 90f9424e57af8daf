"""PII detection, keyed replacement and replay, on tables built with a seeded Faker (offline, a few seconds)."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from faker import Faker

from synth_model.config import ReplacePiiConfig
from synth_model.errors import ConfigError, DataError
from synth_model.privacy.pii import (
    PiiMapper,
    PiiReport,
    detect,
    find_spans,
    iban_ok,
    luhn_ok,
    protect,
    replace,
    replay,
    ssn_ok,
)
from synth_model.privacy.pii.names import name_lists
from synth_model.privacy.pii.patterns import SPAN_ENTITIES

SECRET = b"test-secret-0123456789abcdef"
PII_COLUMNS = {
    "customer_name": "person_name",
    "email": "email",
    "phone": "phone",
    "ssn": "ssn",
    "card_number": "credit_card",
    "iban": "iban",
    "ipv4": "ip_address",
    "street_address": "street_address",
    "zip": "postcode",
    "date_of_birth": "date_of_birth",
}
NOT_PII = ("customer_id", "amount", "category", "city")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def people(seed: int, customers: int = 100, rows_each: int = 3) -> pa.Table:
    """Customers (3 rows each, sharing their personal columns), every 10th email and date of birth null."""
    Faker.seed(seed)
    fk = Faker("en_US")
    rows = []
    for c in range(customers):
        person = {
            "customer_id": f"C{seed}-{c:04d}",
            "customer_name": fk.name(),
            "email": None if c % 10 == 9 else fk.email(),
            "phone": fk.phone_number(),
            "ssn": fk.ssn(),
            "iban": fk.iban(),
            "street_address": fk.street_address(),
            "zip": fk.zipcode(),
            "date_of_birth": None if c % 10 == 9 else fk.date_of_birth(),
            "city": fk.city(),
        }
        for _ in range(rows_each):
            note = f"Call {fk.first_name()} {fk.last_name()} at {fk.phone_number()} or mail {fk.email()}. "
            rows.append(
                person
                | {
                    "card_number": fk.credit_card_number(),
                    "ipv4": fk.ipv4(),
                    "amount": fk.pyfloat(min_value=0, max_value=1000),
                    "category": fk.random_element(["A", "B", "C"]),
                    "notes": note + fk.sentence(),
                }
            )
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return people(0)


@pytest.fixture(scope="module")
def report(table) -> PiiReport:
    return detect(table, ReplacePiiConfig())


@pytest.fixture(scope="module")
def replaced(table, report) -> tuple[pa.Table, dict]:
    return replace(table, report, ReplacePiiConfig(), SECRET)


def pairs(table: pa.Table, replaced: pa.Table, column: str) -> list[tuple]:
    return [
        (a, b) for a, b in zip(table[column].to_pylist(), replaced[column].to_pylist(), strict=True) if a is not None
    ]


def shape(value: str) -> str:
    return re.sub(r"[A-Za-z]", "a", re.sub(r"\d", "9", value))


def test_detects_every_pii_column_and_no_other(report):
    found = {f.column: f for f in report.columns}
    assert {c: f.entity for c, f in found.items()} == PII_COLUMNS
    assert all(f.share >= 0.9 and f.hint and f.action == "replace" for f in found.values())
    assert not set(NOT_PII) & {f.column for f in report.columns + report.text}
    notes = {f.entity: f for f in report.text if f.column == "notes"}
    assert set(notes) == {"email", "phone", "person_name"}
    assert all(f.share >= 0.9 for f in notes.values())


def test_without_name_hints_values_alone_suffice(table):
    unhinted = table.rename_columns([f"c{i}" for i in range(table.num_columns)])
    found = {table.column_names[int(f.column[1:])]: f for f in detect(unhinted, ReplacePiiConfig()).columns}
    # postcodes and dates need a hint (5-digit numbers and dates are everywhere); the rest stand on their values
    assert {c: f.entity for c, f in found.items()} == {
        c: e for c, e in PII_COLUMNS.items() if e not in ("postcode", "date_of_birth")
    }
    assert not any(f.hint for f in found.values())


@pytest.mark.parametrize(
    ("check", "value", "valid"),
    [
        (luhn_ok, "4111 1111 1111 1111", True),
        (luhn_ok, "378282246310005", True),
        (luhn_ok, "4111111111111112", False),
        (luhn_ok, "0", False),
        (iban_ok, "GB82WEST12345698765432", True),
        (iban_ok, "DE89 3704 0044 0532 0130 00", True),
        (iban_ok, "GB82WEST12345698765433", False),
        (iban_ok, "DE89370400440532013", False),  # right checksum region, wrong length for DE
        (ssn_ok, "123-45-6789", True),
        (ssn_ok, "000-12-3456", False),
        (ssn_ok, "666-12-3456", False),
        (ssn_ok, "912-12-3456", False),
        (ssn_ok, "123-00-4567", False),
        (ssn_ok, "123-45-0000", False),
    ],
)
def test_validators(check, value, valid):
    assert check(value) is valid


def test_spans_inside_text():
    text = (
        "Dear John Smith, card 4111-1111-1111-1111 (not 4111-1111-1111-1112), ssn 123-45-6789, "
        "iban GB82 WEST 1234 5698 7654 32, from 192.168.0.1 call +1 (415) 555-0134 or jane.doe@mail.com."
    )
    found = {s.entity: text[s.start : s.end] for s in find_spans(text, SPAN_ENTITIES, name_lists())}
    assert found == {
        "person_name": "John Smith",
        "credit_card": "4111-1111-1111-1111",
        "ssn": "123-45-6789",
        "iban": "GB82 WEST 1234 5698 7654 32",
        "ip_address": "192.168.0.1",
        "phone": "+1 (415) 555-0134",
        "email": "jane.doe@mail.com",
    }
    assert find_spans("5551234567", ["phone"], name_lists()) == []  # a bare number alone is an id, not text


def test_replacement_keeps_formats(table, replaced):
    out, counts = replaced
    for real, fake in pairs(table, out, "phone"):
        assert shape(fake) == shape(real) and fake != real
    for real, fake in pairs(table, out, "card_number"):
        assert luhn_ok(fake) and len(fake) == len(real) and fake[0] == real[0]
    for real, fake in pairs(table, out, "iban"):
        assert iban_ok(fake) and fake[:2] == real[:2] and shape(fake) == shape(real)
    for real, fake in pairs(table, out, "ssn"):
        assert ssn_ok(fake) and shape(fake) == shape(real)
    for _, fake in pairs(table, out, "ipv4"):
        assert ipaddress.ip_address(fake).version == 4
    for real, fake in pairs(table, out, "zip"):
        assert shape(fake) == shape(real)
    for real, fake in pairs(table, out, "email"):
        assert EMAIL.fullmatch(fake) and fake.split("@")[1] == real.split("@")[1]  # example.* domains are kept
    for real, fake in pairs(table, out, "date_of_birth"):
        assert isinstance(fake, date) and 0 < abs((fake - real).days) <= 365
    for real, fake in pairs(table, out, "customer_name"):
        assert len(fake.split()) == len(real.split())
    assert counts["columns"]["email"] == {"entity": "email", "values_replaced": 270, "distinct": 90}
    for column in NOT_PII:
        assert out[column].equals(table[column])


def test_replacement_is_one_to_one_and_never_real(table, replaced):
    out, _ = replaced
    for column in PII_COLUMNS:
        real, fake = set(table[column].to_pylist()) - {None}, set(out[column].to_pylist()) - {None}
        assert len(fake) == len(real), column
        assert not real & fake, column
    real = {(a, b) for a, b in zip(table["customer_id"].to_pylist(), table["ssn"].to_pylist(), strict=True)}
    fake = {(a, b) for a, b in zip(out["customer_id"].to_pylist(), out["ssn"].to_pylist(), strict=True)}
    assert len(fake) == len(real) == 100  # each customer's three rows still share one (fake) ssn


def test_free_text_spans_replaced_with_the_same_fakes(table):
    email = table["email"][0].as_py()
    text = pa.table({"email": [email, "x.y@corp-mail.com"], "notes": [f"write to {email} today", "ok thanks a lot"]})
    mapper = PiiMapper(SECRET)
    out, counts = replace(text, detect(text, ReplacePiiConfig()), ReplacePiiConfig(), mapper=mapper)
    fake = out["email"][0].as_py()
    assert out["notes"].to_pylist() == [f"write to {fake} today", "ok thanks a lot"]
    assert counts["text"]["notes"] == {"values_changed": 1, "spans": {"email": 1}}
    assert out["email"][1].as_py().split("@")[1] not in ("corp-mail.com", "example.com")  # employer domains go


def test_mapping_consistent_across_tables_and_keyed_by_secret(table):
    config = ReplacePiiConfig()
    first, second = table.slice(0, 150), table.slice(120, 180)
    mapper = PiiMapper(SECRET)
    out1, _ = replace(first, detect(first, config), config, mapper=mapper)
    out2, _ = replace(second, detect(second, config), config, mapper=mapper)
    for column in ("email", "phone", "customer_name"):
        assert out1[column].slice(120).equals(out2[column].slice(0, 30)), column
    assert mapper.fake("email", "a.b@gmail.com") == PiiMapper(SECRET).fake("email", "a.b@gmail.com")
    assert mapper.fake("email", "a.b@gmail.com") != PiiMapper(b"another-secret-0123456789").fake(
        "email", "a.b@gmail.com"
    )


def test_keys_kept_unless_replace_keys(table):
    kept = detect(table, ReplacePiiConfig(), keep=["email"])
    assert {f.column: f.action for f in kept.columns}["email"] == "kept_as_key"
    out, _ = replace(table, kept, ReplacePiiConfig(), SECRET)
    assert out["email"].equals(table["email"])

    config = ReplacePiiConfig(replace_keys=True)
    out, _ = replace(table, detect(table, config, keep=["email"]), config, SECRET)
    real, fake = table["email"].to_pylist(), out["email"].to_pylist()
    assert len(set(fake)) == len(set(real))
    assert len(set(zip(real, fake, strict=True))) == len(set(real))  # one fake key per real key


def test_nulls_and_arrow_types_kept():
    typed = pa.table(
        {
            "zip": pa.array([94107, None, 10001, 94107], pa.int64()),
            "birth_date": pa.array([date(1980, 1, 31), None, date(1975, 6, 1), date(1990, 2, 2)], pa.date32()),
            "born_at": pa.array(
                [datetime(1980, 1, 31, 8, 30), None, None, datetime(1990, 2, 2, 23, 59)], pa.timestamp("us", "UTC")
            ),
            "dob_text": ["31/12/1980", None, "01/06/1975", "02/02/1990"],
            "first_name": pa.array(["Anna", None, "James", "Anna"]).dictionary_encode(),
            "last_name": ["Smith", "Jones", None, "Smith"],
        }
    )
    config = ReplacePiiConfig()
    report = detect(typed, config)
    assert {f.column: f.entity for f in report.columns} == {
        "zip": "postcode",
        "birth_date": "date_of_birth",
        "born_at": "date_of_birth",
        "dob_text": "date_of_birth",
        "first_name": "person_name",
        "last_name": "person_name",
    }
    out, _ = replace(typed, report, config, SECRET)
    assert out.schema == typed.schema
    for column in typed.column_names:
        assert out[column].null_count == typed[column].null_count
        assert pc.is_null(out[column]).equals(pc.is_null(typed[column]))
    assert all(re.fullmatch(r"\d\d/\d\d/\d{4}", v) for v in out["dob_text"].drop_null().to_pylist())
    assert [t.time() for t in out["born_at"].drop_null().to_pylist()] == [
        t.time() for t in typed["born_at"].drop_null().to_pylist()
    ]
    firsts, lasts = name_lists().first, name_lists().last
    assert all(v.casefold() in firsts for v in out["first_name"].drop_null().to_pylist())
    assert all(v.casefold() in lasts for v in out["last_name"].drop_null().to_pylist())
    assert out["zip"][0] == out["zip"][3] != out["zip"][2]


def test_force_and_skip_columns(table):
    config = ReplacePiiConfig(force_columns={"category": "postcode"}, skip_columns=["email", "notes"])
    report = detect(table, config)
    actions = {f.column: (f.entity, f.action) for f in report.columns}
    assert actions["category"] == ("postcode", "forced")
    assert actions["email"] == ("email", "skipped")
    assert not report.text
    out, counts = replace(table, report, config, SECRET)
    assert out["email"].equals(table["email"]) and out["notes"].equals(table["notes"])
    assert set(out["category"].to_pylist()).isdisjoint({"A", "B", "C"})
    assert all(re.fullmatch(r"[A-Z]", v) for v in out["category"].to_pylist())
    assert "email" not in counts["columns"]


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (ReplacePiiConfig(force_columns={"mail": "email"}), DataError, r"\['mail'\].*'customer_name'"),
        (ReplacePiiConfig(skip_columns=["nope"]), DataError, r"\['nope'\].*'customer_name'"),
        (ReplacePiiConfig(force_columns={"email": "email"}, skip_columns=["email"]), ConfigError, "email"),
        (ReplacePiiConfig(force_columns={"amount": "email"}), DataError, "amount"),
        (ReplacePiiConfig(locale="xx_XX"), ConfigError, "xx_XX.*en_US"),
    ],
)
def test_bad_options_name_the_problem(table, config, error, message):
    with pytest.raises(error, match=message):
        detect(table, config)


def test_replay(table, report):
    fresh = people(1)
    result = replay(table, fresh, report)
    # none of these fresh rows meets a training value; other seeds share a common name, zip or birthday by chance
    assert result["replayed_values"] == 0 and result["score"] == 10.0

    copied = pa.concat_tables([table.slice(0, 60), fresh.slice(60)])  # 20% of the rows are training rows
    result = replay(table, copied, report)
    assert result["share"] == pytest.approx(0.2, abs=0.01)
    assert result["score"] == pytest.approx(8.0, abs=0.1)
    by_column = {(e["column"], e["entity"]): e for e in result["columns"] + result["text"]}
    assert by_column[("ssn", "ssn")]["replayed"] == 20 and by_column[("notes", "email")]["synthetic_rows"] == 60

    result = replay(table, copied.drop_columns(["ssn"]), report)
    assert result["notes"] == ["ssn: not in both tables, skipped"]


def test_no_pii_table_gives_an_empty_report():
    rng = np.random.default_rng(0)
    n = 60_000
    columns = {f"x{i}": rng.normal(size=n) for i in range(10)}
    columns |= {f"k{i}": rng.integers(0, 10**9, n) for i in range(4)}
    columns |= {f"cat{i}": rng.choice(["A", "B", "C", "D"], n) for i in range(4)}
    columns["code"] = np.char.add("P-", rng.integers(0, 10**6, n).astype(str))
    columns["ref"] = rng.integers(10**9, 10**10, n).astype(str)
    wide = pa.table(columns)
    start = time.perf_counter()
    report = detect(wide, ReplacePiiConfig())
    assert time.perf_counter() - start < 2
    assert report.empty and report.to_dict() == {"locale": "en_US", "columns": [], "text": []}


def test_report_round_trips_through_json(report):
    assert PiiReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_fit_replaces_pii_in_training_rows_only_and_the_evaluation_counts_replay(tmp_path):
    from synth_model import Synthesizer
    from synth_model.evaluate.report import render_html, training_rows

    table = people(5, customers=150)
    config = {
        "data": {"holdout": 60},
        "training": {"num_input_records_to_sample": 300, "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2}},
    }
    synth = Synthesizer(config).fit(table)
    replaced = {f["column"]: f["entity"] for f in synth.pii["report"]["columns"] if f["action"] == "replace"}
    assert replaced.items() >= {"email": "email", "phone": "phone", "ssn": "ssn", "iban": "iban"}.items()
    assert synth.metrics["pii"]["values_replaced"] > 0 and synth.metrics["pii"]["text_spans_replaced"] > 0
    real = {c: set(table.column(c).to_pylist()) - {None} for c in replaced}
    for column in replaced:  # the holdout stays real, so the privacy measures compare with real rows
        assert set(synth.holdout.column(column).to_pylist()) - {None} <= real[column]
    for rule in synth.schema.columns:  # nothing the model validates against carries a real PII value
        assert not set(rule.categories or []) & real.get(rule.name, set())

    loaded = Synthesizer.load(synth.save(tmp_path / "model"))
    assert json.loads((tmp_path / "model" / "pii_report.json").read_text()) == loaded.pii == synth.pii
    copied = training_rows(table, synth.holdout)
    result = loaded.evaluate(table, copied)
    leaked = result["privacy"]["pii_replay"]
    shown = json.dumps(result, default=str) + render_html(result, "report")
    assert not [v for c in replaced for v in real[c] if len(str(v)) >= 8 and str(v) in shown]  # none in the report
    fresh = loaded.evaluate(table, people(6, customers=150))["privacy"]["pii_replay"]
    faked, _ = protect(copied, ReplacePiiConfig())  # copies of training rows, PII replaced as in training
    disguised = loaded.evaluate(table, faked)
    assert disguised["exact_copy_rate"] > 0.9  # the replaced columns are left out of the comparison
    assert set(disguised["privacy"]["distance_to_closest_record"]["columns_left_out"]) >= set(replaced)
    assert leaked["share"] > 0.9 and leaked["score"] < 1
    assert fresh["score"] >= 9 and fresh["replayed_values"] < leaked["replayed_values"] / 10

    off = Synthesizer({**config, "replace_pii": {"enabled": False}}).fit(table)
    assert off.pii == {} and "pii" not in off.metrics
