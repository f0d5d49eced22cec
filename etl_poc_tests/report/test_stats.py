"""How sure a figure is: intervals on known data, a planted outlier, a planted regression."""

from __future__ import annotations

import pytest

from etl_poc.report.stats import median_interval, outliers, ratio_interval, regression


def test_the_median_interval_is_the_exact_order_statistic_one():
    # n = 11: x_(2) .. x_(10) covers the median with 1 - 2 * 12/2048; x_(3) .. x_(9) would
    # cover only 1 - 2 * 67/2048 = 93.5 %, short of 95 %.
    interval = median_interval([7, 1, 11, 3, 5, 9, 2, 10, 4, 8, 6])
    assert (interval["low"], interval["high"]) == (2, 10)
    assert interval["coverage"] == pytest.approx(1 - 2 * 12 / 2048)
    assert interval["method"] == "order statistics"


def test_too_few_runs_give_min_max_labelled_with_its_coverage():
    interval = median_interval([3.0, 1.0, 2.0])
    assert (interval["low"], interval["high"], interval["method"]) == (1.0, 3.0, "min-max")
    assert interval["coverage"] == pytest.approx(0.75)  # 1 - 2 * 0.5**3
    assert median_interval([5.0])["coverage"] == 0.0
    with pytest.raises(ValueError, match="no values"):
        median_interval([])


def test_a_ratio_interval_holds_the_ratio_of_medians():
    fast, slow = [1.0, 1.1, 0.9, 1.05, 0.95], [10.0, 10.5, 9.5, 10.2, 9.8]
    interval = ratio_interval(slow, fast)
    assert interval["ratio"] == pytest.approx(10.0)
    assert interval["low"] <= 10.0 <= interval["high"]
    assert interval["low"] > 8.5
    assert interval["high"] < 11.8
    assert interval["method"] == "bootstrap 95%"
    assert ratio_interval([2.0, 4.0], [1.0])["method"] == "min-max"


def test_a_planted_outlier_is_flagged_and_nothing_else():
    runs = [10.0, 10.2, 9.9, 10.1, 30.0, 10.05]
    assert outliers(runs) == [4]
    assert outliers([10.0, 10.2, 9.9, 10.1, 10.05]) == []
    assert outliers([5.0, 5.0, 5.0, 9.0]) == [3]  # MAD 0: any run off the median stands out


def test_a_planted_slowdown_is_a_regression_and_noise_is_not():
    baseline = [10.0, 10.1, 9.9, 10.2, 10.0, 9.95, 10.05]
    slower = regression(baseline, [12.0, 12.1, 11.9])
    assert slower["regressed"]
    assert slower["change"] == pytest.approx(0.2)
    assert slower["band"][1] >= 10.5  # at least the 5 % tolerance
    assert not regression(baseline, [10.05, 10.1, 9.95])["regressed"]
    assert not regression(baseline, [8.0, 8.1])["regressed"]  # faster is no regression
    # where lower is worse (events per second), a drop is the regression
    assert regression([100.0, 101.0, 99.0], [80.0, 81.0], higher_is_worse=False)["regressed"]
