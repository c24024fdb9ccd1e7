"""Scenarios of `mmplug kernel run`: TOML files, what the guest runs, what the model replays.

A scenario is one of three kinds, each a TOML file under scenarios/ that a
user may copy and change:

- zram: blocks of known compressed sizes written into zram, a fraction
  discarded; the model's zsmalloc gets the same zs_malloc sizes and frees in
  the same order (zram_write_page: a same-filled page keeps no object, a page
  compressing to huge_class_size or more is stored whole);
- balloon: the host inflates and deflates the balloon through QMP; the
  model's balloon inflates and deflates by the same page counts;
- zswap: tmpfs files beyond RAM, swapped through zswap into z3fold, some
  removed; zswap stores each page as its compressed length plus the 8-byte
  zswap_header of an evictable zpool (zswap_frontswap_store, 6.1), and
  the model stores those lengths in the order the files were written.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .blocks import PAGE_SIZE, SAME, Block, BlockMix, generate

SCENARIO_DIR = Path(__file__).with_name("scenarios")
KINDS = ("zram", "balloon", "zswap")
PATTERNS = ("random", "alternate", "oldest", "newest")
#: zswap_header before each object of an evictable zpool (z3fold), 6.1
ZSWAP_HEADER = 8


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and the key."""


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def parse_size(value: Any, where: str) -> int:
    """"512M", "1G", "64K" or a byte count -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", str(value), re.I)
    if not m:
        raise ScenarioError(f"{where}: {value!r} is not a size such as 512M")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[unit]


def choose(ids: list[int], fraction: float, pattern: str, rng: random.Random) -> list[int]:
    """The ids a fraction and a pattern pick, in ascending order."""
    n = round(len(ids) * fraction)
    if n <= 0:
        return []
    if pattern == "random":
        return sorted(rng.sample(ids, n))
    if pattern == "oldest":
        return ids[:n]
    if pattern == "newest":
        return ids[-n:]
    return [k for i, k in enumerate(ids) if int((i + 1) * fraction) > int(i * fraction)]


@dataclass
class Scenario:
    """A loaded scenario: common settings and the kind's own table."""

    name: str
    kind: str
    description: str
    seed: int
    memory: int
    cpus: int
    raw: dict[str, Any]
    path: Path
    mix: BlockMix | None = None
    blocks: list[Block] = field(default_factory=list)

    @property
    def memory_mib(self) -> int:
        return self.memory >> 20

    @property
    def driver(self) -> str:
        return {"zram": "zsmalloc", "balloon": "balloon", "zswap": "z3fold"}[self.kind]

    def table(self, key: str) -> dict[str, Any]:
        t = self.raw.get(key, {})
        if not isinstance(t, dict):
            raise ScenarioError(f"{self.path}: [{key}] must be a table")
        return t

    def get(self, table: str, key: str, default: Any,
            kind: type | tuple[type, ...] = (int, float)) -> Any:
        value = self.table(table).get(key, default)
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ScenarioError(f"{self.path}: [{table}] {key} = {value!r}: wrong type")
        return value

    def fraction(self, table: str, key: str, default: float) -> float:
        v = float(self.get(table, key, default))
        if not 0 <= v <= 1:
            raise ScenarioError(
                f"{self.path}: [{table}] {key} = {v}: expected a fraction in [0, 1]")
        return v

    def pattern(self, table: str) -> str:
        p: str = self.get(table, "pattern", "random", str)
        if p not in PATTERNS:
            raise ScenarioError(f"{self.path}: [{table}] pattern = {p!r}: expected one of "
                                f"{', '.join(PATTERNS)}")
        return p


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a TOML file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ScenarioError(f"unknown scenario {name_or_path!r}: built in are "
                                f"{', '.join(builtin_names())}, or give a .toml file")
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ScenarioError(f"{path}: kind = {kind!r}: expected one of {', '.join(KINDS)}")
    seed = raw.get("seed", 1)
    cpus = raw.get("cpus", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ScenarioError(f"{path}: seed = {seed!r}: expected an integer")
    if not isinstance(cpus, int) or not 1 <= cpus <= 8:
        raise ScenarioError(f"{path}: cpus = {cpus!r}: expected 1..8")
    memory = parse_size(raw.get("memory", "512M"), f"{path}: memory")
    if not 128 << 20 <= memory <= 8 << 30:
        raise ScenarioError(f"{path}: memory = {raw.get('memory')!r}: expected 128M..8G")
    sc = Scenario(str(raw.get("name", path.stem)), kind, str(raw.get("description", "")),
                  seed, memory, cpus, raw, path)
    sc.mix = _mix(sc) if kind in ("zram", "zswap") else None
    return sc


def _mix(sc: Scenario) -> BlockMix:
    if sc.kind == "zram":
        count = sc.get("blocks", "count", 8192, int)
    else:
        count = sc.get("files", "count", 96, int) * sc.get("files", "blocks", 768, int)
    prefix = sc.get("blocks", "prefix", [16, 3600], list)
    if len(prefix) != 2 or not all(isinstance(x, int) for x in prefix):
        raise ScenarioError(f"{sc.path}: [blocks] prefix must be [min, max]")
    mix = BlockMix(count, sc.fraction("blocks", "same_filled", 0.05),
                   sc.fraction("blocks", "incompressible", 0.10), prefix[0], prefix[1])
    try:
        mix.validate()
    except ValueError as exc:
        raise ScenarioError(f"{sc.path}: [blocks] {exc}") from None
    return mix


# --- what the guest runs -------------------------------------------------------------------

@dataclass
class GuestPlan:
    """The guest's part: the script, its settings, files, disks, modules, host actions."""

    script: str
    env: dict[str, str]
    modules: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    disks: dict[str, tuple[Path, bool]] = field(default_factory=dict)
    balloon: bool = False
    actions: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    #: what the model replays needs from the plan (block ids freed, files removed, ...)
    facts: dict[str, Any] = field(default_factory=dict)


def plan(sc: Scenario, workdir: Path | None) -> GuestPlan:
    """The guest's part of `sc`; with workdir None, no disk image is written (the blocks'
    sizes are still drawn, for comparing with a run kept earlier)."""
    planner = {"zram": _plan_zram, "balloon": _plan_balloon, "zswap": _plan_zswap}[sc.kind]
    return planner(sc, workdir)


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for i in ids:
        if out and out[-1][0] + out[-1][1] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1])
    return [(a, b) for a, b in out]


def _compressor(sc: Scenario, table: str) -> str:
    comp: str = sc.get(table, "compressor", "lz4", str)
    if comp != "lz4":
        raise ScenarioError(f"{sc.path}: [{table}] compressor = {comp!r}: only lz4 has a Python "
                            "package that reproduces the guest's compressed sizes")
    return comp


def _plan_zram(sc: Scenario, workdir: Path | None) -> GuestPlan:
    assert sc.mix is not None
    comp = _compressor(sc, "zram")
    disksize = parse_size(sc.get("zram", "disksize", "64M", (str, int)), f"{sc.path}: disksize")
    if disksize < sc.mix.blocks * PAGE_SIZE:
        raise ScenarioError(f"{sc.path}: [zram] disksize holds fewer than {sc.mix.blocks} blocks")
    data = workdir / "data.img" if workdir is not None else None
    sc.blocks = generate(sc.mix, sc.seed, data)
    stored = [i for i, b in enumerate(sc.blocks) if b.kind != SAME]
    freed = choose(stored, sc.fraction("free", "fraction", 0.5), sc.pattern("free"),
                   random.Random(f"{sc.seed}:free"))
    runs = _runs(freed)
    return GuestPlan(
        "zram.sh",
        {"DISKSIZE": str(disksize), "COMPRESSOR": comp, "NBLOCKS": str(sc.mix.blocks),
         "ZCOMPACT": "1" if sc.get("zram", "compact", True, bool) else "0"},
        ["zram", "lz4", "virtio_blk", "virtio_pci"],
        files={"free.runs": "".join(f"{a} {n}\n" for a, n in runs).encode()},
        disks={"data": (data, True)} if data is not None else {},
        facts={"freed": freed})


def _plan_balloon(sc: Scenario, workdir: Path | None) -> GuestPlan:
    inflate = parse_size(sc.get("balloon", "inflate", "256M", (str, int)), f"{sc.path}: inflate")
    deflate = parse_size(sc.get("balloon", "deflate", "128M", (str, int)), f"{sc.path}: deflate")
    if inflate >= sc.memory or deflate > inflate:
        raise ScenarioError(f"{sc.path}: [balloon] expected deflate <= inflate < memory")
    npages, dpages = inflate // PAGE_SIZE, deflate // PAGE_SIZE

    def do_inflate(qmp: Any) -> None:
        qmp.execute("balloon", value=sc.memory - inflate)

    def do_deflate(qmp: Any) -> None:
        qmp.execute("balloon", value=sc.memory - inflate + deflate)

    return GuestPlan("balloon.sh", {"INFLATE_PAGES": str(npages), "DEFLATE_PAGES": str(dpages)},
                     ["virtio_balloon", "virtio_pci"], balloon=True,
                     actions={"inflate": do_inflate, "deflate": do_deflate},
                     facts={"inflate": npages, "deflate": dpages})


def _plan_zswap(sc: Scenario, workdir: Path | None) -> GuestPlan:
    assert sc.mix is not None
    comp = _compressor(sc, "zswap")
    nfiles = sc.get("files", "count", 96, int)
    fblocks = sc.get("files", "blocks", 768, int)
    if nfiles < 1 or fblocks < 1:
        raise ScenarioError(f"{sc.path}: [files] count and blocks must be positive")
    swap = parse_size(sc.get("zswap", "swap", "512M", (str, int)), f"{sc.path}: swap")
    pool = sc.get("zswap", "max_pool_percent", 40, int)
    disks: dict[str, tuple[Path, bool]] = {}
    if workdir is not None:
        disks = {"data": (workdir / "data.img", True), "swap": (workdir / "swap.img", False)}
        with open(workdir / "swap.img", "wb") as f:
            f.truncate(swap)
    sc.blocks = generate(sc.mix, sc.seed, disks["data"][0] if disks else None)
    removed = choose(list(range(nfiles)), sc.fraction("files", "remove", 0.5),
                     sc.pattern("files"), random.Random(f"{sc.seed}:remove"))
    tmpfs = nfiles * fblocks * PAGE_SIZE + (16 << 20)
    return GuestPlan(
        "zswap.sh",
        {"COMPRESSOR": comp, "MAX_POOL": str(pool), "NFILES": str(nfiles),
         "FBLOCKS": str(fblocks), "TMPFS_SIZE": str(tmpfs),
         "REMOVE": " ".join(str(i) for i in removed)},
        ["z3fold", "lz4", "virtio_blk", "virtio_pci"],
        disks=disks, facts={"removed": removed, "fblocks": fblocks})


# --- what the model replays ----------------------------------------------------------------

def zram_object_size(block: Block, huge_class_size: int) -> int | None:
    """zram_write_page(): no object for a same-filled page; PAGE_SIZE from huge_class_size up."""
    if block.kind == SAME:
        return None
    return PAGE_SIZE if block.compressed >= huge_class_size else block.compressed


def replay_for(sc: Scenario, plan_: GuestPlan, kernel: dict[str, Any],
               notes: dict[str, Any]) -> Callable[[Any], None]:
    """The driver history the model replays, given what the kernel reported.

    The replay records what it saw on the way in `notes` (pages after the
    fill, objects stored).
    """
    if sc.kind == "zram":
        freed = plan_.facts["freed"]

        def zram(pool: Any) -> None:
            huge = pool.huge_class_size
            handles: dict[int, int] = {}
            for i, b in enumerate(sc.blocks):
                size = zram_object_size(b, huge)
                if size is not None:
                    handles[i] = pool.store(bytes(size))
            notes["filled_pages"] = pool.pages_allocated
            for i in freed:
                pool.free(handles.pop(i))
            notes["pages_before"] = pool.pages_allocated
        return zram

    if sc.kind == "balloon":
        n = kernel.get("balloon_inflate", plan_.facts["inflate"])
        m = kernel.get("balloon_deflate", plan_.facts["deflate"])

        def balloon(b: Any) -> None:
            b.inflate(n)
            b.deflate(m)
        return balloon

    fblocks = plan_.facts["fblocks"]
    removed = set(plan_.facts["removed"])
    objects = kernel.get("zswap_pool_objects", 0)

    def zswap(pool: Any) -> None:
        # zswap holds the oldest pages reclaim took: the first ones written.
        handles: dict[int, int] = {}
        for i, b in enumerate(sc.blocks):
            if len(handles) >= objects:
                break
            if b.kind == SAME:
                continue
            size = b.compressed + ZSWAP_HEADER
            if size > PAGE_SIZE:
                continue      # z3fold_alloc: -ENOSPC, zswap rejects the page
            handles[i] = pool.store(bytes(size))
        notes["stored"] = len(handles)
        for i, h in list(handles.items()):
            if i // fblocks in removed:
                pool.free(h)
                del handles[i]
        notes["objects"] = len(handles)
    return zswap
