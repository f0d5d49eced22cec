"""How the reports write figures: one formatter per unit."""

from __future__ import annotations

MIB, GIB = 2**20, 2**30  # bytes


def gib(value: float | None) -> str:
    """Bytes as GiB with two decimals; '-' for no figure."""
    return "-" if value is None else f"{value / GIB:.2f}"


def mib(value: int) -> float:
    """Bytes as MiB, two decimals, a number (metadata the UI can plot)."""
    return round(value / MIB, 2)


def size_text(value: int) -> str:
    """Bytes as MiB below a GiB, else GiB, with the unit."""
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / MIB:.1f} MiB"


def seconds(value: float | None) -> str:
    """Seconds with one decimal; '-' for no figure."""
    return "-" if value is None else f"{value:.1f}"


def ratio(value: float | None, base: float | None) -> str:
    """value / base with two decimals; '-' when either is missing."""
    return f"{value / base:.2f}" if value and base else "-"
