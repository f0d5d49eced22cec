"""The clickstream generator: realistic, dirty, reproducible landing files of known sizes."""

from etl_poc.generate.config import SIZES, DefectRates, GeneratorConfig
from etl_poc.generate.landing import GenerationResult, generate

__all__ = ["SIZES", "DefectRates", "GenerationResult", "GeneratorConfig", "generate"]
