"""Orders that cover an image early, and maps filled in from what has been computed so far.

Methods that evaluate one region or window at a time (secant, nonlinearity, occlusion) visit
their grid coarse to fine, so any prefix of the work is spread over the whole image, and show
a preview in which every position not computed yet takes the value of its nearest computed
position on the coarsest lattice that has one. The order changes nothing but which copies
share a batch, so the final map is the same to float rounding.
"""

from __future__ import annotations

import torch


def coarse_to_fine(rows: int, cols: int) -> torch.Tensor:
    """The positions of a `rows × cols` grid (numbered row by row), coarse to fine: `(rows·cols,)`.

    First the positions on the lattice of step s = the smallest power of two ≥ the grid's
    longer side (just (0, 0)), then those of step s/2 not yet listed, and so on down to step 1.
    """
    step = 1 << max(0, (max(rows, cols) - 1).bit_length())
    seen = torch.zeros(rows, cols, dtype=torch.bool)
    order = []
    while step >= 1:
        lattice = torch.zeros(rows, cols, dtype=torch.bool)
        lattice[::step, ::step] = True
        fresh = lattice & ~seen
        order.append(fresh.flatten().nonzero()[:, 0])
        seen |= fresh
        step //= 2
    return torch.cat(order)


def filled(values: torch.Tensor, computed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """`values` `(N, rows·cols)` with every position where `computed` `(rows·cols,)` is False
    replaced by the value of its nearest lattice point that is computed (the finest lattice of
    step 2^k whose nearest point is; the first computed position where none is)."""
    i = torch.arange(rows)[:, None].double()
    j = torch.arange(cols)[None, :].double()
    source = torch.full((rows, cols), -1, dtype=torch.long)
    step = 1 << max(0, (max(rows, cols) - 1).bit_length())
    known = computed.cpu()
    while step >= 1:
        row = (torch.round(i / step) * step).clamp(max=(rows - 1) // step * step).long()
        col = (torch.round(j / step) * step).clamp(max=(cols - 1) // step * step).long()
        anchor = (row * cols + col).expand(rows, cols)
        source = torch.where(known[anchor], anchor, source)
        step //= 2
    if (source < 0).any():
        first = int(known.nonzero()[0, 0]) if known.any() else 0
        source = torch.where(source < 0, torch.full_like(source, first), source)
    return values[:, source.flatten().to(values.device)]
