"""Freed tensors are reused instead of being faulted in again (glibc)."""

import platform
import resource

import pytest
import torch

from idfzip.allocator import reuse_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_large_tensor_is_reused_without_page_faults():
    assert reuse_freed_memory()
    size = 64 << 20  # bytes; by default glibc would mmap and munmap a block this large
    torch.ones(size // 4).sum()  # first use may fault the pages in
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        torch.ones(size // 4).sum()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < size // 4096 // 2  # without reuse: every 4 KiB page, three times
