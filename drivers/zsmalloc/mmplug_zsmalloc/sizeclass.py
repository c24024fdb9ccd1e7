"""Size classes and fullness groups (mm/zsmalloc.c, v4.19).

Everything here is derived from the VM's page size, as the kernel derives it
from PAGE_SHIFT: ZS_MIN_ALLOC_SIZE, ZS_SIZE_CLASS_DELTA, the number of classes,
each class's pages_per_zspage (get_pages_per_zspage) and objs_per_zspage, and
the merging of neighbouring classes that would behave identically
(zs_create_pool, can_merge).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

if TYPE_CHECKING:
    from .zspage import Zspage

#: Objects and free-list links are 8-aligned so a link never spans two pages.
ZS_ALIGN = 8
#: A zspage is at most 2^2 order-0 pages.
ZS_MAX_ZSPAGE_ORDER = 2
ZS_MAX_PAGES_PER_ZSPAGE = 1 << ZS_MAX_ZSPAGE_ORDER
#: Every non-huge object starts with the handle of its owner (sizeof(unsigned long)).
ZS_HANDLE_SIZE = 8
BITS_PER_LONG = 64
#: x86-64 v4.19 without 5-level paging: MAX_PHYSMEM_BITS.
MAX_PHYSMEM_BITS = 46
#: The low bit of an object's head says "allocated"; of a handle word, "pinned".
OBJ_TAG_BITS = 1
CLASS_BITS = 8
#: get_fullness_group(): at most 3/4 full counts as almost empty.
FULLNESS_THRESHOLD_FRAC = 4


class Fullness(IntEnum):
    """enum fullness_group."""

    ZS_EMPTY = 0
    ZS_ALMOST_EMPTY = 1
    ZS_ALMOST_FULL = 2
    ZS_FULL = 3


NR_ZS_FULLNESS = 4
# The members as plain names: hot paths look them up without the enum class.
ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL = Fullness
#: find_get_zspage(): the lists a new object is looked for in, in order
_FIND_ORDER = (ZS_ALMOST_FULL, ZS_ALMOST_EMPTY, ZS_EMPTY)


class Stat(IntEnum):
    """enum zs_stat_type beyond the fullness groups (which share its first four slots)."""

    OBJ_ALLOCATED = 4
    OBJ_USED = 5


NR_ZS_STAT_TYPE = 6
OBJ_USED = Stat.OBJ_USED


@frozen(slots=True)
class Layout:
    """The compile-time constants of mm/zsmalloc.c for one page size."""

    page_size: int
    page_shift: int
    obj_index_bits: int
    min_alloc_size: int
    class_delta: int
    nr_classes: int
    #: OBJ_INDEX_MASK, kept rather than derived: every handle lookup uses it
    obj_index_mask: int = field()

    @obj_index_mask.default
    def _mask(self) -> int:
        return (1 << self.obj_index_bits) - 1

    @property
    def max_alloc_size(self) -> int:
        """ZS_MAX_ALLOC_SIZE: one page."""
        return self.page_size

    @classmethod
    def for_page_size(cls, page_size: int) -> Layout:
        shift = page_size.bit_length() - 1
        pfn_bits = MAX_PHYSMEM_BITS - shift
        index_bits = BITS_PER_LONG - pfn_bits - OBJ_TAG_BITS
        min_size = max(32, (ZS_MAX_PAGES_PER_ZSPAGE << shift) >> index_bits)
        if min_size >= page_size:
            raise ValueError(f"zsmalloc needs pages larger than its smallest object "
                             f"({min_size} bytes); page size {page_size} is too small")
        # The kernel only builds for PAGE_SIZE >= 4K, where the delta is 16;
        # below 2K pages it would not be a multiple of ZS_ALIGN.
        delta = max(page_size >> CLASS_BITS, ZS_ALIGN)
        nr = -(-(page_size - min_size) // delta) + 1
        return cls(page_size, shift, index_bits, min_size, delta, nr)

    def size_class_index(self, size: int) -> int:
        """get_size_class_index(): the class for a chunk of `size` bytes (handle included)."""
        idx = 0
        if size > self.min_alloc_size:
            idx = -(-(size - self.min_alloc_size) // self.class_delta)
        return min(self.nr_classes - 1, idx)


def get_pages_per_zspage(class_size: int, page_size: int) -> int:
    """get_pages_per_zspage(): the zspage length (1..4 pages) that wastes least."""
    best_used, best = 0, 1
    for i in range(1, ZS_MAX_PAGES_PER_ZSPAGE + 1):
        zspage_size = i * page_size
        waste = zspage_size % class_size
        used = (zspage_size - waste) * 100 // zspage_size
        if used > best_used:
            best_used, best = used, i
    return best



def _fullness_group(inuse: int, objs: int) -> Fullness:
    """get_fullness_group() of a zspage with `inuse` of `objs` objects used."""
    if inuse == 0:
        return Fullness.ZS_EMPTY
    if inuse == objs:
        return Fullness.ZS_FULL
    if inuse <= 3 * objs // FULLNESS_THRESHOLD_FRAC:
        return Fullness.ZS_ALMOST_EMPTY
    return Fullness.ZS_ALMOST_FULL


class ZspageList:
    """One fullness list (a list_head): the kernel adds at the head or second and
    deletes from anywhere in O(1); so does this, linked through two dicts."""

    __slots__ = ("_next", "_prev")

    def __init__(self) -> None:
        self._next: dict[Any, Any] = {self: self}
        self._prev: dict[Any, Any] = {self: self}

    def _add_after(self, at: Any, zspage: Any) -> None:
        after = self._next[at]
        self._next[at] = zspage
        self._prev[zspage] = at
        self._next[zspage] = after
        self._prev[after] = zspage

    def insert(self, index: int, zspage: Any) -> None:
        """list_add() (index 0) or list_add() after the head (index 1)."""
        if index not in (0, 1) or (index == 1 and not self):
            raise IndexError("a fullness list takes a zspage first or second")
        self._add_after(self if index == 0 else self._next[self], zspage)

    def remove(self, zspage: Any) -> None:
        """list_del()."""
        before = self._prev.pop(zspage)
        after = self._next.pop(zspage)
        self._next[before] = after
        self._prev[after] = before

    def clear(self) -> None:
        self._next = {self: self}
        self._prev = {self: self}

    def __getitem__(self, index: int) -> Any:
        if index != 0 or not self:
            raise IndexError("only the head of a fullness list is looked at")
        return self._next[self]

    def first(self) -> Any:
        """list_first_entry_or_null()."""
        head = self._next[self]
        return None if head is self else head

    def __iter__(self):
        node = self._next[self]
        while node is not self:
            nxt = self._next[node]
            yield node
            node = nxt

    def __len__(self) -> int:
        return len(self._next) - 1

    def __bool__(self) -> bool:
        return len(self._next) > 1

@define(slots=True, eq=False, repr=False)
class SizeClass:
    """struct size_class: fixed-size objects, zspages kept in fullness lists.

    A fullness list is a ZspageList whose first entry is the list head, so
    that insert_zspage's "more used zspages first" ordering is kept exactly.
    """

    size: int
    index: int
    pages_per_zspage: int
    objs_per_zspage: int
    lock: Any
    fullness_list: list[ZspageList] = field(
        factory=lambda: [ZspageList() for _ in range(NR_ZS_FULLNESS)])
    stats: list[int] = field(factory=lambda: [0] * NR_ZS_STAT_TYPE)
    #: get_fullness_group() of every possible inuse count, worked out once
    fullness_by_inuse: tuple[Fullness, ...] = field(init=False)
    #: one object per one-page zspage: no handle header, the handle lives in the page
    #: (create_page_chain marks such pages PageHugeObject)
    huge: bool = field(init=False)
    #: what init_zspage() writes into each subpage of a new zspage (the same for every
    #: zspage of the class): made by the first one (zspage.free_link_plan)
    free_links: Any = field(init=False, default=None)

    @huge.default
    def _huge(self) -> bool:
        return self.objs_per_zspage == 1 and self.pages_per_zspage == 1

    @fullness_by_inuse.default
    def _fullness_table(self) -> tuple[Fullness, ...]:
        return tuple(_fullness_group(inuse, self.objs_per_zspage)
                     for inuse in range(self.objs_per_zspage + 1))

    def __repr__(self) -> str:
        return (f"<SizeClass {self.index} size {self.size} pages {self.pages_per_zspage} "
                f"objs {self.objs_per_zspage}>")

    # --- fullness groups ---------------------------------------------------------
    def get_fullness_group(self, zspage: Zspage) -> Fullness:
        """get_fullness_group()."""
        return self.fullness_by_inuse[zspage.inuse]

    def insert_zspage(self, zspage: Zspage, fullness: Fullness) -> None:
        """insert_zspage(): a zspage less used than the head goes second, else first."""
        self.stats[fullness] += 1
        lst = self.fullness_list[fullness]
        head = lst.first()
        if head is not None and zspage.inuse < head.inuse:
            lst.insert(1, zspage)
        else:
            lst.insert(0, zspage)
        zspage.list = fullness

    def remove_zspage(self, zspage: Zspage, fullness: Fullness) -> None:
        """remove_zspage(): off its list (list_del_init: the zspage's list becomes empty)."""
        if zspage.isolated:
            raise AssertionError(f"remove_zspage() of an isolated zspage {zspage!r}")
        self.fullness_list[fullness].remove(zspage)
        zspage.list = None
        self.stats[fullness] -= 1

    def fix_fullness_group(self, zspage: Zspage) -> Fullness:
        """fix_fullness_group(): move between lists; an isolated zspage only records it."""
        currfg = zspage.fullness
        newfg = self.fullness_by_inuse[zspage.inuse]
        if newfg == currfg:
            return newfg
        if not zspage.isolated:
            self.remove_zspage(zspage, currfg)
            self.insert_zspage(zspage, newfg)
        zspage.fullness = newfg
        return newfg

    def putback_zspage(self, zspage: Zspage) -> Fullness:
        """putback_zspage(): back on the list its fullness says."""
        if zspage.isolated:
            raise AssertionError(f"putback_zspage() of an isolated zspage {zspage!r}")
        fullness = self.get_fullness_group(zspage)
        self.insert_zspage(zspage, fullness)
        zspage.class_idx = self.index
        zspage.fullness = fullness
        return fullness

    def find_get_zspage(self) -> Zspage | None:
        """find_get_zspage(): the head of ALMOST_FULL, else ALMOST_EMPTY, else EMPTY."""
        lists = self.fullness_list
        for fg in _FIND_ORDER:
            head = lists[fg].first()
            if head is not None:
                return head
        return None

    def zs_can_compact(self) -> int:
        """zs_can_compact(): pages that moving objects inside this class could free."""
        allocated = self.stats[Stat.OBJ_ALLOCATED]
        used = self.stats[Stat.OBJ_USED]
        if allocated <= used:
            return 0
        return (allocated - used) // self.objs_per_zspage * self.pages_per_zspage


def build_size_classes(layout: Layout, new_lock: Any) -> list[SizeClass]:
    """The class table of zs_create_pool(): built from the largest size down.

    A class whose zspages would hold as many objects in as many pages as the
    next larger class is merged into it (can_merge): both indices share one
    SizeClass.  `new_lock()` makes each class's spinlock.
    """
    table: list[SizeClass | None] = [None] * layout.nr_classes
    prev: SizeClass | None = None
    ps = layout.page_size
    for i in range(layout.nr_classes - 1, -1, -1):
        size = min(layout.min_alloc_size + i * layout.class_delta, layout.max_alloc_size)
        pages = get_pages_per_zspage(size, ps)
        objs = pages * ps // size
        if prev is not None and prev.pages_per_zspage == pages and prev.objs_per_zspage == objs:
            table[i] = prev
            continue
        prev = SizeClass(size=size, index=i, pages_per_zspage=pages, objs_per_zspage=objs,
                         lock=new_lock())
        table[i] = prev
    return table  # type: ignore[return-value]


def huge_class_size(table: list[SizeClass]) -> int:
    """zs_huge_class_size(): objects this size or larger end up one per page."""
    for cls in reversed(table):
        if cls.pages_per_zspage != 1 and cls.objs_per_zspage != 1:
            return cls.size - (ZS_HANDLE_SIZE - 1)
    return 0


def distinct_classes(table: list[SizeClass]) -> list[SizeClass]:
    """Each real class once (skipping merged indices: `class->index != i`)."""
    return [c for i, c in enumerate(table) if c.index == i]
