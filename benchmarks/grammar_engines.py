"""Grammar engines compared on this engine's own grammar: llguidance (used) against xgrammar.

    python benchmarks/grammar_engines.py [--rows 256] [--repeats 5]

Both get the same record JSON Schema (credit_data's learned schema, compact separators) and the
tiny model's tokenizer. For each engine: grammar compile time, then `--rows` matchers walked in
lockstep through real training records token by token, timing the per-step batch mask fill and
token consumption (medians over `--repeats` walks), and whether each real record is accepted while
records out of the learned range or with too many decimals are refused. xgrammar is not a
dependency: it is measured only where it is installed (`pip install xgrammar`). Prints a table,
writes `benchmarks/results/grammar_engines.json` and a section of `benchmarks/README.md`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import llguidance
import llguidance.hf
import llguidance.torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import save_results, write_section  # noqa: E402

from synth_model.grammar import record_schema  # noqa: E402
from synth_model.models import train_tokenizer  # noqa: E402
from synth_model.records import rows_to_texts  # noqa: E402
from synth_model.schema import infer_schema  # noqa: E402
from warehouse.demo_data import fetch  # noqa: E402

RESULTS = HERE / "results" / "grammar_engines.json"


class Llguidance:
    name = "llguidance"

    def __init__(self, tokenizer, schema: dict, rows: int):
        start = time.perf_counter()
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema)
        first = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        self.compile_s = time.perf_counter() - start
        self.matchers = [first] + [first.deep_copy() for _ in range(rows - 1)]
        self.executor = llguidance.LLExecutor()
        self.bits = llguidance.torch.allocate_token_bitmask(rows, self.tokenizer.vocab_size)

    def reset(self) -> None:
        for m in self.matchers:
            m.reset()

    def fill(self) -> None:
        pairs = [(m, i) for i, m in enumerate(self.matchers)]
        llguidance.torch.fill_next_token_bitmask_par(self.executor, pairs, self.bits)

    def consume(self, tokens: list[int]) -> list[bool]:
        return self.executor.consume_token_par(list(zip(self.matchers, tokens, strict=True)))

    def accepts(self, ids: list[int]) -> bool:
        m = self.matchers[0]
        m.reset()
        return m.consume_tokens(ids) and m.is_accepting()


class Xgrammar:
    name = "xgrammar"

    def __init__(self, tokenizer, schema: dict, rows: int):
        import xgrammar as xgr

        self.xgr = xgr
        start = time.perf_counter()
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
        compiled = xgr.GrammarCompiler(info).compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=(",", ":")
        )
        self.compile_s = time.perf_counter() - start
        self.compiled, self.eos = compiled, tokenizer.eos_token_id
        self.matchers = [xgr.GrammarMatcher(compiled) for _ in range(rows)]
        self.batch = xgr.BatchGrammarMatcher()
        self.bits = xgr.allocate_token_bitmask(rows, info.vocab_size)

    def reset(self) -> None:
        for m in self.matchers:
            m.reset()

    def fill(self) -> None:
        self.batch.batch_fill_next_token_bitmask(self.matchers, self.bits)

    def consume(self, tokens: list[int]) -> list[bool]:
        return self.batch.batch_accept_token(self.matchers, tokens)

    def accepts(self, ids: list[int]) -> bool:
        m = self.xgr.GrammarMatcher(self.compiled)
        return all(m.accept_token(t) for t in ids) and m.accept_token(self.eos) and m.is_terminated()


# Schema features this engine needs, each probed with a value it must admit and one it must refuse.
PROBES = {
    "multipleOf (learned decimals)": ({"type": "number", "minimum": 0, "maximum": 5, "multipleOf": 0.01}, 1.25, 1.125),
    "multipleOf, signed column": ({"type": "number", "minimum": -5, "maximum": 5, "multipleOf": 0.01}, -1.25, 1.125),
    "maxLength with a pattern (identifiers)": ({"type": "string", "pattern": "^[A-Z]+$", "maxLength": 3}, "AB", "ABCD"),
    "integer range": ({"type": "integer", "minimum": 0, "maximum": 99}, 42, 100),
}


def probe(cls, name: str) -> bool:
    """True when the engine admits the probe's good value and refuses its bad one."""
    column, good, bad = PROBES[name]
    schema = {"type": "object", "properties": {"x": column}, "required": ["x"], "additionalProperties": False}
    texts = [json.dumps({"x": v}, separators=(",", ":")) for v in (good, bad)]
    tokenizer = train_tokenizer([t + "\n" for t in texts], 300)
    engine = cls(tokenizer, schema | {"x-guidance": {"whitespace_flexible": False}}, 1)
    good_ids, bad_ids = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts)
    return engine.accepts(good_ids) and not engine.accepts(bad_ids)


def walk(engine, streams: list[list[int]], repeats: int) -> dict:
    """Per-step mask and consume time over the rows walking their records in lockstep."""
    steps = min(len(s) for s in streams)
    fills, consumes = [], []
    for _ in range(repeats):
        engine.reset()
        fill = consume = 0.0
        for t in range(steps):
            start = time.perf_counter()
            engine.fill()
            fill += time.perf_counter() - start
            start = time.perf_counter()
            ok = engine.consume([s[t] for s in streams])
            consume += time.perf_counter() - start
            if not all(ok):
                raise RuntimeError(f"{engine.name} refused a real record's token at step {t}")
        fills.append(fill / steps)
        consumes.append(consume / steps)
    return {
        "mask_ms_per_step": statistics.median(fills) * 1e3,
        "consume_ms_per_step": statistics.median(consumes) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    credit = fetch("modeldata", "credit_data")
    schema = infer_schema(credit)
    texts = rows_to_texts(credit, schema)
    tokenizer = train_tokenizer(texts, 2000)
    json_schema = record_schema(schema)
    records = [tokenizer(t.rstrip("\n"), add_special_tokens=False)["input_ids"] for t in texts]
    streams = [records[i % len(records)] for i in range(args.rows)]
    engines = [Llguidance]
    try:
        import xgrammar  # noqa: F401

        engines.append(Xgrammar)
    except ImportError:
        print("xgrammar is not installed: measuring llguidance only")
    broken = []
    for text in texts[:50]:
        row = json.loads(text)
        broken.append(json.dumps(row | {"Age": 1000}, separators=(",", ":")))  # out of the learned range
        broken.append(json.dumps(row | {"Time": row["Time"] + 0.5}, separators=(",", ":")))  # not an integer
    results = []
    for cls in engines:
        engine = cls(tokenizer, json_schema, args.rows)
        timing = walk(engine, streams, args.repeats)
        refused = sum(not engine.accepts(tokenizer(b, add_special_tokens=False)["input_ids"]) for b in broken)
        features = {name: probe(cls, name) for name in PROBES}
        results.append(
            {
                "engine": f"{cls.name} {metadata.version(cls.name)}",
                "compile_ms": engine.compile_s * 1e3,
                **timing,
                "broken_refused": f"{refused}/{len(broken)}",
                "enforces": features,
            }
        )
    lines = [
        "| engine | compile (ms) | batch mask (ms/step) | consume (ms/step) | broken credit records refused | "
        + " | ".join(f"enforces {name}" for name in PROBES)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(PROBES),
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['compile_ms']:.1f} | {r['mask_ms_per_step']:.2f} | "
            f"{r['consume_ms_per_step']:.2f} | {r['broken_refused']} | "
            + " | ".join("yes" if r["enforces"][name] else "**no**" for name in PROBES)
            + " |"
        )
    print("\n".join(lines))
    saved = save_results(RESULTS, rows=args.rows, repeats=args.repeats, results=results)
    intro = (
        f"{saved['date']}, {saved['machine']['nproc']} CPU cores; {args.rows} rows walking real credit_data "
        f"records in lockstep, medians of {args.repeats} walks."
    )
    write_section("grammar", "Grammar engines", saved, intro, "\n".join(lines))


if __name__ == "__main__":
    main()
