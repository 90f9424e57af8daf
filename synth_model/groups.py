"""Grouped event records: one entity's records, in order, between begin/end marker lines.

Training text of a group is `<group>` + one JSON line per record + `</group>`. Generated sequences
are parsed back into groups, and a group is valid only when it is well formed, every record is
valid, its key is constant and its records follow the order columns. Relaxations (off by default)
accept unmarked runs, drop invalid records, unify the key or sort the records instead. Valid
groups get fresh key values in the real keys' format, never a real key.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from synth_model.config import GenerationConfig
from synth_model.errors import DataError
from synth_model.layouts import char_class
from synth_model.validate import RecordValidator

BEGIN, END = "<group>", "</group>"
MAX_MISSES = 1000  # collisions in a row with taken values after which a key format counts as exhausted
KEY_SHARE = 0.5  # a group column with at least this many distinct values per group identifies entities
SPARE_BUCKETS = 16  # hash values per real entity key (see `_hash_bits`)


def cap_groups(gids: np.ndarray, limit: int | None, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows to keep and their (possibly split) group ids, for rows already sorted in group order.

    `most_recent` keeps each group's last `limit` rows; `windows` splits a long group into
    consecutive windows of at most `limit` rows, each its own training group.
    """
    keep = np.ones(len(gids), dtype=bool)
    if limit is None:
        return keep, gids
    position = np.zeros(len(gids), dtype=np.int64)
    counts: Counter[int] = Counter()
    for i, gid in enumerate(gids.tolist()):
        position[i] = counts[gid]
        counts[gid] += 1
    size = np.array([counts[g] for g in gids.tolist()])
    if strategy == "most_recent":
        keep = position >= size - limit
        return keep, gids
    window = position // limit
    pairs = {pair: i for i, pair in enumerate(dict.fromkeys(zip(gids.tolist(), window.tolist(), strict=True)))}
    return keep, np.array([pairs[p] for p in zip(gids.tolist(), window.tolist(), strict=True)], dtype=np.int64)


# ------------------------------------------------------------------------------ fresh keys
POOLS = {"#9": "0123456789", "#A": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "#a": "abcdefghijklmnopqrstuvwxyz"}


def _template(value: str) -> tuple[str, ...]:
    """Per character: a class token (#9 digit, #A upper, #a lower) or the literal `=c`."""
    return tuple(map(char_class, value))


def _digest(value, salt: str, bits: int) -> str:
    """The first `bits` bits of a salted hash of `value`, in hex (no salt and 64 bits: the plain hash
    earlier model folders stored)."""
    whole = hashlib.blake2b(str(value).encode(), digest_size=8, key=bytes.fromhex(salt)).digest()
    return f"{int.from_bytes(whole) >> (64 - bits):0{(bits + 3) // 4}x}"


def _hash_bits(keys: int) -> int:
    """Bits that leave about `SPARE_BUCKETS` hash values per real key: a new key lands on a real key's
    hash (and is drawn again) about 1 time in that many, and each stored hash fits the key space's
    size / (real keys x that many) possible keys (62,500 for 1,000 SSNs), so it does not name its key."""
    return min(64, max(16, math.ceil(math.log2(max(keys, 1) * SPARE_BUCKETS))))


@dataclass
class KeyFactory:
    """Makes new values for an entity key column in the real values' format.

    Stores each format (character classes per position, with positions that never vary kept
    literally, like the `N` of a tail number) and short salted hashes of the real values (held-out
    ones included), never the values: a hash cut to `bits` bits fits many possible keys, so trying
    candidate keys against it cannot single out a real one (in a key space not much larger than the
    real keys, as ids 1-90, nothing could).
    """

    column: str
    kind: str  # "string" or "integer"
    formats: list[tuple] = field(default_factory=list)  # (tokens, count), or (digits, count) for integers
    real_hashes: set[str] = field(default_factory=set)
    salt: str = ""  # hex; "" and 64 bits: the unsalted whole hashes of earlier model folders
    bits: int = 64

    @classmethod
    def learn(cls, column: str, values: list, held_out: list = ()) -> KeyFactory:
        """From the training rows' `values`; `held_out` keys are only kept out of the new ones."""
        values = [v for v in values if v is not None]
        real = {v for v in [*values, *held_out] if v is not None}
        # the salt (stored beside the hashes) only keeps hashes from matching across tables and
        # models; made from all the keys, the same data gives the same factory
        salt = hashlib.blake2b("\x1f".join(sorted(map(str, real))).encode(), digest_size=16).hexdigest()
        bits = _hash_bits(len(real))
        hashes = {_digest(v, salt, bits) for v in real}
        if all(isinstance(v, int) for v in values):
            counts = Counter(len(str(abs(v))) for v in values)
            return cls(column, "integer", sorted((str(k), n) for k, n in counts.items()), hashes, salt, bits)
        by_template: dict[tuple, list[str]] = {}
        for v in map(str, values):
            by_template.setdefault(_template(v), []).append(v)
        formats = []
        for template, members in by_template.items():
            fixed = [
                "=" + members[0][i] if len(members) > 1 and len({m[i] for m in members}) == 1 else t
                for i, t in enumerate(template)
            ]
            formats.append(("".join(fixed), fixed, len(members)))
        formats = [(tokens, n) for _, tokens, n in sorted(formats)]
        return cls(column, "string", sorted(formats), hashes, salt, bits)

    def make(self, n: int, rng: random.Random) -> list:
        """`n` distinct new values, none equal to a real one; a format that keeps colliding (nearly
        all its values are taken) is dropped while others remain, and the last one is widened by a
        digit (ids 1-40 leave room for only 59 more of up to two digits)."""
        shapes, weights = (list(x) for x in zip(*self.formats, strict=True))
        misses = [0] * len(shapes)
        out: list = []
        used: set = set()
        while len(out) < n:
            index = rng.choices(range(len(shapes)), weights)[0]
            value = self._fill(shapes[index], rng)
            if _digest(value, self.salt, self.bits) not in self.real_hashes and value not in used:
                used.add(value)
                out.append(value)
                misses[index] = 0
                continue
            misses[index] += 1
            if misses[index] > MAX_MISSES:
                if len(shapes) == 1:
                    shapes[0], misses[0] = self._wider(shapes[0]), 0
                    continue
                for seq in (shapes, weights, misses):
                    del seq[index]
        return out

    def _wider(self, shape):
        return str(int(shape) + 1) if self.kind == "integer" else [*shape, "#9"]

    def _fill(self, shape: str, rng: random.Random):
        if self.kind == "integer":
            digits = int(shape)
            return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)
        return "".join(rng.choice(POOLS[t]) if t in POOLS else t[1:] for t in shape)

    def dump(self) -> dict:
        return {
            "column": self.column,
            "kind": self.kind,
            "formats": self.formats,
            "real_hashes": sorted(self.real_hashes),
            "salt": self.salt,
            "bits": self.bits,
        }

    @classmethod
    def from_dict(cls, data: dict) -> KeyFactory:
        formats = [(tokens if data["kind"] == "string" else str(tokens), n) for tokens, n in data["formats"]]
        return cls(
            data["column"], data["kind"], formats, set(data["real_hashes"]), data.get("salt", ""), data.get("bits", 64)
        )


def learn_keys(table: pa.Table, group_by: list[str], n_groups: int, holdout: pa.Table) -> list[KeyFactory]:
    """Factories for the group columns that identify entities (not, say, a region shared by many);
    the `holdout`'s keys are real too, so new keys avoid them as well."""
    factories = []
    for name in group_by:
        column = table.column(name)
        values = column.unique().to_pylist()
        if len(values) < KEY_SHARE * n_groups:
            continue
        if not (pa.types.is_string(column.type) or pa.types.is_integer(column.type)):
            raise DataError(
                f"group column '{name}' ({column.type}) identifies entities ({len(values)} distinct values for "
                f"{n_groups} groups), but fresh keys can only be made for text or whole-number columns, so the "
                f"model would write real keys: cast it in the preparation SQL (CAST({name} AS VARCHAR), or AS "
                "BIGINT when its values are whole) or group by the entity's id column"
            )
        factories.append(KeyFactory.learn(name, values, holdout.column(name).unique().to_pylist()))
    return factories


def save_keys(factories: list[KeyFactory], path: Path) -> None:
    path.write_text(json.dumps([f.dump() for f in factories]))


def load_keys(path: Path) -> list[KeyFactory]:
    return [KeyFactory.from_dict(d) for d in json.loads(path.read_text())] if path.is_file() else []


# --------------------------------------------------------------------------- validation
@dataclass
class GroupRules:
    """What a generated group must satisfy (and which relaxations apply).

    `group_by` holds the modelled group columns, which must be constant within a group; entity
    keys are not modelled (they are made afresh per group) so they cannot drift.
    """

    group_by: list[str]
    order_by: list[str]
    accept_no_delineator: bool = False
    ignore_invalid_records: bool = False
    fix_non_unique_value: bool = False
    fix_unordered_records: bool = False

    @classmethod
    def of(cls, group_by: list[str], order_by: list[str] | None, keys: list[KeyFactory], cfg: GenerationConfig):
        made = {k.column for k in keys}
        return cls(
            [c for c in group_by if c not in made],
            order_by or [],
            cfg.group_by_accept_no_delineator,
            cfg.group_by_ignore_invalid_records,
            cfg.group_by_fix_non_unique_value,
            cfg.group_by_fix_unordered_records,
        )


def split_groups(lines: list[str], ended: bool, accept_no_delineator: bool) -> tuple[list[list[str]], Counter]:
    """Marked groups from one sequence's lines; problems counted by reason.

    A group still open when the sequence was cut off is `truncated`, not invalid.
    """
    groups: list[list[str]] = []
    problems: Counter[str] = Counter()
    current: list[str] | None = None
    loose: list[str] = []
    for line in lines:
        text = line.strip()
        if text == BEGIN:
            if current is not None:
                problems["unterminated_group"] += 1
            current = []
        elif text == END:
            if current is None:
                problems["no_delineator"] += 1
            else:
                groups.append(current)
                current = None
        elif current is not None:
            current.append(line)
        else:
            loose.append(line)
    if current is not None:
        problems["truncated" if not ended else "unterminated_group"] += 1
    if loose:
        if accept_no_delineator:
            groups.append(loose)
        else:
            problems["no_delineator"] += 1
    return groups, problems


def _sort_key(record: dict, order_by: list[str]) -> tuple:
    """NULLs after every value, as training sorted them (Arrow's default)."""
    return tuple((record[c] is None, record[c]) for c in order_by)


def _ordered(records: list[dict], order_by: list[str]) -> bool:
    for a, b in zip(records, records[1:], strict=False):
        ka, kb = _sort_key(a, order_by), _sort_key(b, order_by)
        try:
            if ka > kb:
                return False
        except TypeError:
            return False
    return True


def _group_key(record: dict, rules: GroupRules) -> tuple:
    return tuple(record[c] for c in rules.group_by)


def check_group(
    lines: list[str], validator: RecordValidator, rules: GroupRules
) -> tuple[list[dict] | None, str | None, Counter]:
    """(records, None, record reasons) for a valid group, or (None, reason, record reasons)."""
    records, reasons = [], Counter()
    for line in lines:
        record, reason = validator.check(line)
        if record is None:
            reasons[reason] += 1
            if not rules.ignore_invalid_records:
                return None, "invalid_record", reasons
        else:
            records.append(record)
    if not records:
        return None, "empty_group", reasons
    keys = {_group_key(r, rules) for r in records}
    if len(keys) > 1:
        if not rules.fix_non_unique_value:
            return None, "non_unique_key", reasons
        first = {c: records[0][c] for c in rules.group_by}
        records = [r | first for r in records]
    if rules.order_by and not _ordered(records, rules.order_by):
        if not rules.fix_unordered_records:
            return None, "unordered_records", reasons
        try:
            records = sorted(records, key=lambda r: _sort_key(r, rules.order_by))
        except TypeError:
            return None, "unordered_records", reasons
    return records, None, reasons


class GroupGuard:
    """Checks each record line of the groups being sampled: its order columns as soon as they are
    written (`in_order`), the whole line when its newline is drawn (`admit`).

    A line that would sink its group in `check_group` (an invalid record, a group column that
    changes, a record out of order), unless a relaxation lets the group through, is refused, and
    the sampler draws that record again (see generate.LineChecks): the group keeps the records
    before it instead of being lost whole. Without this, groups with more records are the ones
    more often out of order somewhere, so rejecting them would leave the groups too short.
    One state per batch row: the group's key and its last record.
    """

    def __init__(self, validator: RecordValidator, rules: GroupRules, rows: int):
        self.validator, self.rules = validator, rules
        self.keys: list[tuple | None] = [None] * rows
        self.last: list[dict | None] = [None] * rows
        # the key that follows the last order column in a record line: once it is written, the order
        # columns are (see `in_order`); none when nothing follows them or order is not checked
        names = validator.names
        last_order = max((names.index(c) for c in rules.order_by if c in names), default=len(names) - 1)
        checked = rules.order_by and not rules.fix_unordered_records and last_order < len(names) - 1
        self.after_order = "," + json.dumps(names[last_order + 1], ensure_ascii=False) + ":" if checked else None

    def in_order(self, row: int, text: str) -> bool | None:
        """On a record line still being written: None until its order columns are complete, then
        whether they follow the row's last record (the whole line is checked again by `admit`)."""
        if self.after_order is None or self.last[row] is None:
            return True
        cut = text.find(self.after_order)
        if cut < 0:
            return None
        try:
            head = json.loads(text[:cut] + "}")
        except ValueError:
            return True  # left to `admit`
        return _ordered([self.last[row], head], self.rules.order_by)

    def admit(self, row: int, line: str) -> bool:
        """Whether `line`, just completed in batch row `row`, may stay (its record becomes the row's last)."""
        text = line.strip()
        if text in (BEGIN, END) or not text:
            return True
        record, _ = self.validator.check(line)
        if record is None:
            return self.rules.ignore_invalid_records
        rules, key, last = self.rules, _group_key(record, self.rules), self.last[row]
        if last is None:
            self.keys[row] = key
        else:
            order = [] if rules.fix_unordered_records else rules.order_by
            if (key != self.keys[row] and not rules.fix_non_unique_value) or not _ordered([last, record], order):
                return False
        self.last[row] = record
        return True

    def reset(self, rows: list[int]) -> None:
        for r in rows:
            self.keys[r] = self.last[r] = None

    def keep(self, rows: list[int]) -> None:
        self.keys = [self.keys[r] for r in rows]
        self.last = [self.last[r] for r in rows]


def pick_groups(groups: list[list[dict]], target: int, rng: random.Random) -> list[list[dict]]:
    """Whole groups in random order until they hold `target` records (all of them when they hold fewer).

    The sampler starts groups by an estimate and finishes every group it started, so it ends with
    more records than asked for. A random pick, not the first to finish (the short ones), keeps
    the group lengths' distribution; the result passes the target by less than one group.
    """
    picked, count = [], 0
    for group in rng.sample(groups, len(groups)):
        if count >= target:
            break
        picked.append(group)
        count += len(group)
    return picked


def assign_keys(groups: list[list[dict]], factories: list[KeyFactory], rng: random.Random) -> None:
    """Give each group fresh key values (in place), the same for all of its records."""
    for factory in factories:
        for group, value in zip(groups, factory.make(len(groups), rng), strict=True):
            for record in group:
                record[factory.column] = value
