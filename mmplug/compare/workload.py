"""What a comparison runs: a workload, from a preset or a user's TOML file.

A workload describes a machine (zone size, page size, CPUs), who fills its
memory (driver objects with a size distribution, LRU pages, slab pages), how
much of each is freed and in which pattern, the knobs held during compaction
(pinned, mapped objects, a busy driver lock) and what triggers compaction:
a whole-zone run (/proc/sys/vm/compact_memory), direct compaction of an order
(the allocator's slow path) or kcompactd.  `rounds` repeats fill, free and
compaction, which is how a balloon inflates and deflates.

Every random choice comes from `seed`; the same workload and seed give the
same history on every driver.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from attrs import asdict, evolve, frozen

from ..errors import UsageError
from ..units import describe_size, parse_bytes  # noqa: F401  (part of this module's API)

TRIGGER_KINDS = ("whole_zone", "direct", "kcompactd")
FREE_PATTERNS = ("random", "alternate", "oldest", "newest")

#: bounds of what a workload file may ask for (sizes are checked against memory too)
MAX_FILE_BYTES = 1 << 20
MAX_PAGE_SIZE = 1 << 20
MAX_PAGES = 1 << 30
MAX_ROUNDS = 1000
MAX_COUNT = 10_000
MAX_SHARE = 1e6
MAX_TEXT = 1000
#: at most this much of a bad value is echoed in a message
SHOWN = 100


def shown(value: Any) -> str:
    """repr(value), cut to about SHOWN characters: a message never echoes a whole input."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


@frozen(slots=True)
class Trigger:
    """One compaction trigger, run `count` times in a row."""

    kind: str = "whole_zone"
    order: int = 9
    count: int = 1
    #: direct: keep the pages a successful allocation returned (THP-like), else free them
    keep: bool = True


@frozen(slots=True)
class Workload:
    """A complete, validated workload; `asdict()` is what the JSON output stores."""

    name: str
    description: str = ""
    seed: int = 1
    cpus: int = 1
    nr_pages: int = 4096
    page_size: int = 4096
    #: fraction of the zone the fill phase aims to use
    fill: float = 0.85
    #: shares of the pages used, per page user
    driver_share: float = 0.7
    lru_share: float = 0.2
    slab_share: float = 0.1
    slab_order: int = 0
    #: driver object sizes in bytes, with weights
    sizes: tuple[tuple[int, float], ...] = ((256, 2.0), (1024, 2.0), (2048, 1.0), (3072, 1.0))
    #: fraction of each user's objects/pages freed after a fill
    free_driver: float = 0.5
    free_lru: float = 0.5
    free_slab: float = 0.3
    free_pattern: str = "random"
    #: fraction of live driver objects freed while each trigger runs: on the other
    #: CPUs, concurrently with compaction, when cpus > 1; else right after it
    free_during: float = 0.0
    #: fraction of live driver objects pinned / mapped while compaction runs
    pin: float = 0.05
    map: float = 0.05
    #: fraction of compaction triggers run with the driver's lock held
    busy: float = 0.0
    rounds: int = 1
    triggers: tuple[Trigger, ...] = (Trigger("whole_zone"), Trigger("direct", 9, 4))

    def with_overrides(self, *, seed: int | None = None, nr_pages: int | None = None) -> Workload:
        out = self
        if seed is not None:
            out = evolve(out, seed=seed)
        if nr_pages is not None:
            out = evolve(out, nr_pages=nr_pages)
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self, recurse=True)
        d["sizes"] = [list(s) for s in self.sizes]
        d["triggers"] = [asdict(t) for t in self.triggers]
        return d

    @property
    def zone_bytes(self) -> int:
        return self.nr_pages * self.page_size


# --- presets ---------------------------------------------------------------------------

_ANDROID_SIZES = ((128, 3.0), (512, 4.0), (1024, 4.0), (1536, 3.0), (2048, 3.0),
                  (2688, 2.0), (3264, 2.0), (4096, 1.0))

PRESETS: dict[str, Workload] = {
    "small": Workload(
        name="small",
        description="32 MiB, mixed users, 10 % of objects pinned and 10 % mapped, whole-zone "
                    "compaction then six order-9 requests; runs in seconds",
        nr_pages=8192, fill=0.85, driver_share=0.7, lru_share=0.2, slab_share=0.1,
        pin=0.1, map=0.1, busy=0.25,
        triggers=(Trigger("whole_zone"), Trigger("direct", 9, 6))),
    "android": Workload(
        name="android",
        description="256 MiB phone, 2 CPUs: zram filled with mixed compressed sizes, app "
                    "pages on the LRU, half the zram freed, kcompactd and direct order-3/9 "
                    "requests while the other CPU frees zram objects",
        nr_pages=65536, fill=0.9, driver_share=0.6, lru_share=0.35, slab_share=0.05,
        sizes=_ANDROID_SIZES, free_driver=0.5, free_lru=0.4, free_slab=0.2,
        pin=0.05, map=0.02, busy=0.1, cpus=2, free_during=0.02,
        triggers=(Trigger("kcompactd", 3), Trigger("direct", 3, 16), Trigger("direct", 9, 8))),
    "vmhost": Workload(
        name="vmhost",
        description="64 MiB guest, 2 CPUs: page-sized driver objects inflated and deflated "
                    "three times, compaction after each deflation while the other CPU "
                    "deflates more",
        nr_pages=16384, fill=0.9, driver_share=0.8, lru_share=0.15, slab_share=0.05,
        sizes=((4096, 1.0),), free_driver=0.6, free_lru=0.3, free_slab=0.1,
        free_pattern="alternate", pin=0.0, map=0.0, busy=0.2, rounds=3, cpus=2,
        free_during=0.05,
        triggers=(Trigger("whole_zone"), Trigger("direct", 9, 2))),
    "storm": Workload(
        name="storm",
        description="64 MiB, high-order allocation storm: 24 order-9 requests through direct "
                    "compaction (ASYNC then SYNC_LIGHT), pages kept",
        nr_pages=16384, fill=0.8, driver_share=0.6, lru_share=0.35, slab_share=0.05,
        free_pattern="alternate", pin=0.05, map=0.05,
        triggers=(Trigger("direct", 9, 24),)),
    "slabmix": Workload(
        name="slabmix",
        description="64 MiB, two rounds: the second fill puts unmovable slab pages into the "
                    "holes the first round's frees left across pageblocks",
        nr_pages=16384, fill=0.85, driver_share=0.55, lru_share=0.25, slab_share=0.2,
        free_slab=0.6, pin=0.05, map=0.05, rounds=2,
        triggers=(Trigger("whole_zone"), Trigger("direct", 9, 8))),
    "1g": Workload(
        name="1g",
        description="1 GiB zone (262,144 pages), mixed users, whole-zone compaction and "
                    "order-9 requests: the scale preset",
        nr_pages=262144, fill=0.8, driver_share=0.7, lru_share=0.25, slab_share=0.05,
        free_pattern="random", pin=0.02, map=0.02,
        triggers=(Trigger("whole_zone"), Trigger("direct", 9, 16))),
}


def preset(name: str) -> Workload:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)}")
    return PRESETS[name]


# --- TOML files ---------------------------------------------------------------------------

class _Reader:
    """Typed access to one TOML table, naming file and key in every error."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str = "") -> None:
        self.path = path
        self.table = table
        self.prefix = prefix
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, got: Any = None) -> UsageError:
        where = f"{self.prefix}{key}" if key else self.prefix.rstrip(".")
        value = "" if got is None else f", got {shown(got)}"
        return UsageError(f"{self.path}: key {shown(where)}: expected {expected}{value}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any, expected: str) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, expected, value)
        if not isinstance(value, kind):
            raise self.fail(key, expected, value)
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A finite number from `low` to `high` (never inf or nan)."""
        expected = f"a number from {low:g} to {high:g}"
        v = self.get(key, (int, float), default, expected)
        if not low <= v <= high:   # also false for nan
            raise self.fail(key, expected, v)
        return float(v)

    def fraction(self, key: str, default: float) -> float:
        return self.number(key, default, 0, 1)

    def positive_int(self, key: str, default: int, low: int = 1, high: int | None = None) -> int:
        expected = f"an integer >= {low}" if high is None else \
            f"an integer from {low} to {high:,}"
        v: int = self.get(key, int, default, expected)
        if v < low or (high is not None and v > high):
            raise self.fail(key, expected, v)
        return v

    def text(self, key: str, default: str) -> str:
        v: str = self.get(key, str, default, f"a string of at most {MAX_TEXT} characters")
        if len(v) > MAX_TEXT or not v.isprintable():
            raise self.fail(key, f"a printable string of at most {MAX_TEXT} characters", v)
        return v

    def table_of(self, key: str) -> _Reader:
        value = self.get(key, dict, {}, "a table")
        return _Reader(self.path, value, f"{self.prefix}{key}.")

    def check_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            where = f"{self.prefix}{unknown[0]}"
            raise UsageError(f"{self.path}: key {shown(where)}: unknown key; expected one of "
                             f"{', '.join(sorted(self.used))}")


def load_workload(path: str | Path) -> Workload:
    """Read and validate a workload TOML file (see examples/workloads/)."""
    path = Path(path)
    text = read_input(path, "workload", MAX_FILE_BYTES)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return workload_from_dict(raw, path)


def read_input(path: Path, what: str, cap: int) -> str:
    """The text of an input file of at most `cap` bytes; UsageError saying what is wrong."""
    try:
        if path.is_dir():
            raise UsageError(f"{shown(str(path))}: is a folder; give a {what} file")
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError:
        raise UsageError(f"{shown(str(path))}: no such {what} file") from None
    except OSError as exc:
        raise UsageError(f"{shown(str(path))}: cannot read the {what} file: "
                         f"{exc.strerror or exc}") from None
    if len(data) > cap:
        raise UsageError(f"{path}: a {what} file may be at most {cap >> 20} MiB; this one "
                         "is larger")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None


def workload_from_dict(raw: dict[str, Any], path: Path | str = "<workload>") -> Workload:
    path = Path(path)
    top = _Reader(path, raw)
    base = Workload(name=path.stem)
    kw: dict[str, Any] = {}
    kw["name"] = top.text("name", path.stem[:MAX_TEXT])
    kw["description"] = top.text("description", "")
    kw["seed"] = top.get("seed", int, base.seed, "an integer")
    kw["cpus"] = top.positive_int("cpus", base.cpus, high=8)
    kw["rounds"] = top.positive_int("rounds", base.rounds, high=MAX_ROUNDS)

    zone = top.table_of("zone")
    expected = f"a power of two from 64 to {MAX_PAGE_SIZE}"
    page_size = zone.get("page_size", int, base.page_size, expected)
    if not 64 <= page_size <= MAX_PAGE_SIZE or page_size & (page_size - 1):
        raise zone.fail("page_size", expected, page_size)
    kw["page_size"] = page_size
    if "size" in zone.table and "pages" in zone.table:
        raise zone.fail("size", "either zone.size or zone.pages, not both")
    nr_pages = zone.positive_int("pages", base.nr_pages)
    size = zone.get("size", (str, int), None, "a size like \"64MiB\"")
    if size is not None:
        try:
            nr_pages = parse_bytes(size) // page_size
        except ValueError as exc:
            raise zone.fail("size", "a size like \"64MiB\"", size) from exc
    if nr_pages < 512 or nr_pages % 512 or nr_pages > MAX_PAGES:
        raise zone.fail("pages" if size is None else "size",
                        f"a whole number of 512-page pageblocks, from 1 to {MAX_PAGES // 512:,}",
                        nr_pages)
    kw["nr_pages"] = nr_pages
    zone.check_unknown()

    mix = top.table_of("mix")
    kw["fill"] = mix.fraction("fill", base.fill)
    kw["driver_share"] = mix.number("driver", base.driver_share, 0, MAX_SHARE)
    kw["lru_share"] = mix.number("lru", base.lru_share, 0, MAX_SHARE)
    kw["slab_share"] = mix.number("slab", base.slab_share, 0, MAX_SHARE)
    if kw["driver_share"] + kw["lru_share"] + kw["slab_share"] <= 0:
        raise mix.fail("driver", "shares whose sum is above 0")
    kw["slab_order"] = mix.get("slab_order", int, 0, "an integer from 0 to 3")
    if not 0 <= kw["slab_order"] <= 3:
        raise mix.fail("slab_order", "an integer from 0 to 3", kw["slab_order"])
    mix.check_unknown()

    objects = top.table_of("objects")
    kw["sizes"] = _sizes(objects, page_size, base.sizes)
    objects.check_unknown()

    free = top.table_of("free")
    kw["free_driver"] = free.fraction("driver", base.free_driver)
    kw["free_lru"] = free.fraction("lru", base.free_lru)
    kw["free_slab"] = free.fraction("slab", base.free_slab)
    kw["free_during"] = free.fraction("during", base.free_during)
    kw["free_pattern"] = free.get("pattern", str, base.free_pattern,
                                  f"one of {', '.join(FREE_PATTERNS)}")
    if kw["free_pattern"] not in FREE_PATTERNS:
        raise free.fail("pattern", f"one of {', '.join(FREE_PATTERNS)}", kw["free_pattern"])
    free.check_unknown()

    knobs = top.table_of("knobs")
    kw["pin"] = knobs.fraction("pin", base.pin)
    kw["map"] = knobs.fraction("map", base.map)
    kw["busy"] = knobs.fraction("busy", base.busy)
    knobs.check_unknown()

    kw["triggers"] = _triggers(top, base.triggers)
    top.check_unknown()
    return Workload(**kw)


def _sizes(objects: _Reader, page_size: int,
           default: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
    if "sizes" in objects.table and ("min" in objects.table or "max" in objects.table):
        raise objects.fail("sizes", "either objects.sizes or objects.min/max, not both")
    if "min" in objects.table or "max" in objects.table:
        lo = objects.positive_int("min", 64)
        hi = objects.positive_int("max", page_size)
        if lo > hi or hi > page_size:
            raise objects.fail("max", f"min <= max <= page_size ({page_size})", hi)
        # Uniform in 16-byte steps, as allocators round sizes anyway.
        steps = sorted({lo, hi, *range(-(-lo // 16) * 16, hi + 1, 16)})
        return tuple((s, 1.0) for s in steps)
    raw = objects.get("sizes", list, None, "a list of [bytes, weight] pairs")
    if raw is None:
        return default
    if len(raw) > MAX_COUNT:
        raise objects.fail("sizes", f"at most {MAX_COUNT:,} [bytes, weight] pairs", len(raw))
    out = []
    for i, item in enumerate(raw):
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], int)
                or isinstance(item[0], bool) or not isinstance(item[1], (int, float))
                or isinstance(item[1], bool)):
            raise objects.fail(f"sizes[{i}]", "a pair [bytes, weight]", item)
        if not 1 <= item[0] <= page_size or not 0 < item[1] <= MAX_SHARE:
            raise objects.fail(f"sizes[{i}]", f"1 <= bytes <= page_size ({page_size}) and "
                               f"0 < weight <= {MAX_SHARE:g}", item)
        out.append((item[0], float(item[1])))
    if not out:
        raise objects.fail("sizes", "a non-empty list of [bytes, weight] pairs", raw)
    return tuple(out)


def _triggers(top: _Reader, default: tuple[Trigger, ...]) -> tuple[Trigger, ...]:
    raw = top.get("compact", list, None, "an array of tables [[compact]]")
    if raw is None:
        return default
    if len(raw) > MAX_COUNT:
        raise top.fail("compact", f"at most {MAX_COUNT:,} [[compact]] tables", len(raw))
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise top.fail(f"compact[{i}]", "a table with kind, order, count", item)
        r = _Reader(top.path, item, f"compact[{i}].")
        kind = r.get("kind", str, None, f"one of {', '.join(TRIGGER_KINDS)}")
        if kind not in TRIGGER_KINDS:
            raise r.fail("kind", f"one of {', '.join(TRIGGER_KINDS)}", kind)
        order = r.get("order", int, 9, "an order from 0 to 10")
        if not 0 <= order <= 10:
            raise r.fail("order", "an order from 0 to 10", order)
        count = r.positive_int("count", 1, high=MAX_COUNT)
        keep = r.get("keep", bool, True, "true or false")
        r.check_unknown()
        out.append(Trigger(kind, order, count, keep))
    if not out:
        raise top.fail("compact", "at least one [[compact]] table")
    return tuple(out)


def pages_for(size: str | int, page_size: int) -> int:
    """Zone pages for a `--zone-size`; a UsageError unless whole pageblocks."""
    try:
        nbytes = parse_bytes(str(size))
    except ValueError as exc:
        raise UsageError(f"--zone-size: {exc}") from None
    pages = nbytes // page_size
    if pages < 512 or pages % 512 or pages > MAX_PAGES:
        raise UsageError(f"--zone-size: {shown(str(size))[1:-1]} is {pages:,} pages of "
                         f"{page_size} bytes; expected a whole number of 512-page pageblocks, "
                         f"from 1 to {MAX_PAGES // 512:,}")
    return pages
