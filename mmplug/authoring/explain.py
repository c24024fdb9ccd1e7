"""`mmplug explain RULE|ROW`: a rule's text, its kernel sources and the checks that enforce
it; or what a row of `mmplug compare`'s table means.

Rules come from mmplug.rules (contract.md); checks from
`mmplug.conformance.list_checks()`, imported only here and only when asked,
so that `explain` still works if the conformance suite cannot be imported.
Rows come from mmplug.compare.rows, the source docs/metrics.md is written from.
"""

from __future__ import annotations

import difflib
import importlib
import re
import textwrap
from typing import Any

from attrs import frozen

from .. import rules
from ..compare import rows as table_rows
from ..errors import UsageError

#: the kernel the contract's baseline describes (CONTRACT.md)
KERNEL_VERSION = "v4.19"
_FILE_URL = "https://elixir.bootlin.com/linux/{version}/source/{path}"
_COMMIT_URL = "https://git.kernel.org/torvalds/c/{sha}"
_COMMIT = re.compile(r"^[0-9a-f]{10,12}$")
_VERSION = re.compile(r"\bv\d+\.\d+\b")
#: where a group's functions live, for rules whose text cites no file
GROUP_SOURCES = {
    "FLG": ("include/linux/page-flags.h", "mm/compaction.c"),
    "ISO": ("mm/migrate.c",),
    "MIG": ("mm/migrate.c",),
    "PUT": ("mm/migrate.c",),
    "REL": ("mm/compaction.c", "mm/migrate.c"),
    "CMP": ("mm/compaction.c",),
    "STA": ("mm/vmstat.c",),
}
#: `name`, `name()` or `a->b` in backticks: the kernel functions and fields a rule names
_SYMBOL = re.compile(r"`([A-Za-z_]\w*(?:->\w+)*)(\([^`]*\))?`")


@frozen(slots=True)
class CheckRef:
    """One conformance check, as explain lists it."""

    id: str
    title: str
    kind: str


@frozen(slots=True)
class Explanation:
    rule: rules.Rule
    #: (source, link) pairs: kernel files and commits the rule cites
    sources: tuple[tuple[str, str], ...]
    #: None when the conformance suite could not be imported
    checks: tuple[CheckRef, ...] | None
    #: kernel functions, fields and constants the rule names
    symbols: tuple[str, ...] = ()

    def render(self, width: int = 88) -> str:
        rule = self.rule
        lines = [f"{rule.id}  ({rule.section})", ""]
        lines += textwrap.wrap(rule.text, width=width, initial_indent="  ",
                               subsequent_indent="  ")
        lines += ["", "kernel sources:"]
        if self.sources:
            pad = max(len(src) for src, _ in self.sources)
            lines += [f"  {src:<{pad}}  {link}" for src, link in self.sources]
        else:
            lines.append("  (none cited)")
        if self.symbols:
            lines += textwrap.wrap(", ".join(self.symbols), width=width,
                                   initial_indent="  names: ", subsequent_indent="         ")
        lines += ["", "checks that enforce it:"]
        if self.checks is None:
            lines.append("  (the conformance suite, mmplug.conformance, could not be imported)")
        elif not self.checks:
            lines.append("  (none: no check of `mmplug check-driver` cites this rule)")
        else:
            pad = max(len(c.id) for c in self.checks)
            lines += [f"  {c.id:<{pad}}  {c.title}" + (f"  [{c.kind}]" if c.kind else "")
                      for c in self.checks]
            lines += ["", f"run them: mmplug check-driver DRIVER --select {rule.id}"]
        return "\n".join(lines)


def source_link(source: str, version: str = KERNEL_VERSION) -> str:
    """Where to read a cited source: a kernel file at `version`, or a commit."""
    if _COMMIT.match(source):
        return _COMMIT_URL.format(sha=source)
    return _FILE_URL.format(version=version, path=source)


def kernel_version_of(rule: rules.Rule) -> str:
    """The kernel a rule describes: its section's (z3fold: v5.3-v6.0 -> v6.0), a rule that
    starts with a version tag ([v6.18] ...), else the baseline."""
    in_section = _VERSION.findall(rule.section)
    if in_section:
        return str(in_section[-1])
    leading = re.match(r"\[(v\d+\.\d+)\]", rule.text)
    return leading.group(1) if leading else KERNEL_VERSION


def _all_checks() -> list[Any] | None:
    try:
        return list(importlib.import_module("mmplug.conformance").list_checks())
    except Exception:  # a missing or broken suite must not take explain down
        return None


def checks_for(rule_id: str) -> tuple[CheckRef, ...] | None:
    """The conformance checks that cite `rule_id`, or None without a suite."""
    specs = _all_checks()
    if specs is None:
        return None
    return tuple(CheckRef(str(s.id), str(getattr(s, "title", "")), str(getattr(s, "kind", "")))
                 for s in specs if rule_id in tuple(getattr(s, "rules", ())))


def checks_named(query: str) -> list[Any]:
    """The checks whose id, or id prefix before the slash, is `query` (FUZZ, RACE/explore)."""
    key = query.strip().upper()
    return [s for s in _all_checks() or ()
            if str(s.id).upper() == key or str(s.id).split("/", 1)[0].upper() == key]


def render_checks(specs: list[Any], width: int = 88) -> str:
    """Each check and the rules it enforces, for ids only checks use."""
    table = rules.all_rules()
    lines: list[str] = []
    for spec in specs:
        lines += [f"{spec.id}  {spec.title}  [{spec.kind}]", "", "enforces:"]
        for rid in spec.rules:
            rule = table.get(rid)
            if rule is not None:
                lines.append(f"  {rid:<7} " + textwrap.shorten(rule.text, width - 10,
                                                               placeholder=" ..."))
        lines += ["", f"run it: mmplug check-driver DRIVER --select {spec.id}", ""]
    return "\n".join(lines).rstrip()


def resolve(query: str) -> rules.Rule:
    """The rule named by `query`: a rule id in any case, or a check id such as ISO-4/lru.

    UsageError, with the closest ids, if nothing matches.
    """
    key = query.strip().upper()
    table = rules.all_rules()
    for candidate in (key, key.split("/", 1)[0]):
        if candidate in table:
            return table[candidate]
    close = difflib.get_close_matches(key.split("/", 1)[0], list(table), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"no rule {query!r}{hint} (`mmplug explain` lists every rule)")


def sources_of(rule: rules.Rule) -> tuple[str, ...]:
    """The files and commits a rule cites, else the files its group's functions live in."""
    return rule.sources or GROUP_SOURCES.get(rule.group, ())


def symbols_of(rule: rules.Rule) -> tuple[str, ...]:
    found: list[str] = []
    for match in _SYMBOL.finditer(rule.section + " " + rule.text):
        name = match.group(1)
        # Plain lower-case words are the rule's variables (page, newpage), not kernel names.
        kernelish = match.group(2) or "_" in name or "->" in name or name != name.lower()
        if kernelish and name not in found:
            found.append(name)
    return tuple(found)


def row_of(query: str) -> table_rows.Row | None:
    """The row of compare's table `query` names, when it names no rule, group or check.

    An exact name (key, label or its slug) wins; a unique part of a name is
    taken only when it is not a rule id either.
    """
    row = table_rows.find(query)
    if row is not None:
        return row
    try:
        resolve(query)
        return None
    except UsageError:
        pass
    try:
        return table_rows.resolve(query)
    except UsageError as exc:
        if "several rows" in str(exc):
            raise
        return None


def explain(query: str) -> Explanation:
    rule = resolve(query)
    version = kernel_version_of(rule)
    return Explanation(rule, tuple((s, source_link(s, version)) for s in sources_of(rule)),
                       checks_for(rule.id), symbols_of(rule))


def group_of(query: str) -> list[rules.Rule] | None:
    """The rules of a group (`ISO`, `mig`), or None if `query` names no group."""
    key = query.strip().upper().rstrip("-")
    found = [r for r in rules.all_rules().values() if r.group == key]
    return found or None


def listing(selected: list[rules.Rule] | None = None, width: int = 88) -> str:
    """One line per rule: its id and the start of its text."""
    chosen = selected if selected is not None else list(rules.all_rules().values())
    pad = max(len(r.id) for r in chosen)
    room = max(width - pad - 4, 20)
    return "\n".join(f"  {r.id:<{pad}}  {textwrap.shorten(r.text, room, placeholder=' ...')}"
                     for r in chosen)


def as_dict(explanation: Explanation) -> dict[str, Any]:
    rule = explanation.rule
    return {"id": rule.id, "group": rule.group, "section": rule.section, "text": rule.text,
            "sources": [{"source": s, "link": link} for s, link in explanation.sources],
            "names": list(explanation.symbols),
            "checks": None if explanation.checks is None else
            [{"id": c.id, "title": c.title, "kind": c.kind} for c in explanation.checks]}
