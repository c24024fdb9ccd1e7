"""Booting the guest: qemu with the generated initramfs, its disks, the console and QMP.

The guest has no network.  Its disks are virtio-blk devices told apart by
their serial ("data": the scenario's blocks, read-only; "out": a raw file the
guest writes a tar of /out to; "swap").  Its console is the first serial
port, read line by line here: lines starting "MMPLUG: " report progress, and
a scenario may ask the host to act on one (the balloon scenario's QMP
commands).  KVM is tried first when /dev/kvm is usable; if the guest does not
reach its first line under KVM, the run starts again under TCG and says so.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .initramfs import build, load_order
from .parts import Parts

GUEST_DIR = Path(__file__).with_name("guest")
MARK = "MMPLUG: "
#: every guest has its disks (the out disk at least): virtio-blk over virtio-pci
BASE_MODULES = ("virtio_blk", "virtio_pci")
#: seconds the guest may take to print its first line under KVM before TCG is used
KVM_BOOT_TIMEOUT = 20.0
#: the out disk: a tar of /out at its start, then 16 MiB slots from 64 MiB on (lib.sh: dump)
OUT_DISK_BYTES = 1 << 30
SLOT_BASE, SLOT_BYTES = 64 << 20, 16 << 20


class GuestError(Exception):
    """The guest failed: it said so, it hung, or qemu could not run."""


class Qmp:
    """A QMP connection: capabilities negotiated, commands answered in order."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"QMP socket {path} did not open") from None
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.buf = b""
        self._read()                       # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GuestError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def execute(self, command: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise GuestError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
            # an asynchronous event: skip it

    def close(self) -> None:
        self.sock.close()


@dataclass
class GuestSpec:
    """What one boot needs besides the kernel: size, modules, files, disks, host actions."""

    memory_mib: int
    cpus: int
    modules: list[str]
    scenario: str                              # the file under guest/ that runs the steps
    env: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)
    #: serial -> (path, read-only); the "out" disk is added by `run`
    disks: dict[str, tuple[Path, bool]] = field(default_factory=dict)
    balloon: bool = False
    #: marker text -> action(qmp) run when the guest prints "MMPLUG: <marker>"
    actions: dict[str, Callable[[Qmp | None], None]] = field(default_factory=dict)
    extra_modules: list[tuple[str, bytes]] = field(default_factory=list)
    timeout: float = 1200.0


@dataclass
class GuestResult:
    accel: str
    accel_note: str
    out_dir: Path
    console: str
    seconds: float


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _init_files(spec: GuestSpec) -> dict[str, bytes]:
    env = "".join(f"{k}='{v}'\n" for k, v in sorted(spec.env.items()))
    files = {
        "lib/mmplug.sh": (GUEST_DIR / "lib.sh").read_bytes(),
        "scenario.sh": (GUEST_DIR / spec.scenario).read_bytes(),
        "scenario.env": env.encode(),
    }
    files.update(spec.files)
    return files


def make_initramfs(spec: GuestSpec, parts: Parts) -> bytes:
    modules = load_order(parts.modules, spec.modules) + list(spec.extra_modules)
    return build(parts.busybox, modules, _init_files(spec), (GUEST_DIR / "init").read_text())


def qemu_command(parts: Parts, spec: GuestSpec, workdir: Path, accel: str) -> list[str]:
    cmd = [str(parts.qemu), "-nodefaults", "-no-user-config", "-display", "none",
           "-m", f"{spec.memory_mib}M", "-smp", str(spec.cpus),
           "-kernel", str(parts.vmlinuz), "-initrd", str(workdir / "initramfs.gz"),
           "-append", "console=ttyS0 quiet panic=-1 oops=panic nokaslr",
           "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nic", "none"]
    cmd += ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg"]
    for i, (serial, (path, ro)) in enumerate(sorted(spec.disks.items())):
        cmd += ["-drive", f"if=none,id=d{i},file={path},format=raw,cache=unsafe"
                + (",readonly=on" if ro else ""),
                "-device", f"virtio-blk-pci,drive=d{i},serial={serial}"]
    if spec.balloon:
        cmd += ["-device", "virtio-balloon-pci,id=balloon0"]
    cmd += ["-qmp", f"unix:{workdir / 'qmp.sock'},server=on,wait=off"]
    return cmd


def run(spec: GuestSpec, parts: Parts, workdir: Path, *, accel: str = "auto",
        log: Callable[[str], None] = lambda s: None, memo: Path | None = None) -> GuestResult:
    """Boot, run the scenario, power off; the guest's /out is extracted to workdir/out.

    `memo` is a file that remembers that KVM failed on this host (for this
    host kernel and qemu), so later runs go to TCG at once.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "initramfs.gz").write_bytes(make_initramfs(spec, parts))
    note = ""
    host_key = f"{os.uname().release} {parts.qemu}"
    failed_before = memo.read_text().partition("\n")[0] if memo and memo.exists() else ""
    if accel == "auto":
        if kvm_usable() and failed_before != host_key:
            try:
                return _boot(spec, parts, workdir, "kvm", "", log, first_line=KVM_BOOT_TIMEOUT)
            except _NoBoot as exc:
                note = f"KVM did not work here ({exc}); running under TCG"
                if memo is not None:
                    memo.parent.mkdir(parents=True, exist_ok=True)
                    memo.write_text(f"{host_key}\n{exc}\n")
        elif kvm_usable():
            reason = memo.read_text().splitlines()[1] if memo else ""
            note = f"KVM failed on this host before ({reason}); running under TCG"
        else:
            note = "KVM is not available (/dev/kvm); running under TCG"
        accel = "tcg"
    elif accel == "tcg":
        note = "running under TCG (asked for)"
    return _boot(spec, parts, workdir, accel, note, log, first_line=None)


class _NoBoot(GuestError):
    """The guest printed nothing of ours under this accelerator."""


def _boot(spec: GuestSpec, parts: Parts, workdir: Path, accel: str, note: str,
          log: Callable[[str], None], first_line: float | None) -> GuestResult:
    if note:
        log(note)
    out_img = workdir / "out.img"
    with open(out_img, "wb") as f:
        f.truncate(OUT_DISK_BYTES)
    spec.disks["out"] = (out_img, False)
    sock = workdir / "qmp.sock"
    if sock.exists():
        sock.unlink()
    cmd = qemu_command(parts, spec, workdir, accel)
    (workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    console: list[str] = []
    qmp: Qmp | None = None
    seen_ours = False
    error = ""
    buf = b""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        while True:
            now = time.monotonic() - t0
            if first_line is not None and not seen_ours and now > first_line:
                raise _NoBoot(f"no console line after {first_line:.0f} s")
            if now > spec.timeout:
                raise GuestError(f"the guest did not finish within {spec.timeout:.0f} s; "
                                 f"last lines: {' | '.join(console[-5:])}")
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                console.append(line)
                if not line.startswith(MARK):
                    continue
                seen_ours = True
                what = line[len(MARK):]
                log(f"guest: {what}")
                if what.startswith("error"):
                    error = what
                action = spec.actions.get(what)
                if action is not None:
                    if qmp is None and spec.balloon:
                        qmp = Qmp(sock)
                    action(qmp)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if qmp is not None:
            qmp.close()
        (workdir / "console.log").write_text("\n".join(console) + "\n")
    if not seen_ours:
        tail = " | ".join(line for line in console[-5:] if line.strip())
        raise _NoBoot(f"qemu exited with {proc.returncode} before the guest's first line"
                      + (f": {tail}" if tail else ""))
    out_dir = workdir / "out"
    _extract(out_img, out_dir)
    out_img.unlink()
    if error:
        raise GuestError(f"the guest reported an {error} (console in {workdir / 'console.log'})")
    return GuestResult(accel, note, out_dir, "\n".join(console), time.monotonic() - t0)


def _extract(image: Path, dest: Path) -> None:
    """The tar of /out, then every slot the guest's `dump` wrote, as files under dest."""
    try:
        with tarfile.open(image, "r:") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:
        raise GuestError(f"the guest left no readable output on its disk: {exc}") from None
    slots = dest / "slots"
    if not slots.exists():
        return
    with open(image, "rb") as f:
        for line in slots.read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                raise GuestError(f"the guest's slot list has a bad line: {line!r}")
            # dd's "full+partial" records of 4096 bytes, padded (conv=sync)
            name, slot = parts[0], int(parts[1])
            size = sum(int(x) for x in parts[2].split("+")) * 4096
            f.seek(SLOT_BASE + slot * SLOT_BYTES)
            data = f.read(min(size, SLOT_BYTES))
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
