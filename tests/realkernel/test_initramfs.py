"""The guest's initramfs: a cpio the kernel can unpack, modules in dependency order."""

import gzip
import struct

import pytest

from mmplug.realkernel import initramfs


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    out, off = {}, 0
    while True:
        assert data[off:off + 6] == b"070701"
        fields = [int(data[off + 6 + 8 * i:off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        body = data[off:off + size]
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def test_archive_holds_init_busybox_and_modules(tmp_path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF-not-really")
    blob = initramfs.build(bb, [("a", b"A"), ("b", b"BB")], {"scenario.sh": b"echo"}, "#!/bin/sh\n")
    files = read_cpio(gzip.decompress(blob))
    assert files["init"] == (0o100755, b"#!/bin/sh\n")
    assert files["bin/busybox"][1] == bb.read_bytes()
    assert files["bin/sh"] == (0o120777, b"busybox")
    assert files["lib/modules/order"][1] == b"00-a.ko\n01-b.ko\n"
    assert files["lib/modules/01-b.ko"][1] == b"BB"
    assert files["dev/console"][0] & 0o170000 == 0o020000


def elf_with_modinfo(info: bytes) -> bytes:
    """A 64-bit ELF with the sections NULL, .modinfo and .shstrtab."""
    shstr = b"\0.modinfo\0.shstrtab\0"
    body = info + shstr
    shoff = 64 + len(body)
    header = (b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0,
              shoff, 0, 64, 0, 0, 64, 3, 2))
    def sh(name, off, size):
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, off, size, 0, 0, 1, 0)
    return header + body + sh(0, 0, 0) + sh(1, 64, len(info)) + sh(10, 64 + len(info), len(shstr))


def test_modinfo_reads_depends():
    data = elf_with_modinfo(b"license=GPL\0depends=zsmalloc,lz4\0name=zram\0")
    assert initramfs.modinfo(data) == {"license": "GPL", "depends": "zsmalloc,lz4",
                                       "name": "zram"}
    with pytest.raises(ValueError):
        initramfs.modinfo(b"not elf")


def test_load_order_puts_dependencies_first(tmp_path):
    mods = tmp_path / "kernel"
    (mods / "mm").mkdir(parents=True)
    (mods / "mm" / "zsmalloc.ko").write_bytes(elf_with_modinfo(b"depends=\0"))
    (mods / "mm" / "zram.ko").write_bytes(elf_with_modinfo(b"depends=zsmalloc,crc32c\0"))
    (tmp_path / "modules.builtin").write_text("kernel/lib/crc32c.ko\n")
    order = initramfs.load_order(tmp_path, ["zram", "zsmalloc"])
    assert [n for n, _ in order] == ["zsmalloc", "zram"]
    with pytest.raises(FileNotFoundError, match="module nosuch"):
        initramfs.load_order(tmp_path, ["nosuch"])
