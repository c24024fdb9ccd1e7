"""Sizes as users write them ("64MiB", "1GiB") and as mmplug prints them."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6,
          "mib": 1 << 20, "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40,
          "tb": 10**12, "tib": 1 << 40}


def parse_bytes(text: str) -> int:
    """'64MiB' -> 67108864; raises ValueError (whose message echoes at most 40 characters)."""
    text = str(text)
    m = re.fullmatch(r"\s*([0-9]{1,30})\s*([a-zA-Z]{0,3})\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"{shown!r} is not a size like 4096, 64MiB or 1GiB")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def describe_size(nbytes: int) -> str:
    """67108864 -> '64 MiB'; sizes that are not whole units in bytes."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def round_size(nbytes: int) -> str:
    """About how much: 24.3 GiB, 512 MiB (for messages, never for parsing)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.0f} {unit}" if value >= 100 or value == int(value) else \
                f"{value:.1f} {unit}"
    return f"{nbytes} B"
