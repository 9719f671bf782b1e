"""Previews: every long method hands out intermediate maps, and its final map is unchanged."""

from __future__ import annotations

import pytest
import torch

import engines
from engines.core import explain as explain_module
from engines.core import refine

LONG = {
    "smoothgrad": {"samples": 16},
    "integrated_gradients": {"steps": 16},
    "active": {"rivals": None},
    "inactive": {"rivals": None},
    "secant": {"patch": 2},
    "nonlinearity": {"patch": 2, "points": 3},
    "gradient_flow": {"steps": 6, "step_size": 0.05},
    "oise": {"queries": 32, "chains": 4},
    "extremal": {"iterations": 6},
    "rise": {"masks": 24},
    "occlusion": {"window": 2, "stride": 2},
}


@pytest.fixture
def every_offer(monkeypatch):
    """Previews as often as the share rule allows, so tiny runs show them too."""
    monkeypatch.setattr(explain_module, "PREVIEW_SECONDS", 0.0)
    monkeypatch.setattr(explain_module, "PREVIEW_SHARE", 1.0)


@pytest.mark.parametrize("method", sorted(LONG))
def test_a_method_with_previews_ends_on_the_map_it_gives_without(method, smooth_model, small_images, every_offer):
    """Previews come with progress below 1 and the image's shape; the last call is the final map,
    which equals the map computed without previews (to float rounding)."""
    seen = []
    with_previews = engines.explain(smooth_model, small_images, method, preview=seen.append, **LONG[method])
    plain = engines.explain(smooth_model, small_images, method, **LONG[method])
    torch.testing.assert_close(with_previews.map, plain.map, rtol=1e-5, atol=1e-6)
    assert seen[-1] is with_previews and seen[-1].progress == 1.0
    previews = seen[:-1]
    assert previews, "no preview was offered"
    assert all(p.map.shape == plain.map.shape and 0 <= p.progress < 1 for p in previews)
    assert all(torch.isfinite(p.map).all() for p in previews)
    assert [p.progress for p in previews] == sorted(p.progress for p in previews)


def test_explain_many_with_previews_gives_the_maps_of_one_method_at_a_time(smooth_model, small_images, every_offer):
    """Side by side, every method's final map is the one it gives alone, and each is previewed last as final."""
    methods = ["gradient", "smoothgrad", "occlusion", "extremal"]
    params = {m: LONG.get(m, {}) for m in methods}
    seen = []
    together = engines.explain_many(smooth_model, small_images, methods, params=params, preview=seen.append)
    alone = engines.explain_many(smooth_model, small_images, methods, params=params)
    assert list(together) == methods
    for m in methods:
        torch.testing.assert_close(together[m].map, alone[m].map, rtol=1e-5, atol=1e-6)
        finals = [e for e in seen if e.method == m and e.progress == 1.0]
        assert finals == [together[m]]


def test_a_cancel_from_a_preview_stops_every_method_and_returns_nothing(smooth_model, small_images, every_offer):
    """Raising Cancelled from the preview callback stops the side-by-side run."""

    def cancel(explanation):
        raise engines.Cancelled()

    with pytest.raises(engines.Cancelled):
        engines.explain_many(smooth_model, small_images, ["smoothgrad", "occlusion"], params=LONG and
                             {"smoothgrad": LONG["smoothgrad"], "occlusion": LONG["occlusion"]}, preview=cancel)


def test_progress_side_by_side_rises_to_its_total(smooth_model, small_images):
    """With previews, progress follows the whole call in passes and ends at its total."""
    seen = []
    engines.explain_many(smooth_model, small_images, ["smoothgrad", "occlusion"],
                         params={"smoothgrad": LONG["smoothgrad"], "occlusion": LONG["occlusion"]},
                         progress=lambda d, t: seen.append((d, t)), preview=lambda e: None)
    assert seen and seen[-1][0] == seen[-1][1] and len({t for _, t in seen}) == 1


def test_coarse_to_fine_visits_every_position_once_and_starts_spread_out():
    """The order is a permutation whose first positions span the grid's corners' lattice."""
    order = refine.coarse_to_fine(5, 7)
    assert sorted(order.tolist()) == list(range(35))
    assert order[0] == 0 and set(order[:4].tolist()) == {0, 4, 28, 32}


def test_filled_keeps_computed_values_and_copies_a_computed_neighbour_elsewhere():
    """Computed positions keep their value; every other one takes some computed position's value."""
    values = torch.arange(12.0)[None]
    computed = torch.zeros(12, dtype=torch.bool)
    computed[[0, 3, 8]] = True
    out = refine.filled(values, computed, 3, 4)
    assert out[0, [0, 3, 8]].tolist() == [0.0, 3.0, 8.0]
    assert set(out[0].tolist()) <= {0.0, 3.0, 8.0}
