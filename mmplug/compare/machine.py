"""One simulated machine running one driver: the events of a history, executed.

Both a generated workload and a replayed trace come down to the same events
(mmplug.compare.trace): store, lru, slab, free, pin/unpin, map/unmap,
hold/release, compact, direct, kcompactd.  The machine executes them through
the driver-facing instance protocol and the core only, keeps what it needs to
verify every object at the end, and can record what it executed as a trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from hashlib import blake2b
from typing import Any
from zlib import crc32

from ..compaction import alloc_pages_compact, compact_memory, kcompactd_do_work
from ..cpus.schedule import RandomStrategy
from ..cpus.scheduler import Scheduler
from ..errors import CallbackTimeout, ContractViolation, MmplugError, NoMemory
from ..instance import GuardedInstance
from ..page import PAGE_MAPPING_FLAGS
from ..plugins import LoadedDriver, PluginHost
from ..users import LruPages, SlabCache
from ..vm import VM, VMConfig
from ..watchdog import DEFAULT_LIMIT
from .metrics import Snapshot, owner_map, take_snapshot
from .probe import Probe
from .trace import Event


def object_bytes(key: int, size: int) -> bytes:
    """The contents of object `key`: distinct per object, cheap to make again for checking."""
    block = blake2b(key.to_bytes(8, "little")).digest()    # 64 bytes, blake2b's own size
    if size & 63:
        return (block * ((size >> 6) + 1))[:size]
    return block * (size >> 6)


def _digest(data: bytes) -> int:
    """A checksum of what a driver that keeps no data reads back: compared in the same
    run only, so a CRC does (a quarter of the time of a cryptographic hash)."""
    return crc32(data)


class Machine:
    """A VM with one instance of one driver, an LRU owner and a slab cache."""

    def __init__(self, loaded: LoadedDriver, host: PluginHost, nr_pages: int, page_size: int,
                 *, slab_order: int = 0, record: bool = False, keep_maps: bool = False,
                 cpus: int = 1, timeout: float | None = DEFAULT_LIMIT,
                 start: bool = True) -> None:
        # Several CPUs: the scheduler interleaves them at every lock, refcount and
        # callback boundary; the step limit is off, a compaction has many steps.
        self.sched = Scheduler(cpus, max_steps=1 << 62) if cpus > 1 else None
        self.vm = VM(VMConfig(nr_pages=nr_pages, page_size=page_size, callback_timeout=timeout),
                     plugins=host, cpus=self.sched)
        self.loaded = loaded
        assert loaded.info is not None
        self.name = loaded.info.name
        self.caps = loaded.info.capabilities
        self.instance: Any = None
        #: how every call into the instance is made (set by start())
        self.guarded: GuardedInstance
        self.probe = Probe()
        #: False once the driver hung, exited or exhausted memory: it is called no more
        self.usable = True
        self.lru = LruPages(self.vm)
        self.slab = SlabCache(self.vm, "kmalloc-256", order=slab_order)
        self.keep_maps = keep_maps
        #: id -> driver handle; id -> its size; for a driver that keeps no data, id ->
        #: the digest of what read() must return
        self.objects: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}
        self.digests: dict[int, int] = {}
        self.lru_keys: dict[int, int] = {}
        self.slabs: dict[int, Any] = {}
        self.held: dict[int, tuple[Any, int]] = {}
        self.pinned: set[int] = set()
        self.mapped: set[int] = set()
        self.asked: dict[str, set[int]] = {"pin": set(), "map": set()}
        #: the two sets of `asked`, for op_free's look on every free
        self._asked_pin, self._asked_map = self.asked["pin"], self.asked["map"]
        self.holding = False
        self.last_store_rejected = False
        self.trace: list[Event] | None = [] if record else None
        self.before: Snapshot | None = None
        self.stats = dict.fromkeys((
            "objects_stored", "store_no_memory", "store_rejected", "lru_pages", "lru_no_memory",
            "slab_pages", "slab_no_memory", "frees", "pins", "maps", "holds",
            "whole_zone_compactions", "kcompactd_runs", "unknown_ids", "concurrent_runs"), 0)
        self.requests: dict[int, list[int]] = {}   # order -> [attempts, successes]
        self.compaction_seconds = 0.0
        #: event name -> what executes it
        self.ops: dict[str, Callable[..., bool]] = {
            name[3:]: getattr(self, name) for name in dir(type(self)) if name.startswith("op_")}
        if start:
            self.start()

    def start(self) -> None:
        """Create the driver instance (its factory may fail: a DriverError)."""
        self.instance = self.vm.create_from(self.loaded)
        self.guarded = self.vm.instance_record(self.instance)
        self.probe.install(self.guarded.mapping)

    def call(self, hook: str, *args: Any) -> Any:
        """instance.<hook>(*args), as every call into the instance is made (mmplug.instance)."""
        return self.guarded.call(hook, *args)

    # --- events ------------------------------------------------------------------
    def execute(self, ev: Event) -> bool:
        """Run one event; returns whether it took effect (a store may fail: no memory)."""
        op = ev[0]
        trace = self.trace
        if trace is not None:
            trace.append(ev)
        ok = self.ops[op](*ev[1:])
        if not ok and op == "store" and self.last_store_rejected and trace and trace[-1] is ev:
            # A size the driver rejected changed nothing: the history keeps only the
            # store that took (a trace never stores one id twice).
            trace.pop()
        return ok

    def op_store(self, key: int, size: int) -> bool:
        data = object_bytes(key, size)
        self.last_store_rejected = False
        try:
            handle = self.guarded.store(data)
        except NoMemory:
            self.stats["store_no_memory"] += 1
            return False
        except ValueError:
            self.last_store_rejected = True
            self.stats["store_rejected"] += 1
            return False
        self.objects[key] = handle
        self.sizes[key] = size
        if not self.caps.stores_data:
            # A driver that keeps no data must still read the same before and after.
            self.digests[key] = _digest(self.read(handle))
        self.stats["objects_stored"] += 1
        return True

    def op_lru(self, key: int) -> bool:
        lkey = self.lru.alloc(key.to_bytes(8, "little"))
        if lkey is None:
            self.stats["lru_no_memory"] += 1
            return False
        self.lru_keys[key] = lkey
        self.stats["lru_pages"] += 1
        return True

    def op_slab(self, key: int) -> bool:
        page = self.slab.alloc_slab()
        if page is None:
            self.stats["slab_no_memory"] += 1
            return False
        self.slabs[key] = page
        self.stats["slab_pages"] += 1
        return True

    def op_free(self, key: int) -> bool:
        if key in self.objects:
            # (pinned and mapped objects are among those asked for)
            if key in self._asked_pin:
                self.op_unpin(key)
            if key in self._asked_map:
                self.op_unmap(key)
            self.guarded.free(self.objects.pop(key))
            del self.sizes[key]
            if self.digests:
                del self.digests[key]
        elif key in self.lru_keys:
            self.lru.free(self.lru_keys.pop(key))
        elif key in self.slabs:
            self.slab.free_slab(self.slabs.pop(key))
        elif key in self.held:
            page, _ = self.held.pop(key)
            self.vm.cpus.put_page(page)
        else:
            self.stats["unknown_ids"] += 1
            return False
        self.stats["frees"] += 1
        return True

    def _ask(self, knob: str, key: int, on: bool) -> bool:
        """pin/unpin or map/unmap one object, if the driver has the knob.

        What was asked is remembered even when the driver lacks the knob, so
        the matching release is still issued (and recorded in a trace).
        """
        asked = self.asked[knob]
        done = self.pinned if knob == "pin" else self.mapped
        if on:
            if key not in self.objects or key in asked:
                return False
            asked.add(key)
            if knob not in self.caps.knobs:
                return False
            self.call(knob, self.objects[key])
            done.add(key)
            self.stats["pins" if knob == "pin" else "maps"] += 1
            return True
        asked.discard(key)
        if key not in done:
            return False
        done.discard(key)
        self.call("un" + knob, self.objects[key])
        return True

    def op_pin(self, key: int) -> bool:
        return self._ask("pin", key, True)

    def op_unpin(self, key: int) -> bool:
        return self._ask("pin", key, False)

    def op_map(self, key: int) -> bool:
        return self._ask("map", key, True)

    def op_unmap(self, key: int) -> bool:
        return self._ask("map", key, False)

    def pinned_or_asked(self, knob: str) -> set[int]:
        return set(self.asked[knob])

    def op_hold(self) -> bool:
        if "busy" not in self.caps.knobs or self.holding:
            return False
        self.call("hold")
        self.holding = True
        self.stats["holds"] += 1
        return True

    def op_release(self) -> bool:
        if not self.holding:
            return False
        self.holding = False
        self.call("release")
        return True

    def _first_compaction(self) -> None:
        if self.before is None:
            self.before = take_snapshot(self.vm, bytes(self.owners()) if self.keep_maps else None)

    def op_compact(self) -> bool:
        self._first_compaction()
        t0 = time.perf_counter()
        compact_memory(self.vm)
        self.compaction_seconds += time.perf_counter() - t0
        self.stats["whole_zone_compactions"] += 1
        return True

    def op_direct(self, key: int, order: int) -> bool:
        self._first_compaction()
        t0 = time.perf_counter()
        page = alloc_pages_compact(self.vm, order)
        self.compaction_seconds += time.perf_counter() - t0
        counts = self.requests.setdefault(order, [0, 0])
        counts[0] += 1
        if page is None:
            return False
        counts[1] += 1
        self.held[key] = (page, order)
        return True

    def op_kcompactd(self, order: int) -> bool:
        self._first_compaction()
        t0 = time.perf_counter()
        kcompactd_do_work(self.vm, order)
        self.compaction_seconds += time.perf_counter() - t0
        self.stats["kcompactd_runs"] += 1
        return True

    def concurrently(self, first: Callable[[], Any], others: list[Callable[[], Any]],
                     seed: int) -> None:
        """Run `first` on cpu0 and each of `others` on its own CPU, interleaved by a seeded
        random strategy; a failure on any CPU, or a deadlock, ends the run with an error."""
        assert self.sched is not None
        out = self.sched.run([first, *others], RandomStrategy(seed))
        self.stats["concurrent_runs"] += 1
        if out.error is not None:
            raise out.error
        if out.deadlock:
            raise MmplugError("deadlock between CPUs: "
                              + "; ".join(c.render() for c in out.cpus))

    # --- state -----------------------------------------------------------------------
    def read(self, handle: Any) -> bytes:
        """read(handle): the driver's bytes (API-1 if it returns anything else)."""
        return self.guarded.read(handle)

    def driver_pfns(self) -> list[int]:
        """The pfns the driver lists; none once it cannot be called (its pages then
        count as "other" in the maps)."""
        if self.instance is None or not self.usable:
            return []
        try:
            return [p.pfn for p in self.guarded.pages()]
        except ContractViolation:
            self.usable = False
            return []

    def held_blocks(self) -> list[tuple[int, int]]:
        return [(page.pfn, order) for page, order in self.held.values()]

    def owners(self) -> bytearray:
        return owner_map(self.vm, self.driver_pfns(),
                         (p.pfn for p in self.lru.pages.values()),
                         self.slab.pfns(), self.held_blocks())

    def release_knobs(self) -> None:
        for key in list(self.asked["pin"]):
            self.op_unpin(key)
        for key in list(self.asked["map"]):
            self.op_unmap(key)
        self.op_release()

    def verify(self) -> dict[str, Any]:
        """Read every live object back through the driver; count lost and corrupted.

        `first_problem` names the first lost or corrupted object, else the first
        leaked page.  A read that hangs ends the verification (DriverError).
        """
        verified = lost = corrupted = 0
        first_problem = ""
        read, sizes, digests = self.guarded.read, self.sizes, self.digests
        for key, handle in self.objects.items():
            size, digest = sizes[key], digests.get(key)
            try:
                got = read(handle)
            except ContractViolation as exc:
                if isinstance(exc.__cause__, CallbackTimeout):
                    self.usable = False
                    raise
                lost += 1   # a driver that lost the handle may raise anything
                first_problem = first_problem or f"object {key}: {exc.message}"
                continue
            ok = (_digest(got) == digest) if digest is not None else got == object_bytes(key, size)
            if ok:
                verified += 1
            else:
                corrupted += 1
                first_problem = first_problem or f"object {key}: {size} bytes read back differ"
        out: dict[str, Any] = {"objects_verified": verified, "objects_lost": lost,
                               "objects_corrupted": corrupted,
                               "lru_corrupted": len(self.lru.verify())}
        if self.guarded.has("verify"):
            failed = self.guarded.verify()
            out["driver_verify"] = "ok" if failed is None else f"failed: {failed}"
        else:
            out["driver_verify"] = "not provided"
        held_pages = [page for page, _ in self.held.values()]
        leaked = self.vm.unclaimed_pages(extra=held_pages)
        out["leaked_pages"] = len(leaked)
        if leaked and not first_problem:
            first_problem = f"leaked page {leaked[0].describe()}"
        out["first_problem"] = first_problem
        return out

    def destroy(self) -> None:
        """Destroy the instance as the VM does (mmplug.instance.GuardedInstance.destroy:
        nothing of it isolated or pointing at its mapping), then every page it had must be
        back in the zone: a page in use that no instance, user or held block claims was
        kept by destroy() (REL-3).  Run after verify() found nothing leaked, so that any
        page left in use is destroy()'s."""
        self.guarded.destroy()
        self.usable = False     # what pages() would list is gone with the instance
        held_pages = [page for page, _ in self.held.values()]
        left = self.vm.unclaimed_pages(extra=held_pages)
        if left:
            handle = self.guarded.mapping.handle
            kept = [p for p in left if p.mapping & ~PAGE_MAPPING_FLAGS == handle]
            raise ContractViolation("REL-3", f"{len(left)} page(s) still in use after "
                                    "destroy(): an instance releases every page it had",
                                    driver=self.name, hook="destroy",
                                    page=(kept or left)[0])


def integrity_failure(integrity: dict[str, Any], warnings: list[str]) -> str:
    """What the end-of-run checks found wrong ("" if nothing): a run that loses, corrupts
    or leaks anything, whose verify() fails or that made the VM warn has failed."""
    found = [f"{integrity[k]} {what}" for k, what in (
        ("objects_lost", "object(s) lost"), ("objects_corrupted", "object(s) corrupted"),
        ("lru_corrupted", "LRU page(s) corrupted"), ("leaked_pages", "page(s) leaked"))
        if integrity.get(k)]
    if str(integrity.get("driver_verify", "")).startswith("failed"):
        found.append(f"verify() {integrity['driver_verify']}")
    if warnings:
        found.append(f"{len(warnings)} VM warning(s), first {warnings[0]}")
    if not found:
        return ""
    first = integrity.get("first_problem")
    return "integrity: " + ", ".join(found) + (f"; first: {first}" if first else "")
