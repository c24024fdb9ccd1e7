"""Pictures are rendered and checked by size and pixel colours."""

from __future__ import annotations

from comparehelp import KNOBPOOL, host, tiny
from PIL import Image

from mmplug.compare.metrics import DRIVER, FREE, LRU, SLAB
from mmplug.compare.plot import (
    BAR_MAX,
    BOUNDARY_RGB,
    FREE_RGB,
    LRU_RGB,
    SLAB_RGB,
    TILE_H,
    TILE_W,
    axis_ticks,
    bar_height,
    buddyinfo_figure,
    driver_colour,
    log_top,
    map_geometry,
    tile_origin,
    write_pictures,
    zone_map_figure,
    zone_map_image,
)
from mmplug.compare.runner import run_all

BLUE = (40, 100, 200)


def _owners(blocks=4):
    owners = bytearray([FREE]) * (512 * blocks)
    owners[0:512] = bytes([DRIVER]) * 512       # block 0: all driver
    owners[512 + 33] = SLAB                      # block 1: one slab page, row 1 column 1
    owners[1024:1536] = bytes([LRU]) * 512       # block 2: all LRU
    return bytes(owners)


def test_zone_map_cells_and_boundaries():
    owners = _owners()
    img = zone_map_image(owners, BLUE).convert("RGB")
    across, down, cell = map_geometry(len(owners))
    assert img.size == (across * (TILE_W * cell + 1) + 1, down * (TILE_H * cell + 1) + 1)
    x0, y0, c = tile_origin(0, len(owners))
    assert img.getpixel((x0, y0)) == BLUE
    assert img.getpixel((x0 + TILE_W * c - 1, y0 + TILE_H * c - 1)) == BLUE
    x1, y1, _ = tile_origin(1, len(owners))
    assert img.getpixel((x1, y1)) == FREE_RGB
    assert img.getpixel((x1 + c, y1 + c)) == SLAB_RGB        # pfn 512 + 33: row 1, column 1
    x2, y2, _ = tile_origin(2, len(owners))
    assert img.getpixel((x2 + 5, y2 + 5)) == LRU_RGB
    x3, y3, _ = tile_origin(3, len(owners))
    assert img.getpixel((x3, y3)) == FREE_RGB
    # the pageblock boundary: the pixel left of each tile and the outer frame
    assert img.getpixel((x1 - 1, y1)) == BOUNDARY_RGB
    assert img.getpixel((0, 0)) == BOUNDARY_RGB


def test_large_zone_maps_one_pixel_per_page():
    owners = bytes(512 * 2048)              # 4 GiB of pages, all free
    across, down, cell = map_geometry(len(owners))
    assert (across, cell) == (16, 1)
    img = zone_map_image(owners, BLUE)
    assert img.size == (16 * 33 + 1, 128 * 17 + 1)


def test_before_after_figure_places_both_maps():
    before = _owners()
    after = bytes([FREE]) * 512 * 3 + bytes([DRIVER]) * 512
    img, pos_l, pos_r = zone_map_figure("knobpool", before, after, BLUE)
    x, y, _ = tile_origin(0, len(before))
    assert img.getpixel((pos_l[0] + x, pos_l[1] + y)) == BLUE
    assert img.getpixel((pos_r[0] + x, pos_r[1] + y)) == FREE_RGB
    x3, y3, _ = tile_origin(3, len(after))
    assert img.getpixel((pos_r[0] + x3, pos_r[1] + y3)) == BLUE


def test_buddyinfo_bars_follow_counts():
    img, boxes = buddyinfo_figure([("a", [100, 10, 0, 1], [1, 10, 50, 0])])
    rgb = driver_colour(0)
    before0, after0 = boxes[0][0]
    assert boxes[0][2][0] is None and boxes[0][3][1] is None      # zero counts draw nothing
    x0, y0, x1, y1 = after0
    assert img.getpixel((x0, y1)) == rgb
    bx0, by0, _, by1 = before0
    assert img.getpixel((bx0, by1)) != rgb and img.getpixel((bx0, by1)) != (255, 255, 255)
    assert by1 - by0 > y1 - y0                       # 100 blocks stand higher than 1
    assert bar_height(100, 100) > bar_height(10, 100) > bar_height(1, 100) > 0


def test_buddyinfo_has_a_labelled_log_axis_counts_and_a_legend():
    img, boxes = buddyinfo_figure([("a", [1725, 651, 0], [173, 51, 4])])
    assert log_top(1725) == 10_000 and log_top(3) == 10
    ticks = axis_ticks(10_000)
    assert [c for c, _ in ticks] == [0, 1, 10, 100, 1_000, 10_000]
    heights = [h for _, h in ticks]
    assert heights == sorted(heights) and heights[-1] == BAR_MAX
    # a bar reaches exactly the tick of its count
    _, after_100 = buddyinfo_figure([("a", [0], [100]), ("b", [0], [10_000])])[1][0][0]
    assert after_100[3] - after_100[1] + 1 == dict(ticks)[100]
    (x0, y0, x1, y1), _ = boxes[0][0]
    grey = img.crop((0, y1 + 2, img.width, y1 + 50)).convert("L")
    assert grey.getextrema()[0] < 100               # order numbers and counts under the bars
    legend = img.crop((0, img.height - 30, img.width, img.height)).convert("RGB")
    assert driver_colour(0) in {c for _, c in legend.getcolors(1 << 16)}


def test_write_pictures_from_a_run(tmp_path):
    results = run_all(host(), [KNOBPOOL], tiny(), [1], keep_maps=True)
    paths = write_pictures(results, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["buddyinfo.png", "zonemap-knobpool.png"]
    img = Image.open(tmp_path / "zonemap-knobpool.png").convert("RGB")
    colours = {c for _, c in img.getcolors(1 << 16)}
    assert {driver_colour(0), FREE_RGB, LRU_RGB, SLAB_RGB, BOUNDARY_RGB} <= colours
    assert img.width > 2 * 32 and img.height > 16
