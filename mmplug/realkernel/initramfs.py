"""The guest's initramfs: busybox, the modules a scenario needs, an /init script, the probe.

Written as a gzip'd cpio "newc" archive (the format the kernel unpacks,
Documentation/driver-api/early-userspace/buffer-format.rst) by this module
itself, so no cpio tool is needed.  Modules come from the kernel package's
/lib/modules/<release>; their load order follows the `depends=` entries of
each module's .modinfo section, read from the ELF file.
"""

from __future__ import annotations

import gzip
import io
import lzma
import stat
from pathlib import Path


class Cpio:
    """A newc archive built in memory."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        name_b = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0)
        self.ino += 1
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        self.buf.write(header + name_b)
        self.buf.write(b"\0" * (-(len(header) + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        if "/" in path:
            self.dir(path.rsplit("/", 1)[0])
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        if "/" in path:
            self.dir(path.rsplit("/", 1)[0])
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def node(self, path: str, major: int, minor: int) -> None:
        name_b = path.strip("/").encode() + b"\0"
        fields = (self.ino, stat.S_IFCHR | 0o600, 0, 0, 1, 0, 0, 0, 0, major, minor,
                  len(name_b), 0)
        self.ino += 1
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        self.buf.write(header + name_b)
        self.buf.write(b"\0" * (-(len(header) + len(name_b)) % 4))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = self.buf.getvalue()
        return data + b"\0" * (-len(data) % 512)


# --- kernel modules ------------------------------------------------------------------

def read_module(path: Path) -> bytes:
    """A module's bytes; .ko.xz files are decompressed (busybox insmod takes plain .ko)."""
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def modinfo(data: bytes) -> dict[str, str]:
    """The key=value strings of a module's .modinfo ELF section (64-bit little endian)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not a 64-bit ELF module")
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(data[0x3E:0x40], "little")

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = int.from_bytes(data[base:base + 4], "little")
        off = int.from_bytes(data[base + 0x18:base + 0x20], "little")
        size = int.from_bytes(data[base + 0x20:base + 0x28], "little")
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            out: dict[str, str] = {}
            for item in data[off:off + size].split(b"\0"):
                if b"=" in item:
                    k, v = item.decode(errors="replace").split("=", 1)
                    out.setdefault(k, v)
            return out
    return {}


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> its file under kernel/."""
    out: dict[str, Path] = {}
    for p in (modules_dir / "kernel").rglob("*.ko*"):
        name = p.name.split(".ko")[0].replace("-", "_")
        out.setdefault(name, p)
    return out


def load_order(modules_dir: Path, wanted: list[str]) -> list[tuple[str, bytes]]:
    """The wanted modules and everything they depend on, dependencies first.

    A name the kernel has built in (modules.builtin) is skipped; a name that
    is neither built in nor a module is an error naming it.
    """
    index = module_index(modules_dir)
    builtin = set()
    bfile = modules_dir / "modules.builtin"
    if bfile.exists():
        builtin = {Path(line).name.split(".ko")[0].replace("-", "_")
                   for line in bfile.read_text().split()}
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name in chain:
            raise ValueError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        path = index.get(name)
        if path is None:
            raise FileNotFoundError(f"module {name} is neither built into the kernel nor "
                                    f"found under {modules_dir}")
        data = read_module(path)
        for dep in filter(None, modinfo(data).get("depends", "").split(",")):
            visit(dep, chain + (name,))
        seen.add(name)
        order.append((name, data))

    for name in wanted:
        visit(name, ())
    return order


def build(busybox: Path, modules: list[tuple[str, bytes]], files: dict[str, bytes],
          init: str) -> bytes:
    """The gzip'd archive: /bin/busybox, /init, /lib/modules/<n>.ko in load order, files."""
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "out", "lib/modules"):
        c.dir(d)
    c.node("dev/console", 5, 1)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", init.encode(), 0o755)
    lines = []
    for i, (name, data) in enumerate(modules):
        fname = f"{i:02d}-{name}.ko"
        c.file(f"lib/modules/{fname}", data)
        lines.append(fname)
    c.file("lib/modules/order", ("\n".join(lines) + "\n").encode())
    for path, data in files.items():
        c.file(path, data, 0o755 if path.endswith(".sh") else 0o644)
    return gzip.compress(c.finish(), compresslevel=6, mtime=0)
