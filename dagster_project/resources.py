"""The warehouse resource: where the DuckDB file and the model folders live."""

import os
from pathlib import Path

import dagster as dg

from warehouse import Warehouse, default_path


class WarehouseResource(dg.ConfigurableResource):
    """A DuckDB warehouse file and the folder that keeps trained models (empty = the defaults)."""

    path: str = ""
    models_dir: str = ""

    def warehouse(self) -> Warehouse:
        return Warehouse(self.path or default_path())

    def models_root(self) -> Path:
        """`models_dir`, else `SYNTH_MODELS`, else a `models/` folder beside the warehouse file."""
        chosen = self.models_dir or os.environ.get("SYNTH_MODELS")
        return Path(chosen) if chosen else self.warehouse().path.parent / "models"

    def reports_root(self) -> Path:
        """Evaluation reports: a `reports/` folder beside the warehouse file."""
        return self.warehouse().path.parent / "reports"
