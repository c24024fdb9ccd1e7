"""The CPUs of a VM (`vm.cpus`): page locks, refcounts, driver locks and `current`.

    backend.py    the protocol every backend implements, `Task`, and the page lock and
                  refcount operations, written once
    single.py     one CPU: the plain operations, nothing that costs in the hot loop
    schedule.py   schedule strings and the strategies that pick the next CPU
    scheduler.py  several simulated CPUs on greenlets, interleaved at schedule points
    locks.py      a driver's spinlocks, mutexes and rwlocks on those CPUs
    lockdep.py    the lock-order graph (LCK-3)
"""
