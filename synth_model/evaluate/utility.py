"""Machine-learning utility: a gradient-boosted model trained on synthetic rows vs on real rows.

Both models predict the target column and are tested on the real holdout: accuracy and macro F1
for a categorical target, R^2 for a numeric one. The synthetic model's score close to the real
one's means the synthetic rows teach what the real ones do.
"""

from __future__ import annotations

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, r2_score

from synth_model.evaluate.encoding import Encoder, is_numeric

MAX_ROWS = 20_000


def _fit_score(train: pd.DataFrame, test: pd.DataFrame, target: str, encoder: Encoder, numeric: bool) -> dict:
    train = train[train[target].notna()].iloc[:MAX_ROWS]
    test = test[test[target].notna()]
    x_train, x_test = encoder.transform(train), encoder.transform(test)
    if numeric:
        model = HistGradientBoostingRegressor(random_state=0).fit(x_train, train[target].astype(float))
        return {"r2": float(r2_score(test[target].astype(float), model.predict(x_test)))}
    y_train, y_test = train[target].astype(str), test[target].astype(str)
    if y_train.nunique() < 2:
        return {"accuracy": float((y_test == y_train.iloc[0]).mean()), "macro_f1": 0.0}
    predicted = HistGradientBoostingClassifier(random_state=0).fit(x_train, y_train).predict(x_test)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
    }


def measure(training: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, target: str) -> dict:
    features = [c for c in training.columns if c != target]
    encoder = Encoder.fit(training[features])  # encodes the features only, never the target
    numeric = is_numeric(training[target]) and training[target].nunique() > 10
    real = _fit_score(training, holdout, target, encoder, numeric)
    synth = _fit_score(synthetic, holdout, target, encoder, numeric)
    metric = "r2" if numeric else "macro_f1"
    return {
        "target": target,
        "task": "regression" if numeric else "classification",
        "train_real": real,
        "train_synthetic": synth,
        "ratio": float(synth[metric] / real[metric]) if real[metric] > 0 else None,
    }
