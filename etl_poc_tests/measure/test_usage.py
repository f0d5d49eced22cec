"""The sampler sees the memory and CPU of child processes, not just its own."""

from __future__ import annotations

import subprocess
import sys

import psutil

from etl_poc.measure.usage import TreeSampler, host_facts

ALLOCATE_AND_SPIN = """
import time
block = bytearray(300 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
time.sleep(0.3)
"""


def test_sampler_sees_a_child_process_memory_and_cpu():
    with TreeSampler(interval=0.02) as sampler:
        subprocess.run([sys.executable, "-c", ALLOCATE_AND_SPIN], check=True)
    usage = sampler.usage
    assert usage.peak_rss_bytes > 300 * 1024 * 1024
    # The processes' own high-water marks bound the sampled peak from above (the kernel's two
    # RSS counters, statm and status, differ by a few pages).
    assert usage.high_water_bytes >= 0.98 * usage.peak_rss_bytes
    assert usage.cpu_seconds >= 0.3
    assert usage.samples > 5
    assert 0 < usage.cpu_utilisation <= host_facts()["cores"] + 0.5


def test_sampler_of_another_process_tree():
    child = subprocess.Popen([sys.executable, "-c", ALLOCATE_AND_SPIN])
    with TreeSampler(child.pid, interval=0.02) as sampler:
        child.wait()
    assert sampler.usage.peak_rss_bytes > 300 * 1024 * 1024


def test_excluded_processes_are_not_counted():
    """A parent whose child allocates 300 MB: with the child's name excluded, only the
    (small) parent counts."""
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {ALLOCATE_AND_SPIN!r}])"
    parent = subprocess.Popen([sys.executable, "-c", spawn])
    name = psutil.Process(parent.pid).name()
    with TreeSampler(parent.pid, interval=0.02, exclude=(name,)) as sampler:
        parent.wait()
    assert 0 < sampler.usage.peak_rss_bytes < 200 * 1024 * 1024


def test_cpu_speed_is_a_plausible_rate():
    from etl_poc.measure.usage import cpu_speed

    speed = cpu_speed(repeat=3)
    assert 10 < speed < 100_000  # MB/s of SHA-256 on one core: any real CPU is in this range
