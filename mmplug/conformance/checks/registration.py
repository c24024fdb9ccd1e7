"""Registration and the instance protocol (API-1, hookspecs, docs/driver-api.md).

The plugin host already refuses a driver whose hooks do not match the specs
(exit 4); these checks look at what loading cannot: the DriverInfo, the
instance the factory returns, and that read gives back what store kept.
"""

from __future__ import annotations

import inspect

from ...hookspecs import DRIVER_CALLBACKS
from ...plugins import Capabilities
from ..invariants import check_owned_pages, verify_driver, verify_objects
from ..outcomes import CheckFailed
from ..registry import Context, check

#: the knobs the suite knows how to use, and the methods each one needs
KNOB_METHODS = {"pin": ("pin", "unpin"), "busy": ("hold", "release"), "map": ("map", "unmap")}
PROTOCOL = ("store", "read", "free", "destroy", "pages")


@check("API-1/registration", "driver registers its callbacks with the hookspec signatures",
       kind="registration")
def registration(ctx: Context) -> str | None:
    info = ctx.loaded.info
    for hook, argnames in DRIVER_CALLBACKS.items():
        fn = getattr(ctx.loaded.ops, hook)
        got = tuple(inspect.signature(fn).parameters)
        if got != argnames:
            raise CheckFailed("API-1", f"{hook}{got} does not match the hookspec {argnames}")
    version: object = info.version   # a driver may give anything
    if not isinstance(version, str) or not version:
        raise CheckFailed("API-1", f"DriverInfo.version is {version!r}; expected a "
                          "non-empty string")
    if not isinstance(info.capabilities, Capabilities):
        raise CheckFailed("API-1", "DriverInfo.capabilities is not an mmplug.Capabilities")
    unknown = sorted(set(info.capabilities.knobs) - set(KNOB_METHODS))
    if unknown:
        return f"knobs the suite does not use: {', '.join(unknown)}"
    return None


@check("API-1/instance-protocol",
       "driver instance offers store, read, free, destroy, pages and its knobs",
       kind="registration")
def instance_protocol(ctx: Context) -> None:
    bench = ctx.bench()
    inst = bench.instance
    missing = [m for m in PROTOCOL if not callable(getattr(inst, m, None))]
    for knob in sorted(ctx.caps.knobs):
        missing += [m for m in KNOB_METHODS.get(knob, ()) if not callable(getattr(inst, m, None))]
    if missing:
        raise CheckFailed("API-1", f"the instance ({type(inst).__name__}) lacks "
                          f"{', '.join(m + '()' for m in missing)}")
    if bench.mapping.private_data is not inst:
        raise CheckFailed("API-1", "mapping.private_data is not the instance the factory "
                          "returned: callbacks could not find their instance")
    if bench.pages():
        check_owned_pages(bench, "API-1", "right after the factory")


@check("API-1/store-read", "read returns the bytes stored, for every object size",
       rules=("FLG-4",))
def store_read(ctx: Context) -> None:
    bench = ctx.bench()
    ps = bench.vm.zone.page_size
    top = min(ctx.caps.max_object_size or ps, ps)
    sizes = sorted({1, 2, 7, 8, 16, 31, 64, 100, 255, 512, 1000, top // 2, top - 1, top})
    for size in sizes:
        if not 0 < size <= top:
            continue
        data = bench.payload(size)
        try:
            handle = bench.call("store", data)
        except ValueError:
            continue  # larger than this driver takes: documented
        first = bench.read(handle)
        if ctx.caps.stores_data and first != data:
            raise CheckFailed("API-1", f"read() of a {size}-byte object does not return the "
                              "bytes stored", page=bench.page_holding(data), hook="read")
        again = bench.read(handle)
        if again != first:
            raise CheckFailed("API-1", "two reads of the same object differ", hook="read")
        bench.objects[handle] = first
    check_owned_pages(bench, "FLG-4", "after store()")
    verify_objects(bench, "API-1", "after storing objects of every size")
    verify_driver(bench, "API-1", "after store()")
