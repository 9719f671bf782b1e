"""Signed maps (docs/methods.md §2) against their formulas, computed from the full Jacobian."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import engines
from engines.models.catalogue import freeze


def jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All class gradients of every image, `(N, K, C, H, W)`, by the definition."""
    rows = [torch.autograd.functional.jacobian(lambda v: model(v[None])[0], image) for image in x]
    return torch.stack(rows)


def rule_maps(model, x, rivals=None):
    """The paper's rules written out from the Jacobian: (G, active kept, inactive kept)."""
    jac = jacobian(model, x)  # (N, K, C, H, W)
    logits = model(x)
    top = logits.argmax(1)
    actives, inactives = [], []
    for n in range(len(x)):
        others = [k for k in range(logits.shape[1]) if k != top[n]]
        if rivals is not None:
            others = sorted(others, key=lambda k: -logits[n, k].item())[:rivals]
        g = jac[n, top[n]]
        rival = jac[n, others]  # (M, C, H, W)
        actives.append(torch.where((g > rival).all(0), g, torch.zeros_like(g)))
        inactives.append(torch.where((g < rival).all(0), g, torch.zeros_like(g)))
    return jac[torch.arange(len(x)), top], torch.stack(actives), torch.stack(inactives)


def test_positive_and_negative_split_the_gradient_by_sign(smooth_model, small_images):
    g, _, _ = rule_maps(smooth_model, small_images)
    out = engines.explain_many(smooth_model, small_images, ["positive", "negative", "gradient"])
    torch.testing.assert_close(out["positive"].map, g.clamp(min=0).amax(1))
    torch.testing.assert_close(out["negative"].map, (-g).clamp(min=0).amax(1))
    torch.testing.assert_close(out["positive"].attribution - out["negative"].attribution, g)
    torch.testing.assert_close(out["gradient"].map, g.abs().amax(1))


def test_active_and_inactive_follow_the_exact_rule(smooth_model, small_images):
    _, active, inactive = rule_maps(smooth_model, small_images)
    out = engines.explain_many(smooth_model, small_images, ["active", "inactive"])
    torch.testing.assert_close(out["active"].attribution, active)
    torch.testing.assert_close(out["inactive"].attribution, inactive)
    torch.testing.assert_close(out["active"].map, active.abs().amax(1))
    torch.testing.assert_close(out["inactive"].map, inactive.abs().amax(1))
    assert (out["active"].map > 0).any() and (out["inactive"].map > 0).any()


@pytest.mark.parametrize("rivals", [1, 2, 4])
def test_top_k_rivals_compare_only_against_the_highest_logits(smooth_model, small_images, rivals):
    _, active, inactive = rule_maps(smooth_model, small_images, rivals=rivals)
    out = engines.explain_many(
        smooth_model, small_images, ["active", "inactive"], params={"active": {"rivals": rivals}, "inactive": {"rivals": rivals}}
    )
    torch.testing.assert_close(out["active"].attribution, active)
    torch.testing.assert_close(out["inactive"].attribution, inactive)


def test_k_equal_to_all_classes_is_the_exact_mode(smooth_model, small_images):
    exact = engines.explain(smooth_model, small_images, "active")
    every = engines.explain(smooth_model, small_images, "active", rivals=5)  # 6 classes: 5 rivals
    beyond = engines.explain(smooth_model, small_images, "active", rivals=50)
    torch.testing.assert_close(exact.map, every.map)
    torch.testing.assert_close(exact.map, beyond.map)


def test_fewer_rivals_keep_at_least_as_much(smooth_model, small_images):
    """A pixel that beats every rival also beats the top few: the kept set can only grow."""
    exact = engines.explain(smooth_model, small_images, "active").map
    few = engines.explain(smooth_model, small_images, "active", rivals=1).map
    assert ((exact > 0) <= (few > 0)).all()


class TiedClasses(nn.Module):
    """Two classes with identical weights: every gradient ties, so active/inactive are empty."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(3 * 8 * 8, 1)

    def forward(self, x):
        score = self.fc(x.flatten(1))
        return torch.cat([score + 1.0, score], dim=1)


def test_ties_are_zeroed_and_an_all_zero_map_has_no_nan(small_images):
    model = freeze(TiedClasses())
    out = engines.explain_many(model, small_images, ["active", "inactive"])
    for result in out.values():
        assert torch.isfinite(result.map).all()
        assert (result.map == 0).all()


def test_a_flat_model_gives_zero_maps_not_nan(small_images):
    model = freeze(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)))
    with torch.no_grad():
        model[1].weight.zero_()
    out = engines.explain_many(model, small_images, ["gradient", "positive", "negative", "active", "inactive"])
    for result in out.values():
        assert torch.isfinite(result.map).all() and (result.map == 0).all()


def test_a_target_other_than_the_top_class_uses_its_own_gradient(smooth_model, small_images):
    jac = jacobian(smooth_model, small_images)
    out = engines.explain(smooth_model, small_images, "positive", target=torch.tensor([1, 2, 3]))
    torch.testing.assert_close(out.attribution, jac[torch.arange(3), torch.tensor([1, 2, 3])].clamp(min=0))


def test_signed_maps_share_one_gradient_pass(smooth_model, small_images, monkeypatch):
    """explain_many of the gradient-based maps costs one backward pass in all."""
    from engines.core import passes

    calls = []
    original = passes.backward
    monkeypatch.setattr(passes, "backward", lambda *a, **k: calls.append(1) or original(*a, **k))
    engines.explain_many(smooth_model, small_images, ["gradient", "gradient_x_input", "positive", "negative"])
    assert len(calls) == 1


def test_cost_counts_rival_passes():
    info = engines.method_info("active")
    assert info.cost({}, 10).backward == 10
    assert info.cost({"rivals": 3}, 1000).backward == 4
    assert engines.method_info("positive").cost({}, 1000).passes == 2
