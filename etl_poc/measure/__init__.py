"""Measurement, in one place: resource sampling of process trees (usage.py, with
run_measured for a fresh process) and the figures of a layer's I/O (layer_io.py)."""

from etl_poc.measure.usage import run_measured

__all__ = ["run_measured"]
