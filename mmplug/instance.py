"""A driver instance: the protocol its factory's result keeps, and the one way mmplug calls it.

Every call mmplug makes into an instance (store, read, free, destroy, pages,
verify, the knobs, a driver's own methods in its race scenarios) goes through
its `GuardedInstance`: under the watchdog's time limit, on the CPU that makes
it (reports of several CPUs name the call), with whatever it raises, but for
its documented errors, turned into an API-1 DriverError naming the driver and
the method, and with what it returns checked (API-1).  `destroy()` then checks
that nothing of the instance is left behind (REL-3).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from attrs import define, field

from .cpus.single import SingleCPU
from .errors import ContractViolation, DriverError, NoMemory
from .page import PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE, Page
from .watchdog import guarded_call, guarded_caller

if TYPE_CHECKING:
    from .mapping import AddressSpace
    from .plugins import LoadedDriver
    from .vm import VM

#: what store() may raise (docs/driver-api.md): no page to be had, an object too big
STORE_ERRORS: tuple[type[Exception], ...] = (NoMemory, ValueError)
#: the guarded calls of store(), read() and free(): (method, expected)
_STORE: tuple[str, tuple[type[BaseException], ...]] = ("store", STORE_ERRORS)
_READ: tuple[str, tuple[type[BaseException], ...]] = ("read", ())
_FREE: tuple[str, tuple[type[BaseException], ...]] = ("free", ())


class DriverInstance(Protocol):
    """What a driver's factory returns (docs/driver-api.md, "the instance protocol").

    An instance may offer more: ``verify()`` (an AssertionError when an
    invariant of its own is broken) and the methods of the knobs it declares
    (``pin``/``unpin``, ``hold``/``release``, ``map``/``unmap``).
    """

    def store(self, data: bytes) -> Hashable: ...
    def read(self, handle: Any) -> bytes | bytearray | memoryview: ...
    def free(self, handle: Any) -> None: ...
    def destroy(self) -> None: ...
    def pages(self) -> Iterable[Page]: ...


@define(slots=True, eq=False)
class GuardedInstance:
    """A driver instance the VM created, with the address space it owns, as mmplug calls it."""

    vm: VM
    loaded: LoadedDriver
    instance: DriverInstance
    mapping: AddressSpace
    destroyed: bool = False
    #: what passes through every call unchanged: on several CPUs a run ends with the
    #: Deadlock or NondeterminismError the scheduler raises inside driver code
    passes: tuple[type[BaseException], ...] = ()
    #: the instance's methods called so far, looked up once
    _methods: dict[str, Any] = field(factory=dict)
    #: (method, expected) -> its guarded call, made once (`call`)
    _callers: dict[tuple[str, tuple[type[BaseException], ...]], Any] = field(factory=dict)
    #: the guarded calls of store(), read() and free(), once made: an attribute each,
    #: not a look-up in `_callers` by a tuple hashed afresh on every call
    _store: Any = field(default=None, init=False)
    _read: Any = field(default=None, init=False)
    _free: Any = field(default=None, init=False)

    @property
    def name(self) -> str:
        """The driver's name, as the user gave it."""
        return self.loaded.info.name

    def has(self, method: str) -> bool:
        return callable(getattr(self.instance, method, None))

    def call(self, method: str, *args: Any,
             expected: tuple[type[BaseException], ...] = ()) -> Any:
        """instance.<method>(*args) as driver code: what it raises but `expected` is an
        API-1 DriverError naming the driver and the method (mmplug.watchdog)."""
        run = self._callers.get((method, expected))
        if run is None:
            run = self._caller(method, expected)
        return run(*args)

    def _caller(self, method: str, expected: tuple[type[BaseException], ...]) -> Any:
        """The guarded call of one method, made once (mmplug.watchdog.guarded_caller): what
        `_guarded` does, with the method, the driver's name, the time limit and the CPU
        backend looked up once.  One CPU has no use for where its CPU is."""
        cpus = self.vm.cpus
        several = not isinstance(cpus, SingleCPU)
        run = guarded_caller(self._method(method), driver=self.name, hook=method,
                             limit=self.vm.config.callback_timeout,
                             expected=lambda: expected + self.passes,
                             enter=cpus.enter if several else None,
                             leave=cpus.leave if several else None)
        self._callers[method, expected] = run
        return run

    def _method(self, method: str) -> Any:
        fn = self._methods.get(method)
        if fn is None:
            fn = getattr(self.instance, method, None)
            if not callable(fn):
                raise DriverError("API-1", f"the instance has no method {method}()",
                                  driver=self.name, hook=method)
            self._methods[method] = fn
        return fn

    def _guarded(self, method: str, fn: Any, args: tuple[Any, ...],
                 expected: tuple[type[BaseException], ...], limit: float | None = None) -> Any:
        cpus = self.vm.cpus
        prev = cpus.enter(f"{self.name}.{method}")
        try:
            return guarded_call(fn, args, driver=self.name, hook=method,
                                limit=self.vm.config.callback_timeout if limit is None else limit,
                                expected=expected + self.passes)
        finally:
            cpus.leave(prev)

    # --- the protocol, checked --------------------------------------------------------
    def store(self, data: bytes) -> Any:
        """store(data): a handle, hashable (API-1); NoMemory and ValueError as documented."""
        # call() written out: a store, a read and a free per object of a comparison
        run = self._store
        if run is None:
            run = self._store = self._caller(*_STORE)
        handle = run(data)
        try:
            hash(handle)
        except TypeError:
            raise DriverError("API-1", f"store() returned {handle!r:.60} "
                              f"({type(handle).__name__}); a handle must be hashable (an int)",
                              driver=self.name, hook="store") from None
        return handle

    def read(self, handle: Any) -> bytes:
        """read(handle): the object's bytes (API-1 if it returns anything else)."""
        run = self._read
        if run is None:
            run = self._read = self._caller(*_READ)
        got = run(handle)
        if not isinstance(got, (bytes, bytearray, memoryview)):
            raise DriverError("API-1", f"read() returned {type(got).__name__}, expected bytes",
                              driver=self.name, hook="read")
        return bytes(got)

    def free(self, handle: Any) -> None:
        run = self._free
        if run is None:
            run = self._free = self._caller(*_FREE)
        run(handle)

    def pages(self) -> list[Page]:
        """pages(): this zone's pages the instance owns, in pfn order (a driver may keep
        them in a set, and nothing may inherit that order: same seed, same run)."""
        fn = self._method("pages")
        # A generator is driver code too: listed under the time limit.
        got = self._guarded("pages", lambda: _listed(fn()), (), ())
        if not isinstance(got, list):
            raise DriverError("API-1", f"pages() returned {type(got).__name__}, not an "
                              "iterable of pages", driver=self.name, hook="pages")
        pages: list[Page] = got
        for p in pages:
            if not isinstance(p, Page):
                raise DriverError("API-1", f"pages() yielded {type(p).__name__} {p!r:.60}, "
                                  "not a Page", driver=self.name, hook="pages")
        return sorted(pages, key=_pfn)

    def verify(self) -> str | None:
        """The message of verify()'s AssertionError; None if it passed or the driver has none.

        verify() walks the whole pool: it may take the time limit once per GiB of zone.
        """
        if not self.has("verify"):
            return None
        try:
            self._guarded("verify", self._method("verify"), (), (AssertionError,),
                          self._whole_pool_limit())
        except AssertionError as exc:
            return str(exc) or "AssertionError"
        return None

    def _whole_pool_limit(self) -> float | None:
        """The time limit of a call that walks the whole pool (verify, destroy): the
        callbacks' limit once per GiB of zone."""
        limit = self.vm.config.callback_timeout
        if limit is not None:
            zone = self.vm.zone
            limit *= max(1.0, zone.nr_pages * zone.page_size / (1 << 30))
        return limit

    def destroy(self) -> None:
        """destroy(), then nothing may still lead to the instance (REL-3, BUG-5).

        An isolated page that still belongs to the instance (not released with
        __ClearPageMovable) would later be handed to putback_page or
        migratepage of a destroyed instance; the pages it released while
        isolated are the VM's to finish.  destroy() frees every object left, so
        it has the time limit of a walk of the whole pool.
        """
        self._guarded("destroy", self._method("destroy"), (), (), self._whole_pool_limit())
        self.destroyed = True
        vm, mapping = self.vm, self.mapping
        word = mapping.handle | PAGE_MAPPING_MOVABLE
        isolated = [p for p, m in vm.isolated.items() if m is mapping and p.mapping == word]
        if isolated:
            raise ContractViolation("REL-3", f"destroy returned while {len(isolated)} of the "
                                    "instance's pages are isolated and still movable: the VM "
                                    "will call putback_page/migratepage of a destroyed "
                                    "instance", driver=self.name, hook="destroy",
                                    page=isolated[0])
        left = [p for p in vm.zone.pages if p.mapping & ~PAGE_MAPPING_FLAGS == mapping.handle]
        if left:
            raise ContractViolation("REL-3", f"{len(left)} page(s) still point at the mapping "
                                    "after destroy", driver=self.name, hook="destroy",
                                    page=left[0])
        mapping.a_ops = None


def _pfn(page: Page) -> int:
    return page.pfn


def _listed(got: Any) -> Any:
    """What pages() returned as a list; anything that is not iterable as it is."""
    try:
        return list(got)
    except TypeError:
        return got
