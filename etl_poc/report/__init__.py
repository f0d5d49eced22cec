"""Benchmarks and reports built from measured figures."""
