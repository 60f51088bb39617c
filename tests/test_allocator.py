"""keep_freed_memory / release_freed_memory: page faults of a reallocated large block, in a fresh process."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

CHILD = """
import json, resource, sys
import torch
from derainzoo.allocator import keep_freed_memory, release_freed_memory

def faults_of_a_fresh_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(50_000_000, dtype=torch.float32)  # 200 MB, far above glibc's default mmap threshold
    block.fill_(1.0)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_fresh_block()
default = faults_of_a_fresh_block()
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
faults_of_a_fresh_block()
after = [faults_of_a_fresh_block() for _ in range(5)]
print(json.dumps({"default": default, "applied": applied, "after": after, "released": release_freed_memory()}))
"""


def run_child(mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_freed_large_blocks_are_reused_without_page_faults() -> None:
    pages = 200_000_000 // 4096
    untouched = run_child("default")
    # glibc's default: every large block is a fresh mmap, faulted in page by page.
    assert untouched["default"] > 0.5 * pages and min(untouched["after"]) > 0.5 * pages and not untouched["applied"]
    kept = run_child("keep")
    assert kept["applied"] and kept["default"] > 0.5 * pages
    # The block freed before is reused. Now and then one cycle is faulted in afresh (in about a
    # third of processes, one of the first cycles after the switch): most are not.
    assert statistics.median(kept["after"]) < 0.05 * pages
    assert kept["released"]  # and what was kept goes back to the kernel on request
