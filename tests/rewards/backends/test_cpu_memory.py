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
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["done"] and got["again"]
    if got["threshold"] < 80_000_000:
        pytest.skip(f"this glibc caps the mmap threshold at {got['threshold']} bytes")
    pages = 5 * 80_000_000 // 4096  # every page of every round, with glibc's defaults
    assert got["default"] > pages // 2
    assert got["retained"] < pages // 50
