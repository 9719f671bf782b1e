"""The pass floor of the benchmark: bare PyTorch loops doing exactly the passes a method needs.

A method's `plan` lists its passes as stages (so many forward passes, so many forward + backward
passes, one forward with many backward passes over it), and `run_plan` does just those passes on
the model, at a given batch size, with inputs built once beforehand: no perturbations, no
bookkeeping, nothing but the model. No implementation of the same algorithm can beat it, so a
method's time over its floor's time is the overhead of everything else it does. The plans are
each method's registered plan (`register(..., plan=...)`, which also gives its cost).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from engines.core.registry import Stage, method_info, plan_cost  # noqa: F401  (plan_cost: part of this module's API)


def plan(method: str, settings: dict, num_classes: int, size: tuple[int, int]) -> list[Stage]:
    """The stages of `method` with full `settings`: its registered plan (`MethodInfo.plan`)."""
    return method_info(method).plan_fn(settings, num_classes, tuple(size))


def _chunks(total: int, batch: int) -> list[int]:
    return [min(batch, total - start) for start in range(0, total, batch)]


def _copies(x: torch.Tensor, m: int) -> torch.Tensor:
    """`m` copies of `x` `(1, C, H, W)` in one batch, in `x`'s memory layout (channels-last
    convolutions run faster here, so the floor must not change the layout ours gets)."""
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return x.expand(m, *x.shape[1:]).contiguous(memory_format=layout)


def run_stage(model: nn.Module, x: torch.Tensor, stage: Stage, batch: int, target: int) -> None:
    """Does the passes of one stage for image `x` `(1, C, H, W)`, `batch` items at a time."""
    sizes = _chunks(stage.items, batch)
    inputs = {m: _copies(x, m) for m in set(sizes)}  # built before timing starts
    for _ in range(stage.repeats):
        if stage.kind == "forward":
            with torch.no_grad():
                for m in sizes:
                    model(inputs[m])
        elif stage.kind == "gradient":
            for m in sizes:
                leaf = inputs[m].detach().requires_grad_(True)
                with torch.enable_grad():
                    score = model(leaf)[:, target].sum()
                torch.autograd.grad(score, leaf)
        else:
            _vjp(model, x, stage.items, batch)


def _vjp(model: nn.Module, x: torch.Tensor, items: int, batch: int) -> None:
    """One forward pass with its graph and `items` vector–Jacobian products over it."""
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(leaf)
    eye = torch.eye(logits.shape[1], device=logits.device, dtype=logits.dtype)
    done = 0
    while done < items:
        m = min(batch, items - done)
        rows = eye[done % len(eye): done % len(eye) + m]  # (m, K) one-hot cotangents
        if m == 1:
            torch.autograd.grad(logits, leaf, grad_outputs=rows, retain_graph=True)
        else:
            torch.autograd.grad(logits, leaf, grad_outputs=rows[:, None], retain_graph=True, is_grads_batched=True)
        done += m


def batch_candidates(stage: Stage, cap: int = 64, ends_only: bool = False) -> list[int]:
    """Batch sizes worth trying for a stage: 1, 2, 4, … up to its items (or `cap`); with
    `ends_only`, just the smallest and the largest of those."""
    top = min(stage.items, cap)
    sizes = [2**i for i in range(int(math.log2(top)) + 1)] if top > 1 else [1]
    return sorted({sizes[0], sizes[-1]}) if ends_only else sizes


def fastest_batches(
    model: nn.Module,
    x: torch.Tensor,
    stages: list[Stage],
    target: int,
    *,
    sync: Callable[[], None],
    budget: float,
    ends_only: bool = False,
) -> list[int]:
    """The fastest batch size of each stage, measured on a sample of its work per candidate.

    A candidate runs (after one untimed warm-up) until about `budget` seconds have passed or the
    stage's items are used up; the lowest time per item wins. A "vjp" sample always holds the
    same items (its forward pass is then the same share of every candidate's time).
    """
    chosen = []
    for stage in stages:
        best, best_rate = 1, math.inf
        for size in batch_candidates(stage, ends_only=ends_only):
            items = min(stage.items, 64) if stage.kind == "vjp" else size
            probe = Stage(stage.kind, items)
            run_stage(model, x, probe, size, target)  # warm this size up
            sync()
            done, began = 0, time.perf_counter()
            while done < stage.items and (done == 0 or time.perf_counter() - began < budget):
                run_stage(model, x, probe, size, target)
                sync()
                done += items
            rate = (time.perf_counter() - began) / done
            if rate < best_rate:
                best, best_rate = size, rate
        chosen.append(best)
    return chosen


def run_plan(model: nn.Module, x: torch.Tensor, stages: list[Stage], batches: list[int], target: int) -> None:
    """Every stage of a plan, each at its batch size."""
    for stage, batch in zip(stages, batches):
        run_stage(model, x, stage, batch, target)
