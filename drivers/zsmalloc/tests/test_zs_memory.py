"""The pool's word and byte access: the direct-map fast path writes what page_address() would."""

from __future__ import annotations

import hashlib
import random

import pytest

from mmplug.constants import ISOLATE_ASYNC_MIGRATE
from mmplug.migrate import PageList, isolate_movable_page
from mmplug_zsmalloc import memory
from mmplug_zsmalloc.memory import PageMemory, ZoneMemory, zone_memory


def _zone_digest(vm) -> str:
    zone = vm.zone
    digest = hashlib.sha256()
    for page in zone.pages:
        digest.update(zone.page_address(page))
    return digest.hexdigest()


def test_every_access_matches_page_address(make_pool):
    vm, _ = make_pool(nr_pages=512)
    fast, slow = ZoneMemory(vm.zone), PageMemory()
    rng = random.Random(5)
    pages = vm.zone.pages
    for _ in range(500):
        page = rng.choice(pages)
        off = rng.randrange(0, 4096, 8)
        value = rng.getrandbits(64)
        writer, reader = rng.choice(((fast, slow), (slow, fast)))
        writer.write(page, off, value)
        assert reader.read(page, off) == value
        assert bytes(vm.zone.page_address(page)[off:off + 8]) == value.to_bytes(8, "little")
    for step in (16, 48, 4096):
        page = rng.choice(pages)
        start = rng.randrange(0, 512, 8)
        values = [rng.getrandbits(64) for _ in range(len(range(start, 4096, step)))]
        fast.write_every(page, start, step, values)
        assert slow.read_every(page, start, step, 4096) == values
        assert fast.read_every(page, start, step, 4096) == values
    data = rng.randbytes(300)
    fast.write_bytes(pages[7], 1000, data)
    assert slow.read_bytes(pages[7], 1000, 300) == data == fast.read_bytes(pages[7], 1000, 300)


def test_the_fast_path_leaves_the_zone_byte_for_byte_as_page_address(make_pool, steps):
    """A seeded pool history twice, through ZoneMemory and through PageMemory: the same bytes."""

    def history(mem_kind):
        vm, pool = make_pool(nr_pages=2048)
        if mem_kind == "page":
            pool.mem = PageMemory()
        rng = random.Random(11)
        live = []
        for _ in range(3000):
            if live and rng.random() < 0.35:
                pool.free(live.pop(rng.randrange(len(live))))
            else:
                size = rng.choice((1, 40, 300, 1000, 2049, 3300, 4096))
                live.append(pool.store(rng.randbytes(size)))
        for handle in rng.sample(live, 50):
            pool.read(handle)
        # migrate a third of the pool's pages: objects move, handles are rewritten
        pagelist = PageList()
        for page in rng.sample(pool.pages(), len(pool.pages()) // 3):
            if isolate_movable_page(vm, page, ISOLATE_ASYNC_MIGRATE) == 0:
                pagelist.add(page)
        assert len(pagelist) > 50
        assert steps.migrate(vm, pagelist) == 0
        pool.verify()
        return _zone_digest(vm), [bytes(pool.read(h)) for h in live]

    assert history("zone") == history("page")


def test_a_big_endian_host_goes_through_page_address(monkeypatch, make_pool):
    vm, _ = make_pool(nr_pages=512)
    assert type(zone_memory(vm.zone)) is ZoneMemory
    monkeypatch.setattr(memory.sys, "byteorder", "big")
    assert type(zone_memory(vm.zone)) is PageMemory
    with pytest.raises(ValueError, match="little-endian"):
        ZoneMemory(vm.zone)
