"""The real parts of a guest run, found or fetched: qemu, Debian's kernel, busybox, a compiler.

`mmplug kernel setup` (and `python3 mmplug/realkernel/parts.py` where mmplug
is not installed yet, as CI does) installs the host tools with apt-get and
unpacks Debian's kernel packages into a cache folder with `apt-get download`
+ `dpkg -x`, so no kernel is installed on the host:

- qemu-system-x86 (qemu-system-x86_64), busybox-static (/bin/busybox),
  gcc-12 and make (the probe module is built at run time);
- linux-image-<release> (vmlinuz and modules), linux-headers-<release>,
  linux-headers-<abi>-common and linux-kbuild-<major.minor>: the headers the
  probe module is built against.  <release> is what linux-image-amd64 depends
  on today (6.1.0-N-amd64 on Debian 12).

Only the standard library is imported here, so the file runs on its own.
The cache is $MMPLUG_KERNEL_CACHE, else $XDG_CACHE_HOME/mmplug/kernel, else
~/.cache/mmplug/kernel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: host tools: (what is looked for, the Debian package that installs it)
TOOLS = (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static"),
         ("gcc-12", "gcc-12"), ("make", "make"))
#: the metapackage whose dependency names the kernel release to use
KERNEL_META = "linux-image-amd64"
#: the directory, inside the cache, that holds the unpacked packages
UNPACKED = "root"


class PartMissing(Exception):
    """A part is not there; the message names the package (or command) that brings it."""


def cache_dir() -> Path:
    env = os.environ.get("MMPLUG_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmplug" / "kernel"


@dataclass(frozen=True)
class Parts:
    """Every path a guest run needs."""

    qemu: Path
    busybox: Path
    release: str           # e.g. 6.1.0-57-amd64
    vmlinuz: Path
    modules: Path          # .../lib/modules/<release>
    headers: Path | None   # .../usr/src/linux-headers-<release> (None: cannot build)
    source_version: str    # the Debian version of the kernel package, e.g. 6.1.192-3

    def as_dict(self) -> dict[str, str]:
        return {"qemu": str(self.qemu), "busybox": str(self.busybox), "release": self.release,
                "vmlinuz": str(self.vmlinuz), "modules": str(self.modules),
                "headers": str(self.headers) if self.headers else "",
                "package_version": self.source_version}


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        p = Path(d) / name
        if p.exists():
            return p
    return None


def _busybox() -> Path | None:
    # busybox-static installs /bin/busybox; a dynamically linked one cannot run in the guest.
    for p in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if p.exists() and _is_static(p):
            return p
    return None


def _is_static(path: Path) -> bool:
    """An ELF file without a PT_INTERP program header needs no dynamic loader."""
    try:
        data = path.read_bytes()[:4096]
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            break
        if int.from_bytes(data[off:off + 4], "little") == 3:  # PT_INTERP
            return False
    return True


def _unpacked_release(root: Path) -> str | None:
    boot = root / "boot"
    if not boot.is_dir():
        return None
    found = sorted(p.name[len("vmlinuz-"):] for p in boot.glob("vmlinuz-*"))
    return found[-1] if found else None


def find_parts(cache: Path | None = None, *, need_headers: bool = True) -> Parts:
    """Every part, or PartMissing naming what installs the first one missing."""
    cache = cache or cache_dir()
    qemu = _which("qemu-system-x86_64")
    if qemu is None:
        raise PartMissing("qemu-system-x86_64 is missing: install the Debian package "
                          "qemu-system-x86, or run `mmplug kernel setup`")
    busybox = _busybox()
    if busybox is None:
        raise PartMissing("a static busybox is missing: install the Debian package "
                          "busybox-static, or run `mmplug kernel setup`")
    root = cache / UNPACKED
    release = _unpacked_release(root)
    if release is None:
        raise PartMissing(f"no kernel unpacked in {root}: run `mmplug kernel setup` "
                          f"(it unpacks Debian's {KERNEL_META} there without installing it)")
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    modules = root / "lib" / "modules" / release
    if not modules.is_dir():
        raise PartMissing(f"{modules} is missing: run `mmplug kernel setup` "
                          f"(package linux-image-{release})")
    headers = root / "usr" / "src" / f"linux-headers-{release}"
    has_headers = (headers / "Makefile").exists()
    if not has_headers and need_headers:
        raise PartMissing(f"kernel headers are missing in {headers}: run `mmplug kernel "
                          f"setup` (packages linux-headers-{release} and linux-kbuild)")
    if need_headers and (_which("gcc-12") is None or _which("make") is None):
        raise PartMissing("gcc-12 and make build the probe module: install the Debian "
                          "packages gcc-12 and make, or run `mmplug kernel setup`")
    version_file = root / "VERSION"
    version = version_file.read_text().strip() if version_file.exists() else ""
    return Parts(qemu, busybox, release, vmlinuz, modules, headers if has_headers else None,
                 version)


# --- set-up -------------------------------------------------------------------------

#: where set-up writes what it runs
Log = Callable[[str], None]


def _run(cmd: list[str], log: Log, **kw: Any) -> subprocess.CompletedProcess[str]:
    log(f"+ {' '.join(cmd)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, check=False, text=True, capture_output=True, env=env, **kw)


def _depends(package: str, log: Log) -> list[str]:
    """The packages `package` depends on (apt-cache depends, first alternatives)."""
    out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", package], log)
    if out.returncode:
        raise PartMissing(f"apt-cache cannot resolve {package}: {out.stderr.strip()}")
    return [m.group(1) for m in re.finditer(r"^\s+(?:\|)?Depends:\s+(\S+)", out.stdout, re.M)]


def _version(package: str, log: Log) -> str:
    out = _run(["apt-cache", "policy", package], log)
    m = re.search(r"Candidate:\s+(\S+)", out.stdout)
    return m.group(1) if m else ""


def kernel_packages(log: Log = print) -> tuple[str, list[str]]:
    """(release, packages to unpack) for what linux-image-amd64 depends on today."""
    images = [d for d in _depends(KERNEL_META, log) if d.startswith("linux-image-")]
    if not images:
        raise PartMissing(f"{KERNEL_META} depends on no linux-image package; is this Debian?")
    image = images[0]
    release = image[len("linux-image-"):]
    headers = f"linux-headers-{release}"
    pkgs = [image, headers]
    for dep in _depends(headers, log):
        if dep.startswith(("linux-headers-", "linux-kbuild-")):
            pkgs.append(dep)
    return release, pkgs


def setup(cache: Path | None = None, *, tools: bool = True, log: Log = print) -> Parts:
    """Install the host tools and unpack the kernel packages; returns the parts found."""
    if os.geteuid() != 0 and tools:
        missing = [pkg for name, pkg in TOOLS
                   if (_busybox() if name == "busybox" else _which(name)) is None]
        if missing:
            raise PartMissing("setting up needs root for apt-get: run as root, or install "
                              + " ".join(missing) + " first")
    if shutil.which("apt-get") is None:
        raise PartMissing("apt-get is missing: set-up needs Debian's package tools")
    cache = cache or cache_dir()
    out = _run(["apt-get", "update", "-q"], log)
    if out.returncode and os.geteuid() == 0:
        raise PartMissing(f"apt-get update failed: {out.stderr.strip()[-300:]}")
    if tools:
        need = [pkg for name, pkg in TOOLS
                if (_busybox() if name == "busybox" else _which(name)) is None]
        if need:
            out = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *need], log)
            if out.returncode:
                raise PartMissing(f"apt-get install {' '.join(need)} failed: "
                                  f"{out.stderr.strip()[-300:]}")
    release, pkgs = kernel_packages(log)
    root = cache / UNPACKED
    debs = cache / "debs"
    headers = root / "usr" / "src" / f"linux-headers-{release}"
    if _unpacked_release(root) == release and headers.is_dir():
        log(f"kernel {release} already unpacked in {root}")
        return find_parts(cache)
    debs.mkdir(parents=True, exist_ok=True)
    os.chmod(debs, 0o777)   # apt's download user writes here
    out = _run(["apt-get", "download", "-q", *pkgs], log, cwd=debs)
    if out.returncode:
        raise PartMissing(f"apt-get download {' '.join(pkgs)} failed: {out.stderr.strip()[-300:]}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for pkg in pkgs:
        files = sorted(debs.glob(f"{pkg}_*.deb"))
        if not files:
            raise PartMissing(f"apt-get download left no {pkg}_*.deb in {debs}")
        out = _run(["dpkg-deb", "-x", str(files[-1]), str(root)], log)
        if out.returncode:
            raise PartMissing(f"dpkg-deb -x {files[-1].name} failed: {out.stderr.strip()}")
    _relocate_headers(root, release)
    (root / "VERSION").write_text(_version(f"linux-image-{release}", log) + "\n")
    for f in debs.glob("*.deb"):
        f.unlink()
    log(f"kernel {release} unpacked in {root}")
    return find_parts(cache)


def _relocate_headers(root: Path, release: str) -> None:
    """The headers' Makefile includes the common tree by its installed path: point it here."""
    mk = root / "usr" / "src" / f"linux-headers-{release}" / "Makefile"
    if mk.exists():
        text = mk.read_text()
        mk.write_text(re.sub(r"include /usr/src/", f"include {root}/usr/src/", text))


def main(argv: list[str] | None = None) -> int:
    """`python3 parts.py [--no-tools]`: the set-up without mmplug installed (CI)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        parts = setup(tools="--no-tools" not in args)
    except PartMissing as exc:
        print(f"mmplug kernel setup: {exc}", file=sys.stderr)
        return 2
    for k, v in parts.as_dict().items():
        print(f"{k:<16} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
