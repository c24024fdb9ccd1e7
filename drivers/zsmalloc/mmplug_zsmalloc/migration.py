"""The movable callbacks: zs_page_isolate, zs_page_migrate, zs_page_putback.

mm/zsmalloc.c, v4.19, with the deferred free of an emptied zspage after
migration (putback_zspage_deferred, 1a87aa03597e) and the isolation
accounting of 701d678599d0 (pool->isolated_pages).  A zspage
counts its isolated subpages; while any is isolated the zspage is off its
class's lists, so neither zs_malloc nor zs_compact touches it (DRV-Z2,
DRV-Z6), and zs_free never frees it (DRV-Z5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug.kernel import (
    EAGAIN,
    EINVAL,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    copy_highpage,
    get_page,
    page_mapping,
    put_page,
    set_page_movable,
)

from .handle import OBJ_ALLOCATED_TAG, PIN, location_to_obj, obj_to_location
from .pool import ZsPool, pool_of
from .sizeclass import Fullness, SizeClass
from .zspage import Zspage, get_zspage, obj_to_head

if TYPE_CHECKING:
    from mmplug import AddressSpace, Page


def _alive(pool: ZsPool, hook: str) -> None:
    if pool.destroyed:
        # The kernel would follow freed pool memory here.
        raise AssertionError(f"{hook} on a destroyed zsmalloc pool {pool.name}: use after free "
                             "(BUG-5: zs_destroy_pool did not wait for isolated pages)")


def putback_zspage_deferred(pool: ZsPool, cls: SizeClass, zspage: Zspage) -> Fullness:
    """putback_zspage_deferred(): back on its list; an empty one is freed by the work."""
    fullness = cls.putback_zspage(zspage)
    if fullness == Fullness.ZS_EMPTY:
        pool.kick_deferred_free()
    return fullness


def zs_pool_dec_isolated(pool: ZsPool) -> None:
    """zs_pool_dec_isolated(): one zspage fewer isolated (a destroying pool waits for 0)."""
    if pool.isolated_pages <= 0:
        raise AssertionError("zs_pool_dec_isolated: isolated_pages underflow")
    pool.isolated_pages -= 1


def zs_page_isolate(page: Page, mode: int) -> bool:
    """zs_page_isolate() (DRV-Z2): refuse an empty zspage or one zs_compact holds."""
    pool = pool_of(page)
    _alive(pool, "isolate_page")
    zspage = get_zspage(page)
    cls = pool.class_of(zspage)
    with cls.lock:
        if zspage.inuse == 0:
            return False
        # Off every list and not isolated: zs_compact is moving its objects.
        if zspage.list is None and not zspage.isolated:
            return False
        if zspage.list is not None and not zspage.isolated:
            # The first isolated subpage takes the zspage off its class.
            pool.isolated_pages += 1
            cls.remove_zspage(zspage, zspage.fullness)
        zspage.isolated += 1
    return True


def replace_sub_page(pool: ZsPool, cls: SizeClass, zspage: Zspage, newpage: Page,
                     oldpage: Page) -> None:
    """replace_sub_page(): rebuild the subpage chain with newpage in oldpage's place."""
    sp = pool.struct_pages
    pages = [newpage if p is oldpage else p for p in sp.chain(zspage)]
    units = sp.units(oldpage)
    huge_index = sp[oldpage].index if sp.is_huge(oldpage) else None
    sp.create_page_chain(cls, zspage, pages)
    sp[newpage].units = units
    if huge_index is not None:
        sp[newpage].index = huge_index
    set_page_movable(newpage, page_mapping(oldpage))


def zs_page_migrate(mapping: AddressSpace, newpage: Page, page: Page, mode: int) -> int:
    """zs_page_migrate() (DRV-Z3): pin every object of the page, move, re-point handles.

    SYNC_NO_COPY is refused with -EINVAL: the copy has to happen under
    class->lock.  An object already pinned (mapped, being freed or compacted)
    makes it -EAGAIN with nothing changed.
    """
    if mode == MigrateMode.SYNC_NO_COPY:
        return -EINVAL
    pool: ZsPool = mapping.private_data
    _alive(pool, "migratepage")
    sp = pool.struct_pages
    mem = pool.mem
    layout = pool.layout
    ps = layout.page_size
    handles = pool.handles
    zspage = get_zspage(page)
    zspage.lock.write_lock()
    cls = pool.class_of(zspage)
    offset = sp.units(page)
    ret = -EAGAIN
    with cls.lock:
        if not zspage.inuse:
            # Nothing to pin or re-point: skip every scan below.
            offset = ps
        pos = offset
        while pos < ps:
            head = obj_to_head(sp, mem, page, pos)
            if head & OBJ_ALLOCATED_TAG and not handles.trypin(head & ~OBJ_ALLOCATED_TAG):
                break
            pos += cls.size
        else:
            copy_highpage(newpage, page)
            for addr in range(offset, pos, cls.size):
                head = obj_to_head(sp, mem, page, addr)
                if head & OBJ_ALLOCATED_TAG:
                    handle = head & ~OBJ_ALLOCATED_TAG
                    if not handles.testpin(handle):
                        raise AssertionError(f"zs_page_migrate: handle {handle:#x} lost its pin")
                    _, obj_idx = obj_to_location(layout, handles.handle_to_obj(handle),
                                                 pool.pfn_to_page)
                    handles.record_obj(handle, location_to_obj(layout, newpage, obj_idx) | PIN)
            replace_sub_page(pool, cls, zspage, newpage, page)
            get_page(newpage)
            zspage.isolated -= 1
            if not zspage.isolated:
                if "BUG-6" in pool.bugs:
                    cls.putback_zspage(zspage)
                else:
                    putback_zspage_deferred(pool, cls, zspage)
                zs_pool_dec_isolated(pool)
            sp.reset_page(page)
            put_page(page)
            page = newpage
            ret = MIGRATEPAGE_SUCCESS
        for addr in range(offset, pos, cls.size):
            head = obj_to_head(sp, mem, page, addr)
            if head & OBJ_ALLOCATED_TAG:
                handles.unpin(head & ~OBJ_ALLOCATED_TAG)
    zspage.lock.write_unlock()
    return ret


def zs_page_putback(page: Page) -> None:
    """zs_page_putback() (DRV-Z4): the last isolated subpage puts the zspage back."""
    pool = pool_of(page)
    _alive(pool, "putback_page")
    zspage = get_zspage(page)
    cls = pool.class_of(zspage)
    with cls.lock:
        zspage.isolated -= 1
        if not zspage.isolated:
            # Under the page lock the zspage cannot be freed here: the work will.
            putback_zspage_deferred(pool, cls, zspage)
            zs_pool_dec_isolated(pool)
