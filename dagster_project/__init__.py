"""Dagster definitions built from synth.yaml: thin assets over `warehouse.pipeline` and `synth_model`."""
