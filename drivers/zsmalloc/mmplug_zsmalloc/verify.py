"""The pool's self-check: every count zsmalloc keeps must agree with what is in memory.

Walks each class's fullness lists, each zspage's subpage chain and in-page
free list, and the handle table.  Raises AssertionError with the first
disagreement found.  Run it with nothing in flight (no map held, no callback
running); isolated subpages are fine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug.kernel import PAGE_MAPPING_MOVABLE, page_count, page_isolated

from .handle import FREELIST_END, OBJ_ALLOCATED_TAG, PIN, obj_to_location
from .sizeclass import NR_ZS_FULLNESS, Fullness, Stat, distinct_classes
from .zspage import ZSPAGE_MAGIC, Zspage, allocated_heads, read_word

if TYPE_CHECKING:
    from .pool import ZsPool


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(f"zsmalloc verify: {message}")


def _verify_zspage(pool: "ZsPool", zspage: Zspage) -> set[int]:
    """Check one zspage; return the handles whose objects it holds."""
    sp = pool.struct_pages
    ps = pool.layout.page_size
    cls = pool.class_of(zspage)
    _check(zspage.magic == ZSPAGE_MAGIC, f"{zspage!r} has a bad magic")
    chain = list(sp.chain(zspage))
    _check(len(chain) == cls.pages_per_zspage,
           f"{zspage!r} has {len(chain)} subpages, its class {cls.pages_per_zspage}")
    _check(sp.is_first_page(chain[0]), f"{zspage!r}: first subpage not marked first")
    handle_word = pool.mapping.handle | PAGE_MAPPING_MOVABLE
    owned: set[int] = set()
    for page in chain:
        _check(page.private is zspage, f"subpage {page.pfn:#x} does not point at {zspage!r}")
        _check(page.mapping == handle_word,
               f"subpage {page.pfn:#x} of {zspage!r} is not movable with the pool's mapping "
               f"(mapping {page.mapping:#x})")
        _check(page_count(page) >= 1, f"subpage {page.pfn:#x} has no reference")
        if page_isolated(page):
            _check(zspage.isolated > 0,
                   f"subpage {page.pfn:#x} is PG_isolated but {zspage!r} counts none")
        for off, handle in allocated_heads(sp, cls, page, ps):
            _check(handle in pool.handles, f"object at {page.pfn:#x}+{off} has unknown "
                   f"handle {handle:#x}")
            where, idx = obj_to_location(pool.layout, pool.handles.handle_to_obj(handle),
                                         pool.pfn_to_page)
            _check(where is page and cls.size * idx % ps == off,
                   f"handle {handle:#x} points at {where.pfn:#x} index {idx}, its object "
                   f"is at {page.pfn:#x}+{off}")
            owned.add(handle)
    _check(len(owned) == zspage.inuse, f"{zspage!r} holds {len(owned)} objects, inuse says "
           f"{zspage.inuse}")
    # The in-page free list reaches exactly the free objects.
    free = 0
    idx = zspage.freeobj
    seen = set()
    while free < cls.objs_per_zspage - zspage.inuse:
        _check(idx not in seen and idx < cls.objs_per_zspage,
               f"{zspage!r}: free list loops or leaves the zspage at index {idx}")
        seen.add(idx)
        offset = idx * cls.size
        page = chain[offset // ps]
        link = read_word(page, offset % ps) if not sp.is_huge(page) else FREELIST_END
        _check(not link & OBJ_ALLOCATED_TAG, f"{zspage!r}: free object {idx} is tagged allocated")
        idx = link >> 1
        free += 1
    _check(zspage.fullness == cls.get_fullness_group(zspage),
           f"{zspage!r} is recorded {zspage.fullness.name}, its inuse says "
           f"{cls.get_fullness_group(zspage).name}")
    return owned


def verify_pool(pool: "ZsPool") -> None:
    seen_zspages: set[Zspage] = set()
    isolated = 0
    for cls in distinct_classes(pool.size_class):
        used = 0
        allocated = 0
        for fg in range(NR_ZS_FULLNESS):
            lst = cls.fullness_list[fg]
            _check(cls.stats[fg] == len(lst), f"class {cls.index} counts {cls.stats[fg]} "
                   f"{Fullness(fg).name} zspages, its list has {len(lst)}")
            for zspage in lst:
                _check(zspage.list == fg and zspage.fullness == fg and not zspage.isolated,
                       f"{zspage!r} is on the {Fullness(fg).name} list of class {cls.index}")
                _check(zspage.class_idx == cls.index, f"{zspage!r} is on class {cls.index}")
                seen_zspages.add(zspage)
        for zspage in pool.zspages:
            if pool.class_of(zspage) is cls:
                used += zspage.inuse
                allocated += cls.objs_per_zspage
        _check(cls.stats[Stat.OBJ_USED] == used,
               f"class {cls.index} counts {cls.stats[Stat.OBJ_USED]} objects used, its zspages {used}")
        _check(cls.stats[Stat.OBJ_ALLOCATED] == allocated,
               f"class {cls.index} counts {cls.stats[Stat.OBJ_ALLOCATED]} objects allocated, "
               f"its zspages {allocated}")
    owned: set[int] = set()
    pages = 0
    for zspage in pool.zspages:
        if zspage.isolated:
            isolated += 1
            _check(zspage.list is None, f"isolated {zspage!r} is still on a list")
        else:
            _check(zspage in seen_zspages or zspage.list == "deferred",
                   f"{zspage!r} is on no list and not isolated")
        got = _verify_zspage(pool, zspage)
        _check(not got & owned, "one handle owns two objects")
        owned |= got
        pages += pool.class_of(zspage).pages_per_zspage
    _check(isolated == pool.isolated_pages,
           f"{isolated} zspages are isolated, the pool counts {pool.isolated_pages}")
    _check(pages == pool.pages_allocated,
           f"zspages hold {pages} pages, pages_allocated is {pool.pages_allocated}")
    _check(owned == set(pool.handles.words), f"{len(pool.handles)} handles, "
           f"{len(owned)} objects found in zspages")
    _check(set(pool.lengths) == owned, "the length table and the objects disagree")
    for handle, word in pool.handles.words.items():
        _check(not word & PIN or handle in pool.knob_pins,
               f"handle {handle:#x} is pinned with nothing in flight")
