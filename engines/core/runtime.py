"""Process-wide settings of the CPU runtime: OpenMP's wait policy and thread count, and the allocator.

None of them changes any result. Both OpenMP settings are read when `engines` is imported:

* `ENGINES_OMP_WAIT_POLICY`: `passive` (idle OpenMP threads sleep at once), `active` (they spin
  until the next parallel region) or `openmp` (leave OpenMP's own default: spin briefly, then
  sleep). The OpenMP runtime reads `OMP_WAIT_POLICY` once, when torch is first imported, so this
  only has an effect when `engines` is imported before torch, and never overrides an
  `OMP_WAIT_POLICY` that is already set. Default: `DEFAULT_WAIT_POLICY`, chosen by
  `python -m engines.bench.threads` (see the README's thread-policy table).
* `ENGINES_THREADS`: torch's intra-op threads: `auto` (the default) or a whole number. Also
  `engines.set_threads(n)` at any time (`None` for auto). Auto (`ThreadGovernor`) looks, at
  most twice a second before a chunk of passes, at how many cores *other processes* keep busy
  (from /proc/stat less this process's own time) and runs on the cores they leave free, at
  least one. Measured here (README, thread-policy table): beside one busy process on 2 cores,
  2 threads took 1.1–1.5 s a pass and 1 thread 76 ms, because every parallel region waits for
  the thread that shares its core; on an idle machine 2 threads are 1.3× faster than 1. Set a
  fixed number for reproducible timings, or where /proc is missing (auto then uses every core).

Why these matter less than they did: every chunk of passes runs holding its device's lane
(`engines/core/lane.py`), so the browser sessions of one server no longer start one OpenMP team
each on the same cores; what remains is other processes on the machine. Spinning threads then
steal the cores those processes need and are preempted themselves mid-barrier; passive ones
pay a wake-up per parallel region.

* glibc hands every freed block above its mmap threshold (at most 32 MiB, adjusted as it goes)
  straight back to the system, so a batch of activations is page-faulted in afresh on every
  pass: on EfficientNet-Lite0 with 16 images a pass, 470 000 page faults and 1.5 s of system
  time per 32 images here. `keep_freed_memory` raises the threshold and the trim threshold so
  freed activations are reused by the next pass. Resident memory then stays near its peak
  instead of falling after each pass; `malloc_trim` (the benchmark calls it) still returns it.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any, Optional

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEPT_BYTES = 512 * 1024**2
"""Blocks up to this size come from the heap and free memory up to this size is kept."""

WAIT_POLICY_VARIABLE = "ENGINES_OMP_WAIT_POLICY"
THREADS_VARIABLE = "ENGINES_THREADS"
WAIT_POLICIES = ("passive", "active", "openmp")
DEFAULT_WAIT_POLICY = "openmp"
"""Measured by `python -m engines.bench.threads` (README, thread-policy table): OpenMP's own
default matches a bare torch process idle and stays close to it beside a busy process."""

_applied: dict[str, Any] = {}


def configure_openmp(environ: Optional[dict] = None) -> str:
    """Sets `OMP_WAIT_POLICY` from `ENGINES_OMP_WAIT_POLICY` (default `DEFAULT_WAIT_POLICY`)
    unless it is set already; returns the policy in force ("openmp" for OpenMP's own).

    ValueError for a value that is not one of `WAIT_POLICIES`. Call before torch is imported.
    """
    environ = os.environ if environ is None else environ
    wanted = environ.get(WAIT_POLICY_VARIABLE, DEFAULT_WAIT_POLICY).strip().lower() or DEFAULT_WAIT_POLICY
    if wanted not in WAIT_POLICIES:
        raise ValueError(f"{WAIT_POLICY_VARIABLE} must be one of {', '.join(WAIT_POLICIES)}; got {wanted!r}")
    if "OMP_WAIT_POLICY" not in environ and wanted != "openmp":
        environ["OMP_WAIT_POLICY"] = wanted.upper()
    policy = environ.get("OMP_WAIT_POLICY", "openmp").lower()
    _applied["wait_policy"] = policy
    return policy


def threads_from_environment(environ: Optional[dict] = None) -> Optional[int]:
    """The thread count `ENGINES_THREADS` asks for, or None for auto (unset or "auto");
    ValueError otherwise."""
    environ = os.environ if environ is None else environ
    text = environ.get(THREADS_VARIABLE, "").strip().lower()
    if text in ("", "auto"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be 'auto' or a whole number of threads ≥ 1; got {text!r}")
    return int(text)


def _cpu_ticks() -> Optional[tuple[int, int]]:
    """`(busy ticks of the whole machine, ticks of this process)` from /proc, or None without it."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        with open("/proc/self/stat") as own:
            mine = own.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, int(mine[11]) + int(mine[12])  # utime + stime of every thread


def free_cores(cores: int, others_busy: float) -> int:
    """Threads to run when other processes keep `others_busy` cores busy: the rest, rounded to
    the nearest whole core, at least 1 and at most `cores`."""
    return max(1, min(cores, int(cores - others_busy + 0.5)))


class ThreadGovernor:
    """Torch's thread count, fixed or (auto) the cores other processes leave free (see above)."""

    def __init__(self, cores: Optional[int] = None, interval: float = 0.5):
        self.cores = cores or os.cpu_count() or 1
        self.interval = interval
        self.fixed: Optional[int] = None
        self.current: Optional[int] = None
        self._last: Optional[tuple[float, tuple[int, int]]] = None
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def choose(self) -> int:
        """The thread count for the next chunk (measured at most every `interval` seconds)."""
        if self.fixed is not None:
            return self.fixed
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.interval and self.current is not None:
            return self.current
        ticks = _cpu_ticks()
        if ticks is None:
            return self.cores
        if self._last is None:
            self._last = (now, ticks)
            return self.current or self.cores
        (then, (busy0, mine0)), (busy1, mine1) = self._last, ticks
        self._last = (now, ticks)
        others = max(0.0, ((busy1 - busy0) - (mine1 - mine0)) / self._hz / max(now - then, 1e-3))
        return free_cores(self.cores, others)

    def apply(self) -> None:
        """Sets torch's thread count to `choose()` where it differs (torch is loaded by now)."""
        count = self.choose()
        if count != self.current:
            import torch

            torch.set_num_threads(count)
            self.current = count


GOVERNOR = ThreadGovernor()


def set_threads(count: Optional[int] = None) -> int:
    """Fixes torch's intra-op thread count, or (None) lets it follow the free cores (auto);
    returns the count in force now. ValueError for anything but a whole number ≥ 1 or None.
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"threads must be a whole number ≥ 1 or None (auto); got {count!r}")
    GOVERNOR.fixed = count
    GOVERNOR.apply()
    return GOVERNOR.current


def apply_threads() -> None:
    """Applies `ENGINES_THREADS` (after torch has loaded)."""
    set_threads(threads_from_environment())


def runtime_settings() -> dict[str, Any]:
    """The settings in force: `wait_policy` ("passive", "active" or "openmp"), `threads` now,
    `thread_mode` ("auto" or "fixed"), and whether glibc keeps freed memory."""
    import torch

    policy = _applied.get("wait_policy", os.environ.get("OMP_WAIT_POLICY", "openmp").lower())
    return {"wait_policy": policy, "threads": torch.get_num_threads(),
            "thread_mode": "auto" if GOVERNOR.fixed is None else "fixed",
            "keeps_freed_memory": bool(_applied.get("kept_memory", False))}


def keep_freed_memory(kept_bytes: int = KEPT_BYTES) -> bool:
    """Tells glibc's allocator to reuse freed blocks instead of unmapping them; False where the
    C library is not glibc (nothing is changed there)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    kept = bool(mallopt(M_MMAP_THRESHOLD, kept_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * kept_bytes))
    _applied["kept_memory"] = kept
    return kept
