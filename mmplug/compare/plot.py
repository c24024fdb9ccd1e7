"""Pictures: the zone map before and after compaction, and buddyinfo per driver.

The zone map draws one cell per page, coloured by who holds it (free, the
driver, LRU, slab, held high-order allocations, other).  Each pageblock is a
tile of 32 x 16 cells and tiles are separated by a one-pixel line, so the
pageblock boundaries, the unit compaction works for, are visible.  The map
comes straight from the owner bytes: the bytes of the zone are, read 32 at a
time, the rows of the tiles, so no per-page Python loop draws anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..outputs import atomic_file
from .metrics import DRIVER, FREE, HELD, LRU, OTHER, SLAB

TILE_W, TILE_H = 32, 16       # cells per pageblock tile (32 x 16 = 512 pages)
GAP = 1                       # pixels between tiles: the pageblock boundary

FREE_RGB = (236, 236, 236)
LRU_RGB = (250, 190, 60)
SLAB_RGB = (30, 30, 30)
HELD_RGB = (0, 170, 190)
OTHER_RGB = (230, 90, 200)
BOUNDARY_RGB = (150, 150, 150)
BACKGROUND_RGB = (255, 255, 255)
TEXT_RGB = (0, 0, 0)
#: one colour per driver, in the order drivers are compared
DRIVER_RGB = ((40, 100, 200), (200, 40, 40), (40, 150, 60), (130, 70, 180), (150, 90, 40),
              (90, 90, 200))
_BOUNDARY, _BACKGROUND = 6, 7


def driver_colour(index: int) -> tuple[int, int, int]:
    return DRIVER_RGB[index % len(DRIVER_RGB)]


def _palette(driver_rgb: tuple[int, int, int]) -> list[int]:
    colours = [FREE_RGB, driver_rgb, LRU_RGB, SLAB_RGB, HELD_RGB, OTHER_RGB, BOUNDARY_RGB,
               BACKGROUND_RGB]
    flat = [c for rgb in colours for c in rgb]
    return flat + [0] * (768 - len(flat))


def map_geometry(nr_pages: int, pageblock_pages: int = 512) -> tuple[int, int, int]:
    """(tiles across, tiles down, pixels per cell) for a zone."""
    blocks = nr_pages // pageblock_pages
    # Tiles are twice as wide as high: about sqrt(blocks / 2) across looks square.
    across = max(1, min(16, math.ceil(math.sqrt(blocks / 2))))
    down = math.ceil(blocks / across)
    cell = 4 if blocks <= 16 else 3 if blocks <= 64 else 2 if blocks <= 256 else 1
    return across, down, cell


def zone_map_image(owners: bytes, driver_rgb: tuple[int, int, int]) -> Image.Image:
    """The zone map of one moment: a palette image of tiles, one per pageblock."""
    pb = TILE_W * TILE_H
    blocks = len(owners) // pb
    across, down, cell = map_geometry(len(owners), pb)
    # All tiles stacked: the owner bytes are exactly a TILE_W-wide image.
    strip = Image.frombytes("P", (TILE_W, TILE_H * blocks), bytes(owners))
    tw, th = TILE_W * cell, TILE_H * cell
    width = across * (tw + GAP) + GAP
    height = down * (th + GAP) + GAP
    img = Image.new("P", (width, height), _BOUNDARY)
    for b in range(blocks):
        tile = strip.crop((0, b * TILE_H, TILE_W, (b + 1) * TILE_H))
        if cell > 1:
            tile = tile.resize((tw, th), Image.NEAREST)
        x = GAP + (b % across) * (tw + GAP)
        y = GAP + (b // across) * (th + GAP)
        img.paste(tile, (x, y))
    # Grid places without a pageblock are background, not boundary.
    for b in range(blocks, across * down):
        x = GAP + (b % across) * (tw + GAP)
        y = GAP + (b // across) * (th + GAP)
        img.paste(_BACKGROUND, (x - GAP, y - GAP + 1, x + tw + GAP, y + th + GAP))
    img.putpalette(_palette(driver_rgb))
    return img


def tile_origin(block: int, nr_pages: int) -> tuple[int, int, int]:
    """Pixel (x, y) of a pageblock's first cell in a zone map, and the cell size."""
    across, _, cell = map_geometry(nr_pages)
    x = GAP + (block % across) * (TILE_W * cell + GAP)
    y = GAP + (block // across) * (TILE_H * cell + GAP)
    return x, y, cell


LEGEND = (("free", FREE_RGB), ("driver", None), ("LRU", LRU_RGB), ("slab", SLAB_RGB),
          ("held", HELD_RGB), ("other", OTHER_RGB))
TITLE_H = 16
LEGEND_H = 18
MARGIN = 8


def zone_map_figure(name: str, before: bytes, after: bytes,
                    driver_rgb: tuple[int, int, int]) -> tuple[Image.Image, tuple[int, int],
                                                               tuple[int, int]]:
    """Before and after side by side with titles and a legend; returns where each map sits."""
    font = ImageFont.load_default()
    left = zone_map_image(before, driver_rgb).convert("RGB")
    right = zone_map_image(after, driver_rgb).convert("RGB")
    w = MARGIN * 3 + left.width + right.width
    h = MARGIN + TITLE_H + max(left.height, right.height) + MARGIN + LEGEND_H + MARGIN
    img = Image.new("RGB", (max(w, 420), h), BACKGROUND_RGB)
    draw = ImageDraw.Draw(img)
    pos_l = (MARGIN, MARGIN + TITLE_H)
    pos_r = (MARGIN * 2 + left.width, MARGIN + TITLE_H)
    draw.text((pos_l[0], MARGIN), f"{name}: before compaction", fill=TEXT_RGB, font=font)
    draw.text((pos_r[0], MARGIN), "after", fill=TEXT_RGB, font=font)
    img.paste(left, pos_l)
    img.paste(right, pos_r)
    x = MARGIN
    y = h - MARGIN - LEGEND_H + 3
    for label, rgb in LEGEND:
        rgb = rgb or driver_rgb
        label = name if label == "driver" else label
        draw.rectangle((x, y, x + 10, y + 10), fill=rgb, outline=BOUNDARY_RGB)
        draw.text((x + 14, y), label, fill=TEXT_RGB, font=font)
        x += 14 + int(draw.textlength(label, font=font)) + 12
    return img, pos_l, pos_r


# --- buddyinfo --------------------------------------------------------------------------

BAR_W = 7
ORDER_W = 2 * BAR_W + 6
PANEL_H = 150
BAR_MAX = 100
AXIS_RGB = (120, 120, 120)


def _lighter(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(c + (255 - c) * 6 // 10 for c in rgb)  # type: ignore[return-value]


def bar_height(count: int, top: int) -> int:
    """Bars are log-scaled: free lists span 0 to hundreds of thousands of blocks."""
    if count <= 0 or top <= 0:
        return 0
    return max(1, round(BAR_MAX * math.log2(1 + count) / math.log2(1 + top)))


def buddyinfo_figure(panels: list[tuple[str, list[int], list[int]]]) -> tuple[Image.Image, list]:
    """One panel per driver: per order, a light bar (before) and a dark bar (after).

    Returns the image and, per panel, per order, the pixel boxes of both bars
    (for tests and captions).
    """
    font = ImageFont.load_default()
    orders = max(len(b) for _, b, _ in panels)
    top = max(max(b + a) for _, b, a in panels) if panels else 1
    width = MARGIN * 2 + 40 + orders * ORDER_W
    height = MARGIN + len(panels) * (PANEL_H + MARGIN) + LEGEND_H
    img = Image.new("RGB", (max(width, 300), height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(img)
    boxes = []
    for p, (name, before, after) in enumerate(panels):
        rgb = driver_colour(p)
        y0 = MARGIN + p * (PANEL_H + MARGIN)
        base = y0 + TITLE_H + BAR_MAX + 4
        draw.text((MARGIN, y0), f"{name}: free blocks per order (log scale), before | after",
                  fill=TEXT_RGB, font=font)
        draw.line((MARGIN + 36, base, MARGIN + 40 + orders * ORDER_W, base), fill=AXIS_RGB)
        panel_boxes = []
        for o in range(orders):
            x = MARGIN + 40 + o * ORDER_W
            hb = bar_height(before[o] if o < len(before) else 0, top)
            ha = bar_height(after[o] if o < len(after) else 0, top)
            bb = (x, base - hb, x + BAR_W - 1, base - 1)
            ab = (x + BAR_W, base - ha, x + 2 * BAR_W - 1, base - 1)
            if hb:
                draw.rectangle(bb, fill=_lighter(rgb))
            if ha:
                draw.rectangle(ab, fill=rgb)
            draw.text((x + 2, base + 3), str(o), fill=TEXT_RGB, font=font)
            panel_boxes.append((bb if hb else None, ab if ha else None))
        boxes.append(panel_boxes)
    return img, boxes


def _save(img: Image.Image, path: Path) -> None:
    """A PNG written whole: an interrupted run leaves no half picture (mmplug.outputs)."""
    with atomic_file(path) as f:
        img.save(f, format="PNG")


def write_pictures(results: list[list[dict[str, Any]]], directory: str | Path) -> list[Path]:
    """zonemap-<driver>.png for every driver and buddyinfo.png for all (first seed)."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    panels = []
    for i, runs in enumerate(results):
        r = runs[0]
        name = r["driver"]
        maps = r.get("_maps") or {}
        if "before" in maps and "after" in maps:
            img, _, _ = zone_map_figure(name, maps["before"], maps["after"], driver_colour(i))
            path = out_dir / f"zonemap-{name}.png"
            _save(img, path)
            written.append(path)
        panels.append((name, list(r["outcome"]["before"]["buddyinfo"]),
                       list(r["outcome"]["after"]["buddyinfo"])))
    figures = [Image.open(p) for p in written]
    if len(figures) > 1:
        # All drivers' maps in one picture, one row per driver.
        combined = Image.new("RGB", (max(f.width for f in figures),
                                     sum(f.height for f in figures)), BACKGROUND_RGB)
        y = 0
        for f in figures:
            combined.paste(f, (0, y))
            y += f.height
        path = out_dir / "zonemaps.png"
        _save(combined, path)
        written.append(path)
    img, _ = buddyinfo_figure(panels)
    path = out_dir / "buddyinfo.png"
    _save(img, path)
    written.append(path)
    return written


__all__ = ["zone_map_image", "zone_map_figure", "buddyinfo_figure", "write_pictures",
           "driver_colour", "tile_origin", "map_geometry", "FREE", "DRIVER", "LRU", "SLAB",
           "HELD", "OTHER"]
