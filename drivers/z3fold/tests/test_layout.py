"""DRV-3F1: geometry, the three buddies after a header, HEADLESS pages; packaging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mmplug
from mmplug.compaction import compact_memory
from mmplug.kernel import has_movable_tag
from mmplug_z3fold import flags as zf
from mmplug_z3fold.flags import PAGE_HEADLESS, Buddy
from mmplug_z3fold.geometry import Geometry
from mmplug_z3fold.handles import handle_to_buddy


def test_geometry_of_a_4k_page_follows_the_kernel_constants():
    geo = Geometry.for_page_size(4096)
    assert (geo.chunk_shift, geo.chunk_size) == (6, 64)
    # sizeof(struct z3fold_header) is 88 bytes on x86-64: two chunks
    assert (geo.zhdr_size_aligned, geo.zhdr_chunks, geo.total_chunks, geo.nchunks) == \
        (128, 2, 64, 62)
    assert geo.headless_above == 4096 - 128 - 64
    assert geo.size_to_chunks(1) == 1 and geo.size_to_chunks(64) == 1
    assert geo.size_to_chunks(65) == 2


def test_geometry_scales_with_the_page_size_and_refuses_pages_too_small_for_a_header():
    geo = Geometry.for_page_size(16384)
    assert (geo.chunk_size, geo.zhdr_chunks, geo.nchunks) == (256, 1, 63)
    with pytest.raises(ValueError, match="page size"):
        Geometry.for_page_size(128)


def test_three_buddies_share_a_page_after_the_header(make_pool):
    vm, pool = make_pool()
    handles = [pool.store(bytes([i]) * 1000) for i in range(3)]
    headers = {pool.header_of_handle(h).page.pfn for h in handles}
    assert len(headers) == 1
    assert sorted(handle_to_buddy(pool, h) for h in handles) == \
        [Buddy.FIRST, Buddy.MIDDLE, Buddy.LAST]
    zhdr = pool.header_of_handle(handles[0])
    geo = pool.geometry
    assert zhdr.first_chunks == zhdr.middle_chunks == zhdr.last_chunks == geo.size_to_chunks(1000)
    assert zhdr.start_middle == geo.zhdr_chunks + zhdr.first_chunks
    assert zhdr.refcount == 3
    # a fourth object needs a second page
    pool.store(b"x" * 1000)
    assert len(pool.pages()) == 2
    for i, h in enumerate(handles):
        assert pool.read(h) == bytes([i]) * 1000
    pool.verify()


def test_large_objects_get_headless_pages_that_are_never_movable(make_pool):
    vm, pool = make_pool()
    big = bytes(range(256)) * 16
    handle = pool.store(big[:pool.geometry.headless_above + 1])
    assert handle & 1 << PAGE_HEADLESS
    (page,) = pool.headless.values()
    assert zf.test_bit(PAGE_HEADLESS, page) and not has_movable_tag(page) and page.mapping == 0
    full = pool.store(big)  # a whole page: the largest object z3fold takes
    assert pool.read(full) == big
    compact_memory(vm)
    assert vm.vmstat.events["isolate_success"] == 0
    assert pool.read(handle) == big[:pool.geometry.headless_above + 1]
    with pytest.raises(ValueError):
        pool.store(big + b"!")
    pool.free(handle)
    pool.free(full)
    assert pool.pages() == [] and vm.unclaimed_pages() == []


def test_the_driver_is_a_separate_distribution_listed_by_mmplug_plugins():
    out = subprocess.run([sys.executable, "-c", "from mmplug.cli import main; main(['plugins'])"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("z3fold"))
    assert "1.0.0" in line and "loaded" in line
    core = Path(mmplug.__file__).parent
    for path in core.rglob("*.py"):
        assert "mmplug_z3fold" not in path.read_text(), path
