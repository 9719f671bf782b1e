"""Process-wide settings of the CPU runtime: OpenMP's wait policy and thread count, and the allocator.

None of them changes any result. Both OpenMP settings are read when `engines` is imported:

* `ENGINES_OMP_WAIT_POLICY`: `passive` (idle OpenMP threads sleep at once), `active` (they spin
  until the next parallel region) or `openmp` (leave OpenMP's own default: spin briefly, then
  sleep). The OpenMP runtime reads `OMP_WAIT_POLICY` once, when torch is first imported, so this
  only has an effect when `engines` is imported before torch, and never overrides an
  `OMP_WAIT_POLICY` that is already set. Default: `DEFAULT_WAIT_POLICY`, chosen by
  `python -m engines.bench.threads` (see the README's thread-policy table).
* `ENGINES_THREADS`: torch's intra-op threads (default: torch's own, one per core). Also
  `engines.set_threads(n)` at any time.

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
    """The thread count `ENGINES_THREADS` asks for, or None when it is unset; ValueError otherwise."""
    environ = os.environ if environ is None else environ
    text = environ.get(THREADS_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be a whole number of threads ≥ 1; got {text!r}")
    return int(text)


def set_threads(count: Optional[int] = None) -> int:
    """Sets torch's intra-op thread count (None: one per core) and returns the count in force.

    ValueError for anything but a whole number ≥ 1 or None.
    """
    import torch

    if count is None:
        count = os.cpu_count() or 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"threads must be a whole number ≥ 1 or None (one per core); got {count!r}")
    torch.set_num_threads(count)
    return torch.get_num_threads()


def apply_threads() -> None:
    """Applies `ENGINES_THREADS`, if set (after torch has loaded)."""
    count = threads_from_environment()
    if count is not None:
        set_threads(count)


def runtime_settings() -> dict[str, Any]:
    """The settings in force: `wait_policy` ("passive", "active" or "openmp"), `threads`, and
    whether glibc keeps freed memory (`keeps_freed_memory`)."""
    import torch

    policy = _applied.get("wait_policy", os.environ.get("OMP_WAIT_POLICY", "openmp").lower())
    return {"wait_policy": policy, "threads": torch.get_num_threads(),
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
