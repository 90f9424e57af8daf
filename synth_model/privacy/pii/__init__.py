"""PII: detect it in a table, replace it with consistent keyed fakes before training, measure its replay after.

report = detect(table, config.replace_pii, keep=group_and_order_keys)   # save report.to_dict() as pii_report.json
table, counts = replace(table, report, config.replace_pii, secret)      # or mapper=PiiMapper(secret, locale)
metrics = replay(real_training_rows, synthetic, report)
table, summary = protect(table, config.replace_pii, keep)               # detect + replace, as fit() does
"""

from synth_model.privacy.pii.detect import detect
from synth_model.privacy.pii.fake import PiiMapper
from synth_model.privacy.pii.patterns import find_spans, iban_ok, luhn_ok, ssn_ok
from synth_model.privacy.pii.protect import protect
from synth_model.privacy.pii.replace import replace
from synth_model.privacy.pii.replay import replay
from synth_model.privacy.pii.report import ColumnFinding, PiiReport, TextFinding

__all__ = [
    "ColumnFinding",
    "PiiMapper",
    "PiiReport",
    "TextFinding",
    "detect",
    "find_spans",
    "iban_ok",
    "luhn_ok",
    "protect",
    "replace",
    "replay",
    "ssn_ok",
]
