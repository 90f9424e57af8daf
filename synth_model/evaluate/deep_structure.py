"""Deep structure stability: PCA fitted on the real rows, leading components compared.

Both tables are encoded the same way (fitted on real), projected on the real data's leading
principal components, and each component's distribution is compared by Jensen-Shannon distance on
shared bins. Score = 10 x (1 - mean distance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from synth_model.evaluate.distributions import js_distance
from synth_model.evaluate.encoding import Encoder

COMPONENTS = 5


def measure(real: pd.DataFrame, synthetic: pd.DataFrame, encoder: Encoder | None = None) -> dict:
    encoder = encoder or Encoder.fit(real)
    x_real, x_synth = encoder.transform(real), encoder.transform(synthetic)
    k = min(COMPONENTS, x_real.shape[1], len(x_real) - 1)
    if k < 1:
        return {"score": None, "note": "nothing to project"}
    pca = PCA(n_components=k, random_state=0).fit(x_real)
    p_real, p_synth = pca.transform(x_real), pca.transform(x_synth)
    distances = [js_distance(pd.Series(p_real[:, i]), pd.Series(p_synth[:, i])) for i in range(k)]
    return {
        "score": 10 * (1 - float(np.mean(distances))),
        "component_js_distance": distances,
        "explained_variance": pca.explained_variance_ratio_.round(4).tolist(),
        "projection": {"real": p_real[:, :2].round(3).tolist(), "synthetic": p_synth[:, :2].round(3).tolist()},
    }
