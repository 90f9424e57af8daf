"""Identifier layouts: learned from real-looking identifiers, enforced by the grammar and the validator."""

from __future__ import annotations

import json
import random
import re
import uuid

import llguidance
import pyarrow as pa
import pytest
from test_grammar import accepts, matcher_for

from synth_model import Synthesizer
from synth_model.layouts import MAX_LAYOUTS, MIN_SHARED, identifier_pattern
from synth_model.schema import infer_schema
from synth_model.validate import RecordValidator

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuids(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]


def tail_numbers(n: int) -> list[str]:
    rng = random.Random(1)
    return [f"N{rng.randint(100, 9999)}{rng.choice(['', 'A', 'AB', 'Z'])}" for _ in range(n)]


@pytest.mark.parametrize(
    ("values", "pattern", "refused"),
    [
        (uuids(300), r"^[0-9a-f]{8}\-[0-9a-f]{4}\-[0-9a-f]{4}\-[0-9a-f]{4}\-[0-9a-f]{12}$", ["0" * 36, "g" * 8]),
        (tail_numbers(300), r"^(N[0-9]{3,4}[A-Z]{1,2}|N[0-9]{3,4})$", ["9NZ", "N12", "NA123", "N123ABC"]),
        ([f"ORD-2023/{i:05d}" for i in range(300)], r"^ORD\-2023\/[0-9]{5}$", ["ORD-2024/00001", "ORD-2023/1"]),
        ([f"{i:05d}" for i in range(300)], r"^[0-9]{5}$", ["1234", "12a45"]),
        (["X1", "Y22", "Z333"], r"^[A-Z][0-9]{1,3}$", ["XY1", "1X"]),  # too few values to keep a letter literally
    ],
    ids=["uuid", "tail number", "fixed prefix", "zip code", "few values"],
)
def test_identifier_layouts(values, pattern, refused):
    assert identifier_pattern(values) == pattern
    assert all(re.fullmatch(pattern, v) for v in values)
    assert not any(re.fullmatch(pattern, v) for v in refused)


def test_a_layout_keeps_literal_runs_only_when_enough_values_share_them():
    shared = [f"K{i}" for i in range(10, 10 + MIN_SHARED)]
    assert identifier_pattern(shared) == "^K[0-9]{2}$"
    assert identifier_pattern(shared[:-1]) == "^[A-Z][0-9]{2}$"


def test_too_many_shapes_fall_back_to_segments_then_characters():
    rng = random.Random(2)
    mixed_case = ["".join(rng.choice("abcXYZ012") for _ in range(8)) + "-" + str(i) for i in range(300)]
    assert identifier_pattern(mixed_case) == r"^[0-9A-Za-z]{8}\-[0-9]{1,3}$"
    shapes = ["".join(rng.choice("ab_.") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    assert len({re.sub("[ab]+", "w", s) for s in shapes}) > MAX_LAYOUTS
    assert identifier_pattern(shapes) == r"^[a-z\._]+$"
    assert identifier_pattern([*shapes, ""]) == r"^[a-z\._]*$"  # an empty value stays admitted
    assert identifier_pattern(["abc1", "AB12"]) == "^([A-Z]{2}[0-9]{2}|[a-z]{3}[0-9])$"  # a few shapes: alternatives


def test_hex_digits_only_where_every_letter_is_one():
    rng = random.Random(3)
    hashes = ["".join(rng.choice("0123456789abcdef") for _ in range(6)) + "-x" for _ in range(100)]
    assert identifier_pattern(hashes) == r"^[0-9a-f]{6}\-x$"
    assert identifier_pattern([*hashes, "a1b2cz-x"]) == r"^[0-9a-z]{6}\-x$"
    assert identifier_pattern([h.replace("b", "a").replace("c", "a").replace("d", "a") for h in hashes]).startswith(
        "^[0-9a-z]"  # only a, e and f: too few letters to call them hex
    )


def test_the_grammar_holds_generated_identifiers_to_the_layout():
    ids = uuids(120)
    pattern = identifier_pattern(ids)
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": pattern}}, "required": ["id"]}
    texts = [json.dumps({"id": v}, separators=(",", ":")) for v in ids]
    tokenizer, matcher = matcher_for(texts, llguidance.LLMatcher.grammar_from_json_schema(schema))
    assert all(accepts(tokenizer, matcher, t) for t in texts)
    broken = ids[0][:8] + "_" + ids[0][9:]
    assert not accepts(tokenizer, matcher, json.dumps({"id": broken}, separators=(",", ":")))
    assert not accepts(tokenizer, matcher, json.dumps({"id": ids[0].replace("-", "")}, separators=(",", ":")))


def test_the_validator_refuses_identifiers_out_of_the_layout():
    table = pa.table({"id": uuids(300), "n": list(range(300))})
    validator = RecordValidator(infer_schema(table))
    good = table.slice(0, 1).to_pylist()[0]
    assert validator.check(json.dumps(good))[0] is not None
    for broken in (good["id"].upper(), good["id"] + "\n", good["id"].replace("-", ":")):
        assert validator.check(json.dumps(good | {"id": broken}))[0] is None, broken


def test_structured_generation_writes_identifiers_in_the_learned_layout():
    n = 400
    table = pa.table({"id": uuids(n, seed=5), "tail": tail_numbers(n), "amount": [(i * 37) % 500 for i in range(n)]})
    config = {
        "data": {"holdout": 0},
        "training": {"tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "vocab_size": 400}},
        "generation": {"seed": 0, "workers": 1},
    }
    synth = Synthesizer(config).fit(table)
    tail = re.compile(identifier_pattern(table.column("tail").to_pylist()))
    result = synth.generate_with_stats(60)
    rows = result.table.to_pylist()
    assert len(rows) == 60 and result.stats["valid_fraction"] == 1.0
    assert all(UUID.fullmatch(r["id"]) and tail.fullmatch(r["tail"]) for r in rows)
