"""`mmplug kernel run SCENARIO`: the guest kernel and the model compact the same memory.

1. the scenario's data (blocks of known compressed sizes) and the guest's
   initramfs are made; the probe module is built against the guest's headers;
2. the guest boots, runs the scenario and leaves its /proc, /sys and probe
   files (before and after compact_memory) on its output disk;
3. the model is built from the `before` snapshot, the driver's history is
   replayed onto the driver's real pfns, and compact_memory runs zone by zone;
4. the side-by-side table compares them, row by row.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any, Callable

import re

from .. import __version__
from ..vm import KERNEL_BASELINE, kernel_settings
from ..compare.snapshot import DRIVERS, PageFrames
from ..plugins import PluginHost
from . import guest
from .kernelside import KernelRun, read_run
from .modelside import ModelRun, run_model
from .parts import cache_dir, find_parts
from .probe import build_probe
from .scenario import GuestPlan, Scenario, load, plan, replay_for
from .sidebyside import REASONS, build_rows, render, rows_json


def run_scenario(name: str, *, keep: Path | None = None, accel: str = "auto",
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Everything of one run: the scenario, the guest, both sides and the rows."""
    sc = load(name)
    parts = find_parts()
    cache = cache_dir()
    ko = build_probe(parts, cache)
    tmp = None
    if keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="mmplug-kernel-")
        workdir = Path(tmp.name)
    else:
        workdir = keep
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        log(f"scenario {sc.name} ({sc.kind}), seed {sc.seed}: {sc.description}")
        gp = plan(sc, workdir)
        modules = list(dict.fromkeys(gp.modules + list(guest.BASE_MODULES)))
        spec = guest.GuestSpec(sc.memory_mib, sc.cpus, modules, gp.script, gp.env, gp.files,
                               gp.disks, gp.balloon, gp.actions,
                               extra_modules=[("mmplug_pfn", ko)])
        res = guest.run(spec, parts, workdir, accel=accel, log=log, memo=cache / "kvm-failed")
        kernel = read_run(res.out_dir)
        out = compare_with_model(sc, gp, kernel)
        out["guest"] = {"release": kernel.release or parts.release,
                        "package_version": parts.source_version, "accel": res.accel,
                        "accel_note": res.accel_note, "seconds": round(res.seconds, 1),
                        "memory_mib": sc.memory_mib, "cpus": sc.cpus}
        if keep is not None:
            kernel.before.frames.write(workdir / "kernel-before.snapshot")
            kernel.after.frames.write(workdir / "kernel-after.snapshot")
            out["_model"].after.write(workdir / "model-after.snapshot")
            for f in ("data.img", "swap.img", "initramfs.gz"):
                (workdir / f).unlink(missing_ok=True)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def compare_kept(name: str, folder: Path) -> dict[str, Any]:
    """The comparison again, from a folder an earlier `--keep` left: no guest boots."""
    sc = load(name)
    out = folder / "out" if (folder / "out").is_dir() else folder
    kernel = read_run(out)
    result = compare_with_model(sc, plan(sc, None), kernel)
    cmd = folder / "qemu.cmd"
    accel = "kept run"
    if cmd.exists():
        words = shlex.split(cmd.read_text())
        if "-accel" in words:
            accel = f"kept {words[words.index('-accel') + 1]} run"
    result["guest"] = {"release": kernel.release, "package_version": kernel.package_version,
                       "accel": accel, "accel_note": "", "seconds": 0,
                       "memory_mib": sc.memory_mib, "cpus": sc.cpus}
    return result


def guest_release(kernel: KernelRun) -> str | None:
    """The guest's MAJOR.MINOR (e.g. "6.1"), whose newer-kernel options the second model
    column runs with; None when the run does not say."""
    m = re.match(r"(\d+)\.(\d+)", kernel.release or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def compare_with_model(sc: Scenario, gp: GuestPlan, kernel: KernelRun,
                       options: dict[str, bool] | None = None) -> dict[str, Any]:
    """Run the model from the kernel's `before` snapshot, as v4.19 and with the guest
    release's newer-kernel options (or `options`); the rows of the table."""
    host = PluginHost()
    host.load_entry_points()
    host.get(sc.driver)
    facts: dict[str, Any] = {}
    v = kernel.before.vmstat
    facts["balloon_inflate"] = v.get("balloon_inflate", 0)
    facts["balloon_deflate"] = v.get("balloon_deflate", 0)
    filled = kernel.extra.get("zswap.filled") or {}
    facts["zswap_pool_objects"] = (filled.get("stored_pages", 0)
                                   - filled.get("same_filled_pages", 0))
    notes: dict[str, Any] = {}
    replay = replay_for(sc, gp, facts, notes)
    release = guest_release(kernel)
    if options is None and release is not None:
        options = kernel_settings(release)

    def after(instance: Any) -> dict[str, Any]:
        extra = dict(notes)
        if sc.kind == "zram" and sc.get("zram", "compact", True, bool):
            extra["compact_freed"] = instance.compact()
            extra["pages_after_compact"] = instance.pages_allocated
        if sc.kind == "zswap":
            from ..page import PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE
            extra["headless"] = sum(1 for p in instance.pages()
                                    if p.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE)
        return extra

    plans: dict[Any, Any] = {}
    model = run_model(kernel.before.frames, host, sc.driver, replay, after, plans=plans)
    newer = (run_model(kernel.before.frames, host, sc.driver, replay, after, options=options,
                       plans=plans) if options is not None else None)
    rows = build_rows(sc, gp, kernel, model, newer)
    return {"mmplug": __version__, "scenario": {"name": sc.name, "kind": sc.kind,
                                                 "description": sc.description,
                                                 "file": str(sc.path)},
            "seed": sc.seed, "driver": sc.driver, "rows": rows_json(rows),
            "reasons": {k: REASONS[k] for k in sorted({x for r in rows for x in r.cited})},
            "model": {"baseline": KERNEL_BASELINE, "release": release,
                      "options": options or {}},
            "placement": model.placement, "_rows": rows, "_kernel": kernel, "_model": model,
            "_newer": newer}


def header(result: dict[str, Any]) -> str:
    g = result.get("guest", {})
    sc = result["scenario"]
    model = result.get("model", {})
    release = model.get("release")
    on = [k for k, v in model.get("options", {}).items() if v]
    models = f"v4.19, and v4.19 with {release}'s options ({', '.join(on)})" if release else "v4.19"
    return (f"mmplug kernel run {sc['name']}: seed {result['seed']}, guest Linux "
            f"{g.get('release', '?')} ({g.get('package_version', '')}) {g.get('memory_mib')} MiB, "
            f"{g.get('cpus')} cpu, {g.get('accel', '?').upper()}; model mmplug "
            f"{result['mmplug']}: {models}")


def table_text(result: dict[str, Any]) -> str:
    release = result.get("model", {}).get("release")
    columns = ("v4.19", release) if release else ("model",)
    return render(result["_rows"], header(result), columns)


def public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def write_plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """zonemap-<scenario>.png: the kernel's zone and each model's, before and after."""
    from PIL import Image

    from ..compare.plot import BACKGROUND_RGB, driver_colour, zone_map_figure
    kernel: KernelRun = result["_kernel"]
    model: ModelRun = result["_model"]
    zone = kernel.before.frames.zone(model.driver_zone or kernel.before.frames.zones[-1].name)
    driver = result["driver"]
    rgb = driver_colour(list(DRIVERS).index(driver))
    panels = [(f"{driver}: kernel {result['guest'].get('release', '')}", kernel.before.frames,
               kernel.after.frames), (f"{driver}: model (v4.19)", model.before, model.after)]
    newer: ModelRun | None = result.get("_newer")
    if newer is not None:
        panels.append((f"{driver}: model (v4.19 with {result['model']['release']}'s options)",
                       newer.before, newer.after))
    images = [zone_map_figure(title, owners(before, zone, driver), owners(after, zone, driver),
                              rgb)[0] for title, before, after in panels]
    img = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)),
                    BACKGROUND_RGB)
    y = 0
    for i in images:
        img.paste(i, (0, y))
        y += i.height
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"zonemap-{result['scenario']['name']}.png"
    img.save(path)
    return [path]


def owners(frames: PageFrames, zone: Any, driver: str) -> bytes:
    """The zone's pfns as compare's owner codes, padded to whole pageblocks."""
    from ..compare.metrics import DRIVER, FREE, LRU, OTHER, SLAB
    code = {ord("."): FREE, ord("l"): LRU, ord("s"): SLAB, ord(DRIVERS[driver][0]): DRIVER}
    base = zone.start_pfn // 512 * 512
    end = -(-zone.end_pfn // 512) * 512
    out = bytearray([OTHER]) * (end - base)
    head = OTHER
    for p in range(zone.start_pfn, zone.end_pfn):
        c = frames.kinds[p]
        if c == ord("+"):
            out[p - base] = head
            continue
        head = code.get(c, OTHER)
        out[p - base] = head
    return bytes(out)
