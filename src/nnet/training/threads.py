"""How many threads nnet computes with: the BLAS's and the fused kernels' together.

The matrix products run in the BLAS that NumPy links (OpenBLAS for NumPy's wheels), the
fused element-wise loops in Numba's thread pool (:mod:`nnet.kernels`). Both start as many
threads as the machine has cores, which is right on an idle machine and wrong on a busy
one: a BLAS thread that waits for a core another program holds stalls the product it is
part of, and the other threads spin until it arrives. On this project's 2-core machine,
with one other CPU-bound process running, an mlp800 epoch took 3-4 times as long with two
threads as on an idle machine, and one thread was faster (docs/performance.md, measured by
``nnet bench``, whose ``busy`` rows run with such a process).

So nnet chooses (``--threads auto``, the default of ``nnet train`` and ``nnet bench``): the
cores this process may run on (``os.sched_getaffinity``) minus those that other programs
kept busy over a short look at ``/proc/stat`` before the run, and at least one; once, at
the start of the run. ``--threads N`` (or ``$NNET_THREADS``) fixes the number instead;
:func:`limited` applies it to the BLAS (through threadpoolctl) and to Numba for the
duration of a block.

The thread count is part of what makes a run reproducible: OpenBLAS splits some products
between its threads in a way that changes the order of the additions, so the same product
with one thread and with two can differ in the last bit (for example (128 x 785) @
(785 x 800) in float32), and a training run then drifts apart by rounding. The same seed
with the same thread count gives the same run bit for bit; checkpoints record the count
(:func:`blas_threads`), and ``nnet train --resume`` computes with it again unless told
otherwise, so that a resumed run ends as the uninterrupted one would have.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from nnet.errors import NnetError

LOOK = 0.2  # seconds that auto watches the cores for (the kernel counts in 1/100 s)


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies of the given CPUs from /proc/stat; None where unreadable."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + ticks[4]
        busy += sum(ticks) - idle
        total += sum(ticks)
    return (busy, total) if total else None


def idle_cores(look: float = LOOK) -> float | None:
    """How many of this process's cores other programs left idle over ``look`` seconds
    (this process sleeps meanwhile); None where /proc/stat cannot tell (not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = os.sched_getaffinity(0)
    before = _cpu_ticks(cpus)
    time.sleep(look)
    after = _cpu_ticks(cpus)
    if before is None or after is None or after[1] <= before[1]:
        return None
    busy_share = (after[0] - before[0]) / (after[1] - before[1])
    return len(cpus) * (1.0 - busy_share)


def _clamp(idle: float | None, cores: int) -> int:
    """Threads for ``idle`` cores out of ``cores``: the idle ones rounded, at least 1."""
    return cores if idle is None else max(1, min(cores, round(idle)))


def auto_threads(look: float = LOOK) -> int:
    """``--threads auto``: the usable cores that other programs leave idle, at least 1."""
    cores = usable_cores()
    if cores == 1:
        return 1
    return _clamp(idle_cores(look), cores)


def check_threads(value: str | int | None) -> int | str:
    """A thread request as a whole number >= 1 or ``"auto"``; None stands for
    $NNET_THREADS, else auto. NnetError naming the source otherwise."""
    source = "--threads"
    if value is None:
        value = os.environ.get("NNET_THREADS", "").strip() or "auto"
        source = "NNET_THREADS"
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NnetError(f"{source} must be a whole number >= 1 or auto; got {value!r}.")
    return value


def resolve(value: str | int | None) -> int:
    """The number of threads a request stands for (auto looks at the cores now)."""
    n = check_threads(value)
    return auto_threads() if n == "auto" else int(n)


def _set_threads(n: int) -> None:
    """Numba's threads in this thread, and $NNET_THREADS for the kernels if they load later
    (the BLAS is limited by the caller, through threadpoolctl)."""
    os.environ["NNET_THREADS"] = str(n)
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def blas_threads() -> int | None:
    """The threads the BLAS computes with now (the largest count threadpoolctl reports for a
    BLAS library), or None where none is visible."""
    from threadpoolctl import threadpool_info

    counts = [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(counts) if counts else None


def _restore_numba(old: int | None) -> None:
    """Numba's threads back to ``old``, or to its pool size (its own starting value) if it
    was loaded meanwhile."""
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS if old is None else old)


@contextmanager
def limited(n: int) -> Iterator[int]:
    """Within the block, the BLAS and the fused kernels compute with ``n`` threads each
    (one after the other, never at once: they never run at the same time). Yields ``n``."""
    from threadpoolctl import threadpool_limits

    old_env = os.environ.get("NNET_THREADS")
    numba = sys.modules.get("numba")  # already loaded: set its threads directly
    old_numba = numba.get_num_threads() if numba is not None else None
    _set_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        if old_env is None:
            os.environ.pop("NNET_THREADS", None)
        else:
            os.environ["NNET_THREADS"] = old_env
        _restore_numba(old_numba)
