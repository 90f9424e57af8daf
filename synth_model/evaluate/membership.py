"""Membership inference protection: can an attacker tell training rows from unseen ones?

The attacker holds a set of real rows, a share of them training members and the rest holdout
rows, and calls a row a member when its nearest synthetic row is closer than a threshold. Over
member shares (10%, 50%, 90%) and thresholds (distance quantiles flagging at least 30 rows), the
attack's advantage is its precision above the member share, scaled to [0, 1]; accuracy is reported
too. Score = 10 x (1 - mean advantage over the thresholds and shares that flag enough rows): 10 = no
better than guessing; no score where none does (a small holdout).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_model.evaluate.copies import nearest_distances
from synth_model.evaluate.encoding import Encoder

SHARES = (0.1, 0.5, 0.9)
QUANTILES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5)
MIN_SUPPORT = 30  # thresholds that flag fewer rows than this say more about chance than about leakage


def measure(training: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, encoder: Encoder) -> dict:
    rng = np.random.default_rng(0)
    x_synth = encoder.transform(synthetic)
    d_members = nearest_distances(x_synth, encoder.transform(training))
    d_others = nearest_distances(x_synth, encoder.transform(holdout))
    attacks, advantages = [], []
    for share in SHARES:
        # as many rows as the smaller pool allows at this member share
        n_others = min(len(d_others), int(len(d_members) * (1 - share) / share))
        n_members = min(len(d_members), max(1, round(n_others * share / (1 - share))))
        members = rng.choice(d_members, n_members, replace=False)
        others = rng.choice(d_others, n_others, replace=False)
        distances = np.concatenate([members, others])
        truth = np.concatenate([np.ones(len(members)), np.zeros(len(others))])
        base = truth.mean()
        gains = []
        for q in QUANTILES:
            predicted = distances <= np.quantile(distances, q)
            if predicted.sum() < MIN_SUPPORT:
                continue
            precision = float(truth[predicted].mean())
            accuracy = float((predicted == truth.astype(bool)).mean())
            gains.append(max(0.0, (precision - base) / (1 - base)))
            attack = {"member_share": round(base, 3), "quantile": q, "precision": precision, "accuracy": accuracy}
            attacks.append(attack)
        if gains:
            advantages.append(float(np.mean(gains)))
    if not advantages:  # an attack no threshold supports measures nothing: no score, not a perfect one
        return {
            "score": None,
            "attacks": [],
            "note": f"too few holdout rows: no threshold flags {MIN_SUPPORT} rows; hold out more rows (data.holdout)",
        }
    mean = float(np.mean(advantages))
    return {"score": 10 * (1 - mean), "mean_advantage": mean, "attacks": attacks}
