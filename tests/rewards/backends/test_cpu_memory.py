"""retain_cpu_memory: large CPU tensors stop page-faulting afresh on every allocation."""

import json
import platform
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, torch
from habitat_eqarm.rewards.backends import cpu_memory
from habitat_eqarm.rewards.backends.cpu_memory import retain_cpu_memory

def faults(rounds=5):  # minor page faults of rounds of a fresh 80 MB tensor, written, freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        t = torch.empty(20_000_000)
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
done = retain_cpu_memory()
faults(10)  # the heap grows until freed chunks coalesce and are reused
print(json.dumps({"default": default, "retained": faults(), "done": done,
                  "again": retain_cpu_memory(), "threshold": cpu_memory.applied_threshold}))
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_large_allocations_reuse_the_heap():
    # The page counts have a wide margin (quiet runs: 97,690 faults by default against 97,656
    # pages, 0 retained), so what can fail on a loaded machine is the child's time: it imports
    # torch. It failed once on a 2-core machine shared with 8 other jobs under a 120 s limit;
    # the limit is now the suite's own (600 s) less a margin.
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=480
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["done"] and got["again"]
    if got["threshold"] < 80_000_000:
        pytest.skip(f"this glibc caps the mmap threshold at {got['threshold']} bytes")
    pages = 5 * 80_000_000 // 4096  # every page of every round, with glibc's defaults
    assert got["default"] > pages // 2
    assert got["retained"] < pages // 50
