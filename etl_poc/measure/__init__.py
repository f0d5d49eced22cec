"""Measurement: one sampler of resource usage, used by every benchmark and (later) every asset."""
