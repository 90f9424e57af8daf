"""`synth.yaml`: the declarative list of synthetic tables, validated before anything runs.

Errors name the spec file and line, the table and the key, so a typo is fixed where it was made.
The checks that need the live warehouse (tables, columns, SQL) live in `warehouse.sql_models`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synth_model.config import SynthConfig, describe_errors
from synth_model.errors import ConfigError, SynthError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CRON_PART = re.compile(r"^(\*|(\w+)(-(\w+))?)(/(\d+))?$")
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
CRON_FIELDS = [  # name, lowest, highest, names counted from the lowest value
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
]


class SpecError(SynthError):
    """synth.yaml (or a SQL file it names) cannot be used as written."""


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: code versions, model ids, config hashes."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_spec_path() -> Path:
    """`SYNTH_SPEC`, else `synth.yaml` at the repository root."""
    return Path(os.environ.get("SYNTH_SPEC") or Path(__file__).resolve().parent.parent / "synth.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Gates(_Strict):
    """Minimums a run must reach before its table is published."""

    min_valid_fraction: float = Field(0.9, ge=0, le=1, description="valid generated records / all generated")
    min_quality: float | None = Field(None, ge=0, le=10, description="overall quality score (0-10)")
    min_privacy: float | None = Field(None, ge=0, le=10, description="overall privacy score (0-10)")
    max_exact_copy_rate: float | None = Field(None, ge=0, le=1, description="synthetic rows equal to a training row")


class Evaluation(_Strict):
    """What the evaluation report needs beyond the data."""

    target: str | None = Field(None, description="column for the machine-learning utility test")
    quasi_identifiers: list[str] | None = Field(None, description="columns an attacker knows (default: chosen)")


class TableSpec(_Strict):
    name: str
    source: str = Field(description="the warehouse table the synthetic one stands in for: schema.table")
    description: str | None = None
    sql: str | None = Field(None, description="preparation model file under sql/")
    mapped_columns: list[list[str]] = []
    group_by: list[str] | None = None
    order_by: list[str] | None = None
    data: dict[str, Any] = {}
    replace_pii: dict[str, Any] = {}
    training: dict[str, Any] = {}
    privacy: dict[str, Any] = {}
    generation: dict[str, Any] = {}
    filters: list[str] = Field([], description="files under sql/filters/, each a condition rows must meet")
    gates: Gates = Gates()
    evaluation: Evaluation = Evaluation()
    schedule: str | None = Field(None, description="cron expression for scheduled refreshes")
    on_schema_change: Literal["publish", "fail"] = Field(
        "publish", description="when columns or types differ from the published table's: publish the change, or fail"
    )

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier (letters, digits, underscores)")
        return value

    @field_validator("source")
    @classmethod
    def _qualified(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise ValueError("must be schema.table, e.g. raw.flights")
        return value

    @field_validator("group_by", "order_by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("mapped_columns")
    @classmethod
    def _groups(cls, value: list[list[str]]) -> list[list[str]]:
        seen: set[str] = set()
        for group in value:
            if len(group) < 2:
                raise ValueError(f"each group needs at least two columns, got {group}")
            if seen & set(group):
                raise ValueError(f"column(s) {sorted(seen & set(group))} appear in more than one group")
            seen |= set(group)
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            fields = value.split()
            if len(fields) != 5:
                raise ValueError("must be a 5-field cron expression, e.g. '0 3 * * *'")
            for text, (name, low, high, names) in zip(fields, CRON_FIELDS, strict=True):
                if not all(_cron_part_ok(part, low, high, names) for part in text.split(",")):
                    raise ValueError(
                        f"cron field {name} '{text}' is not valid: use *, numbers {low}-{high}"
                        + (f" or names {names[0]}-{names[-1]}" if names else "")
                        + ", ranges a-b, lists a,b and steps */n"
                    )
        return value

    @model_validator(mode="after")
    def _grouping_in_one_place(self) -> TableSpec:
        for key in ("group_training_examples_by", "order_training_examples_by"):
            if key in self.data:
                short = "group_by" if key.startswith("group") else "order_by"
                raise ValueError(f"set the table's `{short}` instead of data.{key}")
        return self

    def engine_config(self) -> SynthConfig:
        data = {**self.data, "group_training_examples_by": self.group_by, "order_training_examples_by": self.order_by}
        sections = {"replace_pii": self.replace_pii, "training": self.training, "privacy": self.privacy}
        return SynthConfig.from_any({"data": data, **sections, "generation": self.generation})


class Spec(_Strict):
    tables: list[TableSpec]
    path: Path = Path("synth.yaml")
    lines: dict[str, dict[str, int]] = {}
    broken: dict[str, str] = {}  # table name -> its entry's mistake, when loaded with strict=False

    @property
    def root(self) -> Path:
        return self.path.parent

    def sql_path(self, name: str) -> Path:
        return self.root / "sql" / name

    def filter_path(self, name: str) -> Path:
        return self.root / "sql" / "filters" / name

    def where(self, table: str, key: str = "") -> str:
        """`synth.yaml:LINE` of a table's key (or of the table entry)."""
        lines = self.lines.get(table, {})
        return f"{self.path}:{lines.get(key) or lines.get('', '?')}"

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if table.name == name:
                return table
        raise SpecError(f"{self.path} has no table '{name}'; tables: {[t.name for t in self.tables]}")


def load_spec(path: str | Path | None = None, strict: bool = True) -> Spec:
    """Parse and validate `synth.yaml` (file-level checks only; see `sql_models.validate_spec`).

    With `strict=False` a named table whose entry is wrong goes to `Spec.broken` with its message,
    so one table's mistake does not stop the others; a file that cannot be read still raises.
    """
    path = Path(path) if path is not None else default_spec_path()
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist: create it or set SYNTH_SPEC to your spec's path")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
        lines = _table_lines(yaml.compose(text))
    except yaml.YAMLError as err:
        raise SpecError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), list) or not raw["tables"]:
        raise SpecError(f"{path}: expected a mapping with a non-empty `tables:` list")
    unknown = sorted(set(raw) - {"tables"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level key(s) {unknown}; the only key is `tables`")
    tables, table_lines, broken = [], {}, {}
    for index, entry in enumerate(raw["tables"]):
        name = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        line_of = lines[index] if index < len(lines) else {}
        try:
            table = TableSpec.model_validate(entry)
            table.engine_config()
        except (ValidationError, ConfigError) as err:
            problem = _entry_problem(err, path, name, line_of)
            if strict or not (isinstance(name, str) and IDENTIFIER.match(name)):
                raise problem from None
            broken[name] = str(problem)
            continue
        tables.append(table)
        table_lines[table.name] = line_of
    names = [n.lower() for n in [t.name for t in tables] + list(broken)]  # DuckDB names ignore case
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SpecError(
            f"{path}: table name(s) {duplicated} appear more than once (names ignore case, as DuckDB's do); "
            "names must be unique"
        )
    return Spec(tables=tables, path=path, lines=table_lines, broken=broken)


def _cron_part_ok(part: str, low: int, high: int, names: list[str]) -> bool:
    match = CRON_PART.match(part)
    if not match:
        return False
    numbers = []
    for value in (v for v in (match.group(2), match.group(4)) if v is not None):
        if value.upper() in names:
            numbers.append(low + names.index(value.upper()))
        elif value.isdigit():
            numbers.append(int(value))
        else:
            return False
    return all(low <= n <= high for n in numbers) and numbers == sorted(numbers) and match.group(6) != "0"


def _entry_problem(err: ValidationError | ConfigError, path: Path, name: str, line_of: dict[str, int]) -> SpecError:
    """The error of one table entry, at the line of the key it is about."""
    if isinstance(err, ConfigError):
        line = line_of.get(err.section or "") or line_of.get("")
        return SpecError(f"{path}:{line}: table '{name}': {err}")
    first = err.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    line = line_of.get(key) or line_of.get("")
    return SpecError(
        f"{path}:{line}: table '{name}': {describe_errors(err, noun='key', show_input=False, model=TableSpec)}"
    )


def _table_lines(root: yaml.Node | None) -> list[dict[str, int]]:
    """For each entry of `tables:`, the 1-based line of the entry ('') and of each of its keys."""
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "tables" and isinstance(value, yaml.SequenceNode):
            entries = []
            for item in value.value:
                keys = item.value if isinstance(item, yaml.MappingNode) else []
                entries.append({"": item.start_mark.line + 1} | {k.value: k.start_mark.line + 1 for k, _ in keys})
            return entries
    return []
