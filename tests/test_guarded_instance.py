"""GuardedInstance.store/read/free, which look their guarded caller up themselves, end
every call as call() does: the value, an expected error unchanged, anything else a
DriverError naming the driver and the method."""

from __future__ import annotations

from typing import Any

import pytest

from corehelp import SIMPLEPOOL
from mmplug import VM, NoMemory, PluginHost, VMConfig
from mmplug.instance import STORE_ERRORS, GuardedInstance


def _instance(method: str, behaviour: Any) -> GuardedInstance:
    host = PluginHost()
    loaded = host.load(str(SIMPLEPOOL))
    vm = VM(VMConfig(nr_pages=1024), plugins=host)
    instance = vm.create_from(loaded)
    setattr(instance, method, behaviour)   # looked up on the instance, as a method is
    return vm.instance_record(instance)


def _outcome(fn: Any) -> tuple[Any, ...]:
    try:
        return ("returned", fn())
    except BaseException as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "rule", None),
                getattr(exc, "hook", None), getattr(exc, "driver", None))


def _raises(exc: BaseException) -> Any:
    def fn(*args: Any) -> Any:
        raise exc
    return fn


BEHAVIOURS = {
    "returns": lambda *args: b"xyz",
    "no memory": _raises(NoMemory("full")),
    "too big": _raises(ValueError("too big")),
    "key error": _raises(KeyError(5)),
    "runtime error": _raises(RuntimeError("broken")),
}


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("method", ["store", "read", "free"])
def test_store_read_free_end_as_call_does(method, behaviour):
    fn = BEHAVIOURS[behaviour]
    arg: Any = b"abc" if method == "store" else 1
    expected = STORE_ERRORS if method == "store" else ()
    fast = _instance(method, fn)
    slow = _instance(method, fn)
    for _ in range(2):   # the first call makes the guarded caller, the second finds it
        got = _outcome(lambda: getattr(fast, method)(arg))
        want = _outcome(lambda: slow.call(method, arg, expected=expected))
        if method == "free" and want[0] == "returned":
            want = ("returned", None)   # free() returns nothing whatever the driver does
        assert got == want
    assert (got[0] == "returned") == (behaviour == "returns")
