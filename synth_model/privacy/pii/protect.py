"""The training split's PII pass: detect, replace, and say what was done (saved as pii_report.json)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from synth_model.config import ReplacePiiConfig
from synth_model.privacy.pii.detect import detect
from synth_model.privacy.pii.fake import PiiMapper
from synth_model.privacy.pii.replace import replace


def protect(
    table: pa.Table, config: ReplacePiiConfig, keep: Sequence[str] = (), mapper: PiiMapper | None = None
) -> tuple[pa.Table, dict[str, Any]]:
    """The table with detected PII replaced, and {"report": ..., "replaced": counts} ({} when disabled).

    Without a `mapper` the fakes are keyed by a fresh random secret that is never stored, so nobody can
    later test a guessed real value against the mapping; pass one mapper to keep several tables consistent.
    """
    if not config.enabled:
        return table, {}
    report = detect(table, config, keep)
    if not any(f.action in ("replace", "forced") for f in report.columns + report.text):
        return table, {"report": report.to_dict(), "replaced": {}}
    mapper = mapper or PiiMapper(secrets.token_bytes(32), config.locale)
    replaced, counts = replace(table, report, config, mapper=mapper)
    return replaced, {"report": report.to_dict(), "replaced": counts}
