"""Find PII offline: columns that are one entity as a whole, and PII spans inside free-text columns.

Each column is judged on a deterministic sample of its distinct values, so a wide table is scanned in well
under a second. Numeric and date columns are only looked at when their name hints at an entity (a zip code
stored as an integer, a date of birth), because digits alone say nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import pyarrow as pa

from synth_model.config import ReplacePiiConfig
from synth_model.errors import ConfigError, DataError
from synth_model.privacy.pii.hints import name_hints, rules_out_person
from synth_model.privacy.pii.names import NameLists, name_lists
from synth_model.privacy.pii.patterns import HINT_ONLY, SPAN_ENTITIES, find_spans, matches
from synth_model.privacy.pii.report import Action, ColumnFinding, PiiReport, TextFinding
from synth_model.privacy.pii.values import kind, sample_texts

SAMPLE_SIZE = 2000
# What an integer column can hold (its fakes stay all digits); a date column can only be a date of birth.
TYPED_ENTITIES = {
    "integer": frozenset({"phone", "credit_card", "ssn", "postcode"}),
    "temporal": frozenset({"date_of_birth"}),
}
# Tie-break between entities a column matches equally well: the one with the stricter validator first.
PRIORITY = (
    "credit_card",
    "iban",
    "ssn",
    "email",
    "ip_address",
    "phone",
    "date_of_birth",
    "postcode",
    "street_address",
    "person_name",
)


def detect(table: pa.Table, config: ReplacePiiConfig, keep: Sequence[str] = ()) -> PiiReport:
    """Report the PII columns and free-text spans of `table`, with what replacement will do to each.

    `keep` are the group/order key columns: detected and reported as "kept_as_key" unless
    `config.replace_keys`. `force_columns` are reported as "forced" (their share is measured for the forced
    entity) and win over `keep`. `skip_columns` are still scanned so the report shows PII left in on purpose:
    a skipped column is listed as "skipped" when it is a PII column as a whole; its text spans are not searched.
    `config.enabled` is the caller's switch: detection runs regardless.
    """
    _check_columns(table, config, keep)
    names = name_lists(config.locale)
    enabled = frozenset(config.entities)
    report = PiiReport(locale=config.locale)
    for column in table.column_names:
        column_kind = kind(table.schema.field(column).type)
        hints = name_hints(column)
        forced = config.force_columns.get(column)
        candidates = (forced,) if forced else _candidates(column, column_kind, hints, enabled)
        if not candidates:
            continue
        sample = sample_texts(table.column(column), SAMPLE_SIZE)
        if not sample:
            continue
        action = _action(column, config, keep)
        found = _best_entity(sample, candidates, hints, config.min_share, names, forced=forced is not None)
        if found is not None:
            entity, share, confidence = found
            report.columns.append(
                ColumnFinding(column, entity, share, confidence, entity in hints, action, len(sample))
            )
        elif column_kind == "text" and action != "skipped":
            text_action = "kept_as_key" if action == "kept_as_key" else "replace"
            report.text.extend(_text_findings(column, sample, enabled, names, text_action))
    return report


def _check_columns(table: pa.Table, config: ReplacePiiConfig, keep: Sequence[str]) -> None:
    available = table.column_names
    for option, listed in (
        ("replace_pii.force_columns", config.force_columns),
        ("replace_pii.skip_columns", config.skip_columns),
        ("the group/order key columns", keep),
    ):
        missing = [c for c in listed if c not in available]
        if missing:
            raise DataError(f"{option} names {missing}, not columns of the table; its columns are {available}")
    for column, entity in config.force_columns.items():
        column_kind = kind(table.schema.field(column).type)
        if column_kind is None or entity not in TYPED_ENTITIES.get(column_kind, {entity}):
            raise DataError(
                f"replace_pii.force_columns maps {column!r} ({table.schema.field(column).type}) to {entity}, which "
                "such a column cannot hold: force string columns, integer columns to phone, credit_card, ssn or "
                "postcode, and date columns to date_of_birth"
            )
    both = sorted(set(config.force_columns) & set(config.skip_columns))
    if both:
        raise ConfigError(
            f"{both} are in both replace_pii.force_columns and replace_pii.skip_columns: remove them from one"
        )


def _candidates(column: str, column_kind: str | None, hints: frozenset[str], enabled: frozenset[str]) -> list[str]:
    """Entities worth testing, in PRIORITY order: any for text (hint-only ones with their hint), only hinted ones
    of TYPED_ENTITIES for integer and date columns."""
    if column_kind == "text":
        pool = {e for e in enabled if e not in HINT_ONLY or e in hints}
        if rules_out_person(column):
            pool.discard("person_name")
    elif column_kind in TYPED_ENTITIES:
        pool = hints & enabled & TYPED_ENTITIES[column_kind]
    else:
        return []
    return [e for e in PRIORITY if e in pool]


def _best_entity(
    sample: list[str],
    candidates: Sequence[str],
    hints: frozenset[str],
    min_share: float,
    names: NameLists,
    *,
    forced: bool,
) -> tuple[str, float, float] | None:
    """(entity, share, confidence) of the most confident candidate whose share clears its bar (half the bar with a
    name hint); ties go to the earlier candidate. A forced entity is measured and returned whatever its share."""
    best = None
    for entity in candidates:
        hint = entity in hints
        share = sum(matches(entity, v, hint=hint, names=names) for v in sample) / len(sample)
        confidence = share + (1 - share) / 2 if hint else share
        if (forced or share >= (min_share / 2 if hint else min_share)) and (best is None or confidence > best[2]):
            best = (entity, share, confidence)
    return best and (best[0], round(best[1], 3), round(best[2], 3))


def _action(column: str, config: ReplacePiiConfig, keep: Sequence[str]) -> Action:
    if column in config.skip_columns:
        return "skipped"
    if column in config.force_columns:
        return "forced"
    return "kept_as_key" if column in keep and not config.replace_keys else "replace"


def _text_findings(
    column: str, sample: list[str], enabled: frozenset[str], names: NameLists, action: Literal["replace", "kept_as_key"]
) -> list[TextFinding]:
    entities = [e for e in SPAN_ENTITIES if e in enabled]
    holding: Counter[str] = Counter()
    spans: Counter[str] = Counter()
    for value in sample:
        found = [s.entity for s in find_spans(value, entities, names)]
        spans.update(found)
        holding.update(set(found))
    return [
        TextFinding(column, e, round(holding[e] / len(sample), 3), spans[e], len(sample), action)
        for e in entities
        if e in spans
    ]
