"""Grouped events: capping, marker parsing, group validity rules and each relaxation (after sampling and
line by line while sampling), fresh keys."""

import datetime as dt
import hashlib
import random

import numpy as np
import pyarrow as pa
import pytest

from synth_model.config import GenerationConfig
from synth_model.errors import ContextFitError, DataError
from synth_model.generate import Collector, units_to_start
from synth_model.groups import (
    BEGIN,
    END,
    GroupGuard,
    GroupRules,
    KeyFactory,
    _digest,
    assign_keys,
    cap_groups,
    check_group,
    learn_keys,
    pick_groups,
    split_groups,
)
from synth_model.records import Unit, check_fit
from synth_model.schema import ColumnRule, TableSchema
from synth_model.validate import RecordValidator

SCHEMA = TableSchema(
    [
        ColumnRule(
            name="id",
            kind="identifier",
            arrow_type="string",
            required=True,
            min_length=4,
            max_length=6,
            pattern="^[A-Z0-9]+$",
        ),
        ColumnRule(name="t", kind="integer", arrow_type="int64", required=True, minimum=0, maximum=100),
        ColumnRule(name="v", kind="categorical", arrow_type="string", required=True, categories=["a", "b"]),
    ]
)


def rules(**relax) -> GroupRules:
    return GroupRules(["id"], ["t"], **relax)


def line(id_, t, v="a") -> str:
    return f'{{"id":"{id_}","t":{t},"v":"{v}"}}'


def test_cap_keeps_the_most_recent_rows_or_splits_windows():
    gids = np.array([0, 0, 0, 0, 0, 1, 1])
    keep, ids = cap_groups(gids, 2, "most_recent")
    assert keep.tolist() == [False, False, False, True, True, True, True]
    assert ids.tolist() == gids.tolist()
    keep, ids = cap_groups(gids, 2, "windows")
    assert keep.all()
    assert ids.tolist() == [0, 0, 1, 1, 2, 3, 3]
    keep, ids = cap_groups(gids, None, "windows")
    assert keep.all() and ids is gids


def test_markers_split_groups_and_name_what_is_wrong():
    lines = [BEGIN, line("A1", 1), line("A1", 2), END, BEGIN, line("B2", 3), END, BEGIN, line("C3", 4)]
    groups, problems = split_groups(lines, ended=False, accept_no_delineator=False)
    assert [len(g) for g in groups] == [2, 1]
    assert problems == {"truncated": 1}  # cut off by the token budget: not counted invalid
    groups, problems = split_groups(lines, ended=True, accept_no_delineator=False)
    assert problems == {"unterminated_group": 1}
    groups, problems = split_groups([line("A1", 1), line("A1", 2)], ended=True, accept_no_delineator=False)
    assert groups == [] and problems == {"no_delineator": 1}
    groups, problems = split_groups([line("A1", 1), line("A1", 2)], ended=True, accept_no_delineator=True)
    assert [len(g) for g in groups] == [2] and not problems


def test_a_group_is_valid_only_when_every_rule_holds():
    validator = RecordValidator(SCHEMA)
    good = [line("XY99", 1), line("XY99", 5, "b")]
    records, reason, _ = check_group(good, validator, rules())
    assert reason is None and [r["t"] for r in records] == [1, 5]
    assert check_group([line("XY99", 1), line("XY99", 5, "zzz")], validator, rules())[1] == "invalid_record"
    assert check_group([line("XY99", 1), line("ZZ88", 5)], validator, rules())[1] == "non_unique_key"
    assert check_group([line("XY99", 5), line("XY99", 1)], validator, rules())[1] == "unordered_records"
    assert check_group(["not json"], validator, rules(ignore_invalid_records=True))[1] == "empty_group"


def test_each_relaxation_repairs_its_own_problem_only():
    validator = RecordValidator(SCHEMA)
    records, reason, reasons = check_group(
        [line("XY99", 1), line("XY99", 5, "zzz"), line("XY99", 7)], validator, rules(ignore_invalid_records=True)
    )
    assert reason is None and [r["t"] for r in records] == [1, 7] and reasons == {"unknown_category": 1}
    records, reason, _ = check_group([line("XY99", 1), line("ZZ88", 5)], validator, rules(fix_non_unique_value=True))
    assert reason is None and {r["id"] for r in records} == {"XY99"}
    records, reason, _ = check_group([line("XY99", 5), line("XY99", 1)], validator, rules(fix_unordered_records=True))
    assert reason is None and [r["t"] for r in records] == [1, 5]
    assert check_group([line("XY99", 5), line("ZZ88", 1)], validator, rules(fix_unordered_records=True))[1] == (
        "non_unique_key"
    )


def test_the_guard_refuses_each_line_that_would_sink_its_group_and_keeps_rows_apart():
    guard = GroupGuard(RecordValidator(SCHEMA), rules(), rows=2)
    assert guard.admit(0, BEGIN) and guard.admit(0, line("XY99", 5)) and guard.admit(1, line("ZZ88", 1))
    assert not guard.admit(0, line("XY99", 4))  # before the row's last record
    assert not guard.admit(0, line("ZZ88", 6))  # the group's key changed
    assert not guard.admit(0, line("XY99", 6, "zzz"))  # invalid record
    assert guard.admit(0, line("XY99", 5)) and guard.admit(0, line("XY99", 9)) and guard.admit(0, END)
    assert not guard.admit(0, line("XY99", 8))  # a refused line left the last record (9) as it was
    assert guard.admit(1, line("ZZ88", 2))  # row 1 has its own group
    guard.keep([1])
    assert not guard.admit(0, line("ZZ88", 1)) and guard.admit(0, line("ZZ88", 3))
    guard.reset([0])
    assert guard.admit(0, line("XY99", 0))  # a fresh group
    relaxed = GroupGuard(RecordValidator(SCHEMA), rules(fix_unordered_records=True, ignore_invalid_records=True), 1)
    assert relaxed.admit(0, line("XY99", 5)) and relaxed.admit(0, line("XY99", 4))  # sorted afterwards
    assert relaxed.admit(0, "not json") and not relaxed.admit(0, line("ZZ88", 6))


def test_the_guard_checks_the_order_columns_once_they_are_written():
    guard = GroupGuard(RecordValidator(SCHEMA), rules(), rows=1)
    assert guard.in_order(0, '{"id":"XY99","t":1') is True  # a group's first record has nothing to follow
    assert guard.admit(0, line("XY99", 5))
    assert guard.in_order(0, '{"id":"XY99","t":4') is None  # "t" may go on (45)
    assert guard.in_order(0, '{"id":"XY99","t":4,"v":') is False
    assert guard.in_order(0, '{"id":"XY99","t":45,"v":') is True
    assert GroupGuard(RecordValidator(SCHEMA), rules(fix_unordered_records=True), 1).after_order is None
    last_column = GroupGuard(RecordValidator(SCHEMA), GroupRules(["id"], ["v"]), 1)
    assert last_column.after_order is None  # the line's end is the first point where "v" is complete


def test_groups_to_start_do_not_trust_the_short_groups_that_finish_first():
    collector = Collector(RecordValidator(SCHEMA), rules(), units=40, invalid_units=4)
    collector.records = [{}] * 48  # 40 groups finished first (the short ones): 1.2 records each
    # 3 records per group in training, 90% valid: 2.7 per group, not 1.2, for the 152 still missing
    assert units_to_start(152, live=20, records_per_unit=3.0, collector=collector) == 57 - 20
    collector.records = [{}] * 160  # once groups yield more than that floor, their own rate counts
    assert units_to_start(40, live=0, records_per_unit=3.0, collector=collector) == 10
    assert units_to_start(0, live=0, records_per_unit=3.0, collector=collector) == 0
    few = Collector(RecordValidator(SCHEMA), rules(), units=10)  # too few finished: the training's rate
    assert units_to_start(30, live=4, records_per_unit=3.0, collector=few) == 6


@pytest.mark.parametrize("grouped", [False, True])
def test_units_that_end_before_writing_anything_count_as_invalid(grouped):
    """Else a model that only ever ends at once would sample forever: the stop rules see nothing."""
    collector = Collector(RecordValidator(SCHEMA), rules() if grouped else None)
    assert collector.add([([], True), ([], True)]) == (2, 0)
    assert (collector.group_reasons if grouped else collector.reasons) == {"empty": 2}


def test_the_surplus_of_finished_groups_is_left_out_at_random():
    # as sampled: the short groups finish first, the long ones last
    finished = [[{"g": i}] * (1 + i // 20) for i in range(100)]  # 20 groups each of 1..5 records
    picked = pick_groups(finished, 120, random.Random(0))
    count = sum(map(len, picked))
    assert 120 <= count < 120 + len(picked[-1])  # just past the target: one group less would miss it
    assert all(any(g is f for f in finished) for g in picked) and len({id(g) for g in picked}) == len(picked)
    # a random pick, not the first finished: about the mean length of all groups (3), not the shortest (1)
    assert 2.4 < count / len(picked) < 3.6
    assert pick_groups(finished, 120, random.Random(0)) == picked  # seeded
    assert sum(map(len, pick_groups(finished, 10**6, random.Random(1)))) == sum(map(len, finished))


def test_rules_take_the_relaxation_flags_from_the_generation_config():
    cfg = GenerationConfig(group_by_accept_no_delineator=True, group_by_fix_unordered_records=True)
    made = GroupRules.of(["id"], ["t"], [KeyFactory("id", "string", [("A9", 1)])], cfg)
    assert made.accept_no_delineator and made.fix_unordered_records
    assert not made.ignore_invalid_records and not made.fix_non_unique_value
    assert made.group_by == [] and made.order_by == ["t"]  # a key made afresh is not checked


def test_fresh_keys_keep_the_format_and_never_copy_a_real_key():
    real = [f"N{n}AA" for n in range(100, 999)] + ["N1234B", "N5678B"]
    factory = KeyFactory.learn("id", real)
    made = factory.make(500, random.Random(0))
    assert len(set(made)) == 500 and not set(made) & set(real)
    assert all(v.startswith("N") and (v.endswith("AA") or v.endswith("B")) for v in made)
    assert all(v[1:4].isdigit() for v in made)
    ints = KeyFactory.learn("id", list(range(1000, 1100)))
    new = ints.make(50, random.Random(1))
    assert all(1000 <= v <= 9999 and v not in range(1000, 1100) for v in new)
    restored = KeyFactory.from_dict(factory.dump())
    assert restored.make(5, random.Random(3)) == factory.make(5, random.Random(3))
    assert "N100AA" not in str(factory.dump())  # hashes, not values


def test_stored_key_hashes_do_not_name_their_keys_and_held_out_keys_are_avoided():
    rng = random.Random(5)
    real = rng.sample(range(10**8, 10**9), 1000)  # nine-digit ids, such as SSNs
    held = rng.sample(range(10**8, 10**9), 50)
    factory = KeyFactory.learn("ssn", real, held)
    assert set(factory.dump()) >= {"salt", "bits"} and factory.bits < 64
    tried = rng.sample(range(10**8, 10**9), 200_000)  # an attacker's guesses
    hits = [v for v in tried if _digest(v, factory.salt, factory.bits) in factory.real_hashes]
    assert len(hits) > 100 * len(set(hits) & {*real, *held}) + 100  # the guesses that fit are nearly all wrong
    made = factory.make(2000, random.Random(0))
    assert not set(made) & {*real, *held}
    hashes = KeyFactory.learn("ssn", real).real_hashes
    assert KeyFactory.learn("ssn", real).real_hashes == hashes  # the same keys give the same factory
    every = range(100, 1000)  # a model folder saved before: plain 64-bit hashes, no salt
    old = {
        "column": "k",
        "kind": "integer",
        "formats": [["3", 900]],
        "real_hashes": [hashlib.blake2b(str(v).encode(), digest_size=8).hexdigest() for v in every],
    }
    assert not set(KeyFactory.from_dict(old).make(50, random.Random(0))) & set(every)


def test_assigned_keys_are_one_per_group():
    groups = [[{"id": "x"}, {"id": "x"}], [{"id": "x"}]]
    assign_keys(groups, [KeyFactory.learn("id", ["AB12", "CD34"])], random.Random(0))
    assert groups[0][0]["id"] == groups[0][1]["id"] != groups[1][0]["id"]


def test_entity_keys_fresh_keys_cannot_be_made_for_are_refused():
    """A float or date key that names entities would be written by the model, so real keys would come back."""
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i // 2) for i in range(40)]
    table = pa.table({"store": [f"S{i // 2:02d}" for i in range(40)], "day": days, "cust": [i / 2 for i in range(40)]})
    holdout = table.slice(0, 0)
    shared = table.set_column(1, "day", pa.array([dt.date(2024, 1, 1 + i % 3) for i in range(40)]))
    assert [f.column for f in learn_keys(shared, ["store", "day"], 20, holdout)] == ["store"]  # a day many share
    for column, kind in (("cust", "double"), ("day", "date32")):
        with pytest.raises(DataError, match=rf"group column '{column}' \({kind}.*identifies entities.*CAST\({column}"):
            learn_keys(table, [column], 20, holdout)


def test_context_fit_reports_the_largest_group_and_the_remedies():
    units = [Unit([1] * 20, 2, 0), Unit([1] * 90, 9, 2), Unit([1] * 70, 7, 11)]
    with pytest.raises(ContextFitError) as caught:
        check_fit(units, prompt_len=5, context=64, grouped=True)
    message = str(caught.value)
    assert "2 of 3 groups" in message and "9 records = 90 tokens" in message and "row 2" in message
    for remedy in ("rope_scaling_factor", "max_records_per_group", "windows", "columns"):
        assert remedy in message


def test_null_order_values_come_last_as_training_sorted_them():
    nullable = TableSchema(
        [
            *SCHEMA.columns[:1],
            ColumnRule(name="t", kind="integer", arrow_type="int64", required=False, minimum=0, maximum=100),
            SCHEMA.columns[2],
        ]
    )
    validator = RecordValidator(nullable)
    assert check_group([line("XY99", 1), line("XY99", 5), line("XY99", "null")], validator, rules())[1] is None
    assert (
        check_group([line("XY99", 5), line("XY99", "null"), line("XY99", 1)], validator, rules())[1]
        == "unordered_records"
    )
    assert check_group([line("XY99", "null"), line("XY99", 1)], validator, rules())[1] == "unordered_records"
    records, _, _ = check_group([line("XY99", "null"), line("XY99", 1)], validator, rules(fix_unordered_records=True))
    assert [r["t"] for r in records] == [1, None]


@pytest.mark.parametrize(
    "real, wanted", [(list(range(1, 41)), 100), ([f"P{i:03d}" for i in range(30)], 3000)], ids=["integers", "strings"]
)
def test_new_keys_widen_their_format_when_it_runs_out(real, wanted):
    """Ids 1-40 leave room for 59 more of up to two digits; P000-P029 (P0##) for 70: one more digit each time."""
    made = KeyFactory.learn("k", real).make(wanted, random.Random(0))
    assert len(set(made)) == wanted and not set(made) & set(real)
    assert all(type(v) is type(real[0]) for v in made)
