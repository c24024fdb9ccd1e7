"""Page-sized blocks whose compressed sizes are known before the guest stores them.

A scenario writes these blocks into zram (or tmpfs, for zswap) from a
read-only virtio disk.  Each block is one of:

- same-filled: one byte repeated; zram keeps no object for it
  (zram_write_page's page_same_filled branch);
- incompressible: random bytes; LZ4 makes it larger than a page, so zram
  stores the page as it is (a huge-class object of PAGE_SIZE);
- a random prefix of `n` bytes followed by zeros: LZ4 stores the prefix as
  literals and the zeros as one match, so the compressed size is a little
  over `n`, spread over every size class by the choice of `n`.

The guest compresses with the kernel's LZ4 (crypto/lz4.c calls
LZ4_compress_default of lib/lz4); the `lz4` package's block compressor,
default mode, implements the same format and algorithm, and sizes are
checked on real output: the kernel's compr_data_size must equal the sum of
the sizes computed here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = 4096

SAME, RANDOM, PREFIX = "same", "random", "prefix"


class CompressorMissing(Exception):
    """The Python package that reproduces the guest's compressor is not installed."""


def lz4_size(block: bytes) -> int:
    """The length LZ4_compress_default gives `block` (no size header)."""
    try:
        import lz4.block
    except ImportError:  # pragma: no cover - a declared dependency
        raise CompressorMissing("the Python package lz4 computes the guest's compressed "
                                "sizes: pip install lz4") from None
    return len(lz4.block.compress(block, mode="default", store_size=False))


@dataclass(frozen=True)
class BlockMix:
    """How the blocks of a data disk are drawn."""

    blocks: int
    same_filled: float = 0.05
    incompressible: float = 0.10
    prefix_min: int = 16
    prefix_max: int = 3600

    def validate(self) -> None:
        if self.blocks <= 0:
            raise ValueError(f"blocks = {self.blocks}: expected a positive count")
        for name in ("same_filled", "incompressible"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} = {v}: expected a fraction in [0, 1]")
        if self.same_filled + self.incompressible > 1:
            raise ValueError("same_filled + incompressible exceed 1")
        if not 1 <= self.prefix_min <= self.prefix_max <= PAGE_SIZE:
            raise ValueError(f"prefix = [{self.prefix_min}, {self.prefix_max}]: expected "
                             f"1 <= min <= max <= {PAGE_SIZE}")


@dataclass(frozen=True)
class Block:
    kind: str
    compressed: int      # LZ4 size; 0 for a same-filled block
    fill: int = 0        # the byte of a same-filled block


def make_block(kind: str, rng: random.Random, mix: BlockMix) -> bytes:
    if kind == SAME:
        return bytes([rng.choice((0, 0, 0, 0xFF, 0x5A))]) * PAGE_SIZE
    if kind == RANDOM:
        return rng.randbytes(PAGE_SIZE)
    n = rng.randint(mix.prefix_min, mix.prefix_max)
    return rng.randbytes(n) + bytes(PAGE_SIZE - n)


def generate(mix: BlockMix, seed: int, path: Path | None = None) -> list[Block]:
    """Draw the blocks of `seed`; write them to `path` if given; return their sizes."""
    mix.validate()
    rng = random.Random(f"{seed}:blocks")
    out: list[Block] = []
    f = open(path, "wb") if path is not None else None
    try:
        for _ in range(mix.blocks):
            r = rng.random()
            kind = SAME if r < mix.same_filled else (
                RANDOM if r < mix.same_filled + mix.incompressible else PREFIX)
            data = make_block(kind, rng, mix)
            if f is not None:
                f.write(data)
            if kind == SAME:
                out.append(Block(SAME, 0, data[0]))
            else:
                out.append(Block(kind, lz4_size(data)))
    finally:
        if f is not None:
            f.close()
    return out
