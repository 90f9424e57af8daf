"""Text structure similarity for free-text columns: sentence count, words per sentence, characters
per word, compared by Jensen-Shannon distance on shared bins; score = 10 x (1 - mean distance).

A free-text column is a non-numeric column whose values mostly differ and contain spaces.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from synth_model.evaluate.distributions import js_distance
from synth_model.evaluate.encoding import is_numeric

SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
MIN_UNIQUE_SHARE = 0.5


def free_text_columns(real: pd.DataFrame) -> list[str]:
    out = []
    for name in real.columns:
        values = real[name].dropna()
        if is_numeric(real[name]) or not len(values) or not isinstance(values.iloc[0], str):
            continue
        if values.nunique() >= MIN_UNIQUE_SHARE * len(values) and values.str.contains(r"\s").mean() > 0.5:
            out.append(name)
    return out


def structure(texts: pd.Series) -> pd.DataFrame:
    """Per text: sentences, words per sentence, characters per word."""
    texts = texts.dropna().astype(str)
    sentences = texts.map(lambda t: max(1, len(SENTENCE_END.findall(t.strip() + " "))))
    words = texts.str.split().map(len).clip(lower=1)
    letters = texts.str.replace(r"\s", "", regex=True).str.len()
    return pd.DataFrame(
        {
            "sentences": sentences.to_numpy(),
            "words_per_sentence": (words / sentences).to_numpy(),
            "characters_per_word": (letters / words).to_numpy(),
        }
    )


def measure(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    columns = free_text_columns(real)
    if not columns:
        return {"score": None, "columns": [], "note": "no free-text columns"}
    per_column = {}
    for name in columns:
        r, s = structure(real[name]), structure(synthetic[name])
        per_column[name] = {stat: js_distance(r[stat], s[stat]) for stat in r.columns}
    mean = float(np.mean([d for stats in per_column.values() for d in stats.values()]))
    return {"score": 10 * (1 - mean), "columns": columns, "per_column": per_column}
