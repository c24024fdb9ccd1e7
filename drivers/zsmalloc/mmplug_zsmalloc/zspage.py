"""The zspage: 1..4 order-0 pages chained together, holding one class's objects.

Models struct zspage and the struct page fields zsmalloc uses (mm/zsmalloc.c,
v4.19): page->private points at the zspage, page->freelist links the subpages
(create_page_chain, get_next_page), page->units is the offset of the first
object that starts in the subpage, page->index holds the handle of a huge
object, PG_private marks the first subpage, PG_owner_priv_1 a huge one.  The
model's Page has no freelist/units/index and a driver may not use page flags
for itself, so those fields live in `PageFields`, one per subpage, kept by the
pool in `StructPages` and cleared by reset_page() as the kernel clears them.

Objects live in page memory: a free object's first word is the index of the
next free object (<< 1); an allocated one's is `handle | OBJ_ALLOCATED_TAG`
(init_zspage, obj_malloc, obj_free).  Objects may span two subpages.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from attrs import define

from mmplug.kernel import clear_page_movable

from .handle import FREELIST_END, OBJ_ALLOCATED_TAG, obj_to_location
from .memory import PageMemory
from .sizeclass import OBJ_TAG_BITS, OBJ_USED, Fullness, Layout, SizeClass

if TYPE_CHECKING:
    from mmplug import Page

ZSPAGE_MAGIC = 0x58


@define(slots=True, eq=False, repr=False)
class Zspage:
    """struct zspage."""

    class_idx: int
    lock: Any  # rwlock_t: the migrate lock
    fullness: Fullness = Fullness.ZS_EMPTY
    #: subpages currently isolated for page migration
    isolated: int = 0
    inuse: int = 0
    freeobj: int = 0
    first_page: Page | None = None
    #: where zspage->list is linked: a Fullness list, "deferred" (async free's
    #: private list), or None (list_empty: off every list)
    list: Any = None
    magic: int = ZSPAGE_MAGIC

    def __repr__(self) -> str:
        first = f"{self.first_page.pfn:#x}" if self.first_page is not None else "-"
        return (f"<Zspage class {self.class_idx} first {first} inuse {self.inuse} "
                f"{self.fullness.name} isolated {self.isolated}>")


@define(slots=True, eq=False)
class PageFields:
    """The struct page fields of one subpage that the model's Page does not carry."""

    #: page->freelist: the next subpage of the zspage
    freelist: Page | None = None
    #: page->units: offset of the first object starting in this subpage
    units: int = 0
    #: page->index: the handle of a huge object (first subpage only)
    index: int = 0
    #: PG_private: the first subpage
    first: bool = False
    #: PG_owner_priv_1 (PageHugeObject)
    huge: bool = False


class StructPages:
    """The zsmalloc-owned fields of every subpage the pool has set up."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[Page, PageFields] = {}

    def __getitem__(self, page: Page) -> PageFields:
        fields = self.fields.get(page)
        if fields is None:
            fields = self.fields[page] = PageFields()
        return fields

    def get_next_page(self, page: Page) -> Page | None:
        """get_next_page(): a huge subpage has none; a reset page has none."""
        fields = self.fields.get(page)
        if fields is None or fields.huge:
            return None
        return fields.freelist

    def units(self, page: Page) -> int:
        """get_first_obj_offset()."""
        return self[page].units

    def is_first_page(self, page: Page) -> bool:
        fields = self.fields.get(page)
        return fields is not None and fields.first

    def is_huge(self, page: Page) -> bool:
        fields = self.fields.get(page)
        return fields is not None and fields.huge

    def chain(self, zspage: Zspage) -> Iterator[Page]:
        """The subpages from the first, following page->freelist."""
        page = zspage.first_page
        while page is not None:
            yield page
            page = self.get_next_page(page)

    def create_page_chain(self, cls: SizeClass, zspage: Zspage, pages: list[Page]) -> None:
        """create_page_chain(): private -> zspage, freelist links, the first page marked."""
        fields_of = self.fields
        prev: PageFields | None = None
        for i, page in enumerate(pages):
            page.private = zspage
            fields = fields_of.get(page)
            if fields is None:
                fields = fields_of[page] = PageFields()
            fields.freelist = None
            if i == 0:
                zspage.first_page = page
                fields.first = True
                if cls.huge:
                    fields.huge = True
            else:
                prev.freelist = page  # type: ignore[union-attr]
            prev = fields

    def reset_page(self, page: Page) -> None:
        """reset_page(): __ClearPageMovable, private, freelist, huge mark all cleared."""
        clear_page_movable(page)
        page.private = 0
        self.fields.pop(page, None)


def get_zspage(page: Page) -> Zspage:
    """get_zspage(): page->private, checked by its magic."""
    zspage = page.private
    if not isinstance(zspage, Zspage) or zspage.magic != ZSPAGE_MAGIC:
        raise AssertionError(f"page {page.pfn:#x} does not belong to a zspage "
                             f"(private {zspage!r})")
    return zspage


# --- page memory ----------------------------------------------------------------------

def read_word(page: Page, off: int) -> int:
    """The word at byte `off` of a page, read through page_address()."""
    return _PAGE.read(page, off)


def write_word(page: Page, off: int, value: int) -> None:
    _PAGE.write(page, off, value)


_PAGE = PageMemory()


def obj_to_head(sp: StructPages, mem: PageMemory, page: Page, off: int) -> int:
    """obj_to_head(): the first word of the object at `off`, or page->index if huge."""
    fields = sp.fields.get(page)
    if fields is not None and fields.huge:
        return fields.index
    return mem.read(page, off)


def init_zspage(sp: StructPages, mem: PageMemory, cls: SizeClass, zspage: Zspage,
                page_size: int) -> None:
    """init_zspage(): thread every object onto the zspage's free list, in place.

    Object i's first word links object i + 1; the last object of a subpage
    (possibly spilling over) links the first of the next one, and the very
    last object ends the list.  Each subpage's links are one strided store of
    words that depend on the class alone (free_link_plan).
    """
    plan = cls.free_links
    if plan is None:
        plan = cls.free_links = free_link_plan(cls, page_size)
    size = cls.size
    page = zspage.first_page
    for off, links in plan:
        if page is None:
            raise AssertionError(f"init_zspage: {zspage!r} has fewer subpages than its class")
        fields = sp.fields[page]
        fields.units = off
        mem.write_every(page, off, size, links)
        page = None if fields.huge else fields.freelist    # get_next_page()
    zspage.freeobj = 0


def free_link_plan(cls: SizeClass, page_size: int) -> tuple[tuple[int, array], ...]:
    """Per subpage of a fresh zspage of `cls`: (page->units, the free-list words of the
    objects that start in it, at units, units + size, ...)."""
    size = cls.size
    plan = []
    freeobj = 1
    off = 0
    for i in range(cls.pages_per_zspage):
        # objects starting in this subpage: at off, off + size, ... below page_size
        n = -(-(page_size - off) // size)
        links = array("Q", range(freeobj << OBJ_TAG_BITS, (freeobj + n) << OBJ_TAG_BITS,
                                 1 << OBJ_TAG_BITS))
        if i == cls.pages_per_zspage - 1:
            links[-1] = FREELIST_END
        plan.append((off, links))
        freeobj += n
        off = (off + n * size) % page_size
    return tuple(plan)


def _nth_subpage(sp: StructPages, zspage: Zspage, n: int) -> Page:
    page = zspage.first_page
    for _ in range(n):
        page = sp.get_next_page(page)
    assert page is not None
    return page


def obj_malloc(sp: StructPages, mem: PageMemory, layout: Layout, cls: SizeClass,
               zspage: Zspage, handle: int) -> int:
    """obj_malloc(): take the first free object, record its owner, return its location."""
    obj = zspage.freeobj
    ps = layout.page_size
    offset = obj * cls.size
    m_page = _nth_subpage(sp, zspage, offset // ps) if offset >= ps else zspage.first_page
    m_offset = offset % ps
    link = mem.read(m_page, m_offset)
    zspage.freeobj = link >> OBJ_TAG_BITS
    # PageHugeObject(m_page): a page of a zspage is huge exactly when its class is
    if not cls.huge:
        mem.write(m_page, m_offset, handle | OBJ_ALLOCATED_TAG)
    else:
        sp[zspage.first_page].index = handle | OBJ_ALLOCATED_TAG
    zspage.inuse += 1
    cls.stats[OBJ_USED] += 1
    # location_to_obj()
    return ((m_page.pfn << layout.obj_index_bits) | (obj & layout.obj_index_mask)) << OBJ_TAG_BITS


def obj_free(sp: StructPages, mem: PageMemory, layout: Layout, cls: SizeClass, obj: int,
             pfn_to_page: Any) -> None:
    """obj_free(): push the object back on its zspage's free list."""
    obj = (obj & ~OBJ_ALLOCATED_TAG) >> OBJ_TAG_BITS
    # obj_to_location()
    f_page = pfn_to_page(obj >> layout.obj_index_bits)
    f_objidx = obj & layout.obj_index_mask
    f_offset = (cls.size * f_objidx) % layout.page_size
    zspage = get_zspage(f_page)
    mem.write(f_page, f_offset, zspage.freeobj << OBJ_TAG_BITS)
    zspage.freeobj = f_objidx
    zspage.inuse -= 1
    cls.stats[OBJ_USED] -= 1


# --- object bytes across subpages -----------------------------------------------------

def _second_page(sp: StructPages, page: Page) -> Page:
    nxt = sp.get_next_page(page)
    if nxt is None:
        raise AssertionError(f"object at pfn {page.pfn:#x} spans into a missing subpage")
    return nxt


def copy_from_object(sp: StructPages, mem: PageMemory, page: Page, off: int, length: int,
                     page_size: int) -> bytes:
    """__zs_map_object() for reading: `length` bytes from `off`, joined across subpages."""
    if off + length <= page_size:
        return mem.read_bytes(page, off, length)
    head = page_size - off
    second = _second_page(sp, page)
    return mem.read_bytes(page, off, head) + mem.read_bytes(second, 0, length - head)


def copy_to_object(sp: StructPages, mem: PageMemory, page: Page, off: int, data: bytes,
                   page_size: int) -> None:
    """__zs_unmap_object() for writing: the bytes from `off`, split across subpages."""
    n = len(data)
    if off + n <= page_size:
        mem.write_bytes(page, off, data)
        return
    head = page_size - off
    second = _second_page(sp, page)
    mem.write_bytes(page, off, data[:head])
    mem.write_bytes(second, 0, data[head:])


def zs_object_copy(sp: StructPages, mem: PageMemory, layout: Layout, cls: SizeClass, dst: int,
                   src: int, pfn_to_page: Any) -> None:
    """zs_object_copy(): a whole chunk (header included) from one location to another."""
    ps = layout.page_size
    s_page, s_idx = obj_to_location(layout, src, pfn_to_page)
    d_page, d_idx = obj_to_location(layout, dst, pfn_to_page)
    s_off = cls.size * s_idx % ps
    d_off = cls.size * d_idx % ps
    chunk = copy_from_object(sp, mem, s_page, s_off, cls.size, ps)
    copy_to_object(sp, mem, d_page, d_off, chunk, ps)


def allocated_heads(sp: StructPages, mem: PageMemory, cls: SizeClass, page: Page,
                    page_size: int) -> list[tuple[int, int]]:
    """(offset, handle) of every allocated object whose head is in this subpage."""
    pos = sp.units(page)
    size = cls.size
    if sp.is_huge(page):
        heads = [sp[page].index] if pos < page_size else []
    else:
        heads = mem.read_every(page, pos, size, page_size)
    return [(pos + i * size, head & ~OBJ_ALLOCATED_TAG) for i, head in enumerate(heads)
            if head & OBJ_ALLOCATED_TAG]
