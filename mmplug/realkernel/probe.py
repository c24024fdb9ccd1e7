"""Building the page-frame probe module (kmod/mmplug_pfn.c) against the guest's headers.

The module is built at run time from the source shipped here, with Debian's
linux-headers-<release> and linux-kbuild packages unpacked by `mmplug kernel
setup`, and cached by the hash of its source and the kernel release.  It is
loaded unsigned: Debian's kernel checks signatures without enforcing them
(CONFIG_MODULE_SIG_FORCE is off), so the guest only marks itself tainted.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .parts import PartMissing, Parts

KMOD_DIR = Path(__file__).with_name("kmod")
NAME = "mmplug_pfn"


def build_probe(parts: Parts, cache: Path) -> bytes:
    """The module's bytes, built now or taken from the cache."""
    if parts.headers is None:
        raise PartMissing(f"headers for {parts.release} are missing: run `mmplug kernel setup`")
    sources = sorted(KMOD_DIR.glob("*.c")) + [KMOD_DIR / "Kbuild"]
    digest = hashlib.sha256(parts.release.encode())
    for s in sources:
        digest.update(s.read_bytes())
    key = digest.hexdigest()[:16]
    built = cache / "probe" / f"{NAME}-{parts.release}-{key}.ko"
    if built.exists():
        return built.read_bytes()
    work = cache / "probe" / f"build-{key}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for s in sources:
        shutil.copy(s, work / s.name)
    proc = subprocess.run(["make", "-s", "-C", str(parts.headers), f"M={work}", "modules"],
                          capture_output=True, text=True, check=False)
    ko = work / f"{NAME}.ko"
    if proc.returncode or not ko.exists():
        raise PartMissing(f"building the probe module failed (make -C {parts.headers}): "
                          + (proc.stderr or proc.stdout).strip()[-600:])
    shutil.copy(ko, built)
    shutil.rmtree(work)
    return built.read_bytes()
