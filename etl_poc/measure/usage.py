"""Resource usage of a process tree: the one place where the project measures itself.

A background thread samples, every `interval` seconds, the resident memory of a process and
of all its descendants (worker processes, a Spark JVM) with psutil, and keeps the peak of
their sum. Summed RSS counts memory shared between processes once per process, so the figure
is an upper bound; it never misses a child, which a process's own high-water mark would.
Sampling can miss a short spike, so each process's own high-water mark (VmHWM, kept by the
Linux kernel) is read too: their sum bounds the sampled peak from above (for a process that
lived before the sampling began, its mark may predate it).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Usage:
    wall_seconds: float
    cpu_seconds: float  # user + system while sampled, of the root and every descendant seen
    peak_rss_bytes: int  # peak of the tree's summed RSS, sampled
    samples: int
    high_water_bytes: int | None = None  # sum of each process's own peak RSS (Linux), if known

    @property
    def cpu_utilisation(self) -> float:
        """Mean number of cores busy over the wall time."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "cpu_utilisation": round(self.cpu_utilisation, 3)}


@dataclass
class _Phase:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_bytes: int = 0
    samples: int = 0
    high_water_bytes: int | None = None


class TreeSampler:
    """Samples a process tree until stopped; use as a context manager around the work.

    Work done in parts that take turns (a fused chain computing several layers a piece at a
    time) is told apart with `phase(name)`: each phase's wall and CPU time are summed over
    its turns, and its peak is the highest sample taken during them; `phase_usage(name)`."""

    def __init__(
        self, pid: int | None = None, interval: float = 0.05, exclude: tuple[str, ...] = ()
    ):
        """`exclude`: names of descendant processes not to count (a Polars step in a run
        that also holds a Spark JVM is not charged the JVM's memory and CPU)."""
        self.root = psutil.Process(pid or os.getpid())
        self.exclude = exclude
        self.interval = interval
        self.peak_rss = 0
        self.samples = 0
        self._cpu: dict[int, float] = {}  # last CPU time seen per process
        self._cpu_before: dict[int, float] = {}  # CPU time already spent when sampling began
        self._high_water: dict[int, int] = {}  # last VmHWM seen per process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-sampler", daemon=True)
        self._lock = threading.Lock()  # the sampling thread and a phase's edges both sample
        self._started = 0.0
        self._phases: dict[str, _Phase] = {}
        self._current: _Phase | None = None
        self.usage: Usage | None = None

    def _tree(self) -> list[psutil.Process]:
        try:
            children = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        if self.exclude:
            children = [c for c in children if not _named(c, self.exclude)]
        return [self.root, *children]

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        rss = 0
        for process in self._tree():
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    self._cpu[process.pid] = times.user + times.system
                high_water = _high_water_bytes(process.pid)
                if high_water is not None:
                    self._high_water[process.pid] = high_water
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended between listing and reading: its last CPU time is kept
        self.peak_rss = max(self.peak_rss, rss)
        self.samples += 1
        if self._current is not None:
            self._current.peak_rss_bytes = max(self._current.peak_rss_bytes, rss)
            self._current.samples += 1

    def _cpu_total(self) -> float:
        return sum(t - self._cpu_before.get(pid, 0.0) for pid, t in self._cpu.items())

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the work inside towards phase `name` (phases do not nest)."""
        with self._lock:
            if self._current is not None:
                raise RuntimeError(f"phase {name!r} inside another phase")
            self._current = self._phases.setdefault(name, _Phase())
            self._sample()
            began, cpu = time.perf_counter(), self._cpu_total()
        try:
            yield
        finally:
            with self._lock:
                self._sample()
                self._current.wall_seconds += time.perf_counter() - began
                self._current.cpu_seconds += self._cpu_total() - cpu
                # The kernel keeps one high-water mark per process, not per phase: the
                # tree's, as of the phase's end (an upper bound of the phase's own).
                if self._high_water:
                    self._current.high_water_bytes = sum(self._high_water.values())
                self._current = None

    def phase_usage(self, name: str) -> Usage:
        """What phase `name` took over all its turns (zeros if it never ran)."""
        measured = self._phases.get(name, _Phase())
        return Usage(
            wall_seconds=measured.wall_seconds,
            cpu_seconds=measured.cpu_seconds,
            peak_rss_bytes=measured.peak_rss_bytes,
            samples=measured.samples,
            high_water_bytes=measured.high_water_bytes,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._started = time.perf_counter()
        self.sample()
        self._cpu_before = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.usage = Usage(
            wall_seconds=time.perf_counter() - self._started,
            cpu_seconds=self._cpu_total(),
            peak_rss_bytes=self.peak_rss,
            samples=self.samples,
            high_water_bytes=sum(self._high_water.values()) if self._high_water else None,
        )


def _named(process: psutil.Process, names: tuple[str, ...]) -> bool:
    try:
        return process.name() in names
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _high_water_bytes(pid: int) -> int | None:
    """A process's peak resident memory as the kernel counts it (VmHWM), Linux only."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def host_facts() -> dict:
    """The machine a figure was measured on."""
    return {
        "cores": psutil.cpu_count(logical=True),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": os.uname().sysname + " " + os.uname().machine,
    }


def cpu_speed(repeat: int = 5) -> float:
    """One core's speed now, as SHA-256 megabytes per second (the best of `repeat` rounds of
    16 MB): on a shared VM the same code runs faster or slower from day to day, and figures
    measured on different days compare only through this."""
    import hashlib

    block = bytes(16 * 2**20)
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        hashlib.sha256(block).digest()
        best = min(best, time.perf_counter() - began)
    return 16 / best


def engine_versions(engine: str, spark=None) -> dict[str, str]:
    """The versions behind an engine's figures (Spark's: the JVM's, from its session)."""
    from importlib.metadata import version

    versions = {"python": platform.python_version(), "pyiceberg": version("pyiceberg")}
    if engine in ("polars", "duckdb"):  # DuckDB's lineage hands its results to Polars' writer
        versions["polars"] = version("polars")
    if engine == "duckdb":
        versions["duckdb"] = version("duckdb")
    elif engine == "spark":
        versions["pyspark"] = version("pyspark")
        if spark is not None:
            versions["spark"] = spark.version
            versions["java"] = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    return versions


def run_measured(
    command: list[str], env: dict | None = None, log: Path | None = None, interval: float = 0.1
) -> dict:
    """Run a command as a fresh process tree, sampled from outside while it runs (its
    children and a JVM included): its Usage as a dict, and its exit code. Output goes to
    `log` (appended), or nowhere."""
    import subprocess

    with log.open("ab") if log else open(os.devnull, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(process.pid, interval=interval) as sampler:
            code = process.wait()
    return {**sampler.usage.as_dict(), "exit_code": code}
