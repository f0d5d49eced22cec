"""Spark's own stage times from the driver's status store: the stages of the actions since a
mark, their tasks, times, shuffle and input, and a summary that names the slowest."""

from __future__ import annotations

import pytest

from etl_poc.measure.spark_stages import stage_mark, stage_summary, stages_since


@pytest.mark.spark
def test_the_stages_since_a_mark_are_those_of_the_actions_run_since(spark, tmp_path):
    spark.range(1000).collect()  # a stage before the mark
    mark = stage_mark(spark)
    assert mark >= 0
    # A shuffle (two stages: map and reduce) and a Parquet scan.
    spark.range(200_000).selectExpr("id % 7 AS k").groupBy("k").count().collect()
    spark.range(1000).write.parquet(str(tmp_path / "p"))
    assert spark.read.parquet(str(tmp_path / "p")).count() == 1000
    stages = stages_since(spark, mark)
    assert stages
    assert all(s.stage_id > mark for s in stages)
    assert any(s.shuffle_write_bytes > 0 for s in stages)
    assert any(s.shuffle_read_bytes > 0 for s in stages)
    assert any(s.input_bytes > 0 for s in stages)
    assert all(s.seconds >= 0 and s.tasks > 0 for s in stages)
    summary = stage_summary(stages)
    assert summary["stages"] == len(stages)
    assert summary["tasks"] == sum(s.tasks for s in stages)
    assert summary["stage_seconds"] == pytest.approx(sum(s.seconds for s in stages), abs=1e-3)
    slowest = summary["slowest"]
    assert [s["seconds"] for s in slowest] == sorted((s["seconds"] for s in slowest), reverse=True)
    assert len(slowest) == min(3, len(stages))
    assert set(slowest[0]) >= {"stage_id", "name", "tasks", "seconds", "input_mib"}
    assert stages_since(spark, stage_mark(spark)) == []  # nothing ran since


def test_a_summary_of_no_stages_is_zero():
    summary = stage_summary([])
    assert summary["stages"] == 0
    assert summary["stage_seconds"] == 0
    assert summary["slowest"] == []
