"""The `benchmark` asset: the engines compared from what every layer's materializations
recorded in this Dagster instance (report/graph_benchmark.py aggregates)."""

import base64
import json

import dagster as dg
from pydantic import Field

from etl_poc.logic.spec import ENGINES, LAYER_NAMES
from etl_poc.measure.layer_io import LAYER_FIGURES
from etl_poc.report.charts import layers_png
from etl_poc.report.graph_benchmark import Measurement, compare, markdown
from etl_poc.report.units import size_text

from .assets import asset_key
from .metadata import FIGURES_ENTRY, OWNERS
from .resources import ReportsDirectory

BENCHMARK = dg.AssetKey("benchmark")
RECENT_MATERIALIZATIONS = 2000  # per asset: a single-run backfill records one per day


def _measurements(instance) -> list[Measurement]:
    found, jobs = [], {}
    for engine in ENGINES:
        for layer in LAYER_NAMES:
            records = instance.fetch_materializations(
                asset_key(engine, layer), limit=RECENT_MATERIALIZATIONS
            ).records
            seen = set()
            for record in records:
                if record.run_id in seen:
                    continue  # a range run records the same figures for each of its days
                seen.add(record.run_id)
                metadata = record.asset_materialization.metadata
                figures = metadata.get(FIGURES_ENTRY)
                if figures is None or not all(name in figures.value for name in LAYER_FIGURES):
                    continue  # recorded before these figures existed
                if record.run_id not in jobs:
                    run = instance.get_run_by_id(record.run_id)
                    jobs[record.run_id] = run.job_name if run else "?"
                session = metadata.get("spark_session_seconds")
                found.append(
                    Measurement(
                        engine=engine,
                        layer=layer,
                        run_id=record.run_id,
                        job=jobs[record.run_id],
                        window=metadata["window"].value,
                        timestamp=record.timestamp,
                        figures={name: figures.value[name] for name in LAYER_FIGURES},
                        spark_session_seconds=session.value if session else None,
                    )
                )
    return found


class BenchmarkConfig(dg.Config):
    window: str = Field(
        default="",
        description="The window to compare, as the layers' metadata writes it, e.g. "
        '"[2024-01-01, 2024-01-31)"; empty: the latest window every layer of every engine has.',
    )


@dg.asset(
    key=BENCHMARK,
    deps=[asset_key(engine, layer) for engine in ENGINES for layer in LAYER_NAMES],
    group_name="benchmark",
    kinds={"python"},
    owners=OWNERS,
    description="The engines (Polars, Spark, DuckDB) compared from the figures every layer's "
    "materializations recorded: per layer and in total, time (median, min-max over runs), each "
    "engine over Polars, start-up, peak memory (the JVM included), CPU. One window: the latest "
    "that every layer of every engine has; single-engine runs preferred. Written to reports/benchmark-graph.{md,json,png}.",
)
def benchmark(
    context: dg.AssetExecutionContext, config: BenchmarkConfig, reports: ReportsDirectory
):
    try:
        comparison = compare(_measurements(context.instance), config.window or None)
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    folder = reports.folder
    folder.mkdir(parents=True, exist_ok=True)
    chart = folder / "benchmark-graph.png"
    layers_png(comparison, chart)
    table = markdown(comparison)
    inline = base64.b64encode(chart.read_bytes()).decode()
    (folder / "benchmark-graph.md").write_text(
        "# The engines compared, from the asset graph\n\n" + markdown(comparison, chart.name) + "\n"
    )
    (folder / "benchmark-graph.json").write_text(json.dumps(comparison.as_dict(), indent=2))
    totals = comparison.totals
    return dg.MaterializeResult(
        metadata={
            "comparison": dg.MetadataValue.md(table),
            "chart": dg.MetadataValue.md(
                f"![the engines per layer](data:image/png;base64,{inline})\n\n"
                f"Also written to `{chart.resolve()}`."
            ),
            "window": comparison.window,
            **{f"{e}_seconds": round(totals[e]["seconds"], 3) for e in ENGINES},
            **{f"{e}_over_polars": round(comparison.ratio(None, e) or 0.0, 3) for e in ENGINES[1:]},
            "spark_session_seconds": round(totals["spark"]["spark_session_seconds"], 3),
            **{f"{e}_peak_rss": size_text(int(totals[e]["peak_rss_bytes"])) for e in ENGINES},
            "runs": dg.MetadataValue.json(comparison.runs),
            "sources": dg.MetadataValue.json(comparison.sources),
        }
    )
