"""struct page: flags, refcount and the tagged `mapping` word (FLG-1..FLG-7).

Models include/linux/mm_types.h (struct page), include/linux/page-flags.h and the
movable helpers of mm/compaction.c (PageMovable, __SetPageMovable,
__ClearPageMovable) and mm/util.c (page_mapping), v4.19.

The helpers here are pure: they touch one page and raise `ContractViolation`
where the kernel has a VM_BUG_ON.  Anything that may sleep or race (page lock,
refcount) goes through the zone's CPU backend (mmplug.cpus).  The flag helpers
a driver calls are mmplug.kernel's, which add the schedule point another CPU may
run at: __SetPageMovable and __ClearPageMovable are written there, the bodies of
the others here are private, so no driver calls a variant the race explorer
cannot see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import define

from .errors import ContractViolation

if TYPE_CHECKING:
    from .mapping import AddressSpace
    from .zone import Zone

# enum pageflags, v4.19 bit numbers (include/linux/page-flags.h).
PG_locked = 0
PG_error = 1
PG_referenced = 2
PG_uptodate = 3
PG_dirty = 4
PG_lru = 5
PG_active = 6
PG_waiters = 7
PG_slab = 8
PG_owner_priv_1 = 9
PG_reserved = 11
PG_private = 12
PG_writeback = 14
PG_head = 15
PG_reclaim = 17
PG_swapbacked = 18
PG_unevictable = 19
#: PG_isolated is PG_reclaim: a non-LRU movable page is never under reclaim (FLG-6).
PG_isolated = PG_reclaim
#: In v4.19 PageBuddy is a page_type in _mapcount and a tail page is marked by
#: bit 0 of compound_head; the model keeps both in the flags word, above the real bits.
PG_buddy = 24
PG_tail = 25

LOCKED = 1 << PG_locked
LRU = 1 << PG_lru
ACTIVE = 1 << PG_active
SLAB = 1 << PG_slab
RESERVED = 1 << PG_reserved
PRIVATE = 1 << PG_private
WRITEBACK = 1 << PG_writeback
HEAD = 1 << PG_head
RECLAIM = 1 << PG_reclaim
ISOLATED = RECLAIM
UNEVICTABLE = 1 << PG_unevictable
BUDDY = 1 << PG_buddy
TAIL = 1 << PG_tail
COMPOUND = HEAD | TAIL

#: free_pages_check(): flags a page must not carry when it is freed (PAGE_FLAGS_CHECK_AT_FREE).
FLAGS_CHECK_AT_FREE = LOCKED | LRU | ACTIVE | SLAB | RESERVED | PRIVATE | WRITEBACK | UNEVICTABLE

#: pages PageMovable() never takes for movable, whatever their mapping word says
SLAB_OR_TAIL = SLAB | TAIL
#: ... and those isolate_movable_page() passes over too (already isolated)
NOT_ISOLATABLE = SLAB | TAIL | ISOLATED

FLAG_NAMES = {
    PG_locked: "locked", PG_error: "error", PG_referenced: "referenced",
    PG_uptodate: "uptodate", PG_dirty: "dirty", PG_lru: "lru", PG_active: "active",
    PG_waiters: "waiters", PG_slab: "slab", PG_owner_priv_1: "owner_priv_1",
    PG_reserved: "reserved", PG_private: "private", PG_writeback: "writeback",
    PG_head: "head", PG_reclaim: "reclaim/isolated", PG_swapbacked: "swapbacked",
    PG_unevictable: "unevictable", PG_buddy: "buddy", PG_tail: "tail",
}

# The low two bits of page->mapping (FLG-1).
PAGE_MAPPING_ANON = 0x1
PAGE_MAPPING_MOVABLE = 0x2
PAGE_MAPPING_KSM = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE
PAGE_MAPPING_FLAGS = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE
#: the address bits of a mapping word (folded once: page_mapping() runs per page)
_MAPPING_BASE = ~PAGE_MAPPING_FLAGS


def flag_names(flags: int) -> str:
    names = [name for bit, name in FLAG_NAMES.items() if flags >> bit & 1]
    return "|".join(names) if names else "none"


@define(slots=True, eq=False, weakref_slot=False, repr=False)
class Page:
    """One page frame: `struct page`.

    `mapping` is one int: the handle of an AddressSpace with the tag bits in its
    low two bits, or whatever another user overlays there (slab).  `private` is
    the owner's (page_private; the buddy order of a free block).  `lru` is the
    list link: whoever owns the page may use it, and while the page is isolated
    the VM owns it (ISO-2, ISO-4).
    """

    pfn: int
    zone: Zone
    flags: int = 0
    _refcount: int = 0
    mapping: int = 0
    private: Any = 0
    lru: Any = None

    def describe(self) -> str:
        """pfn, flags, refcount and the mapping word decoded, for error messages."""
        return (f"pfn {self.pfn:#x} flags {self.flags:#x}({flag_names(self.flags)}) "
                f"refcount {self._refcount} mapping {describe_mapping(self)}")

    def __repr__(self) -> str:
        return f"<Page {self.describe()}>"


def describe_mapping(page: Page) -> str:
    word: object = page.mapping   # a broken driver may have stored anything there
    if not isinstance(word, int):
        return f"{word!r} (not a word)"
    tag = word & PAGE_MAPPING_FLAGS
    base = word & ~PAGE_MAPPING_FLAGS
    kind = {0: "", 1: " [anon]", 2: " [movable]", 3: " [ksm]"}[tag]
    owner = ""
    if tag == PAGE_MAPPING_MOVABLE:
        space = page.zone.mappings.get(base) if base else None
        if space is not None:
            owner = f" -> {space.name}"
        elif base == 0:
            owner = " -> none (released by its driver)"
        else:
            owner = " -> not an address space"
    return f"{word:#x}{kind}{owner}"


# --- the mapping word (FLG-2, FLG-3, FLG-7) ---------------------------------

def has_movable_tag(page: Page) -> bool:
    """__PageMovable(): the tag says movable. Lockless, may be a false positive (FLG-2)."""
    return page.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE


def page_mapping(page: Page) -> AddressSpace | None:
    """page_mapping() (mm/util.c): the address space, tag bits masked off (FLG-7).

    Slab pages and anonymous pages have none; a word that points at nothing
    registered is reported rather than dereferenced (the kernel would follow it).
    """
    flags = page.flags
    # (one mask for the usual page, neither slab nor tail, rather than one for each)
    if flags and flags & SLAB_OR_TAIL:
        if flags & TAIL:
            page = page.zone.compound_head(page)
        if page.flags & SLAB:
            return None
    word = page.mapping
    if word & PAGE_MAPPING_ANON:
        return None
    # the usual case, one probe; _space_of for no space (0) and a word pointing nowhere
    space = page.zone.mappings.get(word & _MAPPING_BASE)
    return space if space is not None else _space_of(page, word)


def _space_of(page: Page, word: int) -> AddressSpace | None:
    """The address space a mapping word points at; a word pointing nowhere is FLG-1."""
    base = word & ~PAGE_MAPPING_FLAGS
    if not base:
        return None
    space = page.zone.mappings.get(base)
    if space is None:
        raise ContractViolation("FLG-1", f"mapping word {word:#x} points at no address space",
                                page=page)
    return space


def _page_movable(page: Page) -> bool:
    """PageMovable() (mm/compaction.c): must hold the page lock (FLG-3).

    True only if the word is tagged movable and points at an address space
    whose a_ops has isolate_page.
    """
    return movable_mapping(page) is not None


def movable_mapping(page: Page) -> AddressSpace | None:
    """PageMovable() that hands back the address space: one lookup where the VM needs both."""
    flags = page.flags
    if not flags & LOCKED:
        raise ContractViolation("FLG-3", "PageMovable() called on a page that is not locked",
                                page=page)
    word = page.mapping
    if word & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE or flags & SLAB_OR_TAIL:
        return None
    # the hot path: one dict probe, _space_of only to tell "released" from a bad word
    space = page.zone.mappings.get(word - PAGE_MAPPING_MOVABLE)
    if space is None:
        return _space_of(page, word)
    ops = space.a_ops
    return space if ops is not None and ops.isolate_page is not None else None


def _page_isolated(page: Page) -> bool:
    """PageIsolated(): PG_isolated, the alias of PG_reclaim (FLG-6)."""
    return bool(page.flags & ISOLATED)


def page_locked(page: Page) -> bool:
    """PageLocked()."""
    return bool(page.flags & LOCKED)


def page_count(page: Page) -> int:
    """page_count(): the reference count."""
    return page._refcount


def page_buddy(page: Page) -> bool:
    """PageBuddy(): the head of a free block in the buddy allocator."""
    return bool(page.flags & BUDDY)
