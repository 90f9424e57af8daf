"""Check one generated line against the learned rules; say why when it fails."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable

from synth_model.schema import RESOLUTIONS, ColumnRule, TableSchema

Check = Callable[[object], str | None]


def _number_check(rule: ColumnRule) -> Check:
    integer = rule.kind == "integer" or rule.decimals == 0

    def check(v: object) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "wrong_type"
        if integer and not float(v).is_integer():
            return "wrong_type"
        if rule.kind == "float" and rule.decimals and round(v, rule.decimals) != v:
            return "too_many_decimals"
        if not rule.minimum <= v <= rule.maximum:
            return "out_of_range"
        return None

    return check


def _temporal_check(rule: ColumnRule) -> Check:
    parse = dt.date.fromisoformat if rule.kind == "date" else dt.datetime.fromisoformat
    low, high = parse(rule.minimum), parse(rule.maximum)
    step = RESOLUTIONS.get(rule.resolution)  # seconds; None: any microsecond

    def check(v: object) -> str | None:
        if not isinstance(v, str):
            return "wrong_type"
        try:
            value = parse(v)
        except ValueError:
            return "bad_format"
        if rule.kind == "date" and len(v) != 10:
            return "bad_format"
        if step and (value.microsecond or (value.minute * 60 + value.second) % step):
            return "off_resolution"  # seconds in an hourly column, say
        try:
            return None if low <= value <= high else "out_of_range"
        except TypeError:  # naive vs aware datetimes
            return "bad_format"

    return check


def _string_check(rule: ColumnRule) -> Check:
    if rule.categories is not None:
        domain = set(rule.categories)
        kind = type(rule.categories[0]) if rule.categories else str  # str, or int for a Categorical of codes
        return lambda v: ("unknown_category" if v not in domain else None) if type(v) is kind else "wrong_type"
    pattern = re.compile(rule.pattern) if rule.pattern else None

    def check(v: object) -> str | None:
        if not isinstance(v, str):
            return "wrong_type"
        if not rule.min_length <= len(v) <= rule.max_length:
            return "bad_length"
        if pattern and not pattern.fullmatch(v):
            return "pattern_mismatch"
        return None

    return check


def _checker(rule: ColumnRule) -> Check:
    if rule.kind in ("integer", "float"):
        return _number_check(rule)
    if rule.kind in ("date", "datetime"):
        return _temporal_check(rule)
    if rule.kind == "boolean":
        return lambda v: None if isinstance(v, bool) else "wrong_type"
    return _string_check(rule)


class RecordValidator:
    """Parses a JSON line and applies each column's rule; returns (record, None) or (None, reason)."""

    def __init__(self, schema: TableSchema):
        self.names = schema.names
        self.name_set = set(self.names)
        self.required = {c.name for c in schema.columns if c.required}
        self.checks = {c.name: _checker(c) for c in schema.columns}

    def check(self, line: str) -> tuple[dict | None, str | None]:
        try:
            obj = json.loads(line)
        except ValueError:
            return None, "bad_json"
        if not isinstance(obj, dict):
            return None, "bad_json"
        if obj.keys() != self.name_set:
            return None, "missing_field" if self.name_set - obj.keys() else "unknown_field"
        for name in self.names:
            value = obj[name]
            if value is None:
                if name in self.required:
                    return None, "missing_value"
                continue
            reason = self.checks[name](value)
            if reason:
                return None, reason
        return obj, None
