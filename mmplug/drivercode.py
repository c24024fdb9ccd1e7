"""Where a driver's own code is: its files, and its frames in a traceback or a live stack.

A report that says *where* in the driver something went wrong ("in
Pool.free, simplepool.py:104") is worth more than the callback's name alone:
it is where the author looks first, and it is what two failures share when
they are the same mistake reached by different paths (destroy() calling
free()).  A driver's code is every file that defines a part of it: its
plugin module, its callbacks and its factory (a plugin file may import them
from a module beside it), and the whole folder of a package among them
(a package driver's */*.py).  mmplug's own files never are.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import os
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from attrs import field, frozen

from .errors import CallbackTimeout

if TYPE_CHECKING:
    from .plugins import LoadedDriver

#: mmplug's own folder: never driver code
_MMPLUG = os.path.dirname(os.path.realpath(__file__))


@frozen(slots=True)
class Site:
    """A place in driver code: the function (qualified name), its file and line."""

    function: str
    filename: str
    lineno: int

    def describe(self) -> str:
        """"Pool.free (simplepool.py:104)"."""
        return f"{self.function} ({os.path.basename(self.filename)}:{self.lineno})"


@frozen(slots=True)
class DriverCode:
    """The files of one driver's code; `site_*` find its frames."""

    roots: frozenset[str]
    #: filename -> whether it is driver code (a frame's filename is looked up once)
    _known: dict[str, bool] = field(factory=dict, eq=False)
    #: filename -> the line spans of its loop statements (read once, for hangs)
    _loops: dict[str, list[tuple[int, int]]] = field(factory=dict, eq=False)

    @classmethod
    def of(cls, loaded: LoadedDriver) -> DriverCode:
        """The code of a loaded driver (see the module docstring)."""
        parts = [loaded.plugin, loaded.info.factory, loaded.ops.isolate_page,
                 loaded.ops.migratepage, loaded.ops.putback_page]
        roots = set()
        for part in parts:
            part = inspect.unwrap(part) if callable(part) else part
            module = part if inspect.ismodule(part) else inspect.getmodule(part)
            filename = getattr(module, "__file__", None)
            if not filename:
                continue
            real = os.path.realpath(filename)
            if real.startswith(_MMPLUG + os.sep):
                continue
            roots.add(real)
            if os.path.basename(real) == "__init__.py":
                roots.add(os.path.dirname(real))
        return cls(frozenset(roots))

    def contains(self, filename: str) -> bool:
        """Whether `filename` is part of the driver."""
        known = self._known.get(filename)
        if known is None:
            real = os.path.realpath(filename)
            known = any(real == r or real.startswith(r + os.sep) for r in self.roots)
            self._known[filename] = known
        return known

    def site_in_traceback(self, exc: BaseException) -> Site | None:
        """The innermost driver frame where `exc` (or what caused it) was raised.

        A hang (CallbackTimeout) was stopped wherever the loop happened to be,
        perhaps in a helper the loop calls: its site is the innermost driver frame
        that is inside a loop statement, so that the same hang stopped twice is
        one violation.
        """
        seen: set[int] = set()
        cur: BaseException | None = exc
        while cur is not None and id(cur) not in seen:
            seen.add(id(cur))
            sites = self._driver_frames(cur.__traceback__)
            if sites:
                if isinstance(cur, CallbackTimeout):
                    looping = [s for s in sites if self._in_loop(s)]
                    return (looping or sites)[-1]
                return sites[-1]
            cur = cur.__cause__ or cur.__context__
        return None

    def _driver_frames(self, tb: TracebackType | None) -> list[Site]:
        found = []
        while tb is not None:
            code = tb.tb_frame.f_code
            if self.contains(code.co_filename):
                found.append(Site(code.co_qualname, code.co_filename, tb.tb_lineno))
            tb = tb.tb_next
        return found

    def _in_loop(self, site: Site) -> bool:
        spans = self._loops.get(site.filename)
        if spans is None:
            try:
                tree = ast.parse("".join(linecache.getlines(site.filename)))
            except (SyntaxError, ValueError):
                tree = ast.Module(body=[], type_ignores=[])
            spans = [(n.lineno, n.end_lineno or n.lineno) for n in ast.walk(tree)
                     if isinstance(n, (ast.While, ast.For, ast.AsyncFor))]
            self._loops[site.filename] = spans
        return any(start <= site.lineno <= end for start, end in spans)

    def site_in_stack(self, frame: FrameType | None) -> Site | None:
        """The innermost driver frame of a live stack (from `frame` outwards)."""
        while frame is not None:
            code = frame.f_code
            if self.contains(code.co_filename):
                return Site(code.co_qualname, code.co_filename, frame.f_lineno)
            frame = frame.f_back
        return None


__all__ = ["DriverCode", "Site"]
