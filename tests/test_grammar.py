"""Structured generation: the grammar admits every real record, refuses broken ones, and makes output valid."""

from __future__ import annotations

import datetime as dt
import json
import re

import llguidance
import llguidance.hf
import pyarrow as pa
import pytest

from synth_model import Synthesizer
from synth_model import generate as generate_module
from synth_model.grammar import column_schema, unit_grammar
from synth_model.groups import BEGIN, END
from synth_model.models import train_tokenizer
from synth_model.records import rows_to_texts
from synth_model.schema import TableSchema, infer_schema
from synth_model.validate import RecordValidator


@pytest.fixture(scope="module")
def every_kind() -> pa.Table:
    """One column of each kind the schema learns, with nulls where a column allows them."""
    n = 60
    return pa.table(
        {
            "id": [f"AB{i:04d}" for i in range(n)],
            "age": pa.array([18 + i % 50 for i in range(n)], pa.int32()),
            "score": [round(-3.5 + i * 0.25, 2) for i in range(n)],
            "rate": [round(i * 0.37 % 5, 2) for i in range(n)],
            "income": [float(1000 * (i % 7)) if i % 9 else None for i in range(n)],
            "joined": [dt.date(2020, 1, 1) + dt.timedelta(days=3 * i) for i in range(n)],
            "seen_at": [dt.datetime(2024, 5, 1, 8, 30) + dt.timedelta(minutes=97 * i) for i in range(n)],
            "synced": pa.array(
                [dt.datetime(2023, 12, 31, tzinfo=dt.UTC) + dt.timedelta(hours=7 * i) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "active": [i % 3 == 0 for i in range(n)],
            "plan": [["basic", "pro", None][i % 3] for i in range(n)],
            "note": [f'called {i} times, said "ok"' for i in range(n)],
        }
    )


def matcher_for(texts: list[str], grammar: str):
    tokenizer = train_tokenizer(texts, 400)
    return tokenizer, llguidance.LLMatcher(llguidance.hf.from_tokenizer(tokenizer), grammar, log_level=0)


def accepts(tokenizer, matcher, text: str) -> bool:
    matcher.reset()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return matcher.consume_tokens(ids) and matcher.consume_token(tokenizer.eos_token_id) and matcher.is_stopped()


def test_the_schema_kinds_become_json_schema(every_kind):
    rules = {c.name: column_schema(c) for c in infer_schema(every_kind).columns}
    assert rules["age"] == {"type": "integer", "minimum": 18, "maximum": 67}
    assert rules["rate"]["type"] == "number" and rules["rate"]["multipleOf"] == 0.01
    assert "multipleOf" not in rules["score"]  # signed: decimals left to the validator (llguidance 1.7)
    assert rules["income"] == {"anyOf": [{"type": "integer", "minimum": 0.0, "maximum": 6000.0}, {"type": "null"}]}
    # the learned months, 2020-01-01..06-26, with the days each has, up to the last day
    days = "(0[1-9]|[12][0-9]|3[01])", "(0[1-9]|[12][0-9])", "(0[1-9]|[12][0-9]|30)"
    june = "(" + "|".join(f"{d:02d}" for d in range(1, 27)) + ")"
    joined = f"^(2020-((01|03|05)-{days[0]}|(02)-{days[1]}|(04)-{days[2]}|(06)-{june}))$"
    assert rules["joined"] == {"type": "string", "pattern": joined}
    assert rules["active"] == {"type": "boolean"}
    assert rules["plan"] == {"anyOf": [{"enum": ["basic", "pro"]}, {"type": "null"}]}
    assert rules["id"]["pattern"] == "^AB[0-9]{4}$" and rules["id"]["maxLength"] == 6
    assert rules["note"]["minLength"] >= 1 and "pattern" not in rules["note"]


def test_every_training_record_is_admitted(every_kind):
    schema = infer_schema(every_kind)
    texts = rows_to_texts(every_kind, schema)
    tokenizer, matcher = matcher_for(texts, llguidance.LLMatcher.grammar_from_lark(unit_grammar(schema, False)))
    assert not matcher.is_error(), matcher.get_error()
    assert all(accepts(tokenizer, matcher, text) for text in texts)
    group = f"{BEGIN}\n" + "".join(texts[:3]) + f"{END}\n"
    grouped = llguidance.LLMatcher(
        llguidance.hf.from_tokenizer(tokenizer), llguidance.LLMatcher.grammar_from_lark(unit_grammar(schema, True))
    )
    assert accepts(tokenizer, grouped, group)
    assert not accepts(tokenizer, grouped, texts[0])  # a bare record is not a group


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"age": 17}, "below the learned minimum"),
        ({"age": 30.5}, "not an integer"),
        ({"rate": 1.125}, "more decimals than learned"),
        ({"plan": "gold"}, "not in the category domain"),
        ({"active": None}, "null where the column never was"),
        ({"joined": "2020-13-01"}, "not a date"),
        ({"seen_at": "2024-05-01T08:30:00"}, "not the learned datetime form"),
        ({"seen_at": "2024-13-01 08:30:00"}, "month 13"),
        ({"seen_at": "2024-05-01 24:30:00"}, "hour 24"),
        ({"seen_at": "2024-05-01 08:30:00+02:00"}, "an offset on a column without a time zone"),
        ({"joined": "2019-12-31"}, "a year before the learned ones"),
        ({"joined": "2020-07-01"}, "a month after the learned ones"),
        ({"joined": "2020-06-27"}, "a day after the last learned one"),
        ({"seen_at": "2024-05-06 10:00:00"}, "a day after the last learned one, in its month"),
        ({"seen_at": "2024-05-01 08:29:59"}, "a second before the first learned one"),
        ({"seen_at": "2024-05-05 07:53:01"}, "a second after the last learned one"),
        ({"joined": "2020-02-30"}, "a day February does not have"),
        ({"synced": "2024-01-01 07:00:00"}, "no offset on a column with a time zone"),
        ({"synced": "2024-01-01 07:00:00+99:99"}, "an offset no time zone has"),
        ({"id": "ab0001"}, "characters the identifiers never had"),
        ({"id": "AB00001"}, "longer than any identifier"),
        ({"id": "BA0001"}, "not the AB every identifier starts with"),
        ({"id": "ABC001"}, "a letter where the identifiers have digits"),
    ],
)
def test_broken_records_are_refused(every_kind, change, why):
    schema = infer_schema(every_kind)
    texts = rows_to_texts(every_kind, schema)
    tokenizer, matcher = matcher_for(texts, llguidance.LLMatcher.grammar_from_lark(unit_grammar(schema, False)))
    record = json.loads(texts[1]) | change
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
    assert not accepts(tokenizer, matcher, line), why
    reordered = dict(reversed(list(json.loads(texts[1]).items())))
    assert not accepts(tokenizer, matcher, json.dumps(reordered, separators=(",", ":")) + "\n"), "keys out of order"


@pytest.fixture(scope="module")
def undertrained(credit):
    """A deliberately weak model (a few seconds of training) that often writes broken records on its own."""
    config = {
        "data": {"holdout": 50},
        "training": {
            "num_input_records_to_sample": 12000,
            "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "vocab_size": 400},
        },
        "generation": {"seed": 3, "invalid_fraction_threshold": 1.0, "patience": 100},
    }
    return Synthesizer(config).fit(credit.slice(0, 1000))


def test_structured_generation_makes_every_record_valid(undertrained):
    undertrained.config.generation.use_structured_generation = False
    free = undertrained.generate_with_stats(200).stats
    undertrained.config.generation.use_structured_generation = True
    result = undertrained.generate_with_stats(200)
    assert free["valid_fraction"] < 0.9, free  # without the grammar this model fails often ...
    assert result.stats["valid_fraction"] == 1.0 and result.stats["rejections"] == {}  # ... with it, never
    assert result.table.num_rows == 200 and result.stats["structured"] is True


def test_top_p_never_leaves_a_refused_row_without_an_allowed_token(undertrained, monkeypatch):
    """A refused row's nucleus may hold no token the grammar allows; drawing from it gave a garbage
    token that broke the row's grammar state, and sampling never finished."""
    draws = []

    def checked(scores, uniform):
        draws.append(bool(scores.isneginf().all(-1).any()))
        return sample(scores, uniform)

    sample = generate_module._sample
    monkeypatch.setattr(generate_module, "_sample", checked)
    generation = undertrained.config.generation
    monkeypatch.setattr(generation, "top_p", 0.3)
    monkeypatch.setattr(generation, "workers", 1)
    result = undertrained.generate_with_stats(100)
    assert result.table.num_rows == 100 and result.stats["valid_fraction"] == 1.0
    assert draws and not any(draws)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("2023-12-31 23:00:00", "2024-01-01 00:59:00"),  # two hours across New Year
        ("2024-05-03 09:15:30", "2024-05-03 09:15:45"),  # fifteen seconds
        ("2024-02-28 08:30:00", "2024-03-02 17:00:00"),  # across a leap day
        ("2024-05-01 10:20:30", "2024-05-02 10:20:29"),
    ],
)
def test_datetimes_are_bounded_to_the_second(low, high):
    rule = infer_schema(pa.table({"t": [dt.datetime.fromisoformat(low), dt.datetime.fromisoformat(high)]})).columns[0]
    rule.resolution = "second"  # the bounds, at any second between them
    pattern = re.compile(column_schema(rule)["pattern"])
    first, last = dt.datetime.fromisoformat(low), dt.datetime.fromisoformat(high)
    moment = first - dt.timedelta(hours=26)
    while moment <= last + dt.timedelta(hours=26):  # every 7 seconds around and across the range
        assert bool(pattern.fullmatch(str(moment))) == (first <= moment <= last), moment
        moment += dt.timedelta(seconds=7)
    for edge in (first, last, first - dt.timedelta(seconds=1), last + dt.timedelta(seconds=1)):
        assert bool(pattern.fullmatch(str(edge))) == (first <= edge <= last), edge


@pytest.mark.parametrize(
    ("times", "resolution", "allowed", "refused"),
    [
        (["2024-05-01 05:00:00", "2024-05-03 17:00:00"], "hour", "2024-05-02 23:00:00", "2024-05-02 23:00:06"),
        (["2024-05-01 05:10:00", "2024-05-01 17:45:00"], "minute", "2024-05-01 05:11:00", "2024-05-01 05:10:30"),
        (["2024-05-01 05:10:07", "2024-05-01 17:45:00"], "second", "2024-05-01 05:10:08", "2024-05-01 05:10:08.000001"),
        (
            ["2024-05-01 05:10:07.5", "2024-05-01 17:45:00"],
            "microsecond",
            "2024-05-01 06:00:00.000001",
            "2024-05-01 05:09:59.5",
        ),
    ],
)
def test_datetimes_keep_the_clock_resolution_they_were_learned_at(times, resolution, allowed, refused):
    """Hourly event times stay on the hour: the grammar writes and the validator keeps only what the
    learned resolution allows, within the learned range."""
    rule = infer_schema(pa.table({"t": [dt.datetime.fromisoformat(t) for t in times]})).columns[0]
    assert rule.resolution == resolution
    pattern = re.compile(column_schema(rule)["pattern"])
    validator = RecordValidator(TableSchema([rule]))

    def reason(value: str) -> str | None:
        return validator.check(json.dumps({"t": value}))[1]

    assert pattern.fullmatch(allowed) and reason(allowed) is None
    assert not pattern.fullmatch(refused) and reason(refused) in ("off_resolution", "out_of_range")
    (line,) = rows_to_texts(pa.table({"t": [dt.datetime.fromisoformat(t) for t in times[:1]]}), TableSchema([rule]))
    written = json.loads(line)["t"]  # a training value as the records write it
    assert pattern.fullmatch(written) and reason(written) is None


def test_schemas_saved_without_a_resolution_keep_any_time(tmp_path):
    times = [dt.datetime(2024, 5, 1, 5), dt.datetime(2024, 5, 3, 17)]
    schema = infer_schema(pa.table({"t": times}))
    saved = schema.json_schema()
    del saved["x-columns"][0]["resolution"]  # as a model folder from before resolutions were learned
    (tmp_path / "schema.json").write_text(json.dumps(saved))
    (rule,) = TableSchema.load(tmp_path / "schema.json").columns
    assert rule.resolution is None
    assert re.compile(column_schema(rule)["pattern"]).fullmatch("2024-05-02 23:17:06.000001")
