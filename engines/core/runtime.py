"""Process-wide settings of the CPU runtime that make torch fast on a small shared machine.

Both are set when `engines` is imported, before torch loads; neither changes any result.

* OpenMP threads that spin while they wait make torch 10–60× slower whenever another process
  (or another browser session) holds a core; measured here: integrated gradients 19.5 s against
  2.3 s. `OMP_WAIT_POLICY=PASSIVE` makes them sleep instead. The OpenMP runtime reads it when
  torch is first imported, so it is set (unless someone already has) before that.
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

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEPT_BYTES = 512 * 1024**2
"""Blocks up to this size come from the heap and free memory up to this size is kept."""


def quiet_openmp() -> None:
    """OpenMP waits passively, unless the environment already says otherwise."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory(kept_bytes: int = KEPT_BYTES) -> bool:
    """Tells glibc's allocator to reuse freed blocks instead of unmapping them; False where the
    C library is not glibc (nothing is changed there)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, kept_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * kept_bytes))
