"""Timing and memory for the benchmark: alternating repetitions, medians, peak memory of a call.

The machines this runs on are shared and noisy, so contestants are timed in turns (ours, the
floor, the reference, then again in a rotated order), after a warm-up, and medians are quoted:
a busy moment then hits every contestant alike and the ratios hold.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch

from engines.core.passes import TUNER


def synchroniser(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_in_turns(
    contestants: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None], warm_up: int = 1
) -> dict[str, list[float]]:
    """Wall seconds of each contestant's call, `repeats` times each, taken in turns.

    Every contestant is first called `warm_up` times untimed. Turn r runs the contestants in
    order rotated by r, so none always follows the same other one.
    """
    names = list(contestants)
    for name in names:
        for _ in range(warm_up):
            contestants[name]()
        sync()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(repeats):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            began = time.perf_counter()
            contestants[name]()
            sync()
            seconds[name].append(time.perf_counter() - began)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- peak memory


def _resident_bytes() -> int:
    """This process's resident memory now, from /proc (Linux); 0 where there is no /proc."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _release_free_memory() -> None:
    """Asks glibc to hand freed heap pages back to the system, so the resident size before a
    call is what is really in use (a no-op where glibc is not the allocator)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Sampler(threading.Thread):
    """Reads the resident size every `interval` seconds until stopped; keeps the largest."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _resident_bytes()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, _resident_bytes())
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return max(self.peak, _resident_bytes())


def peak_memory(call: Callable[[], object], device: torch.device, interval: float = 0.002) -> int:
    """Bytes a call needs at its peak beyond what was in use before it.

    CUDA: the allocator's peak (`max_memory_allocated`) above the memory allocated before.
    CPU: the process's resident size, sampled every `interval` seconds by a thread, above the
    resident size before (freed heap pages are returned first); Linux only, 0 elsewhere.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    _release_free_memory()
    before = _resident_bytes()
    sampler = _Sampler(interval)
    sampler.start()
    try:
        call()
    finally:
        peak = sampler.stop()
    return max(0, peak - before)


def warm_ours(call, model: torch.nn.Module, most: int = 6) -> float:
    """Calls ours until the chunk tuner has settled every size it is measuring (at least twice,
    at most `most` times); returns the last call's seconds."""
    for attempt in range(most):
        began = time.perf_counter()
        call()
        seconds = time.perf_counter() - began
        if attempt >= 1 and TUNER.measuring(model) == 0:
            break
    return seconds
