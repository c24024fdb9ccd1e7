"""The pool's self-check: every count zsmalloc keeps must agree with what is in memory.

Walks each class's fullness lists, each zspage's subpage chain and in-page
free list, and the handle table.  Raises AssertionError with the first
disagreement found.  Run it with nothing in flight (no map held, no callback
running); isolated subpages are fine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug.kernel import PAGE_MAPPING_MOVABLE, page_count, page_isolated

from .handle import FREELIST_END, HANDLE_SHIFT, OBJ_ALLOCATED_TAG, PIN, obj_to_location
from .sizeclass import NR_ZS_FULLNESS, OBJ_TAG_BITS, Fullness, Stat, distinct_classes
from .zspage import ZSPAGE_MAGIC, Zspage, allocated_heads

if TYPE_CHECKING:
    from .pool import ZsPool


def _fail(message: str) -> None:
    raise AssertionError(f"zsmalloc verify: {message}")


# Every check tests its condition first and builds its message only when it
# fails: a pool of a million objects is checked without a string per object.

def _verify_zspage(pool: ZsPool, zspage: Zspage, handle_word: int) -> set[int]:
    """Check one zspage; return the handles whose objects it holds."""
    sp = pool.struct_pages
    mem = pool.mem
    ps = pool.layout.page_size
    cls = pool.class_of(zspage)
    words = pool.handles.words
    layout = pool.layout
    size = cls.size
    index_bits, index_mask = layout.obj_index_bits, layout.obj_index_mask
    if zspage.magic != ZSPAGE_MAGIC:
        _fail(f"{zspage!r} has a bad magic")
    chain = list(sp.chain(zspage))
    if len(chain) != cls.pages_per_zspage:
        _fail(f"{zspage!r} has {len(chain)} subpages, its class {cls.pages_per_zspage}")
    if not sp.is_first_page(chain[0]):
        _fail(f"{zspage!r}: first subpage not marked first")
    owned: set[int] = set()
    for page in chain:
        if page.private is not zspage:
            _fail(f"subpage {page.pfn:#x} does not point at {zspage!r}")
        if page.mapping != handle_word:
            _fail(f"subpage {page.pfn:#x} of {zspage!r} is not movable with the pool's mapping "
                  f"(mapping {page.mapping:#x})")
        if page_count(page) < 1:
            _fail(f"subpage {page.pfn:#x} has no reference")
        if page_isolated(page) and not zspage.isolated > 0:
            _fail(f"subpage {page.pfn:#x} is PG_isolated but {zspage!r} counts none")
        pfn = page.pfn
        for off, handle in allocated_heads(sp, mem, cls, page, ps):
            word = words.get(handle >> HANDLE_SHIFT)
            if word is None:
                _fail(f"object at {pfn:#x}+{off} has unknown handle {handle:#x}")
            # obj_to_location() compared without making the page: pfn and index
            loc = word >> OBJ_TAG_BITS
            if loc >> index_bits != pfn or size * (loc & index_mask) % ps != off:
                where, idx = obj_to_location(layout, word, pool.pfn_to_page)
                _fail(f"handle {handle:#x} points at {where.pfn:#x} index {idx}, its object "
                      f"is at {pfn:#x}+{off}")
            owned.add(handle)
    if len(owned) != zspage.inuse:
        _fail(f"{zspage!r} holds {len(owned)} objects, inuse says {zspage.inuse}")
    # The in-page free list reaches exactly the free objects.
    free = 0
    idx = zspage.freeobj
    seen = set()
    huge = [sp.is_huge(page) for page in chain]
    objs = cls.objs_per_zspage
    while free < objs - zspage.inuse:
        if idx in seen or idx >= objs:
            _fail(f"{zspage!r}: free list loops or leaves the zspage at index {idx}")
        seen.add(idx)
        offset = idx * size
        n = offset // ps
        link = mem.read(chain[n], offset % ps) if not huge[n] else FREELIST_END
        if link & OBJ_ALLOCATED_TAG:
            _fail(f"{zspage!r}: free object {idx} is tagged allocated")
        idx = link >> 1
        free += 1
    if zspage.fullness != cls.get_fullness_group(zspage):
        _fail(f"{zspage!r} is recorded {zspage.fullness.name}, its inuse says "
              f"{cls.get_fullness_group(zspage).name}")
    return owned


def verify_pool(pool: ZsPool) -> None:
    seen_zspages: set[Zspage] = set()
    isolated = 0
    # per class: (objects used, objects allocated) summed over the pool's zspages
    sums: dict[int, list[int]] = {}
    for zspage in pool.zspages:
        cls = pool.class_of(zspage)
        counts = sums.setdefault(id(cls), [0, 0])
        counts[0] += zspage.inuse
        counts[1] += cls.objs_per_zspage
    for cls in distinct_classes(pool.size_class):
        for fg in range(NR_ZS_FULLNESS):
            lst = cls.fullness_list[fg]
            if cls.stats[fg] != len(lst):
                _fail(f"class {cls.index} counts {cls.stats[fg]} {Fullness(fg).name} zspages, "
                      f"its list has {len(lst)}")
            for zspage in lst:
                if zspage.list != fg or zspage.fullness != fg or zspage.isolated:
                    _fail(f"{zspage!r} is on the {Fullness(fg).name} list of class {cls.index}")
                if zspage.class_idx != cls.index:
                    _fail(f"{zspage!r} is on class {cls.index}")
                seen_zspages.add(zspage)
        used, allocated = sums.get(id(cls), (0, 0))
        if cls.stats[Stat.OBJ_USED] != used:
            _fail(f"class {cls.index} counts {cls.stats[Stat.OBJ_USED]} objects used, its "
                  f"zspages {used}")
        if cls.stats[Stat.OBJ_ALLOCATED] != allocated:
            _fail(f"class {cls.index} counts {cls.stats[Stat.OBJ_ALLOCATED]} objects allocated, "
                  f"its zspages {allocated}")
    owned: set[int] = set()
    pages = 0
    handle_word = pool.mapping.handle | PAGE_MAPPING_MOVABLE
    for zspage in pool.zspages:
        if zspage.isolated:
            isolated += 1
            if zspage.list is not None:
                _fail(f"isolated {zspage!r} is still on a list")
        elif zspage not in seen_zspages and zspage.list != "deferred":
            _fail(f"{zspage!r} is on no list and not isolated")
        got = _verify_zspage(pool, zspage, handle_word)
        if not got.isdisjoint(owned):
            _fail("one handle owns two objects")
        owned |= got
        pages += pool.class_of(zspage).pages_per_zspage
    if isolated != pool.isolated_pages:
        _fail(f"{isolated} zspages are isolated, the pool counts {pool.isolated_pages}")
    if pages != pool.pages_allocated:
        _fail(f"zspages hold {pages} pages, pages_allocated is {pool.pages_allocated}")
    if owned != pool.handles.handles():
        _fail(f"{len(pool.handles)} handles, {len(owned)} objects found in zspages")
    if pool.lengths.keys() != owned:
        _fail("the length table and the objects disagree")
    for handle, word in pool.handles.items():
        if word & PIN and handle not in pool.knob_pins:
            _fail(f"handle {handle:#x} is pinned with nothing in flight")
