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
            tile = tile.resize((tw, th), Image.Resampling.NEAREST)
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

BAR_W = 14                    # one bar: before or after
ORDER_W = 2 * BAR_W + 12      # one order: both bars and a gap
PANEL_H = 214                 # title, chart, order labels, the counts under them
BAR_MAX = 120                 # pixels of the tallest tick
AXIS_W = 56                   # the y axis: tick labels and its title
AXIS_RGB = (120, 120, 120)
GRID_RGB = (225, 225, 225)
COUNT_ROW_H = 13


def _font(size: int) -> Any:
    """Pillow's own font at `size` (Pillow >= 10.1), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _lighter(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(c + (255 - c) * 6 // 10 for c in rgb)  # type: ignore[return-value]


def log_top(count: int) -> int:
    """The axis' top: the power of ten at or above `count` (at least 10)."""
    top = 10
    while top < count:
        top *= 10
    return top


def bar_height(count: int, top: int) -> int:
    """Bars are log-scaled, log(1 + count): free lists span 0 to hundreds of thousands."""
    if count <= 0 or top <= 0:
        return 0
    return max(1, round(BAR_MAX * math.log2(1 + count) / math.log2(1 + top)))


def axis_ticks(top: int) -> list[tuple[int, int]]:
    """(count, pixels above the baseline) of every labelled tick: 0, 1, 10, ... top."""
    ticks = [(0, 0)]
    value = 1
    while value <= top:
        ticks.append((value, bar_height(value, top)))
        value *= 10
    return ticks


def _count_text(n: int) -> str:
    return f"{n:,}" if n < 100_000 else f"{n / 1000:,.0f}k"


#: a bar's pixel box (left, top, right, bottom), None for a zero count
Box = tuple[int, int, int, int] | None


def buddyinfo_figure(panels: list[tuple[str, list[int], list[int]]]
                     ) -> tuple[Image.Image, list[list[tuple[Box, Box]]]]:
    """One panel per driver: free blocks per order before and after, with axes, counts, a legend.

    Per order a light bar (before) and a dark bar (after) on a log scale whose
    ticks are labelled 0, 1, 10, 100, ...; under the order numbers the two
    counts are written out.  Returns the image and, per panel, per order, the
    pixel boxes of both bars (None for a zero count).
    """
    font, small = _font(12), _font(10)
    orders = max((max(len(b), len(a)) for _, b, a in panels), default=1)
    top = log_top(max((max(b + a, default=0) for _, b, a in panels), default=1))
    chart_x = MARGIN + AXIS_W
    width = chart_x + orders * ORDER_W + MARGIN
    legend_y = MARGIN + len(panels) * (PANEL_H + MARGIN)
    height = legend_y + LEGEND_H + MARGIN
    img = Image.new("RGB", (max(width, 420), height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(img)
    boxes: list[list[tuple[Box, Box]]] = []
    for p, (name, before, after) in enumerate(panels):
        rgb = driver_colour(p)
        y0 = MARGIN + p * (PANEL_H + MARGIN)
        base = y0 + TITLE_H + 8 + BAR_MAX
        draw.text((MARGIN, y0), f"{name}: free blocks per order (/proc/buddyinfo), "
                  "log scale", fill=TEXT_RGB, font=font)
        right = chart_x + orders * ORDER_W
        for count, h in axis_ticks(top):
            y = base - h
            draw.line((chart_x, y, right, y), fill=GRID_RGB if count else AXIS_RGB)
            draw.line((chart_x - 4, y, chart_x, y), fill=AXIS_RGB)
            label = _count_text(count)
            draw.text((chart_x - 6 - draw.textlength(label, font=small), y - 6), label,
                      fill=TEXT_RGB, font=small)
        draw.line((chart_x, base - BAR_MAX, chart_x, base), fill=AXIS_RGB)
        panel_boxes: list[tuple[Box, Box]] = []
        for o in range(orders):
            x = chart_x + 6 + o * ORDER_W
            nb = before[o] if o < len(before) else 0
            na = after[o] if o < len(after) else 0
            hb, ha = bar_height(nb, top), bar_height(na, top)
            bb = (x, base - hb, x + BAR_W - 1, base - 1)
            ab = (x + BAR_W, base - ha, x + 2 * BAR_W - 1, base - 1)
            if hb:
                draw.rectangle(bb, fill=_lighter(rgb))
            if ha:
                draw.rectangle(ab, fill=rgb)
            centre = x + BAR_W
            for row, text, shade in ((0, str(o), TEXT_RGB), (1, _count_text(nb), AXIS_RGB),
                                     (2, _count_text(na), TEXT_RGB)):
                f = font if row == 0 else small
                draw.text((centre - draw.textlength(text, font=f) / 2,
                           base + 4 + row * COUNT_ROW_H), text, fill=shade, font=f)
            panel_boxes.append((bb if hb else None, ab if ha else None))
        for row, text in ((0, "order"), (1, "before"), (2, "after")):
            draw.text((MARGIN, base + 4 + row * COUNT_ROW_H), text, fill=TEXT_RGB, font=small)
        boxes.append(panel_boxes)
    x = MARGIN
    for label, shade in (("before compaction", _lighter(driver_colour(0))),
                         ("after", driver_colour(0))):
        draw.rectangle((x, legend_y + 3, x + 10, legend_y + 13), fill=shade, outline=AXIS_RGB)
        draw.text((x + 14, legend_y + 2), label, fill=TEXT_RGB, font=font)
        x += 14 + int(draw.textlength(label, font=font)) + 16
    draw.text((x, legend_y + 2), "(light: before, dark: after, in each driver's colour)",
              fill=AXIS_RGB, font=small)
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
           "axis_ticks", "log_top",
           "driver_colour", "tile_origin", "map_geometry", "FREE", "DRIVER", "LRU", "SLAB",
           "HELD", "OTHER"]
