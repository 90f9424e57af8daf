"""Structured generation: the learned schema as a grammar, enforced token by token with llguidance.

Each row may only emit what the grammar allows next: compact JSON with the columns in order,
category values from their domain, numbers of the right kind within the learned range and with
at most the learned decimals (non-negative columns), strings within the learned lengths (and
layouts for identifiers), ISO dates and times within the learned range, null only where the
column had nulls; grouped tables add the marker lines around one or more records. After the
unit's final newline only the end token is allowed.
Each sampled token is checked against its row's matcher; only rows whose token was refused get a
mask (computed in llguidance's Rust threads, applied to the logits as -inf) and a second draw.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re

import llguidance
import llguidance.hf
import llguidance.torch
import torch

from synth_model.errors import ConfigError
from synth_model.groups import BEGIN, END
from synth_model.schema import ColumnRule, TableSchema

DAYS = {
    28: "(0[1-9]|1[0-9]|2[0-8])",
    29: "(0[1-9]|[12][0-9])",
    30: "(0[1-9]|[12][0-9]|30)",
    31: "(0[1-9]|[12][0-9]|3[01])",
}
FRACTION = "(\\.[0-9]{6})?"  # isoformat(sep=" "): microseconds when set
ANY_FIELD = {23: "([01][0-9]|2[0-3])", 59: "[0-5][0-9]"}  # any hour, any minute or second
LAST_SECOND = (23, 59, 59)
FIELDS = {"hour": 1, "minute": 2}  # clock fields a coarser resolution leaves free; the others are :00
OFFSET = "[+-](0[0-9]|1[0-4]):[0-5][0-9]"  # real time zones lie within +-14:00 of UTC
MAX_LISTED_YEARS = 50  # learned months listed year by year up to this span, else any year and month
COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


def column_schema(rule: ColumnRule) -> dict:
    """One column's value as JSON Schema, in the form `records.rows_to_texts` writes it."""
    if rule.categories is not None:
        value: dict = {"enum": list(rule.categories)}
    elif rule.kind == "boolean":
        value = {"type": "boolean"}
    elif rule.kind == "integer" or (rule.kind == "float" and rule.decimals == 0):
        value = {"type": "integer", "minimum": rule.minimum, "maximum": rule.maximum}
    elif rule.kind == "float":
        value = {"type": "number", "minimum": rule.minimum, "maximum": rule.maximum}
        # llguidance 1.7 (the version vLLM needs) refuses every negative number under multipleOf, so
        # signed columns leave the decimals to the record validator.
        if rule.decimals is not None and rule.minimum is not None and rule.minimum >= 0:
            value["multipleOf"] = float(f"1e-{rule.decimals}")
    elif rule.kind in ("date", "datetime"):
        value = {"type": "string", "pattern": temporal_pattern(rule)}
    else:
        value = {"type": "string", "minLength": rule.min_length, "maxLength": rule.max_length}
        if rule.pattern:
            value["pattern"] = rule.pattern  # anchored: an unanchored JSON Schema pattern matches any substring
    return value if rule.required else {"anyOf": [value, {"type": "null"}]}


def temporal_pattern(rule: ColumnRule) -> str:
    """Dates and datetimes as `records.rows_to_texts` writes them: a day within the learned ones
    (months listed with the days each has, the first and last months from the first and last
    learned day), real hours, minutes and seconds (on the first and last days, from the first and
    up to the last learned second, unless a time zone's offset may change), and a UTC offset only
    for time-zone-aware columns."""
    low, high = str(rule.minimum), str(rule.maximum)
    first, last = dt.date.fromisoformat(low[:10]), dt.date.fromisoformat(high[:10])
    offset = OFFSET if "tz=" in rule.arrow_type else ""
    n = FIELDS.get(rule.resolution, 3)  # clock fields left free; older schemas have no resolution
    tail = ":00" * (3 - n) + (FRACTION if rule.resolution in (None, "microsecond") else "")

    def clock(start: tuple[int, ...], end: tuple[int, ...]) -> str:
        return " " + _clock(start[:n], end[:n], LAST_SECOND[:n]) + tail

    any_time = clock((0, 0, 0), LAST_SECOND)
    if last.year - first.year >= MAX_LISTED_YEARS:
        date = f"[0-9]{{4}}-((01|03|05|07|08|10|12)-{DAYS[31]}|(04|06|09|11)-{DAYS[30]}|02-{DAYS[29]})"
        return f"^{date}$" if rule.kind == "date" else f"^{date}{any_time}{offset}$"
    if rule.kind == "date":
        return f"^{_days(first, last)}$"
    zone = re.search(r"tz=([^\]]+)", rule.arrow_type)
    if zone and zone.group(1) not in ("UTC", "+00:00"):  # a clock time's order may change with the offset
        return f"^{_days(first, last)}{any_time}{offset}$"
    start, end = _seconds(low), _seconds(high)
    if first == last:
        return f"^{first}{clock(start, end)}{offset}$"
    days = [f"{first}{clock(start, LAST_SECOND)}"]
    if (last - first).days > 1:
        days.append(_days(first + dt.timedelta(days=1), last - dt.timedelta(days=1)) + any_time)
    days.append(f"{last}{clock((0, 0, 0), end)}")
    return f"^({'|'.join(days)}){offset}$"


def _days(first: dt.date, last: dt.date) -> str:
    """The days from `first` to `last`: per year, months grouped by the days listed for them."""
    spans = []
    for year in range(first.year, last.year + 1):
        by_days: dict[str, list[str]] = {}
        for month in range(first.month if year == first.year else 1, (last.month if year == last.year else 12) + 1):
            length = calendar.monthrange(year, month)[1]
            span = (
                first.day if (year, month) == (first.year, first.month) else 1,
                last.day if (year, month) == (last.year, last.month) else length,
            )
            pattern = DAYS[length] if span == (1, length) else _listed(range(span[0], span[1] + 1))
            by_days.setdefault(pattern, []).append(f"{month:02d}")
        months = "|".join(f"({'|'.join(ms)})-{days}" for days, ms in by_days.items())
        spans.append(f"{year:04d}-({months})")
    return "(" + "|".join(spans) + ")"


def _seconds(stamp: str) -> tuple[int, int, int]:
    """(hour, minute, second) of an ISO `YYYY-MM-DD HH:MM:SS...` string."""
    return int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])


def _clock(low: tuple[int, ...], high: tuple[int, ...], top: tuple[int, ...]) -> str:
    """Clock fields (`HH:MM:SS`, or some of them) from `low` to `high`, both included, field by field;
    `top` holds each field's largest value."""
    if not low:
        return ""
    if low == (0,) * len(low) and high == top:
        return ":".join(ANY_FIELD[t] for t in top)
    rest = ":" if len(low) > 1 else ""
    if low[0] == high[0]:
        return f"{low[0]:02d}{rest}{_clock(low[1:], high[1:], top[1:])}"
    zero = (0,) * (len(low) - 1)
    parts = [f"{low[0]:02d}{rest}{_clock(low[1:], top[1:], top[1:])}"]
    if high[0] - low[0] > 1:
        parts.append(_listed(range(low[0] + 1, high[0])) + rest + _clock(zero, top[1:], top[1:]))
    parts.append(f"{high[0]:02d}{rest}{_clock(zero, high[1:], top[1:])}")
    return "(" + "|".join(parts) + ")"


def _listed(values: range) -> str:
    return "(" + "|".join(f"{v:02d}" for v in values) + ")"


def record_schema(schema: TableSchema) -> dict:
    return {
        "type": "object",
        "properties": {c.name: column_schema(c) for c in schema.columns},
        "required": schema.names,
        "additionalProperties": False,
        "x-guidance": COMPACT,
    }


def unit_grammar(schema: TableSchema, grouped: bool, max_records: int | None = None) -> str:
    """Lark grammar of one unit: a record line, or a group of 1..max_records record lines between marker lines."""
    record = "record: %json " + json.dumps(record_schema(schema), ensure_ascii=False)
    if grouped:
        repeat = f"{{1,{max_records}}}" if max_records else "+"
        return f'start: "{BEGIN}\\n" (record "\\n"){repeat} "{END}\\n"\n{record}\n'
    return f'start: record "\\n"\n{record}\n'


class Constraint:
    """One grammar matcher per batch row: checks sampled tokens, masks logits where one was refused.

    Sampling first and masking only the rows whose token the grammar refused draws from exactly the
    masked distribution (an allowed token t comes out with p(t) + (1 - Z) p(t) / Z = p(t) / Z, Z the
    allowed mass), and a well-trained model rarely needs the mask, which is the costly part. Under
    top-p a refused row's nucleus may hold no allowed token: that row draws from the nucleus of the
    allowed tokens instead.
    """

    def __init__(self, tokenizer, schema: TableSchema, grouped: bool, rows: int, max_records: int | None = None):
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        except ValueError as err:
            raise ConfigError(
                f"generation.use_structured_generation needs a fast (Rust) tokenizer: {err}; set it to false"
            ) from None
        self.grammar = llguidance.LLMatcher.grammar_from_lark(unit_grammar(schema, grouped, max_records))
        first = llguidance.LLMatcher(self.tokenizer, self.grammar, log_level=0)
        if first.is_error():
            raise ConfigError(f"the learned schema does not compile to a grammar: {first.get_error()}")
        self.matchers = [first] + [first.deep_copy() for _ in range(rows - 1)]
        self.executor = llguidance.LLExecutor()
        self.bits = llguidance.torch.allocate_token_bitmask(rows, self.tokenizer.vocab_size)
        self.shifts = torch.arange(32, dtype=torch.int32)

    def accept(self, tokens: list[int], rows: list[int]) -> list[int]:
        """Feed each row its sampled token where the grammar allows it; the rows whose token it refused.

        A refused row's matcher is left as it was, for `mask` and a second draw.
        """
        return [r for r in rows if self.matchers[r].try_consume_tokens([tokens[r]]) == 0]

    def mask(self, scores: torch.Tensor, rows: list[int]) -> None:
        """Set to -inf, in place, every token the grammar forbids next; row i of `scores` is `rows[i]`."""
        llguidance.torch.fill_next_token_bitmask_par(
            self.executor, [(self.matchers[r], i) for i, r in enumerate(rows)], self.bits
        )
        bits = self.bits[: len(rows)]
        allowed = ((bits[:, :, None] >> self.shifts) & 1).view(bits.shape[0], -1).bool()
        vocab = min(scores.shape[1], allowed.shape[1])
        scores[:, :vocab].masked_fill_(~allowed[:, :vocab].to(scores.device), float("-inf"))
        scores[:, vocab:] = float("-inf")

    def consume(self, tokens: list[int], rows: list[int]) -> None:
        """Feed rows tokens drawn under their mask (so allowed)."""
        self.executor.consume_token_par([(self.matchers[r], t) for r, t in zip(rows, tokens, strict=True)])

    def stopped(self, rows: list[int]) -> list[bool]:
        """Whether each row's unit is complete (the grammar admits nothing more)."""
        return [self.matchers[r].is_stopped() for r in rows]

    def rollback(self, row: int, tokens: int) -> None:
        """Undo the row's last `tokens` tokens."""
        self.matchers[row].rollback(tokens)

    def reset(self, rows: list[int]) -> None:
        for r in rows:
            self.matchers[r].reset()

    def keep(self, rows: list[int]) -> None:
        self.matchers = [self.matchers[r] for r in rows]
        self.bits = self.bits[: len(rows)].contiguous()
