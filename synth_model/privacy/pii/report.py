"""The PII report: what detection found and what replacement will do, saved as pii_report.json with the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal["replace", "kept_as_key", "skipped", "forced"]


@dataclass(frozen=True)
class ColumnFinding:
    """A column whose values are, as a whole, one PII entity."""

    column: str
    entity: str
    share: float  # of the sampled distinct values that match the entity
    confidence: float  # share, with a name hint closing half the gap to 1
    hint: bool  # the column's name suggests the entity
    action: Action
    sampled: int  # distinct non-null values checked


@dataclass(frozen=True)
class TextFinding:
    """PII spans of one entity inside a free-text column."""

    column: str
    entity: str
    share: float  # of the sampled distinct values holding at least one span
    spans: int  # spans found in the sample
    sampled: int
    action: Literal["replace", "kept_as_key"]


@dataclass
class PiiReport:
    columns: list[ColumnFinding] = field(default_factory=list)
    text: list[TextFinding] = field(default_factory=list)
    locale: str = "en_US"  # whose name lists detection used; replacement and replay use the same

    @property
    def empty(self) -> bool:
        return not self.columns and not self.text

    @property
    def columns_replaced(self) -> set[str]:
        """Columns whose training values were replaced, whole or in spans (they differ from the real ones)."""
        whole = {f.column for f in self.columns if f.action in ("replace", "forced")}
        return whole | {f.column for f in self.text if f.action == "replace"}

    @property
    def columns_found(self) -> set[str]:
        """Columns in which detection found PII, whole values or spans, whatever was done with it."""
        return {f.column for f in self.columns} | {f.column for f in self.text}

    def to_dict(self) -> dict[str, Any]:
        return {
            "locale": self.locale,
            "columns": [asdict(f) for f in self.columns],
            "text": [asdict(f) for f in self.text],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PiiReport:
        return cls(
            columns=[ColumnFinding(**f) for f in data["columns"]],
            text=[TextFinding(**f) for f in data["text"]],
            locale=data["locale"],
        )
