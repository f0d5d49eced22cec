"""The cost model: the price table, cost per run and per million events, the crossover."""

from __future__ import annotations

import pytest

from etl_poc.report.cost import (
    BILLING_MINIMUM_SECONDS,
    Deployment,
    Instance,
    cost_per_million_events,
    crossover,
    load_prices,
    run_cost,
)

NODE = Instance("x.large", 2, 16, 0.36, "memory-optimized", "test", "2024-06")


def test_the_shipped_price_table_names_its_source_and_date():
    prices = load_prices()
    assert {"r6i.large", "r6i.4xlarge", "m6i.xlarge"} <= set(prices)
    for instance in prices.values():
        assert instance.usd_per_hour > 0
        assert instance.vcpu >= 2
        assert instance.source
        assert instance.as_of
    # Memory-optimized: 8 GiB per vCPU; price grows with size.
    big, small = prices["r6i.4xlarge"], prices["r6i.large"]
    assert big.memory_gib / big.vcpu == 8
    assert big.usd_per_hour == pytest.approx(8 * small.usd_per_hour)


def test_a_run_pays_every_node_from_start_up_with_a_billing_minimum():
    one, three = Deployment(NODE), Deployment(NODE, nodes=3)
    assert run_cost(one, 3600) == pytest.approx(0.36)
    assert run_cost(three, 1800, startup_seconds=1800) == pytest.approx(3 * 0.36)
    assert run_cost(one, 1) == pytest.approx(BILLING_MINIMUM_SECONDS * 0.36 / 3600)
    assert three.label == "3 x x.large"
    assert three.vcpu == 6
    assert three.memory_gib == 48
    with pytest.raises(ValueError, match="negative"):
        run_cost(one, -1)


def test_cost_per_million_events():
    assert cost_per_million_events(0.5, 10_000_000) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="positive"):
        cost_per_million_events(1.0, 0)


def test_the_crossover_is_interpolated_or_absent():
    sizes = [10, 100, 1000]
    single = [1.0, 10.0, 100.0]
    cluster = [5.0, 12.0, 60.0]
    # The gap goes from +2 at 100 to -40 at 1000: crossing 2/42 of the way.
    assert crossover(sizes, single, cluster) == pytest.approx(100 + 900 * 2 / 42)
    assert crossover(sizes, single, [6.0, 20.0, 200.0]) is None
    assert crossover(sizes, single, [0.5, 1.0, 2.0]) == 10
    with pytest.raises(ValueError, match="same"):
        crossover(sizes, single, [1.0])
