"""The deliberately broken drivers, as a table: a correct driver plus one mistake each.

Every other file in this folder is made from a correct driver of `BASES`
(`tests/drivers/simplepool.py`, or `tests/conformance/bases/oneballoon.py` for
a balloon's mistakes) and one row of `MISTAKES`: the base's docstring gives way to a header that
names the mistake and the rule it breaks, the driver is renamed `broken_NAME`,
and the row's edits are applied, each one carrying a `# the mistake` (or
`# for the mistake`) comment so that a reader of the file sees it.  The files
stay committed, so `mmplug check-driver tests/conformance/broken/NAME.py` and
the reproduce lines it prints run on real files.

After a change to simplepool or to this table, rewrite them from the
repository's root and run their tests:

    python -m tests.conformance.broken.regenerate
    python -m pytest tests/conformance/test_broken_drivers.py

`regenerate --check` writes nothing and lists the files that are out of date.
An anchor that no longer matches exactly once is an error naming the mistake
and the anchor: fix the anchor here, never the generated file.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from attrs import field, frozen, validators

from mmplug import rules

BROKEN = Path(__file__).resolve().parent
SIMPLEPOOL = BROKEN.parents[1] / "drivers" / "simplepool.py"
#: the correct drivers a mistake is made in, by name; most are simplepool's
BASES = {"simplepool": SIMPLEPOOL,
         "oneballoon": BROKEN.parent / "bases" / "oneballoon.py"}
#: every edit's replacement carries one of these comments
MARKS = ("# the mistake", "# for the mistake")
#: what a header tells the reader of a generated file
HEADER = '''\
"""{driver}: {base} with one mistake, which breaks {rule}.

{summary}

Generated from {path} and this mistake's row in
mistakes.py (python -m tests.conformance.broken.regenerate): edit those.
"""
'''


class AnchorError(ValueError):
    """An edit's anchor does not match exactly once where it must."""


@frozen(slots=True)
class Span:
    """Characters `start:end` of the source become `text`."""

    start: int
    end: int
    text: str


def _marked(_obj: object, _attr: object, replacement: str) -> None:
    if not any(mark in replacement for mark in MARKS):
        raise ValueError(f"edit {replacement!r} carries none of the comments {MARKS}")


@frozen(slots=True)
class Edit:
    """Replace `anchor` by `replacement`.

    `anchor` must occur exactly once in the base driver, or, when `within` names a
    function, class or method ("migratepage", "Pool.free"), exactly once in
    that definition, which lets a short anchor stay unambiguous.
    """

    anchor: str
    replacement: str = field(validator=_marked)
    within: str | None = None

    def locate(self, source: str, tree: ast.Module | None = None,
               base: str = "simplepool") -> Span:
        """Where the edit applies in `source` (the driver `base`); AnchorError unless
        exactly once."""
        start, end = 0, len(source)
        if self.within is not None:
            start, end = _definition(source, tree or ast.parse(source), self.within, base)
        where = f"in {self.within}" if self.within else f"in {base}"
        found = source.count(self.anchor, start, end)
        if found != 1:
            raise AnchorError(f"anchor {self.anchor!r} occurs {found} times {where}, not once")
        at = source.index(self.anchor, start, end)
        return Span(at, at + len(self.anchor), self.replacement)


def _rule_set(ids: Iterable[str]) -> frozenset[str]:
    return frozenset(ids)


def _known_rule(_obj: object, _attr: object, value: str) -> None:
    if not rules.exists(value):
        raise ValueError(f"no rule {value!r} in the contract")


@frozen(slots=True)
class Mistake:
    """One broken driver: simplepool with `edits` applied.

    check-driver must report `rule` on it.  `also_expected` are the other
    rules the mistake goes on to break, each a violation of its own that the
    kernel would catch too (a reference never taken underflows when it is
    dropped: REF-1); the same violation seen again under another rule's name
    does not count.  A verdict outside `may_fail` names the wrong rule.
    `stalls` marks a mistake that hangs, sleeps or ends the process: the
    tests run it on a few checks only.  `base` names the correct driver of
    BASES the mistake is made in.
    """

    name: str
    rule: str = field(validator=_known_rule)
    summary: str
    edits: tuple[Edit, ...] = field(validator=validators.min_len(1))
    also_expected: frozenset[str] = field(
        default=frozenset(), converter=_rule_set,
        validator=validators.deep_iterable(member_validator=_known_rule))
    stalls: bool = False
    base: str = field(default="simplepool", validator=validators.in_(BASES))

    @property
    def driver(self) -> str:
        """The name the broken driver registers under."""
        return f"broken_{self.name}"

    @property
    def path(self) -> Path:
        return BROKEN / f"{self.name}.py"

    @property
    def base_path(self) -> Path:
        """The correct driver the mistake is made in."""
        return BASES[self.base]

    @property
    def may_fail(self) -> frozenset[str]:
        """Every rule check-driver may fail this driver on."""
        return self.also_expected | {self.rule}

    def spans(self, source: str) -> list[Span]:
        """Every change to the base driver, in order: header, name, summary, the edits."""
        tree = ast.parse(source)
        path = self.base_path.relative_to(BROKEN.parents[2]).as_posix()
        header = HEADER.format(driver=self.driver, base=self.base, rule=self.rule, path=path,
                               summary=textwrap.fill(self.summary, 88))
        spans = [_docstring(source, tree, header),
                 *_driver_info(source, tree, name=self.driver,
                               summary=f"{self.base} that breaks {self.rule}"),
                 *(edit.locate(source, tree, self.base) for edit in self.edits)]
        spans.sort(key=lambda s: s.start)
        for a, b in pairwise(spans):
            if b.start < a.end:
                raise AnchorError(f"{self.name}: edits overlap at {a.text!r} and {b.text!r}")
        return spans

    def render(self, source: str) -> str:
        """The broken driver's file: `source` (the base driver) with the mistake made."""
        out, at = [], 0
        for span in self.spans(source):
            out += [source[at:span.start], span.text]
            at = span.end
        return "".join(out) + source[at:]


def _offsets(source: str) -> list[int]:
    """Character offset of the start of each line, indexed by ast's 1-based line numbers."""
    return [0, 0, *(m.end() for m in re.finditer("\n", source)), len(source)]


def _char(source: str, starts: list[int], line: int, col: int) -> int:
    """ast's (line, UTF-8 byte column) as a character offset into `source`."""
    text = source[starts[line]:starts[line + 1]]
    return starts[line] + len(text.encode()[:col].decode())


def _definition(source: str, tree: ast.Module, dotted: str,
                base: str = "simplepool") -> tuple[int, int]:
    """The character range of the def or class `dotted` ("Pool.free")."""
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise AnchorError(f"{base} defines no {dotted}")
        body = node.body
    assert node is not None and node.end_lineno is not None
    starts = _offsets(source)
    return starts[node.lineno], starts[node.end_lineno + 1]


def _docstring(source: str, tree: ast.Module, header: str) -> Span:
    """The module docstring's lines, to be replaced by `header` (or the top, if none)."""
    first = tree.body[0] if tree.body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        assert first.end_lineno is not None
        return Span(0, _offsets(source)[first.end_lineno + 1], header)
    return Span(0, 0, header + "\n")


def _driver_info(source: str, tree: ast.Module, **values: str) -> list[Span]:
    """The string literals of DriverInfo(...)'s keywords `values`, replaced."""
    starts = _offsets(source)
    spans = []
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "DriverInfo"):
            continue
        for kw in call.keywords:
            if kw.arg in values and isinstance(kw.value, ast.Constant):
                v = kw.value
                assert v.end_lineno is not None and v.end_col_offset is not None
                spans.append(Span(_char(source, starts, v.lineno, v.col_offset),
                                  _char(source, starts, v.end_lineno, v.end_col_offset),
                                  json.dumps(values[kw.arg])))
    if len(spans) != len(values):
        raise AnchorError(f"simplepool has no single DriverInfo({', '.join(values)}=...)")
    return spans


_IMPORTS = "from __future__ import annotations\n"


def import_line(module: str, names: str = "") -> Edit:
    """`import module` (or `from module import names`) among simplepool's imports, for a
    mistake that needs it."""
    line = f"from {module} import {names}" if names else f"import {module}"
    return Edit(_IMPORTS, f"{_IMPORTS}\n{line}  # for the mistake\n")


def map_knob(purpose: str) -> tuple[Edit, ...]:
    """The "map" knob (map/unmap a handle) for a mistake that needs it; `purpose` says what
    a mapped object does in that driver."""
    return (
        Edit('"pinned")\n', '"pinned", "mapped")  # for the mistake\n', within="PoolPage"),
        Edit("        self.pinned = 0\n",
             "        self.pinned = 0\n"
             "        self.mapped = 0  # for the mistake\n",
             within="PoolPage.__init__"),
        Edit("            self.handles[handle][0].pinned -= 1\n",
             "            self.handles[handle][0].pinned -= 1\n"
             "\n"
             f"    def map(self, handle):  # for the mistake: {purpose}\n"
             "        with self.lock:\n"
             "            self.handles[handle][0].mapped += 1\n"
             "\n"
             "    def unmap(self, handle):\n"
             "        with self.lock:\n"
             "            self.handles[handle][0].mapped -= 1\n",
             within="Pool.unpin"))


def _migrate_under(prefix: str) -> tuple[Edit, ...]:
    """migratepage's body moved to a function of its own that migratepage calls after
    `prefix` (code of migratepage's, which may open a block around the call)."""
    return (Edit("    pool = mapping.private_data\n    with pool.lock:\n",
                 "    pool = mapping.private_data\n" + prefix +
                 "    return _migrate(pool, mapping, newpage, page, mode)\n"
                 "\n\n"
                 "def _migrate(pool, mapping, newpage, page, mode):  # for the mistake\n"
                 "    with pool.lock:\n",
                 within="migratepage"),)


#: the broken drivers, one row each; the driver file is broken/NAME.py
MISTAKES: tuple[Mistake, ...] = (
    # --- flags ---
    Mistake(
        "movable_no_lock", "FLG-4",
        "store() makes a new page movable before taking its lock.",
        (Edit("        lock_page(page)\n        set_page_movable(page, self.mapping)\n",
              "        set_page_movable(page, self.mapping)  # the mistake: before the lock\n"
              "        lock_page(page)\n",
              within="Pool.store"),),
    ),
    # --- isolation ---
    Mistake(
        "isolate_keeps_page", "ISO-2",
        "isolate_page returns True without taking the page out of the pool.",
        (Edit("        st.isolated = True\n        pool.partial.pop(st, None)\n",
              "        # the mistake: not taken out, the page stays where store() can use it\n",
              within="isolate_page"),),
    ),
    Mistake(
        "isolate_takes_ref", "ISO-1",
        "isolate_page takes a reference on the page of its own, as if the isolation "
        "reference were the driver's to take; nothing ever drops it.",
        (Edit("        st.isolated = True\n",
              "        st.isolated = True\n"
              "        get_page(page)  # the mistake: the VM takes the isolation reference\n",
              within="isolate_page"),),
        # the extra reference outlives every later step: the old page is not released
        # when migratepage succeeds, putback leaves it behind, destroy() leaks the page
        also_expected={"MIG-7", "PUT-2", "REL-1"},
    ),
    Mistake(
        "isolate_returns_none", "ISO-2",
        "isolate_page returns None instead of a bool.",
        (Edit("    return True\n", "    return None  # the mistake: not a bool\n",
              within="isolate_page"),),
    ),
    Mistake(
        "interrupts_itself", "ISO-2",
        "isolate_page raises KeyboardInterrupt, which is not the user's Ctrl-C.",
        (Edit("        st = page.private\n",
              "        st = page.private\n"
              "        if st.nused == SLOTS:\n"
              "            raise KeyboardInterrupt  # the mistake: a BaseException of its own\n",
              within="isolate_page"),),
    ),
    Mistake(
        "free_relists_isolated", "ISO-2",
        "free() of an object offers its page's free slot to store() again even while the page "
        "is isolated.",
        (Edit("                if not st.isolated:\n                    self.partial[st] = None\n",
              "                self.partial[st] = None  # the mistake: even an isolated page\n",
              within="Pool.free"),),
    ),
    Mistake(
        "sets_pg_isolated", "ISO-3",
        "isolate_page sets PG_isolated (PG_reclaim, bit 17) itself; only the VM may.",
        (Edit("    return True\n",
              "    page.flags |= 1 << 17  # the mistake: PG_isolated is the VM's\n"
              "    return True\n",
              within="isolate_page"),),
    ),
    Mistake(
        "touches_lru", "ISO-4",
        "free() unlinks page.lru of the object's page even while it is isolated.",
        (Edit("            st.nused -= 1\n",
              "            st.nused -= 1\n"
              "            st.page.lru = None  # the mistake: list_del on a page the VM may own\n",
              within="Pool.free"),),
        # the same mistake when the object is the last and the isolated page is released
        also_expected={"REL-2"},
    ),
    Mistake(
        "refusal_changes", "ISO-6",
        "isolate_page refuses a page with a mapped object, after dropping it from the pool.",
        (*map_knob("a mapped object's page is not moved"),
         Edit('may_refuse_isolation=False,\n' + ' ' * 48 + 'knobs={"pin", "busy"}))\n',
              'may_refuse_isolation=True,\n'
              + ' ' * 48 + 'knobs={"pin", "busy", "map"}))  # for the mistake\n',
              within="mmplug_driver"),
         import_line("mmplug.kernel", "EBUSY"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if st.mapped:  # for the mistake: mapped since it was isolated\n"
              "            return -EBUSY\n",
              within="migratepage"),
         Edit("        st = page.private\n",
              "        st = page.private\n"
              "        if st.mapped:\n"
              "            pool.states.pop(st, None)  # the mistake: a refusal changes nothing\n"
              "            return False\n",
              within="isolate_page")),
    ),
    # --- migration ---
    Mistake(
        "no_set_movable", "MIG-7",
        "migratepage forgets __SetPageMovable on the new page.",
        (Edit("        set_page_movable(newpage, mapping)\n",
              "        # the mistake: no set_page_movable(newpage, mapping)\n",
              within="migratepage"),),
        # releasing the new page later: __ClearPageMovable on a page that is not movable
        also_expected={"FLG-5"},
    ),
    Mistake(
        "no_newpage_ref", "MIG-7",
        "migratepage forgets to take its own reference on the new page.",
        (Edit("        get_page(newpage)\n", "        # the mistake: no get_page(newpage)\n",
              within="migratepage"),),
        # the VM's put_page frees newpage under the driver: its own put_page underflows
        also_expected={"REF-1"},
    ),
    Mistake(
        "partial_copy", "MIG-7",
        "migratepage copies only the first half of the page.",
        (Edit("        copy_highpage(newpage, page)\n",
              "        half = len(page_address(page)) // 2  # the mistake: half a copy\n"
              "        page_address(newpage)[:half] = page_address(page)[:half]\n",
              within="migratepage"),),
    ),
    Mistake(
        "stale_handle", "MIG-7",
        "migratepage does not point its bookkeeping (and so its handles) at the new page.",
        (Edit("        st.page = newpage\n",
              "        # the mistake: st.page still names the old page\n",
              within="migratepage"),),
        # releasing through the stale pointer: __ClearPageMovable and put_page on the old,
        # already released page
        also_expected={"FLG-5", "REF-1"},
    ),
    Mistake(
        "newpage_flags", "MIG-7",
        "migratepage leaves PG_lru set on the new page, as if it were an LRU page.",
        (Edit("        newpage.private = st\n",
              "        newpage.private = st\n"
              "        newpage.flags |= 1 << 5  # the mistake: PG_lru belongs to LRU pages\n",
              within="migratepage"),),
        # freeing a page with PG_lru set is a bad page state (free_pages_check)
        also_expected={"FREE-1"},
    ),
    Mistake(
        "no_clear_movable", "MIG-7",
        "migratepage forgets __ClearPageMovable on the old page.",
        (Edit("        clear_page_movable(page)\n",
              "        # the mistake: no clear_page_movable(page)\n",
              within="migratepage"),),
    ),
    Mistake(
        "leaks_old_page", "MIG-7",
        "migratepage keeps its reference on the old page.",
        (Edit("    put_page(page)\n", "    # the mistake: no put_page(page)\n",
              within="migratepage"),),
    ),
    Mistake(
        "positive_return", "MIG-8",
        "migratepage returns 1 instead of MIGRATEPAGE_SUCCESS.",
        (Edit("    return MIGRATEPAGE_SUCCESS\n",
              "    return 1  # the mistake: not 0, -EAGAIN or a negative errno\n",
              within="migratepage"),),
    ),
    Mistake(
        "eagain_keeps_newpage", "MIG-8",
        "migratepage takes a reference on the new page before it gives up with -EAGAIN.",
        (Edit("            return -EAGAIN\n",
              "            get_page(newpage)  # the mistake: after -EAGAIN newpage is the VM's\n"
              "            return -EAGAIN\n",
              within="migratepage"),),
    ),
    Mistake(
        "newpage_movable_on_failure", "MIG-8",
        "migratepage makes the new page movable before it knows it can migrate, and leaves it "
        "so when it gives up with -EAGAIN.",
        (Edit("        st = page.private\n        if pool.held or st.pinned:\n",
              "        st = page.private\n"
              "        set_page_movable(newpage, mapping)  # the mistake: before the pin check\n"
              "        if pool.held or st.pinned:\n",
              within="migratepage"),
         Edit("        set_page_movable(newpage, mapping)\n",
              "        # for the mistake: newpage was made movable above\n",
              within="migratepage")),
    ),
    Mistake(
        "relists_on_failure", "MIG-8",
        "migratepage, failing for good on a mapped object, puts the page back on its list "
        "itself: store() may use it while the VM still holds it isolated.",
        (*map_knob("a knob that makes migration fail for good"),
         Edit('knobs={"pin", "busy"}))\n',
              'knobs={"pin", "busy", "map"}))  # for the mistake\n', within="mmplug_driver"),
         import_line("mmplug.kernel", "EBUSY"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if st.mapped:\n"
              "            st.isolated = False  # the mistake: putback_page is the VM's to call\n"
              "            if st.used() < SLOTS:\n"
              "                pool.partial[st] = None\n"
              "            return -EBUSY\n",
              within="migratepage")),
    ),
    Mistake(
        "one_object_moved", "MIG-7",
        "store() keeps a page per size class, as zsmalloc does, and migratepage copies only "
        "the first object of the page.",
        (Edit('"pinned")\n', '"pinned", "size")  # for the mistake\n', within="PoolPage"),
         Edit("        self.pinned = 0\n",
              "        self.pinned = 0\n"
              "        self.size = 0  # for the mistake: the size class of the page's objects\n",
              within="PoolPage.__init__"),
         Edit("            if self.partial:\n"
              "                st = next(reversed(self.partial))\n"
              "                return self._place(st, data)\n",
              "            for st in reversed(self.partial):  # for the mistake: size classes\n"
              "                if st.size == len(data) // 16:\n"
              "                    return self._place(st, data)\n",
              within="Pool.store"),
         Edit("        st = PoolPage(page)\n",
              "        st = PoolPage(page)\n"
              "        st.size = len(data) // 16  # for the mistake\n",
              within="Pool.store"),
         Edit("        copy_highpage(newpage, page)\n",
              "        first = next((i for i, h in enumerate(st.slots) if h is not None), 0)\n"
              "        off, end = first * pool.slot_size, (first + 1) * pool.slot_size\n"
              "        # the mistake: only the first object is copied\n"
              "        page_address(newpage)[off:end] = page_address(page)[off:end]\n",
              within="migratepage")),
    ),
    Mistake(
        "raises", "MIG-8",
        "migratepage raises on a page with a free slot.",
        (Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if None in st.slots:\n"
              '            raise LookupError("slot table out of date")  # the mistake\n',
              within="migratepage"),),
    ),
    Mistake(
        "hangs", "MIG-8",
        "migratepage spins forever when asked to migrate a page of more than one object.",
        (Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        while st.used() > 1:\n"
              "            pass  # the mistake: waits for a change that cannot come\n",
              within="migratepage"),),
        stalls=True,
    ),
    Mistake(
        "sleeps", "MIG-8",
        "migratepage sleeps for an hour (a blocking call, not a busy loop).",
        (import_line("time"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        time.sleep(3600)  # the mistake: blocks far past any time limit\n",
              within="migratepage")),
        stalls=True,
    ),
    Mistake(
        "exits_in_callback", "MIG-8",
        "migratepage calls sys.exit(0), which must not end the tool with success.",
        (import_line("sys"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        sys.exit(0)  # the mistake: ends the process, successfully\n",
              within="migratepage")),
    ),
    Mistake(
        "exits_hard", "MIG-8",
        "migratepage calls os._exit(0), which must not end the tool silently.",
        (import_line("os"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        os._exit(0)  # the mistake: ends the process at once\n",
              within="migratepage")),
        stalls=True,
    ),
    Mistake(
        "stale_page_pointer", "MIG-7",
        "store() writes a new object through the pool's pointer to the page it allocated last, "
        "which migratepage does not update: once that page has moved, objects go to the old, "
        "freed page.",
        (Edit("        self.held = False\n",
              "        self.held = False\n"
              "        self.last = None  # for the mistake: (state, page) of the newest page\n",
              within="Pool.__init__"),
         Edit("        off = slot * self.slot_size\n        page_address(st.page)",
              "        off = slot * self.slot_size\n"
              "        # the mistake: the cached page may be one a migration has freed\n"
              "        page = self.last[1] if self.last and self.last[0] is st else st.page\n"
              "        page_address(page)",
              within="Pool._place"),
         Edit("            self.states[st] = None\n",
              "            self.states[st] = None\n"
              "            self.last = (st, page)  # for the mistake\n",
              within="Pool.store")),
    ),
    Mistake(
        "relists_emptied_page", "MIG-7",
        "migratepage puts the page back on the pool's list without checking that free() has "
        "not emptied it meanwhile: store() then uses a page free() released.",
        (Edit("        if st.used() < SLOTS and st in pool.states:\n",
              "        if st.used() < SLOTS:  # the mistake: even a page free() has emptied\n",
              within="migratepage"),),
    ),
    Mistake(
        "refuses_full_pages", "MIG-8",
        "migratepage refuses a full page for good (-EBUSY), as if moving a page with no free "
        "slot gained nothing.",
        (import_line("mmplug.kernel", "EBUSY"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if st.used() == SLOTS:\n"
              "            return -EBUSY  # the mistake: nothing stands in the way\n",
              within="migratepage")),
    ),
    Mistake(
        "migrates_mapped", "MIG-8",
        "map() hands out an object's address, but migratepage moves the page even while one of "
        "its objects is mapped.",
        (*map_knob("its user holds the object's address in the page"),
         Edit('knobs={"pin", "busy"}))\n',
              'knobs={"pin", "busy", "map"}))  # for the mistake\n', within="mmplug_driver"),
         Edit("        if pool.held or st.pinned:\n",
              "        if pool.held or st.pinned:  # the mistake: st.mapped is not looked at\n",
              within="migratepage")),
    ),
    Mistake(
        "no_newpage_private", "MIG-7",
        "migratepage forgets to hang its bookkeeping off the new page's private field: the new "
        "page cannot be isolated again.",
        (Edit("        newpage.private = st\n",
              "        # the mistake: no newpage.private = st\n",
              within="migratepage"),),
    ),
    Mistake(
        "puts_newpage", "MIG-7",
        "migratepage drops its reference on the new page instead of the old one.",
        (Edit("    put_page(page)\n    return MIGRATEPAGE_SUCCESS\n",
              "    put_page(newpage)  # the mistake: the old page's reference is the one to drop\n"
              "    return MIGRATEPAGE_SUCCESS\n",
              within="migratepage"),),
    ),
    Mistake(
        "unlocks_newpage", "MIG-7",
        "migratepage unlocks the new page, which the VM locked and unlocks itself.",
        (Edit("        get_page(newpage)\n",
              "        get_page(newpage)\n"
              "        unlock_page(newpage)  # the mistake: the VM's lock\n",
              within="migratepage"),),
    ),
    # --- putback ---
    Mistake(
        "unlocks_in_putback", "PUT-1",
        "putback_page unlocks the page the VM holds locked.",
        (Edit("            pool.partial[st] = None\n",
              "            pool.partial[st] = None\n"
              "    unlock_page(page)  # the mistake: the VM unlocks it\n",
              within="putback_page"),),
        # the driver releases a lock it does not hold; the VM's unlock then finds it unlocked
        also_expected={"LCK-2"},
    ),
    Mistake(
        "putback_drops_ref", "PUT-1",
        "putback_page drops a reference on the page, as if the isolation reference were "
        "the driver's.",
        (Edit("        if st.used() < SLOTS:\n            pool.partial[st] = None\n",
              "        if st.used() < SLOTS:\n            pool.partial[st] = None\n"
              "    put_page(page)  # the mistake: the VM drops the isolation reference\n",
              within="putback_page"),),
    ),
    Mistake(
        "raw_mapping_word", "FLG-7",
        "putback_page compares the raw page.mapping word with its address space, tag bits "
        "and all, so it never re-lists the page.",
        (Edit("        if st.used() < SLOTS:\n            pool.partial[st] = None\n",
              "        # the mistake: page.mapping read raw; its tag bits make it never equal\n"
              "        if st.used() < SLOTS and page.mapping == pool.mapping.handle:\n"
              "            pool.partial[st] = None\n",
              within="putback_page"),),
        # the page is never re-listed: its free slots are lost to store()
        also_expected={"PUT-2"},
    ),
    Mistake(
        "putback_not_relisted", "PUT-2",
        "putback_page does not offer the page's free slots to store() again.",
        (Edit("        if st.used() < SLOTS:\n            pool.partial[st] = None\n",
              "        # the mistake: not re-listed\n",
              within="putback_page"),),
    ),
    Mistake(
        "custom_base_exception", "PUT-2",
        "putback_page raises an exception derived from BaseException.",
        (Edit("class PoolPage:\n",
              "class PoolGone(BaseException):  # for the mistake\n"
              '    """The driver\'s own exception, derived from BaseException."""\n'
              "\n"
              "\n"
              "class PoolPage:\n"),
         Edit("        st = page.private\n",
              "        st = page.private\n"
              "        if st.nused:\n"
              '            raise PoolGone("pool state lost")  # the mistake: not an Exception\n',
              within="putback_page")),
    ),
    Mistake(
        "eagain_forgets_page", "PUT-2",
        "migratepage marks the page as migrating before it checks for pins and leaves the mark "
        "when it gives up with -EAGAIN; putback_page leaves a page so marked off the list.",
        (Edit('"pinned")\n', '"pinned", "migrating")  # for the mistake\n', within="PoolPage"),
         Edit("        self.pinned = 0\n",
              "        self.pinned = 0\n"
              "        self.migrating = False  # for the mistake\n",
              within="PoolPage.__init__"),
         Edit("        st = page.private\n        if pool.held or st.pinned:\n",
              "        st = page.private\n"
              "        st.migrating = True  # the mistake: not cleared when it returns -EAGAIN\n"
              "        if pool.held or st.pinned:\n",
              within="migratepage"),
         Edit("        if st.used() < SLOTS:\n            pool.partial[st] = None\n",
              "        if st.used() < SLOTS and not st.migrating:  # for the mistake\n"
              "            pool.partial[st] = None\n",
              within="putback_page")),
    ),
    Mistake(
        "putback_locks_page", "LCK-3",
        "putback_page locks the page, which the VM already holds locked when it calls it.",
        (Edit("    pool = page_mapping(page).private_data\n    with pool.lock:\n"
              "        st = page.private\n        st.isolated = False\n",
              "    pool = page_mapping(page).private_data\n"
              "    lock_page(page)  # the mistake: the VM holds the page lock\n"
              "    with pool.lock:\n        st = page.private\n        st.isolated = False\n",
              within="putback_page"),),
    ),
    Mistake(
        "putback_relists_full", "PUT-2",
        "putback_page puts the page back on the list of pages with a free slot even when it is "
        "full: store() then finds no slot in it.",
        (Edit("        if st.used() < SLOTS:\n            pool.partial[st] = None\n",
              "        pool.partial[st] = None  # the mistake: even a full page\n",
              within="putback_page"),),
    ),
    # --- release ---
    Mistake(
        "leaks_page", "REL-1",
        "free() of the last object forgets to drop the page's reference.",
        (Edit("        put_page(page)\n", "        # the mistake: no put_page(page)\n",
              within="Pool.free"),),
    ),
    Mistake(
        "free_isolated_wrong", "REL-2",
        "free() releasing an isolated page clears PG_isolated itself.",
        (Edit("        page.private = 0\n",
              "        page.private = 0\n"
              "        page.flags &= ~(1 << 17)  # the mistake: PG_isolated is left to the VM\n",
              within="Pool.free"),),
        # the VM's own asserts that the page is still PG_isolated: move_to_new_page,
        # putback_movable_pages
        also_expected={"MIG-6", "PUT-1"},
    ),
    Mistake(
        "free_no_recheck", "FLG-5",
        "free() of the last object locks the page it saw before waiting for the lock, and "
        "releases it even if a migration moved the object meanwhile.",
        (Edit("        while True:\n"
              "            page = st.page\n"
              "            lock_page(page)\n"
              "            if st.page is page:\n"
              "                break\n"
              "            unlock_page(page)\n",
              "        page = st.page\n"
              "        lock_page(page)  # the mistake: st.page is not checked again once locked\n",
              within="Pool.free"),),
        # releasing the old page again: its reference underflows; the new page is leaked
        also_expected={"REF-1", "REL-1"},
    ),
    Mistake(
        "destroy_skips_isolated", "REL-3",
        "destroy() leaves alone the pages the VM holds isolated.",
        (Edit("        for handle in list(self.handles):\n            self.free(handle)\n",
              "        for handle in list(self.handles):\n"
              "            if not self.handles[handle][0].isolated:  # the mistake\n"
              "                self.free(handle)\n",
              within="Pool.destroy"),),
    ),
    Mistake(
        "destroy_loops", "API-1",
        "destroy() walks a corrupted list of its pages that loops back on itself, collecting "
        "them without end.",
        (Edit("        for handle in list(self.handles):\n            self.free(handle)\n",
              "        doomed = []\n"
              "        st = next(iter(self.states), None)\n"
              "        while st is not None:  # the mistake: the list never ends\n"
              "            doomed.append(st)\n"
              "        for handle in list(self.handles):\n"
              "            self.free(handle)\n",
              within="Pool.destroy"),),
        stalls=True,
    ),
    Mistake(
        "destroy_keeps_pages", "REL-3",
        "destroy() forgets the pages of objects still stored.",
        (Edit("        for handle in list(self.handles):\n            self.free(handle)\n",
              "        self.handles.clear()  # the mistake: pages are never released\n"
              "        self.states.clear()\n",
              within="Pool.destroy"),),
    ),
    Mistake(
        "releases_isolated_movable", "REL-1",
        "free() of the last object skips __ClearPageMovable when the page is isolated, as if "
        "the VM would clear it.",
        (Edit("        clear_page_movable(page)\n        page.private = 0\n",
              "        if not st.isolated:  # the mistake: an isolated page stays movable\n"
              "            clear_page_movable(page)\n"
              "        page.private = 0\n",
              within="Pool.free"),),
    ),
    Mistake(
        "free_isolated_keeps_ref", "REL-1",
        "free() of the last object of an isolated page clears it movable but keeps its "
        "reference, meaning to drop it at putback, which the VM no longer calls.",
        (Edit("        unlock_page(page)\n        put_page(page)\n",
              "        unlock_page(page)\n"
              "        if not st.isolated:  # the mistake: nobody drops it later\n"
              "            put_page(page)\n",
              within="Pool.free"),),
    ),
    # --- locking ---
    Mistake(
        "alloc_under_lock", "LCK-1",
        "store() allocates its new page while it still holds the pool's spinlock; the "
        "allocation may sleep (direct reclaim).",
        (Edit("                return self._place(st, data)\n        page = alloc_page(self.vm)\n",
              "                return self._place(st, data)\n"
              "            page = alloc_page(self.vm)  # the mistake: may sleep, under the lock\n",
              within="Pool.store"),),
    ),
    Mistake(
        "lock_inversion", "LCK-3",
        "the pool's lock is a mutex, and free() of the last object locks the page while it "
        "holds it; migratepage takes the mutex under the page lock the VM holds.",
        (import_line("mmplug.kernel", "mutex"),
         Edit('        self.lock = spinlock(vm, "simplepool.lock")\n',
              '        self.lock = mutex(vm, "simplepool.lock")  # for the mistake\n',
              within="Pool.__init__"),
         Edit("            self.partial.pop(st, None)\n"
              "        # Release the empty page (REL-1): under its lock, which a migration may "
              "hold.\n"
              "        while True:\n"
              "            page = st.page\n"
              "            lock_page(page)\n"
              "            if st.page is page:\n"
              "                break\n"
              "            unlock_page(page)\n",
              "            self.partial.pop(st, None)\n"
              "            page = st.page\n"
              "            lock_page(page)  # the mistake: the page lock under the pool's lock\n",
              within="Pool.free")),
        # the mutex is taken in ASYNC migratepage too: it waits when free() holds it
        also_expected={"LCK-1"},
    ),
    # --- the instance protocol ---
    Mistake(
        "free_raises", "API-1",
        "free() raises on an object it does not find in its own table.",
        (Edit("            st, slot, _ = self.handles.pop(handle)\n",
              "            st, slot, _ = self.handles.pop(handle)\n"
              "            if st.nused == 1:\n"
              '                raise RuntimeError("bookkeeping bug in free")  # the mistake\n',
              within="Pool.free"),),
    ),
    Mistake(
        "free_hangs", "API-1",
        "free() of the last object of a page waits for a change that cannot come.",
        (Edit("            st, slot, _ = self.handles.pop(handle)\n",
              "            st, slot, _ = self.handles.pop(handle)\n"
              "            while st.nused == 1:\n"
              "                pass  # the mistake: spins forever\n",
              within="Pool.free"),),
        stalls=True,
    ),
    # --- ASYNC mode never waits (MIG-10, LCK-1) ---
    Mistake(
        "async_mutex", "LCK-1",
        "migratepage takes the pool's mutex with mutex_lock in every mode, ASYNC too, and "
        "store() holds it while it allocates a page: an ASYNC migration waits for it.",
        (import_line("mmplug.kernel", "mutex"),
         Edit("        self.next_handle = 1\n",
              "        self.next_handle = 1\n"
              '        self.mutex = mutex(vm, "simplepool.mutex")  # for the mistake\n',
              within="Pool.__init__"),
         Edit("        page = alloc_page(self.vm)\n",
              "        with self.mutex:  # for the mistake\n"
              "            page = alloc_page(self.vm)\n",
              within="Pool.store"),
         *_migrate_under("    with pool.mutex:  # the mistake: mutex_lock, even in ASYNC mode\n"
                         "    "),),
    ),
    Mistake(
        "async_lock_page", "LCK-1",
        "migratepage locks the pool's oldest page with lock_page in every mode, ASYNC too, "
        "to read a header kept there: an ASYNC migration waits for whoever holds it.",
        _migrate_under("    oldest = next(iter(pool.states), None)\n"
                       "    if oldest is not None and oldest.page is not page:\n"
                       "        lock_page(oldest.page)  # the mistake: may sleep, ASYNC too\n"
                       "        unlock_page(oldest.page)\n"),
    ),
    # --- a failure that never goes away (MIG-8) ---
    Mistake(
        "eagain_moved", "MIG-8",
        "migratepage returns -EAGAIN, every time, for a page that came from a migration, as "
        "if such a page were still settling.",
        (Edit('"pinned")\n', '"pinned", "moved")  # for the mistake\n', within="PoolPage"),
         Edit("        self.pinned = 0\n",
              "        self.pinned = 0\n"
              "        self.moved = False  # for the mistake\n",
              within="PoolPage.__init__"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if st.moved:\n"
              "            return -EAGAIN  # the mistake: nothing is in its way\n",
              within="migratepage"),
         Edit("        st.isolated = False\n        # free()",
              "        st.isolated = False\n"
              "        st.moved = True  # for the mistake\n"
              "        # free()",
              within="migratepage")),
    ),
    # --- a balloon releasing a page compaction holds isolated (REL-2, DRV-B2) ---
    Mistake(
        "balloon_unlists_isolated", "REL-2",
        "A balloon whose balloon_page_delete() takes every deflated page off the balloon "
        "list, also one compaction holds isolated: its lru is on the VM's migration list.",
        (Edit("    if not page_isolated(page):\n        b_dev_info.pages.delete(page)\n",
              "    # the mistake: list_del even when the page is isolated\n"
              "    b_dev_info.pages._pages.pop(page, None)\n"
              "    page.lru = None\n",
              within="balloon_page_delete"),),
        base="oneballoon",
    ),
    Mistake(
        "balloon_counts_released", "DRV-B2",
        "A balloon deflating a page compaction holds isolated leaves isolated_pages as it "
        "was, as if putback or migration would still give the page back.",
        (Edit("                if isolated:\n"
              "                    # the VM will call neither putback nor migratepage for it\n"
              "                    b_dev_info.isolated_pages -= 1\n",
              "                # the mistake: isolated_pages keeps counting the page\n",
              within="OneBalloon.free"),),
        base="oneballoon",
    ),
    # --- what a reviewer tried next ---
    Mistake(
        "isolate_refuses_all", "ISO-6",
        "isolate_page refuses every page, as if isolation were opt-in, though the driver "
        "declares it never refuses: nothing can be migrated.",
        (Edit("    return True\n", "    return False  # the mistake: declared never to refuse\n",
              within="isolate_page"),),
    ),
    Mistake(
        "store_reuses_handle", "API-1",
        "store() numbers a new object by the count of live ones, so once an object is freed "
        "a handle still in use is handed out again.",
        (Edit("        handle = self.next_handle\n",
              "        handle = len(self.handles) + 1  # the mistake: may be in use\n",
              within="Pool._place"),),
    ),
    Mistake(
        "newpage_pg_isolated", "FLG-6",
        "migratepage sets PG_isolated (PG_reclaim, bit 17) on the new page, as if it were "
        "still being migrated.",
        (Edit("        newpage.private = st\n",
              "        newpage.private = st\n"
              "        newpage.flags |= 1 << 17  # the mistake: PG_isolated is the VM's\n",
              within="migratepage"),),
    ),
    Mistake(
        "putback_takes_ref", "PUT-1",
        "putback_page takes a reference on the page, as if putting it back were taking it "
        "anew; nothing ever drops it.",
        (Edit("        st.isolated = False\n",
              "        st.isolated = False\n"
              "        get_page(page)  # the mistake: isolation took none of the driver's\n",
              within="putback_page"),),
        # on several CPUs the extra reference is seen only when the page should be gone
        also_expected={"REL-1"},
    ),
    Mistake(
        "busy_ignored_async", "MIG-8",
        "migratepage looks at the pool's busy flag and at pins in the sync modes only: an "
        "ASYNC migration moves a page whose object is pinned.",
        (Edit("        if pool.held or st.pinned:\n",
              "        if mode != MigrateMode.ASYNC and (pool.held or st.pinned):  # the mistake\n",
              within="migratepage"),
         import_line("mmplug.kernel", "MigrateMode")),
    ),
    Mistake(
        "copy_after_switch", "MIG-7",
        "migratepage points its bookkeeping at the new page under the pool's lock and copies "
        "the bytes after it lets the lock go: a reader in between reads the new, empty page.",
        (Edit("        copy_highpage(newpage, page)\n",
              "        # for the mistake: the copy is made below, after the lock\n",
              within="migratepage"),
         Edit("    put_page(page)\n",
              "    copy_highpage(newpage, page)  # the mistake: readers already use newpage\n"
              "    put_page(page)\n",
              within="migratepage")),
    ),
    Mistake(
        "eagain_two_objects", "MIG-8",
        "migratepage returns -EAGAIN, every time, for a page that holds exactly two objects, "
        "as if one of the two were always about to be freed.",
        (Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if st.used() == 2:\n"
              "            return -EAGAIN  # the mistake: nothing is in its way\n",
              within="migratepage"),),
    ),
    Mistake(
        "isolate_clears_tag", "FLG-1",
        "isolate_page clears the tag bits of page.mapping itself, as if that marked the page "
        "taken: the VM then takes it for a file page.",
        (Edit("    return True\n",
              "    page.mapping &= ~3  # the mistake: the word is set and cleared by the API\n"
              "    return True\n",
              within="isolate_page"),),
    ),
    Mistake(
        "store_skips_movable", "FLG-4",
        "store() makes every other new page movable only, as if a page with a free slot "
        "were not worth moving.",
        (Edit("        set_page_movable(page, self.mapping)\n",
              "        if len(self.states) % 2:  # the mistake: every page must be movable\n"
              "            set_page_movable(page, self.mapping)\n",
              within="Pool.store"),),
        # free() then clears a page that is not movable: __ClearPageMovable's VM_BUG_ON
        also_expected={"FLG-5"},
    ),
)
