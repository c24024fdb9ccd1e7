"""Finding, loading and validating plugins (pluggy): drivers and listeners.

A driver is found through the entry-point group ``mmplug.drivers``, a dotted
module path, or a ``.py`` file path; all three end in the same validation:
hookimpl signatures against the specs, no unknown hooks (pluggy's
check_pending), all three callbacks present with the kernel's arguments, no
hook wrapper on a driver hook, and an `mmplug_driver` hook that returns a
DriverInfo.  A plugin that implements only event hooks is a listener, not a
driver.  A plugin that fails is recorded with its reason and never stops the
others.

A file or module named on the command line wins over an installed driver of
the same name (the installed one is listed as overridden), and ``NAME@SPEC``
loads SPEC under the name NAME, so a copy can run beside the driver it was
copied from: ``mmplug compare zsmalloc mine@./zsmalloc_copy.py``.  Every
driver's `origin` says which code it is; what a driver brings (its race
scenarios, its checks) comes with its plugin, whatever its name."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import pluggy
from attrs import define, evolve, field, frozen

from . import hookspecs
from .errors import CallbackTimeout, PluginError, UsageError
from .hookspecs import DRIVER_CALLBACKS, DRIVER_HOOKS, EVENT_HOOKS, OPTIONAL_DRIVER_HOOKS
from .mapping import MovableOps
from .watchdog import IMPORT_LIMIT, guard, guarded_call, is_user_interrupt

ENTRY_POINT_GROUP = "mmplug.drivers"
_ENTRY_POINT = "entry point "


def split_alias(spec: str) -> tuple[str | None, str]:
    """`NAME@SPEC` -> (NAME, SPEC) when NAME is an identifier; any other spec -> (None, spec)."""
    name, sep, rest = spec.partition("@")
    if sep and rest and name.isidentifier():
        return name, rest
    return None, spec


@frozen(slots=True)
class Capabilities:
    """What a driver declares about itself; checks that do not apply say "not supported"."""

    #: store() keeps the bytes it is given and read() returns them
    stores_data: bool = True
    #: largest object store() accepts (None: up to one page)
    max_object_size: int | None = None
    #: isolate_page() may return False
    may_refuse_isolation: bool = True
    #: migratepage() may return -EAGAIN or another error
    may_fail_migration: bool = True
    #: free() of an object whose page is isolated is supported (REL-1, REL-2)
    free_while_isolated: bool = True
    #: test knobs the instance offers the conformance suite, e.g. "pin" (pin/unpin
    #: a handle so its page's migration returns -EAGAIN), "busy" (hold/release
    #: the driver's lock: -EAGAIN), "map" (map/unmap: a permanent failure)
    knobs: frozenset[str] = field(factory=frozenset, converter=frozenset)


@frozen(slots=True)
class DriverInfo:
    """What a driver plugin's `mmplug_driver` hook returns."""

    name: str
    version: str
    #: factory(vm, mapping, **options) -> instance (see docs/driver-api.md)
    factory: Callable[..., Any]
    summary: str = ""
    capabilities: Capabilities = Capabilities()
    #: the kernel source the driver models, e.g. "mm/zsmalloc.c"
    kernel_source: str = ""


@frozen(slots=True)
class LoadedDriver:
    """A driver the host validated: its DriverInfo, callbacks and the hooks it brings.

    `hooks` holds the plugin's own implementations of the optional driver hooks
    (mmplug_race_scenarios, mmplug_conformance_checks): what the driver *is*
    decides what it brings, whatever name it was loaded under.
    """

    name: str
    origin: str
    info: DriverInfo
    ops: MovableOps
    plugin: Any
    hooks: Mapping[str, Callable[..., Any]] = field(factory=dict)
    #: the origin of the file or module that replaced this installed driver ("": none did)
    overridden_by: str = ""

    ok: ClassVar[bool] = True

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def status(self) -> str:
        return "overridden" if self.overridden_by else "loaded"

    @property
    def reason(self) -> str:
        return f"by {self.overridden_by}" if self.overridden_by else ""

    def brought(self, name: str) -> list[Any]:
        """What the driver brings through its optional hook `name` (its race scenarios,
        its checks), as a list: empty if it implements none.  The hook is called with the
        DriverInfo as loaded, as driver code: under the import time limit, whatever it
        raises an API-1 DriverError naming the driver and the hook."""
        fn = self.hooks.get(name)
        if fn is None:
            return []
        got = guarded_call(lambda: fn(driver=self.info), driver=self.name, hook=name,
                           limit=IMPORT_LIMIT)
        if got is None:
            return []
        try:
            return list(got)
        except TypeError:
            return [got]

    def as_dict(self) -> dict[str, Any]:
        return _row(self.name, self.version, self.origin, self.status, self.reason,
                    self.info.summary, self.info.kernel_source)


@frozen(slots=True)
class FailedDriver:
    """A plugin that did not load or validate, and why."""

    name: str
    origin: str
    reason: str

    ok: ClassVar[bool] = False
    status: ClassVar[str] = "failed"
    version: ClassVar[str] = ""

    def as_dict(self) -> dict[str, Any]:
        return _row(self.name, "", self.origin, self.status, self.reason, "", "")


@frozen(slots=True)
class LoadedListener:
    """A plugin that implements only event hooks: it listens, it is not a driver."""

    name: str
    origin: str
    plugin: Any
    events: tuple[str, ...]

    ok: ClassVar[bool] = True
    status: ClassVar[str] = "listener"
    version: ClassVar[str] = ""

    @property
    def reason(self) -> str:
        return ", ".join(self.events)

    def as_dict(self) -> dict[str, Any]:
        return _row(self.name, "", self.origin, self.status, self.reason, "", "")


def _row(name: str, version: str, origin: str, status: str, reason: str, summary: str,
         kernel_source: str) -> dict[str, Any]:
    """One plugin as `mmplug plugins --json` lists it."""
    return {"name": name, "version": version, "origin": origin, "status": status,
            "reason": reason, "summary": summary, "kernel_source": kernel_source}


Plugin = LoadedDriver | FailedDriver | LoadedListener


@define(slots=True)
class Listeners:
    """The event hooks some registered plugin implements (None: nobody listens).

    The host keeps it current as plugins are registered and unregistered, and
    every VM made with the host reads it when an event fires, so a listener
    registered after the VM was made hears its events too.
    """

    mmplug_after_isolate_page: Any = None
    mmplug_after_migratepage: Any = None
    mmplug_after_putback_page: Any = None
    mmplug_after_compact_zone: Any = None


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, telling the host of every plugin registered or unregistered."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__("mmplug")
        self._changed = changed

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self._changed()

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self._changed()


class PluginHost:
    """The plugin manager, the drivers it validated and the listeners it registered."""

    def __init__(self) -> None:
        #: the event hooks someone implements; every VM made with this host reads it
        self.listeners = Listeners()
        self.pm = _PluginManager(self._listeners_changed)
        self.pm.add_hookspecs(hookspecs)
        self.drivers: dict[str, LoadedDriver] = {}
        self.failed: list[FailedDriver] = []
        #: installed drivers a file or module of the same name replaced
        self.overridden: list[LoadedDriver] = []
        #: plugins that implement only event hooks
        self.event_listeners: list[LoadedListener] = []
        #: what each spec given to load() resolved to
        self._by_spec: dict[str, LoadedDriver] = {}
        self._entry_points_loaded = False

    # --- discovery -----------------------------------------------------------------
    def load_entry_points(self) -> list[Plugin]:
        """Load every plugin of the `mmplug.drivers` entry-point group (once)."""
        if self._entry_points_loaded:
            return []
        self._entry_points_loaded = True
        out: list[Plugin] = []
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda e: e.name):
            origin = f"entry point {ep.name} = {ep.value}"
            if ep.name in self.drivers:
                continue
            try:
                obj = _guarded_import(ep.name, ep.load)
            except BaseException as exc:  # a plugin's import may raise anything
                if is_user_interrupt(exc):
                    raise
                out.append(self._fail(ep.name, origin, f"import failed: {_exc_line(exc)}"))
                continue
            out.append(self._register(obj, origin, ep.name))
        return out

    def load(self, spec: str) -> LoadedDriver:
        """Load one driver by entry-point name, dotted module path or .py file path, or
        `NAME@SPEC` to load SPEC under the name NAME.

        Raises UsageError if `spec` names nothing, PluginError if it fails validation
        or is no driver (a listener).
        """
        if spec in self._by_spec:
            return self._by_spec[spec]
        if spec in self.drivers:
            return self.drivers[spec]
        if not spec.strip() or "\0" in spec:
            raise UsageError(f"driver {spec[:60]!r}: give an entry-point name, a module path or "
                             "a .py file")
        alias, inner = split_alias(spec)
        if alias is not None and not inner:
            raise UsageError(f"{spec!r}: NAME@SPEC needs a driver after the @")
        try:
            loaded = self._load_spec(inner, alias)
        except OSError as exc:   # a path the system refuses (too long, a loop of links)
            raise UsageError(f"driver {spec[:60]!r}: {exc.strerror or exc}") from None
        if isinstance(loaded, FailedDriver):
            raise PluginError(f"driver {loaded.name!r} ({loaded.origin}) failed to load: "
                              f"{loaded.reason}")
        if isinstance(loaded, LoadedListener):
            raise PluginError(f"{loaded.name!r} ({loaded.origin}) is no driver: it implements "
                              f"only event hooks ({loaded.reason})")
        self._by_spec[spec] = loaded
        return loaded

    def _load_spec(self, spec: str, alias: str | None = None) -> Plugin:
        path = Path(spec)
        if spec.endswith(".py") or os.sep in spec or path.is_dir():
            return self._load_file(path, alias)
        self.load_entry_points()
        if spec in self.drivers:
            return self._alias(self.drivers[spec], alias)
        for failed in self.failed:
            if failed.name == spec:
                return failed
        origin = f"module {spec}"
        try:
            module = _guarded_import(spec, importlib.import_module, spec)
        except ModuleNotFoundError as exc:
            if exc.name and spec.startswith(exc.name):
                raise UsageError(self._unknown_message(spec)) from None
            return self._fail(spec, origin, f"import failed: {_exc_line(exc)}")
        except BaseException as exc:
            if is_user_interrupt(exc):
                raise
            return self._fail(spec, origin, f"import failed: {_exc_line(exc)}")
        return self._register(module, origin, spec, alias=alias, explicit=True)

    def _load_file(self, path: Path, alias: str | None = None) -> Plugin:
        if path.is_dir():
            path = path / "__init__.py"
        if not path.is_file():
            raise UsageError(f"no driver file {str(path)!r}")
        resolved = path.resolve()
        # One module per file and name: a file loaded under two names is two plugins.
        digest = hashlib.sha1(f"{resolved}@{alias or ''}".encode()).hexdigest()[:8]
        modname = f"mmplug_file_driver_{resolved.stem}_{digest}"
        origin = f"file {resolved}"
        wanted = _aliased(origin, alias)
        for drv in self.drivers.values():
            if drv.origin == wanted or drv.origin.startswith(f"{wanted} (instead of "):
                return drv
        try:
            spec = importlib.util.spec_from_file_location(modname, resolved)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {resolved}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            _guarded_import(resolved.stem, spec.loader.exec_module, module)
        except BaseException as exc:
            sys.modules.pop(modname, None)
            if is_user_interrupt(exc):
                raise
            return self._fail(resolved.stem, origin, f"import failed: {_exc_line(exc)}")
        return self._register(module, origin, resolved.stem, alias=alias, explicit=True)

    def register(self, plugin: Any, origin: str = "object") -> Plugin:
        """Register an already imported plugin object (tests, embedding): a driver, or a
        listener if it implements only event hooks."""
        return self._register(plugin, origin, getattr(plugin, "__name__", type(plugin).__name__))

    def _alias(self, drv: LoadedDriver, alias: str | None) -> LoadedDriver:
        """`drv` under the name `alias` too (same plugin, same callbacks, same hooks)."""
        if alias is None or alias == drv.name:
            return drv
        if alias in self.drivers:
            if self.drivers[alias].plugin is drv.plugin:
                return self.drivers[alias]
            raise PluginError(f"driver name {alias!r} is already loaded from "
                              f"{self.drivers[alias].origin}")
        twin = evolve(drv, name=alias, origin=_aliased(drv.origin, alias),
                      info=evolve(drv.info, name=alias))
        self.drivers[alias] = twin
        return twin

    def _take_name(self, name: str, origin: str, explicit: bool) -> str:
        """Make room for a driver called `name`; returns its origin, noting what it replaced.

        An installed driver gives way to one the user named as a file or a
        module; any other clash is an error.
        """
        existing = self.drivers.get(name)
        if existing is None:
            return origin
        if explicit and existing.origin.startswith(_ENTRY_POINT):
            del self.drivers[name]
            self.overridden.append(evolve(existing, overridden_by=origin))
            return f"{origin} (instead of {existing.origin})"
        raise PluginError(f"driver name {name!r} is already loaded from {existing.origin}"
                          + (f"; load this one under another name: NAME@{origin.split(' ', 1)[1]}"
                             if explicit else ""))

    # --- validation --------------------------------------------------------------------
    def _register(self, plugin: Any, origin: str, name_hint: str, *, alias: str | None = None,
                  explicit: bool = False) -> Plugin:
        pm = self.pm
        if pm.is_registered(plugin):
            for drv in self.drivers.values():
                if drv.plugin is plugin:
                    return self._alias(drv, alias)
            for listener in self.event_listeners:
                if listener.plugin is plugin:
                    return listener
        try:
            pm.register(plugin, name=f"{name_hint}@{id(plugin):x}")
        except pluggy.PluginValidationError as exc:
            return self._fail(name_hint, origin, f"invalid hook: {exc}")
        except ValueError as exc:
            return self._fail(name_hint, origin, str(exc))
        try:
            impls = self._plugin_impls(plugin)
            unknown = sorted(n for n, hc in impls.items() if hc is None)
            if unknown:
                raise PluginError(f"unknown hook(s) {', '.join(unknown)}; known hooks are "
                                  f"{', '.join(sorted(_known_hooks()))}")
            if not any(name in impls for name in DRIVER_HOOKS):
                if not impls:
                    raise PluginError("implements no mmplug hook: a driver implements "
                                      "mmplug_driver and the callbacks "
                                      f"{', '.join(DRIVER_CALLBACKS)}")
                listener = LoadedListener(name=alias or name_hint, origin=origin, plugin=plugin,
                                          events=tuple(sorted(impls)))
                self.event_listeners.append(listener)
                return listener
            drv = self._validate_driver(plugin, impls, origin, name_hint, alias, explicit)
        except PluginError as exc:
            pm.unregister(plugin)
            return self._fail(alias or name_hint, origin, str(exc))
        self.drivers[drv.name] = drv
        return drv

    def _validate_driver(self, plugin: Any, impls: dict[str, Any], origin: str, name_hint: str,
                         alias: str | None, explicit: bool) -> LoadedDriver:
        """The LoadedDriver of a plugin that implements driver hooks (PluginError if it
        is not a whole, valid driver)."""
        for name in DRIVER_HOOKS:
            impl = impls.get(name)
            if impl is not None and (impl.hookwrapper or impl.wrapper):
                raise PluginError(f"{name} is a hook wrapper; a driver hook is called on the "
                                  "driver's own plugin, once, and never wrapped: implement it "
                                  "as a plain @hookimpl function")
        funcs = {}
        for cb, argnames in DRIVER_CALLBACKS.items():
            impl = impls.get(cb)
            if impl is None:
                raise PluginError(f"missing callback {cb}({', '.join(argnames)})")
            got = tuple(impl.argnames)
            if got != argnames:
                raise PluginError(f"callback {cb}({', '.join(got)}) must take exactly "
                                  f"({', '.join(argnames)}), in that order")
            funcs[cb] = impl.function
        reg = impls.get("mmplug_driver")
        if reg is None:
            raise PluginError("missing hook mmplug_driver() returning a DriverInfo")
        try:
            info = guard(reg.function, driver=name_hint, hook="mmplug_driver",
                         limit=IMPORT_LIMIT)()
        except BaseException as exc:
            if is_user_interrupt(exc):
                raise
            raise PluginError(f"mmplug_driver() raised {_exc_line(exc)}") from None
        if not isinstance(info, DriverInfo):
            raise PluginError(f"mmplug_driver() returned {type(info).__name__}, "
                              "expected mmplug.DriverInfo")
        if not info.name.isidentifier():
            raise PluginError(f"driver name {info.name!r} is not an identifier")
        if not callable(info.factory):
            raise PluginError("DriverInfo.factory is not callable")
        if alias is not None:
            info = evolve(info, name=alias)
            origin = _aliased(origin, alias)
        origin = self._take_name(info.name, origin, explicit)
        hooks = {name: impls[name].function for name in OPTIONAL_DRIVER_HOOKS if name in impls}
        return LoadedDriver(name=info.name, origin=origin, info=info, plugin=plugin,
                            ops=MovableOps(funcs["isolate_page"], funcs["migratepage"],
                                           funcs["putback_page"]),
                            hooks=MappingProxyType(hooks))

    def _plugin_impls(self, plugin: Any) -> dict[str, Any]:
        """hook name -> this plugin's HookImpl (None for a hook with no spec)."""
        out: dict[str, Any] = {}
        for caller in self.pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    out[caller.name] = impl if caller.spec is not None else None
        return out

    def _fail(self, name: str, origin: str, reason: str) -> FailedDriver:
        drv = FailedDriver(name=name, origin=origin, reason=reason)
        self.failed.append(drv)
        return drv

    def _listeners_changed(self) -> None:
        hook = self.pm.hook
        for name in EVENT_HOOKS:
            caller = getattr(hook, name, None)
            setattr(self.listeners, name,
                    caller if caller is not None and caller.get_hookimpls() else None)

    # --- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> LoadedDriver:
        """A loaded driver by name, loading it if `name` is a module or file."""
        if name in self.drivers:
            return self.drivers[name]
        return self.load(name)

    def all(self) -> list[Plugin]:
        """Every plugin: the drivers by name, the overridden, the listeners, the failed."""
        return (sorted(self.drivers.values(), key=lambda d: d.name) + list(self.overridden)
                + list(self.event_listeners) + list(self.failed))

    def check_distinct(self, specs: list[str]) -> None:
        """UsageError if two of `specs` are the same driver (a copy without NAME@)."""
        seen: dict[str, str] = {}
        for spec in specs:
            name = self.get(spec).name
            if name in seen:
                raise UsageError(f"driver {name} is named twice: {seen[name][:60]!r} and "
                                 f"{spec[:60]!r} are both the driver {name!r}; name one of "
                                 f"them, e.g. mine@{split_alias(spec)[1][:60]}")
            seen[name] = spec

    def _unknown_message(self, spec: str) -> str:
        known = sorted(self.drivers)
        close = difflib.get_close_matches(spec, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        listing = f"installed drivers: {', '.join(known)}" if known else "no drivers are installed"
        return (f"unknown driver {spec!r}{hint}: not an entry point, an importable module or a "
                f".py file; {listing}")


def _aliased(origin: str, alias: str | None) -> str:
    return origin if alias is None else f"{origin}, as {alias}"


def _known_hooks() -> list[str]:
    return [*DRIVER_HOOKS, *EVENT_HOOKS]


def _guarded_import(name: str, load: Callable[..., Any], *args: Any) -> Any:
    """A driver's import is driver code too: under the watchdog's import time limit."""
    return guard(load, driver=name, hook="import", limit=IMPORT_LIMIT)(*args)


def _exc_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if len(line) > 200:
        line = line[:200] + "..."
    if isinstance(exc, CallbackTimeout):
        return f"did not finish within {exc.limit:g} s (hung)"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
