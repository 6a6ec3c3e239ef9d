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
kept busy over a short look at ``/proc/stat`` before the run, and at least one. During a
``nnet train`` run, :class:`Adaptive` looks again at the start of every epoch (at most once a
second), counting the CPU time of the other programs only (the cores' busy time minus this
process's own), so that a run started on a busy machine takes the second core back when it
frees up, and the other way round. ``--threads N`` (or ``$NNET_THREADS``) fixes the number
instead; :func:`limited` applies it to the BLAS (through threadpoolctl) and to Numba for the
duration of a block.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def _restore_numba(old: int | None) -> None:
    """Numba's threads back to ``old``, or to its pool size (its own starting value) if it
    was loaded meanwhile."""
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS if old is None else old)


class Adaptive:
    """``--threads auto`` through a run: :meth:`check` at the start of each epoch looks at
    what other programs used of this process's cores since the last look (their busy time:
    the cores' busy time from /proc/stat minus this process's own CPU time) and sets the
    threads to the cores they left idle. Use as a context manager; ``n`` is the count now."""

    def __init__(self, *, every: float = 1.0) -> None:
        self.every = every  # seconds between two looks at least
        self.cores = usable_cores()
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.n = auto_threads() if self.cores > 1 else 1
        self.used = [self.n]  # the counts it computed with, in order (first: the initial one)
        self._limits: Any = None
        self._mark()

    def _mark(self) -> None:
        self._when = time.perf_counter()
        self._cpu = time.process_time()
        self._ticks = _cpu_ticks(self.cpus) if self.cpus else None

    def others_idle(self) -> float | None:
        """Cores left idle by the other programs since the last look; None if unknown."""
        ticks = _cpu_ticks(self.cpus) if self.cpus else None
        wall = time.perf_counter() - self._when
        if ticks is None or self._ticks is None or wall <= 0:
            return None
        busy = (ticks[0] - self._ticks[0]) / self.hz - (time.process_time() - self._cpu)
        return self.cores - max(0.0, busy) / wall

    def check(self) -> int:
        """Look again (if ``every`` seconds passed) and apply the new count; returns it."""
        if self.cores == 1 or time.perf_counter() - self._when < self.every:
            return self.n
        n = _clamp(self.others_idle(), self.cores)
        self._mark()
        if n != self.n:
            self.n = n
            self.used.append(n)
            self._apply()
        return self.n

    def _apply(self) -> None:
        from threadpoolctl import threadpool_limits

        if self._limits is not None:
            self._limits.restore_original_limits()
        self._limits = threadpool_limits(limits=self.n)
        _set_threads(self.n)

    def __enter__(self) -> Adaptive:
        self._old_env = os.environ.get("NNET_THREADS")
        numba = sys.modules.get("numba")
        self._old_numba = numba.get_num_threads() if numba is not None else None
        self._apply()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()
        if self._old_env is None:
            os.environ.pop("NNET_THREADS", None)
        else:
            os.environ["NNET_THREADS"] = self._old_env
        _restore_numba(self._old_numba)


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
