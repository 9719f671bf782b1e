"""One map's faithfulness scores, by the engines' own curves, the same for every implementation."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from engines.evaluation.metrics import deletion_curve, insertion_curve, pointing_game, pointing_tolerance, relevance_mass
from engines.evaluation.road import ROAD_FRACTIONS, road_curve

METRICS = ("deletion", "insertion", "road_most", "road_least", "pointing", "pointing_tolerant", "relevance_mass")
"""Score names: AUCs of deletion (↓), insertion (↑), ROAD most relevant first (↓) and least relevant
first (↑); pointing game strict and tolerant (↑) and relevance mass (↑), where there is a mask."""

LOWER_IS_BETTER = {"deletion", "road_most"}

HEADINGS = {"deletion": "deletion ↓", "insertion": "insertion ↑", "road_most": "ROAD MoRF ↓",
            "road_least": "ROAD LeRF ↑", "pointing": "pointing ↑", "pointing_tolerant": "pointing ±15px@224 ↑",
            "relevance_mass": "relevance mass ↑"}


def score_maps(model, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, masks: Optional[torch.Tensor],
               *, steps: int = 32, road: bool = True, road_fractions: Sequence[float] = ROAD_FRACTIONS) -> dict:
    """Scores `{metric: (N,) float}` of maps `(N, H, W)` of images `x` `(N, 3, H, W)` for classes
    `target` `(N,)`: deletion (black fill) and insertion (blurred start) with `steps` points, ROAD
    both ways (`road=False` leaves it out: it is the slowest curve), and, with object `masks`
    `(N, H, W)`, the pointing game (strict, and within Zhang et al.'s 15 px at 224², scaled) and
    relevance mass. The pointing game and relevance mass read the map's values (signed maps as
    they are: a negative pixel never points)."""
    maps = maps.float()
    out = {
        "deletion": deletion_curve(model, x, maps, target=target, steps=steps, fill="black").auc.float(),
        "insertion": insertion_curve(model, x, maps, target=target, steps=steps).auc.float(),
    }
    if road:
        out["road_most"] = road_curve(model, x, maps, "most", target=target, fractions=road_fractions).auc.float()
        out["road_least"] = road_curve(model, x, maps, "least", target=target, fractions=road_fractions).auc.float()
    if masks is not None:
        tolerance = pointing_tolerance(tuple(x.shape[2:]))
        out["pointing"] = pointing_game(maps, masks).float()
        out["pointing_tolerant"] = pointing_game(maps, masks, tolerance=tolerance).float()
        out["relevance_mass"] = relevance_mass(maps, masks)
    return out


def mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error (sample standard deviation / √n) of the finite values; NaN when none."""
    v = values.double()[torch.isfinite(values.double())]
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan
