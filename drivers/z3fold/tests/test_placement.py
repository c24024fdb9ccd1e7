"""Where a new object goes and which page reclaim takes first (mm/z3fold.c, v6.0.19).

Both decide which pages stay in use, so both change what a comparison
counts.  The expected pages are worked out from the kernel lines cited.
Geometry on 4 KiB pages: 64-byte chunks, ZHDR_CHUNKS 2, NCHUNKS 62.
"""

from __future__ import annotations

from mmplug_z3fold.flags import Buddy
from mmplug_z3fold.handles import handle_to_buddy


def test_a_new_object_takes_the_first_fit_from_the_smallest_unbuddied_list(make_pool):
    """Page A holds a 3000-byte FIRST (47 chunks), page B a 1000-byte FIRST (16).

    add_to_unbuddied() (mm/z3fold.c:544-560) files a page by num_free_chunks()
    (:523-541): A on unbuddied[62 - 47 = 15], B on unbuddied[62 - 16 = 46].
    (B was not put into A: a 16-chunk object searches lists 16..61, and A is
    on list 15.)  A 500-byte object needs 8 chunks; __z3fold_alloc()
    (:791-900) walks unbuddied[8], [9], ... and takes the first page it meets:
    A, on list 15, before B on list 46.  get_free_buddy() (:562-582) gives it
    A's LAST buddy.
    """
    vm, pool = make_pool()
    a = pool.store(b"a" * 3000)
    b = pool.store(b"b" * 1000)
    page_a, page_b = pool.header_of_handle(a).page, pool.header_of_handle(b).page
    assert page_a is not page_b
    assert pool.header_of_handle(a).buddy is pool.unbuddied_of(0)[15]
    assert pool.header_of_handle(b).buddy is pool.unbuddied_of(0)[46]
    c = pool.store(b"c" * 500)
    assert pool.header_of_handle(c).page is page_a
    assert handle_to_buddy(pool, c) == Buddy.LAST
    assert pool.read(c) == b"c" * 500
    pool.verify()


def test_reclaim_starts_with_the_page_least_recently_allocated_into(make_pool):
    """Page A (a 3000-byte FIRST, on unbuddied[15]), then page B (2000 bytes, 32
    chunks, on unbuddied[30]); a 500-byte object then fits A first (see above).

    z3fold_alloc() moves the page it allocated into to the head of pool->lru
    (list_del + list_add, mm/z3fold.c:1083-1092): after A, B, A the LRU from
    its head is A, B.  z3fold_reclaim_page() walks it with list_for_each_prev()
    (:1242): B, the page least recently allocated into, is evicted first,
    although A is the older page.
    """
    vm, pool = make_pool()
    written: dict[int, bytes] = {}
    pool.evict = pool.writeback_evict(written)
    a = pool.store(b"a" * 3000)
    b = pool.store(b"b" * 2000)
    page_a, page_b = pool.header_of_handle(a).page, pool.header_of_handle(b).page
    assert page_a is not page_b
    c = pool.store(b"c" * 500)
    assert pool.header_of_handle(c).page is page_a
    assert pool.shrink(1) == 1
    assert written == {b: b"b" * 2000}
    assert set(pool.objects) == {a, c}
    assert pool.shrink(1) == 1
    assert set(written) == {a, b, c} and not pool.objects
    pool.verify()


def test_of_two_pages_on_one_unbuddied_list_the_newest_is_taken(make_pool):
    """Pages A then B, each with a 3000-byte FIRST: both on unbuddied[15].

    add_to_unbuddied() list_add()s (mm/z3fold.c:555), so B, added last, is the
    list's first entry, and __z3fold_alloc() takes list_first_entry() (:806):
    a 500-byte object goes into B.
    """
    vm, pool = make_pool()
    a = pool.store(b"a" * 3000)
    b = pool.store(b"b" * 3000)
    assert pool.header_of_handle(a).buddy is pool.header_of_handle(b).buddy
    c = pool.store(b"c" * 500)
    assert pool.header_of_handle(c).page is pool.header_of_handle(b).page
    pool.verify()
