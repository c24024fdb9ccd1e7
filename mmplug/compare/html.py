"""`mmplug compare --html FILE`: one self-contained HTML report, readable offline.

The report holds the table (every row linked to its definition), the zone
maps before and after compaction, buddyinfo before and after as a picture
and as numbers, each driver's details (origin, capabilities, errors, its
end state in the kernel's own formats) and the definition of every row
(mmplug.compare.rows).  Pictures are PNGs inlined as data: URIs and the
style sheet is inline: the file needs no network and no other file.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from .. import __version__
from ..outputs import write_atomic
from ..vmstat import KERNEL_EVENTS
from .plot import buddyinfo_figure, driver_colour, zone_map_figure
from .render import buddyinfo_text, header, index_text, origins, pagetypeinfo_text
from .rows import ROWS, SECTIONS, Row, sections

Results = list[list[dict[str, Any]]]

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d1d1f; margin: 24px auto;
       max-width: 1100px; padding: 0 16px; background: #fff; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; border-bottom: 2px solid #d0d7e2; padding-bottom: 3px; margin-top: 32px; }
h3 { font-size: 16px; margin-bottom: 4px; }
nav a, dt a { color: #2457a6; }
.what { color: #444; margin-top: 0; }
table { border-collapse: collapse; }
table.metrics th, table.metrics td { padding: 2px 12px; }
table.metrics td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.metrics th.row { text-align: left; font-weight: normal; }
table.metrics th.row a { color: inherit; text-decoration: none; border-bottom: 1px dotted #888; }
table.metrics thead th { background: #e8eef7; border-bottom: 2px solid #9db3d6; }
table.metrics tr.section th { background: #f3f5f9; text-align: left; font-size: 12px;
                              letter-spacing: 0.05em; padding-top: 8px; color: #40506a; }
table.metrics tbody tr:nth-child(even) td { background: #fafbfd; }
td.bad { color: #b00020; font-weight: bold; }
.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 5px;
          border: 1px solid #777; vertical-align: -1px; }
table.counts td, table.counts th { padding: 1px 8px; text-align: right; }
table.counts th:first-child, table.counts td:first-child { text-align: left; }
figure { margin: 12px 0; }
figure img { max-width: 100%; border: 1px solid #e0e0e0; }
figcaption { color: #555; font-size: 13px; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
dl.defs dt { font-weight: bold; margin-top: 10px; }
dl.defs dd { margin-left: 18px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
.error { color: #b00020; }
footer { margin-top: 40px; color: #777; font-size: 12px; }
"""


def data_uri(img: Image.Image) -> str:
    """A PNG of `img` as a data: URI, so the page needs no other file."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rgb(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _row_link(row: Row) -> str:
    return (f'<a href="#row-{row.slug}" title="{escape(row.formula)}">'
            f"{escape(row.label)}</a>")


def metrics_table(results: Results) -> str:
    names = [runs[0]["driver"] for runs in results]
    head = "".join(f'<th><span class="swatch" style="background:{_rgb(driver_colour(i))}">'
                   f"</span>{escape(n)}</th>" for i, n in enumerate(names))
    body = []
    for title, rows in sections():
        if title:
            body.append(f'<tr class="section"><th colspan="{len(names) + 1}">'
                        f"{escape(title.upper())}</th></tr>")
        for row in rows:
            cells = []
            for runs in results:
                value = row.value(runs)
                bad = row.key == "status" and value != "ok"
                attr = ' class="bad"' if bad else ""
                cells.append(f"<td{attr}>{escape(value)}</td>")
            body.append(f'<tr><th class="row">{_row_link(row)}</th>{"".join(cells)}</tr>')
    return (f'<table class="metrics"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def zone_maps(results: Results) -> str:
    out = []
    for i, runs in enumerate(results):
        r = runs[0]
        maps = r.get("_maps") or {}
        name = r["driver"]
        if "before" not in maps or "after" not in maps:
            out.append(f"<p>{escape(name)}: no zone map (the run stopped before compaction).</p>")
            continue
        img, _, _ = zone_map_figure(name, maps["before"], maps["after"], driver_colour(i))
        out.append(f'<figure><img src="{data_uri(img)}" alt="zone map of {escape(name)} before '
                   f'and after compaction"><figcaption>{escape(name)}: one cell per page, '
                   "coloured by its owner; each tile is a pageblock of 512 pages.</figcaption>"
                   "</figure>")
    return "\n".join(out)


def buddyinfo(results: Results) -> str:
    panels = [(runs[0]["driver"], list(runs[0]["outcome"]["before"]["buddyinfo"]),
               list(runs[0]["outcome"]["after"]["buddyinfo"])) for runs in results]
    img, _ = buddyinfo_figure(panels)
    orders = max(len(b) for _, b, _ in panels)
    head = "".join(f"<th>{o}</th>" for o in range(orders))
    rows = "".join(f"<tr><td>{escape(name)} {when}</td>"
                   + "".join(f"<td>{n:,}</td>" for n in counts) + "</tr>"
                   for name, before, after in panels
                   for when, counts in (("before", before), ("after", after)))
    return (f'<figure><img src="{data_uri(img)}" alt="free blocks per order before and after, '
            f'per driver"></figure>'
            f'<table class="counts"><thead><tr><th>order</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def driver_details(results: Results) -> str:
    out = []
    for runs in results:
        r = runs[0]
        name = r["driver"]
        caps = r.get("capabilities", {})
        facts = [("version", r.get("version", "")), ("ran from", r.get("origin", "?")),
                 ("models", r.get("kernel_source") or "-"),
                 ("status", ", ".join(sorted({x["status"] for x in runs}))),
                 ("stores data", str(caps.get("stores_data", "-"))),
                 ("may refuse isolation", str(caps.get("may_refuse_isolation", "-"))),
                 ("knobs", ", ".join(caps.get("knobs", [])) or "none"),
                 ("seeds", ", ".join(str(x["seed"]) for x in runs))]
        lines = [f'<section id="driver-{escape(name)}"><h3>{escape(name)}</h3>',
                 '<dl class="facts">'
                 + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
                 + "</dl>"]
        for x in runs:
            if x.get("error"):
                lines.append(f'<p class="error">seed {x["seed"]}: {escape(x["error"])}</p>')
        problem = r.get("integrity", {}).get("first_problem")
        if problem:
            lines.append(f'<p class="error">first integrity problem: {escape(problem)}</p>')
        for warning in r.get("integrity", {}).get("vm_warnings", []):
            lines.append(f"<p>VM warning: {escape(warning)}</p>")
        snap = r.get("_after")
        if snap is not None:
            files = [("/proc/buddyinfo", buddyinfo_text(snap)),
                     ("/proc/pagetypeinfo", pagetypeinfo_text(snap)),
                     ("/proc/vmstat", "".join(f"{n} {r['counters'].get(n, 0)}\n"
                                              for n in KERNEL_EVENTS)),
                     ("/sys/kernel/debug/extfrag/unusable_index", index_text(snap.unusable)),
                     ("/sys/kernel/debug/extfrag/extfrag_index", index_text(snap.extfrag))]
            lines.append("<p>Its end state as the kernel prints it (first seed):</p>")
            lines += [f"<h4>{escape(path)}</h4><pre>{escape(text)}</pre>" for path, text in files]
        lines.append("</section>")
        out.append("\n".join(lines))
    return "\n".join(out)


def definitions() -> str:
    out = []
    for title, about in SECTIONS:
        rows = [r for r in ROWS if r.section == title]
        out.append(f"<h3>{escape(title.upper() or 'STATUS')}</h3><p>{escape(about)}.</p>"
                   '<dl class="defs">')
        for row in rows:
            out.append(f'<dt id="row-{row.slug}">{escape(row.label)}</dt><dd>'
                       f"<b>Value:</b> {escape(row.formula)}<br>"
                       f"<b>Kernel:</b> {escape(row.kernel or 'none: a number of the model')}<br>"
                       f"<b>Reading:</b> {escape(row.reading)}</dd>")
        out.append("</dl>")
    return "\n".join(out)


def report(results: Results, scenario: dict[str, Any], seeds: list[int]) -> str:
    """The whole report as one HTML document."""
    title = f"mmplug compare: {scenario['name']}"
    head_lines = header(scenario, seeds).splitlines()
    drivers = "".join(f"<li>{escape(line)}</li>" for line in origins(results))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
{"".join(f'<p class="what">{escape(line)}</p>' for line in head_lines)}
<ul>{drivers}</ul>
<nav>Contents: <a href="#table">the table</a> · <a href="#zonemaps">zone maps</a> ·
<a href="#buddyinfo">free blocks per order</a> · <a href="#drivers">drivers</a> ·
<a href="#definitions">what the rows mean</a></nav>
<h2 id="table">The table</h2>
<p>Each row's name links to its definition; with several seeds a cell is the mean ±
the sample standard deviation.</p>
{metrics_table(results)}
<h2 id="zonemaps">Zone maps before and after compaction</h2>
{zone_maps(results)}
<h2 id="buddyinfo">Free blocks per order, before and after (first seed)</h2>
{buddyinfo(results)}
<h2 id="drivers">Drivers</h2>
{driver_details(results)}
<h2 id="definitions">What the rows mean</h2>
{definitions()}
<footer>Written by mmplug {escape(__version__)} (<code>mmplug compare --html</code>).
The same definitions: <code>mmplug explain ROW</code>, docs/metrics.md.</footer>
</body>
</html>
"""


def write_report(results: Results, scenario: dict[str, Any], seeds: list[int],
                 path: Path | str) -> None:
    write_atomic(path, report(results, scenario, seeds))
