"""Handles: struct z3fold_buddy_slots, encode_handle and its inverses.

mm/z3fold.c (v6.0): a handle is the address of one `slot[i]` of a
z3fold_buddy_slots (64-byte aligned, four slots, a back link to the pool with
flag bits, an rwlock).  The slot holds the header's address plus the buddy's
index `(bud + first_num) & 3`, and for LAST also its chunk count above
BUDDY_SHIFT.  A HEADLESS handle is the page's address with bit PAGE_HEADLESS
set.  The indirection lets migration and in-page compaction move an object
by rewriting the slot while the user's handle stays the same; a handle whose
slot lives in another page's slots is a "foreign" handle of the page it
points to (compact_single_buddy).

Addresses are modelled: a page's address is a direct-map address derived
from its pfn; slots get addresses of their own from the pool's slab model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmplug import ContractViolation

from .flags import (
    BUDDY_MASK,
    BUDDY_SHIFT,
    HANDLES_NOFREE,
    HEADLESS,
    LAST,
    PAGE_HEADLESS,
    PAGE_MIGRATED,
    SLOTS_ALIGN,
    Buddy,
)
from .geometry import DIRECT_MAP
from .header import Z3foldHeader, cpu_relax, z3fold_page_trylock, z3fold_page_unlock

if TYPE_CHECKING:
    from .pool import Z3foldPool

#: where the model's kmem_cache "z3fold_handle" hands out objects
SLOTS_BASE = 0xFFFF888100000000
#: an on-stack slots structure (z3fold_reclaim_page) lives here
STACK_SLOTS_BASE = 0xFFFFC90000000000
_SLOT_WORD = 8
#: a handle's slots structure: the handle with its slot index cleared
_SLOT_OFFSET = SLOTS_ALIGN - 1
#: a handle's slots structure as a key of SlotsCache.live: its address over SLOTS_ALIGN.
#: The addresses themselves share their low bits, all of which a dict's first probe
#: uses; their quotients are consecutive and hash evenly.
SLOTS_SHIFT = SLOTS_ALIGN.bit_length() - 1
#: the bit a HEADLESS handle carries
HEADLESS_BIT = 1 << PAGE_HEADLESS
#: enum buddy by value, without an enum lookup per handle
_BUDDY = tuple(Buddy)


class BuddySlots:
    """struct z3fold_buddy_slots: slot[BUDDY_MASK + 1], pool back link with flags, lock."""

    __slots__ = ("addr", "slot", "pool_flags", "lock")

    def __init__(self, addr: int, lock: Any, nofree: bool = False) -> None:
        self.addr = addr
        self.slot = [0] * (BUDDY_MASK + 1)
        self.pool_flags = 1 << HANDLES_NOFREE if nofree else 0
        self.lock = lock

    def __repr__(self) -> str:
        return f"<z3fold_buddy_slots {self.addr:#x} {[hex(s) for s in self.slot]}>"


class SlotsCache:
    """pool->c_handle, the kmem_cache of slots structures (and the on-stack ones)."""

    __slots__ = ("pool", "live", "_next", "_next_stack", "destroyed")

    def __init__(self, pool: Z3foldPool) -> None:
        self.pool = pool
        #: slots address >> SLOTS_SHIFT (a handle >> SLOTS_SHIFT) -> the live structure
        self.live: dict[int, BuddySlots] = {}
        self._next = 0
        self._next_stack = 0
        self.destroyed = False

    def alloc(self) -> BuddySlots:
        """alloc_slots(): a zeroed slots structure with its own rwlock."""
        addr = SLOTS_BASE + self._next * SLOTS_ALIGN
        self._next += 1
        slots = BuddySlots(addr, self.pool.new_rwlock("z3fold_buddy_slots.lock"))
        self.live[addr >> SLOTS_SHIFT] = slots
        return slots

    def alloc_on_stack(self) -> BuddySlots:
        """The HANDLES_NOFREE slots z3fold_reclaim_page keeps on its stack."""
        addr = STACK_SLOTS_BASE + self._next_stack * SLOTS_ALIGN
        self._next_stack += 1
        slots = BuddySlots(addr, self.pool.new_rwlock("z3fold_reclaim.slots.lock"), nofree=True)
        self.live[addr >> SLOTS_SHIFT] = slots
        return slots

    def free(self, slots: BuddySlots | None) -> None:
        """kmem_cache_free(pool->c_handle, slots) (NULL is fine)."""
        if slots is not None:
            self.live.pop(slots.addr >> SLOTS_SHIFT, None)

    def lookup(self, handle: int) -> BuddySlots:
        """handle_to_slots()."""
        slots = self.live.get(handle >> SLOTS_SHIFT)
        if slots is None:
            raise ContractViolation("REF-1", f"handle {handle:#x} points into a "
                                    "z3fold_buddy_slots that was freed (use after free)",
                                    driver="z3fold")
        return slots


def slot_index(handle: int) -> int:
    return (handle & _SLOT_OFFSET) // _SLOT_WORD


def is_headless_handle(handle: int) -> bool:
    return bool(handle & HEADLESS_BIT)


def buddy_index(zhdr: Z3foldHeader, bud: Buddy) -> int:
    """__idx(): the slot a buddy uses, rotated by first_num."""
    return (bud + zhdr.first_num) & BUDDY_MASK


def encode_handle_in(pool: Z3foldPool, zhdr: Z3foldHeader, slots: BuddySlots,
                    bud: Buddy) -> int:
    """__encode_handle(): write the slot, return its address (pool lock or page lock held)."""
    h = pool.virt(zhdr.page)
    if bud == HEADLESS:
        return h | 1 << PAGE_HEADLESS
    idx = buddy_index(zhdr, bud)
    h += idx
    if bud == LAST:
        h |= zhdr.last_chunks << BUDDY_SHIFT
    slots.lock.write_lock()
    slots.slot[idx] = h
    slots.lock.write_unlock()
    return slots.addr + idx * _SLOT_WORD


def encode_handle(pool: Z3foldPool, zhdr: Z3foldHeader, bud: Buddy) -> int:
    """encode_handle(): into the page's own slots."""
    return encode_handle_in(pool, zhdr, zhdr.slots, bud)


def read_slot(pool: Z3foldPool, handle: int) -> int:
    """*(unsigned long *)handle under the slots' read lock."""
    slots = pool.slots_cache.live.get(handle >> SLOTS_SHIFT) or pool.slots_cache.lookup(handle)
    lock = slots.lock
    lock.read_lock()
    addr = slots.slot[(handle & _SLOT_OFFSET) // _SLOT_WORD]
    lock.read_unlock()
    return addr


def handle_to_chunks(pool: Z3foldPool, handle: int) -> int:
    """handle_to_chunks(): the LAST buddy's size, kept in the slot value."""
    addr = read_slot(pool, handle)
    return (addr & ~pool.geometry.page_mask) >> BUDDY_SHIFT


def handle_to_buddy(pool: Z3foldPool, handle: int) -> Buddy:
    """handle_to_buddy(): undo the first_num rotation of the header the slot points at."""
    if handle & HEADLESS_BIT:
        pool.warn("handle_to_buddy() on a HEADLESS handle")
    addr = read_slot(pool, handle)
    geo = pool.geometry
    base = addr & geo.page_mask
    zhdr = pool.headers.get((base - DIRECT_MAP) // geo.page_size) or pool.header_at(base)
    return _BUDDY[(addr - zhdr.first_num) & BUDDY_MASK]


def handle_to_z3fold_header(pool: Z3foldPool, handle: int) -> Z3foldHeader:
    """The header a (non-headless) handle points at now, without locking."""
    return pool.header_at(read_slot(pool, handle) & pool.geometry.page_mask)


def get_z3fold_header(pool: Z3foldPool, handle: int) -> Z3foldHeader:
    """get_z3fold_header(): the locked header of a non-headless handle (DRV-3F5)."""
    return locked_header_slot(pool, handle)[0]


def locked_header_slot(pool: Z3foldPool, handle: int) -> tuple[Z3foldHeader, BuddySlots, int]:
    """get_z3fold_header(), also giving the handle's slots and the slot value it read.

    The slot is read, the header trylocked and PAGE_MIGRATED tested under the
    slots' read lock, so the answer is consistent with migration rewriting the
    slot.  A header marked PAGE_MIGRATED is the old copy: unlock it and retry
    until the slot points at the new page.  With BUG-13 selected the MIGRATED test is
    skipped, as before the fix, and a reader can lock the old header.
    """
    slots = pool.slots_cache.live.get(handle >> SLOTS_SHIFT) or pool.slots_cache.lookup(handle)
    idx = (handle & _SLOT_OFFSET) // _SLOT_WORD
    check_migrated = "BUG-13" not in pool.bugs
    lock = slots.lock
    page_mask = pool.geometry.page_mask
    page_size = pool.geometry.page_size
    headers = pool.headers
    while True:
        lock.read_lock()
        addr = slots.slot[idx]
        # pool.header_at() and z3fold_page_trylock(), written out for the common case
        base = addr & page_mask
        zhdr = headers.get((base - DIRECT_MAP) // page_size) or pool.header_at(base)
        locked = z3fold_page_trylock(zhdr) if zhdr.freed else zhdr.page_lock.trylock()
        # v6.0 tests PAGE_MIGRATED after read_unlock; by then migration may have
        # re-encoded the slot, finished and cleared the old page's private word, and
        # the reader goes on with a freed header.  Under the read lock the slot cannot
        # move on, so the bit is still there to see.
        migrated = locked and check_migrated and zhdr.page.private >> PAGE_MIGRATED & 1
        lock.read_unlock()
        if locked:
            if not migrated:
                return zhdr, slots, addr
            z3fold_page_unlock(zhdr)
        cpu_relax(pool.vm, "get_z3fold_header: retry")


def put_z3fold_header(zhdr: Z3foldHeader) -> None:
    """put_z3fold_header() for a non-headless header: unlock it."""
    z3fold_page_unlock(zhdr)


def free_handle(pool: Z3foldPool, handle: int, zhdr: Z3foldHeader,
                slots: BuddySlots | None = None) -> None:
    """free_handle(): clear the slot; free the slots structure once all four are clear
    (`slots`: the handle's, if the caller has looked them up)."""
    if slots is None:
        slots = pool.slots_cache.lookup(handle)
    idx = slot_index(handle)
    if slots.slot[idx] == 0:
        pool.warn("free_handle() of a handle whose slot is already clear")
        return
    slots.lock.write_lock()
    slots.slot[idx] = 0
    if slots.pool_flags & 1 << HANDLES_NOFREE:
        slots.lock.write_unlock()
        return
    if zhdr.slots is not slots:
        zhdr.foreign_handles -= 1
    is_free = not any(slots.slot)
    slots.lock.write_unlock()
    if is_free:
        if zhdr.slots is slots:
            zhdr.slots = None
        pool.slots_cache.free(slots)


__all__ = [
    "BuddySlots", "SlotsCache", "encode_handle", "free_handle", "get_z3fold_header",
    "handle_to_buddy", "handle_to_chunks", "handle_to_z3fold_header", "locked_header_slot",
    "put_z3fold_header",
]
