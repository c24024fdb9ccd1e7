"""What mmplug writes: whole files, checked paths, and a stdout that is mmplug's alone.

- `atomic_file(path)` / `write_atomic(path, data)`: the data goes to a
  temporary file beside the target, which is renamed over it once complete,
  so an interrupted run leaves the old file or none, never half a PNG, JSON
  or trace.
- `check_output_file` / `check_output_dir`: before a run, that an output path
  can be written (the right kind of path, in a folder that exists and takes a
  new file), so a bad path is a usage error now, not after the whole run.
- `stdout_for_drivers()`: while driver code runs, whatever it prints goes to
  stderr (at the file-descriptor level too when stdout is a real file), so
  that `--json -` output always parses.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from .errors import UsageError


def _shown(path: Path | str | None) -> str:
    text = str(path)
    return repr(text if len(text) <= 120 else text[:120] + "...")


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path | str, mode: str = "wb") -> Iterator[IO[Any]]:
    """A file object whose contents replace `path` only when the block completes.

    A symbolic link is followed (the file it names is replaced, not the link);
    what is not a regular file (/dev/null, /dev/stdout, a FIFO) is written in
    place, as it cannot be replaced and need not be.
    """
    target = Path(os.path.realpath(path))
    encoding = None if "b" in mode else "utf-8"
    if target.exists() and not target.is_file():
        with open(target, mode, encoding=encoding) as f:
            yield f
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:64]}.",
                               suffix=".tmp")
    try:
        # the mode a plain open() would leave: an existing file's, else 0666 less the umask
        os.fchmod(fd, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        with open(fd, mode, encoding=encoding) as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: Path | str, data: str | bytes) -> None:
    """Write `data` to `path` whole (see atomic_file); UsageError naming the path on failure."""
    try:
        with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {_shown(path)}: {exc.strerror or exc}") from None


def _probe(folder: Path, option: str, target: Path | str) -> None:
    """A new file can be made in `folder` (the only test that also holds for root)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mmplug-probe-")
    except OSError as exc:
        raise UsageError(f"{option} {_shown(target)}: cannot write in {_shown(folder)}: "
                         f"{exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)


def _existing_ancestor(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


PathCheck = Callable[[Path | str | None, str], Path | None]


def _path_checked(check: PathCheck) -> PathCheck:
    """A path check whose OSError (a name too long, a loop of links) is a usage error."""
    def checked(path: Path | str | None, option: str) -> Path | None:
        try:
            return check(path, option)
        except OSError as exc:
            raise UsageError(f"{option} {_shown(path)}: {exc.strerror or exc}") from None
    checked.__doc__ = check.__doc__
    checked.__name__ = check.__name__
    return checked


@_path_checked
def check_output_file(path: Path | str | None, option: str) -> Path | None:
    """`path` as the file `option` writes: not empty, not a folder, in a writable folder."""
    if path is None:
        return None
    if str(path) == "":
        raise UsageError(f"{option} '': give a file name")
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {_shown(p)} is a folder; give a file name")
    if p.exists() and not Path(os.path.realpath(p)).is_file():
        # /dev/null, /dev/stdout, a FIFO: written in place (atomic_file)
        if not os.access(p, os.W_OK):
            raise UsageError(f"{option} {_shown(p)}: not writable")
        return p
    p = Path(os.path.realpath(p)) if p.is_symlink() else p
    parent = p.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise UsageError(f"{option} {_shown(p)}: {_shown(parent)} {what}")
    _probe(parent, option, p)
    return p


@_path_checked
def check_output_dir(path: Path | str | None, option: str) -> Path | None:
    """`path` as the folder `option` writes into (made on first write): not a file, and
    its nearest existing ancestor a folder that takes new files."""
    if path is None:
        return None
    if str(path) == "":
        raise UsageError(f"{option} '': give a folder")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {_shown(p)} is a file; give a folder")
    base = _existing_ancestor(p)
    if not base.is_dir():
        raise UsageError(f"{option} {_shown(p)}: {_shown(base)} is a file, not a folder")
    _probe(base, option, p)
    return p


@contextmanager
def stdout_for_drivers() -> Iterator[TextIO]:
    """Meanwhile sys.stdout (and file descriptor 1, when stdout is one) lead to stderr;
    yields the real stdout, for mmplug's own output."""
    real = sys.stdout
    real.flush()
    try:
        real_fd = real.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        real_fd = err_fd = -1
    saved = -1
    out: TextIO = real
    if real_fd == 1 and err_fd >= 0:
        saved = os.dup(1)
        os.dup2(err_fd, 1)
        out = io.TextIOWrapper(io.FileIO(saved, "w", closefd=False),
                               encoding=real.encoding or "utf-8", errors=real.errors,
                               line_buffering=True)
    sys.stdout = sys.stderr
    try:
        yield out
    finally:
        sys.stdout = real
        if saved >= 0:
            try:
                out.flush()
                sys.stderr.flush()
            finally:
                os.dup2(saved, 1)
                os.close(saved)


__all__ = ["atomic_file", "check_output_dir", "check_output_file", "stdout_for_drivers",
           "write_atomic"]
