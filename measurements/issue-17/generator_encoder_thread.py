import sys, time, shutil
from concurrent.futures import Future
from pathlib import Path
from etl_poc.generate import landing, GeneratorConfig, generate, SIZES
class Inline:
    def __init__(self, **_): pass
    def submit(self, task, *a):
        f = Future(); f.set_result(task(*a)); return f
    def shutdown(self): pass
def main():
  if sys.argv[1] == "inline":
    landing.ThreadPoolExecutor = Inline
  out = Path("/tmp/genab"); shutil.rmtree(out, ignore_errors=True)
  r = generate(GeneratorConfig(events=10_000_000, label="medium", out_dir=out, formats=("parquet",)))
  print(sys.argv[1], round(r.seconds, 2))

if __name__ == "__main__":
    main()
