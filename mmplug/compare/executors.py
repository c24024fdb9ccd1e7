"""Where the runs of a comparison are made: one process per run, on this machine or on Dask.

A run made away from the command's process is a `RunTask` given to
`run_in_child`, which starts a fresh Python process for it (`python -m
mmplug.compare.child`), sends it the task, and waits for its result.
The child runs it as the command would in its own process: every driver
call under its time limit, `os._exit` trapped, the memory it may add limited
(RLIMIT_AS), Ctrl-C left to the parent; and a driver that kills its process,
blocks it in C code or exhausts its memory fails its own run and no other,
since the process dies, not the one that waits for it.  A wall-clock
backstop kills a child that outlives any sensible run.

`run_in_child` is what every executor runs, so the runs are the same
whichever runs them:

- ``local`` (`--jobs N`): a thread pool of N threads on this machine, each
  waiting for one child at a time;
- ``dask``: a `distributed.LocalCluster` of N single-threaded workers;
- ``tcp://HOST:PORT``: the workers of a running Dask scheduler.

Both Dask executors are the `concurrent.futures` interface of
`distributed.Client` (`client.get_executor()`); a Dask worker runs the task
in a thread of its own, which is why the run itself goes to a child process
of the worker: the time limit interrupts the main thread of a process even in
a blocking call, and RLIMIT_AS and the trap of `os._exit` are process-wide.
A Dask worker that dies fails the runs it held (after Dask's own retries on
other workers), and only those.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Iterator

from attrs import frozen

from ..errors import UsageError
from ..watchdog import describe, hard_stop, memory_limit, trap_exits
from .trace import Trace
from .workload import Workload

#: seconds a run may always take before the wall-clock backstop ends its process
WORKER_MIN_SECONDS = 600.0


@frozen(slots=True)
class RunTask:
    """One run to make elsewhere: the driver (as the user named it), the scenario with its
    seed, what to keep, and the folder relative driver paths are taken from."""

    index: int
    spec: str
    scenario: Workload | Trace
    keep_maps: bool = False
    record: bool = False
    cwd: str = ""


def backstop_seconds(scenario: Workload | Trace) -> float:
    """How long one run may take before its process is killed: generous, since each
    driver call has its own time limit; this ends only what nothing else can."""
    if isinstance(scenario, Trace):
        work = len(scenario.events) + scenario.nr_pages
    else:
        work = scenario.nr_pages * scenario.rounds * (1 + len(scenario.triggers))
    return max(WORKER_MIN_SECONDS, 0.005 * work)


# --- the parent's side: one run, one child process ----------------------------------------

class _Children:
    """The run processes this process started and still waits for, so that the user's
    Ctrl-C ends them too (they ignore SIGINT: the parent decides).  Process-wide, as
    the processes are."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen] = set()

    def add(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.discard(proc)

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()


_CHILDREN = _Children()


def run_in_child(task: RunTask, timeout: float | None, memory: int | None
                 ) -> tuple[str, Any]:
    """Make one run in a fresh child process: ("ok", result) or ("crashed", why)."""
    payload = pickle.dumps((task, timeout, memory, os.getpid()),
                           protocol=pickle.HIGHEST_PROTOCOL)
    backstop = backstop_seconds(task.scenario)
    proc = subprocess.Popen([sys.executable, "-m", "mmplug.compare.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=None)
    _CHILDREN.add(proc)
    try:
        try:
            out, _ = proc.communicate(payload, timeout=backstop)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return ("crashed", f"the run did not finish within {backstop:.0f} s and its "
                    "worker was killed")
    finally:
        _CHILDREN.discard(proc)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        msg = pickle.loads(out) if out else None
    except Exception:   # noqa: BLE001 - a child that died mid-write left half a message
        msg = None
    if msg is None:
        return ("crashed", f"its worker process {_exit_text(proc.returncode)} before giving "
                "a result")
    return msg


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# --- the child's side ------------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) on Linux: a run whose parent is gone (a Dask
    worker ended, a command killed) ends too instead of running on for nobody."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:    # the parent went before the request was made
        os._exit(1)


def child_main() -> None:
    """`python -m mmplug.compare.child`: one pickled task on stdin, its result on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    task, timeout, memory, parent = pickle.load(sys.stdin.buffer)
    _die_with_parent(parent)
    result_fd = os.dup(1)
    os.dup2(2, 1)                                   # what a driver prints goes to stderr
    sys.stdout = sys.stderr
    if task.cwd:
        with contextlib.suppress(OSError):
            os.chdir(task.cwd)
    with hard_stop(), trap_exits():
        try:
            with memory_limit(memory):
                from ..plugins import PluginHost
                from .runner import run_one
                host = PluginHost()
                host.load_entry_points()
                msg: tuple = ("ok", run_one(host, task.spec, task.scenario,
                                            keep_maps=task.keep_maps, record=task.record,
                                            timeout=timeout))
        except BaseException as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
            msg = ("crashed", f"its worker process crashed: {describe(exc)}{where}")
    with os.fdopen(result_fd, "wb") as out:
        pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)


# --- executors ---------------------------------------------------------------------------------

def check_executor(name: str) -> str:
    """The --executor value, checked: local, dask or tcp://HOST:PORT, and for Dask that
    `distributed` is installed (UsageError)."""
    if name == "local":
        return name
    if name == "dask":
        _distributed()
        return name
    if name.startswith("tcp://") and ":" in name[len("tcp://"):]:
        host, _, port = name[len("tcp://"):].rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            _distributed()
            return name
    shown = name if len(name) <= 60 else name[:60] + "..."
    raise UsageError(f"--executor {shown!r}: expected local, dask or tcp://HOST:PORT")


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError("--executor dask needs the Python package 'distributed' "
                         "(pip install 'mmplug[dask]')") from None
    return distributed


@contextlib.contextmanager
def open_executor(name: str, jobs: int) -> Iterator[tuple[Executor, str]]:
    """A concurrent.futures Executor for `run_in_child` and a line saying what it is.

    local: `jobs` threads; dask: a LocalCluster of `jobs` one-thread workers;
    tcp://...: the running scheduler's workers (`jobs` does not apply).
    """
    if name == "local":
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mmplug-run")
        try:
            yield pool, f"{jobs} worker processes"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return
    distributed = _distributed()
    import logging
    with contextlib.ExitStack() as stack:
        if name == "dask":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR))
            client = stack.enter_context(distributed.Client(cluster))
            what = f"a Dask LocalCluster of {jobs} workers"
        else:
            try:
                client = stack.enter_context(distributed.Client(name, timeout="10s"))
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"--executor {name}: no Dask scheduler answers there "
                                 f"({describe(exc)})") from None
            nthreads = sum(client.nthreads().values())
            what = f"the Dask scheduler at {name} ({nthreads} worker threads)"
        yield client.get_executor(pure=False), what


def result_of(future: Future) -> tuple[str, Any]:
    """What a finished future of `run_in_child` gives; a worker lost under it (Dask's
    KilledWorker, a cancelled task) is a crash of its run."""
    try:
        return future.result()
    except Exception as exc:   # noqa: BLE001 - anything the executor raises fails the run only
        return ("crashed", f"its worker was lost: {describe(exc)}")


def kill_children() -> None:
    """End every run process this process waits for (the user's Ctrl-C)."""
    _CHILDREN.kill_all()
