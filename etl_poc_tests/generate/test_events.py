"""The event model's invariants: exact budgets, visit sizes, defects drawn at their rates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl_poc.generate.config import DefectRates, GeneratorConfig
from etl_poc.generate.events import (
    SESSION_GAP_MS,
    Defect,
    _return_gaps,
    _visit_sizes,
    allocate,
    plan_period,
)
from etl_poc.generate.population import build_catalog, build_pages, build_population
from etl_poc.reference.ip_ranges import load_packaged_ranges


@given(
    st.integers(0, 10**9),
    st.lists(st.floats(0.01, 100, allow_nan=False), min_size=1, max_size=40),
)
def test_allocate_splits_exactly_and_proportionally(total, weights):
    counts = allocate(total, np.array(weights))
    assert counts.sum() == total
    assert (counts >= 0).all()
    share = np.array(weights) / sum(weights) * total
    assert np.all(np.abs(counts - share) < 1.0 + 1e-6)


@given(st.integers(0, 50_000), st.integers(0, 2**32 - 1))
def test_visit_sizes_fill_the_budget_exactly(budget, seed):
    sizes = _visit_sizes(budget, np.random.default_rng(seed))
    assert sizes.sum() == budget
    assert (sizes >= 1).all()


def test_return_gaps_straddle_the_session_gap():
    gaps, kinds = _return_gaps(20_000, np.random.default_rng(1))
    assert (gaps[kinds == 0] < SESSION_GAP_MS).all()
    assert (gaps[kinds == 1] == SESSION_GAP_MS).all()
    assert (gaps[kinds == 2] > SESSION_GAP_MS).all()
    assert (gaps[kinds == 3] > SESSION_GAP_MS).all()
    assert np.bincount(kinds).tolist() == pytest.approx([7000, 3000, 7000, 3000], rel=0.08)


@pytest.fixture(scope="module")
def shop():
    population = build_population(2000, load_packaged_ranges(), np.random.default_rng(3))
    catalog = build_catalog(3, 33)
    return population, build_pages(catalog, 3), catalog


@pytest.mark.parametrize("budget", [0, 1, 3, 999, 50_000])
def test_a_period_holds_exactly_its_budget(shop, budget):
    population, pages, catalog = shop
    rows, stats, _ = plan_period(
        1_704_067_200_000, range(24), budget, population, pages, DefectRates(),
        np.random.default_rng(budget), catalog,
    )  # fmt: skip
    assert len(rows) == budget
    assert (rows.ts_ms >= 1_704_067_200_000).all()
    assert (rows.arrival_ms >= rows.ts_ms).all()
    assert stats.events_by_tier.sum() + (rows.defect == Defect.DUPLICATE).sum() == budget


def test_defects_are_drawn_at_their_rates(shop):
    population, pages, catalog = shop
    rates = DefectRates().scaled(20)  # about a third of the rows, to measure each kind well
    rows, *_ = plan_period(
        1_704_067_200_000, range(24), 200_000, population, pages, rates,
        np.random.default_rng(5), catalog,
    )  # fmt: skip
    counts = np.bincount(rows.defect, minlength=len(Defect))
    for kind in Defect:
        if kind in (Defect.CLEAN, Defect.DUPLICATE):
            continue
        expected = getattr(rates, kind.key) * (len(rows) - counts[Defect.DUPLICATE])
        assert counts[kind] == pytest.approx(expected, rel=0.1), kind.name
    assert counts[Defect.DUPLICATE] == pytest.approx(rates.duplicate * len(rows), rel=0.1)


def test_extreme_rates_still_give_exact_counts(shop):
    population, pages, catalog = shop
    rates = DefectRates().with_overrides({"duplicate": 0.9, "null_user_id": 0.4})
    rows, *_ = plan_period(
        1_704_067_200_000, range(24), 40, population, pages, rates, np.random.default_rng(2),
        catalog,
    )  # fmt: skip
    assert len(rows) == 40


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="formats"):
        GeneratorConfig(events=10, label="x", formats=("xml",))
    with pytest.raises(ValueError, match="defect rate"):
        GeneratorConfig(events=10, label="x", defects=DefectRates(duplicate=1.5))
    with pytest.raises(ValueError, match="unknown defect"):
        DefectRates().with_overrides({"typo": 0.1})
    with pytest.raises(ValueError, match="size"):
        GeneratorConfig.for_size("huge")
