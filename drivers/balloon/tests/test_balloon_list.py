"""b_dev_info->pages: a list walked from the head, whose walker may delete where it stands."""

from __future__ import annotations

from mmplug_balloon.balloon_compaction import BalloonPageList


class FakePage:
    """What the list looks at of a page: its identity and its lru."""

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn
        self.lru = None

    def __repr__(self) -> str:
        return f"<page {self.pfn}>"


def listed(n: int) -> tuple[BalloonPageList, list[FakePage]]:
    lst = BalloonPageList("test")
    pages = [FakePage(i) for i in range(n)]
    for p in pages:
        lst.add(p)
    return lst, pages


def test_the_walk_starts_at_the_newest_page():
    lst, pages = listed(5)
    assert list(lst) == pages[::-1]


def test_a_walker_that_deletes_each_page_it_stands_on_sees_every_page_once():
    lst, pages = listed(6)
    seen = []
    for page in lst:
        seen.append(page)
        lst.delete(page)
    assert seen == pages[::-1] and len(lst) == 0
    assert all(p.lru is None for p in pages)


def test_a_walk_goes_on_after_a_page_deleted_in_the_middle():
    lst, pages = listed(6)
    seen = []
    for page in lst:
        seen.append(page)
        if page is pages[3]:
            lst.delete(page)
    assert seen == pages[::-1]
    assert list(lst) == [p for p in pages[::-1] if p is not pages[3]]


def test_pages_added_behind_the_walk_are_not_visited():
    lst, pages = listed(4)
    late = [FakePage(100 + i) for i in range(3)]
    seen = []
    for i, page in enumerate(lst):
        seen.append(page)
        if i < len(late):
            lst.add(late[i])
    assert seen == pages[::-1]
    assert list(lst) == late[::-1] + pages[::-1]


def test_dequeuing_from_the_head_over_and_over_keeps_the_order():
    lst, pages = listed(50)
    for p in pages[10:20]:          # holes in the middle first
        lst.delete(p)
    taken = []
    while lst:
        head = next(iter(lst))
        lst.delete(head)
        taken.append(head)
        if len(taken) == 5:
            lst.add(pages[15])      # one comes back, as putback does
    want = pages[:10][::-1]
    assert taken[:5] == pages[40:50][::-1][:5]
    assert taken[5] is pages[15]
    assert taken[6:] == pages[20:45][::-1] + want
