"""`python generator_encoder_thread.py inline|thread`: 10M events (Parquet) generated with each
row group encoded in the writing thread (`inline`) or by an encoder thread of its own
(`thread`, the variant measured in session 2 of issue 17, since reverted). `thread` needs that
variant of etl_poc/generate/landing.py (a `ThreadPoolExecutor` in `_FormatWriters`)."""

import shutil
import sys
from concurrent.futures import Future
from pathlib import Path

from etl_poc.generate import GeneratorConfig, generate, landing


class Inline:
    """An executor that runs each task where it is submitted."""

    def __init__(self, **_):
        pass

    def submit(self, task, *args):
        done = Future()
        done.set_result(task(*args))
        return done

    def shutdown(self):
        pass


def main() -> None:
    if sys.argv[1] == "inline":
        landing.ThreadPoolExecutor = Inline
    out = Path("/tmp/genab")
    shutil.rmtree(out, ignore_errors=True)
    config = GeneratorConfig(
        events=10_000_000, label="medium", out_dir=out, formats=("parquet",), progress=False
    )
    print(sys.argv[1], round(generate(config).seconds, 2))


if __name__ == "__main__":  # the generator's workers are spawned: they import this module
    main()
