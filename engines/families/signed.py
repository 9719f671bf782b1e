"""Signed maps, docs/methods.md §2, after Llorente, Boal & Sánchez-Úbeda, "A matter of attitude:
Focusing on positive and active gradients to boost saliency maps" (arXiv:2309.12913, 2023).

With G = ∂s_c/∂x for the target class c (the predicted one by default) and g_k the gradient of
a rival class k: positive keeps ReLU(G), negative ReLU(−G); active keeps G where it exceeds
every rival's gradient (brightening there widens c's lead), inactive where it is below every
rival's (darkening there widens it). Ties are zeroed. Maps are the max over channels of the
kept magnitude, raw: the dashboard scales them. The 'original' map of the paper is `gradient`.
"""

from __future__ import annotations

from typing import Optional

import torch

from engines.core.explain import Context
from engines.core.registry import Param, Stage, register

RIVALS = Param(
    "rivals", None, "int",
    "Rival classes compared against: the K with the highest logits. None compares against every class.",
    low=1, high=100_000, optional=True, none_means="all classes, exact",
)
REFERENCE = "Llorente, Boal, Sánchez-Úbeda 2023, arXiv:2309.12913"


def _rival_plan(s: dict, k: int, hw: tuple[int, int]) -> list[Stage]:
    m = k - 1 if s["rivals"] is None else min(s["rivals"], k - 1)
    return [Stage("vjp", 1 + m)]  # one forward pass, the target's and each rival's backward pass


@register(
    "positive",
    label="Positive gradient",
    family="signed",
    signed=False,
    summary="Where brightening a pixel raises the class score.",
    reference=REFERENCE,
    plan=lambda s, k, hw: [Stage("gradient", 1)],
    shares_gradient=True,
    live=True,
)
def positive(ctx: Context) -> tuple:
    """ReLU(G), map = max over channels."""
    kept = ctx.gradient().clamp(min=0)
    return kept, kept.amax(dim=1), False


@register(
    "negative",
    label="Negative gradient",
    family="signed",
    signed=False,
    summary="Where darkening a pixel raises the class score.",
    reference=REFERENCE,
    plan=lambda s, k, hw: [Stage("gradient", 1)],
    shares_gradient=True,
    live=True,
)
def negative(ctx: Context) -> tuple:
    """ReLU(−G), map = max over channels."""
    kept = (-ctx.gradient()).clamp(min=0)
    return kept, kept.amax(dim=1), False


_RIVAL_RECORD = dict(
    family="signed", signed=False, reference=REFERENCE, params=(RIVALS,), plan=_rival_plan, shares_gradient=True,
    quick=lambda size: {"rivals": 2}, live=True,
)
"""What active and inactive share in their records: they differ only in which side of the rivals they keep."""


def _above(g: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """G where G > every rival's gradient (strictly), else 0."""
    return torch.where(g > upper, g, torch.zeros_like(g))


def _below(g: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """G where G < every rival's gradient (strictly), else 0."""
    return torch.where(g < lower, g, torch.zeros_like(g))


def _partial(ctx: Context, make):
    """Previews from the rival bounds so far (rivals are taken highest logits first, so the
    strongest rivals, which decide most pixels, come first); None when nobody asks for them."""
    if not ctx.previewing:
        return None
    return lambda bounds, done, total: ctx.preview(lambda: make(bounds).abs().amax(dim=1), done, total)


@register(
    "active",
    label="Active gradient",
    summary="Where brightening a pixel raises the class more than any rival: its lead grows.",
    **_RIVAL_RECORD,
)
def active(ctx: Context, rivals: Optional[int]) -> tuple:
    """G where G > g_k for every rival k (strictly), else 0; map = max over channels of |·|."""
    g = ctx.gradient()
    upper, _ = ctx.rival_bounds(rivals, _partial(ctx, lambda bounds: _above(g, bounds[0])))
    kept = _above(g, upper)
    return kept, kept.abs().amax(dim=1), False


@register(
    "inactive",
    label="Inactive gradient",
    summary="Where darkening a pixel lowers the class less than any rival: its lead grows.",
    **_RIVAL_RECORD,
)
def inactive(ctx: Context, rivals: Optional[int]) -> tuple:
    """G where G < g_k for every rival k (strictly), else 0; map = max over channels of |·|."""
    g = ctx.gradient()
    _, lower = ctx.rival_bounds(rivals, _partial(ctx, lambda bounds: _below(g, bounds[1])))
    kept = _below(g, lower)
    return kept, kept.abs().amax(dim=1), False
