"""Everything that launches and times processes: the pipeline, engine and generator benchmarks, and the run without Dagster they measure (plain.py)."""
