"""The pool's header lists: list_add at the head, list_del_init anywhere, in order."""

from __future__ import annotations

from mmplug_z3fold.lists import BuddyList


class FakeHeader:
    """What a BuddyList looks at of a header: its identity and zhdr->buddy."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.buddy = None

    def __repr__(self) -> str:
        return f"<zhdr {self.n}>"


def test_taking_the_head_over_and_over_follows_the_list_order():
    lst = BuddyList("stale")
    zhdrs = [FakeHeader(i) for i in range(40)]
    for z in zhdrs:
        lst.add(z)
    for z in zhdrs[5:15]:             # deleted from the middle
        lst.delete(z)
    taken = []
    while len(lst):
        head = lst.first()
        lst.delete(head)
        assert head.buddy is None
        taken.append(head)
        if len(taken) == 3:
            lst.add(zhdrs[7])         # back at the head
    assert taken[:3] == zhdrs[37:40][::-1]
    assert taken[3] is zhdrs[7]
    assert taken[4:] == zhdrs[15:37][::-1] + zhdrs[:5][::-1]
    assert lst.first() is None
