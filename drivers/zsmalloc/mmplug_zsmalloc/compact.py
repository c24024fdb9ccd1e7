"""zs_compact: move objects between zspages of one class to free whole zspages.

mm/zsmalloc.c, v4.19: zs_compact, __zs_compact, isolate_zspage,
migrate_zspage, find_alloced_obj.  This is object migration inside the pool,
not page migration: a source zspage (the least used) gives its objects to
destination zspages (the most used) until it is empty and freed.  Source and
destination are taken off their lists (isolate_zspage) while the class lock
is held, and zs_page_isolate refuses a zspage that is off its list without
being isolated, so the two kinds of migration never work on one zspage at
once (DRV-Z6).  Objects whose pin is held are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import define

from mmplug.kernel import ENOMEM, schedule_point

from .handle import OBJ_ALLOCATED_TAG, PIN
from .sizeclass import Fullness, SizeClass, distinct_classes
from .zspage import Zspage, get_zspage, obj_free, obj_malloc, obj_to_head, zs_object_copy

if TYPE_CHECKING:
    from mmplug import Page

    from .pool import ZsPool


@define(slots=True)
class CompactControl:
    """struct zs_compact_control: where the scan of the source zspage stands."""

    s_page: Page | None
    d_page: Page | None = None
    obj_idx: int = 0


def isolate_zspage(cls: SizeClass, source: bool) -> Zspage | None:
    """isolate_zspage(): take a source (least used first) or destination (most used) zspage."""
    order = ((Fullness.ZS_ALMOST_EMPTY, Fullness.ZS_ALMOST_FULL) if source
             else (Fullness.ZS_ALMOST_FULL, Fullness.ZS_ALMOST_EMPTY))
    for fg in order:
        lst = cls.fullness_list[fg]
        if lst:
            zspage = lst[0]
            cls.remove_zspage(zspage, fg)
            return zspage
    return None


def find_alloced_obj(pool: ZsPool, cls: SizeClass, page: Page,
                     obj_idx: int) -> tuple[int, int]:
    """find_alloced_obj(): the next allocated object of this subpage whose pin we get.

    Returns (handle or 0, the index reached).
    """
    sp = pool.struct_pages
    ps = pool.layout.page_size
    offset = sp.units(page) + cls.size * obj_idx
    while offset < ps:
        head = obj_to_head(sp, pool.mem, page, offset)
        if head & OBJ_ALLOCATED_TAG:
            handle = head & ~OBJ_ALLOCATED_TAG
            if pool.handles.trypin(handle):
                return handle, obj_idx
        offset += cls.size
        obj_idx += 1
    return 0, obj_idx


def migrate_zspage(pool: ZsPool, cls: SizeClass, cc: CompactControl) -> int:
    """migrate_zspage(): move objects from cc.s_page on into cc.d_page's zspage.

    0 when the source is exhausted, -ENOMEM when the destination is full.
    """
    sp = pool.struct_pages
    mem = pool.mem
    layout = pool.layout
    handles = pool.handles
    s_page = cc.s_page
    dst = get_zspage(cc.d_page)
    obj_idx = cc.obj_idx
    ret = 0
    while True:
        handle, obj_idx = find_alloced_obj(pool, cls, s_page, obj_idx)
        if not handle:
            s_page = sp.get_next_page(s_page)
            if s_page is None:
                break
            obj_idx = 0
            continue
        if dst.inuse == cls.objs_per_zspage:
            handles.unpin(handle)
            ret = -ENOMEM
            break
        used_obj = handles.handle_to_obj(handle)
        free_obj = obj_malloc(sp, mem, layout, cls, dst, handle)
        zs_object_copy(sp, mem, layout, cls, free_obj, used_obj, pool.pfn_to_page)
        obj_idx += 1
        # The new location keeps the pin bit: the handle stays locked until unpin.
        handles.record_obj(handle, free_obj | PIN)
        handles.unpin(handle)
        obj_free(sp, mem, layout, cls, used_obj, pool.pfn_to_page)
    cc.s_page = s_page
    cc.obj_idx = obj_idx
    return ret


def __zs_compact(pool: ZsPool, cls: SizeClass) -> None:
    """__zs_compact(): empty the least used zspages into the most used ones."""
    cls.lock.lock()
    src: Zspage | None = None
    while (src := isolate_zspage(cls, True)) is not None:
        if not cls.zs_can_compact():
            break
        cc = CompactControl(s_page=src.first_page)
        while (dst := isolate_zspage(cls, False)) is not None:
            cc.d_page = dst.first_page
            # 0: the source has nothing left to move.
            if not migrate_zspage(pool, cls, cc):
                break
            cls.putback_zspage(dst)
        if dst is None:
            break
        cls.putback_zspage(dst)
        if cls.putback_zspage(src) == Fullness.ZS_EMPTY:
            pool.free_zspage(cls, src)
            pool.pages_compacted += cls.pages_per_zspage
        src = None
        cls.lock.unlock()
        schedule_point(pool.vm, "__zs_compact: cond_resched")
        cls.lock.lock()
    if src is not None:
        cls.putback_zspage(src)
    cls.lock.unlock()


def zs_compact(pool: ZsPool) -> int:
    """zs_compact(): every class, largest first; the pool's running total of pages freed."""
    for cls in reversed(distinct_classes(pool.size_class)):
        __zs_compact(pool, cls)
    return pool.pages_compacted
