"""The rules of the VM <-> driver contract, by id (contract.md beside this file).

`get("ISO-4")` gives a rule's text and the kernel sources it cites; checks,
tests and error messages cite rules by these ids.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from importlib import resources

from attrs import frozen

_RULE = re.compile(r"^- \*\*([A-Z]+-[0-9A-Z]+)\*\*\s*(.*)$")
_SOURCE = re.compile(r"\b((?:mm|include|drivers|kernel|Documentation)/[\w./-]+\.(?:c|h|rst))\b"
                     r"|\b([0-9a-f]{10,12})\b")


@frozen(slots=True)
class Rule:
    id: str
    group: str
    section: str
    text: str

    @property
    def sources(self) -> tuple[str, ...]:
        """Kernel files and commits the rule's text cites."""
        found = []
        for m in _SOURCE.finditer(self.text + " " + self.section):
            item = m.group(1) or m.group(2)
            if item not in found:
                found.append(item)
        return tuple(found)


@cache
def all_rules() -> dict[str, Rule]:
    text = resources.files("mmplug").joinpath("contract.md").read_text(encoding="utf-8")
    rules: dict[str, Rule] = {}
    section = ""
    current: list[str] | None = None
    rid = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            current = None
            continue
        m = _RULE.match(line)
        if m:
            rid = m.group(1)
            current = [m.group(2).strip()]
            rules[rid] = Rule(rid, rid.split("-")[0], section, "")
            rules[rid] = Rule(rid, rid.split("-")[0], section, current[0])
            continue
        if current is not None and line.startswith("  ") and line.strip():
            current.append(line.strip())
            rules[rid] = Rule(rid, rid.split("-")[0], section, " ".join(current))
        elif not line.strip():
            current = None
    return rules


def get(rule_id: str) -> Rule:
    """The rule with this id; KeyError with the closest ids if there is none."""
    rules = all_rules()
    key = rule_id.strip().upper()
    if key in rules:
        return rules[key]
    close = difflib.get_close_matches(key, list(rules), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"no rule {rule_id!r}{hint}")


def exists(rule_id: str) -> bool:
    return rule_id.upper() in all_rules()
