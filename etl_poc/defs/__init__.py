"""Dagster wiring only: resources, assets and jobs call into logic/, lakehouse/ and measure/."""
