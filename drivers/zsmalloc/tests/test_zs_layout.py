"""Size classes, handles and objects in page memory (mm/zsmalloc.c, v4.19)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from mmplug import NoMemory
from mmplug_zsmalloc.handle import FREELIST_END, location_to_obj, obj_to_location
from mmplug_zsmalloc.sizeclass import (
    OBJ_TAG_BITS,
    ZS_HANDLE_SIZE,
    Fullness,
    Layout,
    build_size_classes,
    distinct_classes,
    get_pages_per_zspage,
)
from mmplug_zsmalloc.zspage import free_link_plan


def test_layout_constants_for_4k_pages_are_the_kernels():
    layout = Layout.for_page_size(4096)
    assert layout.min_alloc_size == 32           # MAX(32, 4 << 12 >> 29)
    assert layout.class_delta == 16              # PAGE_SIZE >> CLASS_BITS
    assert layout.nr_classes == 255              # DIV_ROUND_UP(4096 - 32, 16) + 1
    assert layout.obj_index_bits == 64 - (46 - 12) - 1
    assert layout.size_class_index(32) == 0
    assert layout.size_class_index(33) == 1
    assert layout.size_class_index(4096 + ZS_HANDLE_SIZE) == 254


def test_layout_follows_the_vm_page_size():
    layout = Layout.for_page_size(8192)
    assert layout.class_delta == 32
    assert layout.nr_classes == -(-(8192 - 32) // 32) + 1


def test_pages_per_zspage_minimises_waste():
    assert get_pages_per_zspage(4096 * 3 // 8, 4096) == 3   # 8 objects fit 3 pages exactly
    assert get_pages_per_zspage(32, 4096) == 1
    assert get_pages_per_zspage(4096, 4096) == 1
    assert all(1 <= get_pages_per_zspage(s, 4096) <= 4 for s in range(32, 4097, 16))


def test_classes_with_same_shape_are_merged(make_pool):
    vm, pool = make_pool()
    table = pool.size_class
    real = distinct_classes(table)
    assert len(real) < len(table)
    for i, cls in enumerate(table):
        # Every index maps to a class at least as large with the same zspage shape.
        assert cls.size >= min(32 + i * 16, 4096)
        assert cls.objs_per_zspage == cls.pages_per_zspage * 4096 // cls.size
    for a, b in pairwise(real):
        assert (a.pages_per_zspage, a.objs_per_zspage) != (b.pages_per_zspage, b.objs_per_zspage)
    assert pool.huge_class_size == 3264 - (ZS_HANDLE_SIZE - 1)


def test_location_encoding_round_trips(make_pool):
    vm, pool = make_pool()
    page = vm.zone.pfn_to_page(777)
    obj = location_to_obj(pool.layout, page, 13)
    assert obj & 1 == 0
    assert obj_to_location(pool.layout, obj, vm.zone.pfn_to_page) == (page, 13)


def test_objects_of_every_size_read_back(make_pool):
    vm, pool = make_pool(nr_pages=2048)
    rng = random.Random(7)
    sizes = [0, 1, 7, 8, 24, 25, 100, 1000, 2000, 3256, 3257, 4000, 4096]
    sizes += [rng.randrange(1, 4097) for _ in range(200)]
    stored = {pool.store(d): d for d in (rng.randbytes(n) for n in sizes)}
    pool.verify()
    for handle, data in stored.items():
        assert pool.read(handle) == data


def test_objects_spanning_a_page_boundary(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 3)
    size = cls.size - ZS_HANDLE_SIZE
    rng = random.Random(3)
    data = [rng.randbytes(size) for _ in range(cls.objs_per_zspage)]
    handles = [pool.store(d) for d in data]
    spanning = [h for h in handles
                if cls.size * pool.location(h)[1] % 4096 + cls.size > 4096]
    assert spanning, "no object crosses a subpage boundary in this class"
    assert len({steps.zspage_of(pool, h) for h in handles}) == 1
    for h, d in zip(handles, data, strict=True):
        assert pool.read(h) == d
    zspage = steps.zspage_of(pool, handles[0])
    assert zspage.fullness == Fullness.ZS_FULL


def test_too_big_object_is_a_value_error(make_pool):
    vm, pool = make_pool()
    with pytest.raises(ValueError, match="exceeds the largest class"):
        pool.store(bytes(4097))


def test_exhausted_zone_raises_no_memory_and_stays_consistent(make_pool):
    vm, pool = make_pool(nr_pages=512)
    handles = []
    with pytest.raises(NoMemory):
        for _ in range(1000):
            handles.append(pool.store(bytes(3000)))
    pool.verify()
    assert len(handles) >= 400
    for h in handles:
        pool.free(h)
    pool.verify()
    assert pool.pages_allocated == 0


def test_free_returns_pages_and_unknown_handles_are_rejected(make_pool):
    vm, pool = make_pool()
    free_before = vm.zone.nr_free_pages
    h = pool.store(b"x" * 100)
    assert len(pool.pages()) == pool.size_class[pool.layout.size_class_index(108)].pages_per_zspage
    assert vm.zone.nr_free_pages == free_before - len(pool.pages())
    pool.free(h)
    assert vm.zone.nr_free_pages == free_before
    with pytest.raises(KeyError, match="no object"):
        pool.read(h)


def test_unknown_bug_option_is_refused(make_pool):
    import mmplug
    with pytest.raises(mmplug.DriverError, match="unknown zsmalloc bug"):
        make_pool(bugs={"BUG-99"})


def test_stats_count_pages_and_objects(make_pool):
    vm, pool = make_pool()
    handles = [pool.store(bytes(100)) for _ in range(50)]
    st = pool.stats()
    assert st["objects"] == 50 and st["obj_used"] == 50
    assert st["pages_allocated"] == len(pool.pages())
    assert sum(c["pages_used"] for c in st["classes"]) == st["pages_allocated"]
    for h in handles:
        pool.free(h)
    assert pool.stats()["pages_allocated"] == 0


def test_fullness_groups_and_list_order(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 1)
    objs = cls.objs_per_zspage

    class Fake:
        def __init__(self, inuse):
            self.inuse = inuse
            self.list = None

    groups = [cls.get_fullness_group(Fake(n)) for n in range(objs + 1)]
    assert groups[0] == Fullness.ZS_EMPTY and groups[objs] == Fullness.ZS_FULL
    assert all(g == Fullness.ZS_ALMOST_EMPTY for g in groups[1:3 * objs // 4 + 1])
    assert all(g == Fullness.ZS_ALMOST_FULL for g in groups[3 * objs // 4 + 1:objs])
    # insert_zspage(): a zspage less used than the head goes second, else first.
    a, b, c = Fake(5), Fake(3), Fake(9)
    for z in (a, b, c):
        cls.insert_zspage(z, Fullness.ZS_ALMOST_FULL)
    assert list(cls.fullness_list[Fullness.ZS_ALMOST_FULL]) == [c, a, b]


def test_zs_compact_frees_exactly_what_zs_can_compact_predicts(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 1)
    objs = cls.objs_per_zspage
    rng = random.Random(9)
    data = {}
    for _ in range(objs * 6):
        d = rng.randbytes(cls.size - ZS_HANDLE_SIZE)
        data[pool.store(d)] = d
    by_zspage = {}
    for h in data:
        by_zspage.setdefault(steps.zspage_of(pool, h), []).append(h)
    assert len(by_zspage) == 6
    for hs in by_zspage.values():
        for h in hs[2:]:
            pool.free(h)
            del data[h]
    predicted = cls.zs_can_compact()
    assert predicted == 6 - -(-12 // objs)
    assert pool.compact() == predicted
    assert pool.pages_allocated == 6 - predicted
    pool.verify()
    for h, d in data.items():
        assert pool.read(h) == d


@pytest.mark.parametrize("page_size", [2048, 4096, 16384])
def test_the_free_link_plan_is_the_object_by_object_free_list(page_size):
    """init_zspage() writes each class's plan: object i's first word links object i + 1
    (the last ends the list), in the subpage and at the offset where object i starts.
    As in the kernel, a slot that starts in the zspage's last subpage but runs past its
    end gets a link too (and ends the list)."""
    layout = Layout.for_page_size(page_size)
    for cls in distinct_classes(build_size_classes(layout, lambda: None)):
        expect: dict[int, dict[int, int]] = {}
        starts = -(-cls.pages_per_zspage * page_size // cls.size)
        for i in range(starts):
            start = i * cls.size
            link = FREELIST_END if i == starts - 1 else (i + 1) << OBJ_TAG_BITS
            expect.setdefault(start // page_size, {})[start % page_size] = link
        plan = free_link_plan(cls, page_size)
        assert len(plan) == cls.pages_per_zspage
        for sub, (units, links) in enumerate(plan):
            words = expect[sub]
            assert units == min(words), (cls, sub)
            assert dict(zip(range(units, page_size, cls.size), links, strict=True)) == words


def test_zspages_of_one_class_get_the_same_free_lists(make_pool):
    """The plan is made once per class and written into every new zspage."""
    vm, pool = make_pool(nr_pages=512)
    handles = [pool.store(bytes([i % 251]) * 3000) for i in range(40)]
    cls = pool.size_class[pool.layout.size_class_index(3000 + ZS_HANDLE_SIZE)]
    assert cls.pages_per_zspage > 1 and cls.free_links is not None
    zspages = [z for z in pool.zspages if pool.class_of(z) is cls]
    assert len(zspages) > 2
    for zspage in zspages:
        for page, (units, _) in zip(pool.struct_pages.chain(zspage), cls.free_links,
                                    strict=True):
            assert pool.struct_pages.units(page) == units
    pool.verify()   # walks each zspage's free list through its words
    assert [pool.read(h) for h in handles] == [bytes([i % 251]) * 3000 for i in range(40)]


@pytest.mark.parametrize("page_size", [2048, 4096])
def test_the_class_of_each_size_is_get_size_class_index(make_pool, page_size):
    """zs_malloc looks a size's class up in a table made from get_size_class_index()."""
    _, pool = make_pool(nr_pages=512, page_size=page_size)
    layout = pool.layout
    assert len(pool.class_by_size) == layout.max_alloc_size + 1
    for size in range(1, layout.max_alloc_size + 1):
        idx = -(-(size + ZS_HANDLE_SIZE - layout.min_alloc_size) // layout.class_delta)
        expect = pool.size_class[min(layout.nr_classes - 1, max(idx, 0))]
        assert pool.class_by_size[size] is expect is \
            pool.size_class[layout.size_class_index(size + ZS_HANDLE_SIZE)]
