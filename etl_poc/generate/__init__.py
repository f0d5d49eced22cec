"""The clickstream generator: realistic, dirty, reproducible landing files of known sizes."""

from etl_poc.generate.config import SIZES, DefectRates, GeneratorConfig

__all__ = ["SIZES", "DefectRates", "GenerationResult", "GeneratorConfig", "generate"]


def __getattr__(name: str):
    # Imported on first use: the worker processes that render periods import this package
    # too, and need neither Polars nor Faker.
    if name in ("generate", "GenerationResult"):
        from etl_poc.generate import landing

        return getattr(landing, name)
    raise AttributeError(name)
