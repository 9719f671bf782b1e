"""Linear maps (docs/methods.md §1) against Captum and against the identities they must satisfy."""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

import engines
from engines.families.linear import quadrature


def test_gradient_equals_weight_row_on_a_linear_model(linear_model, small_images):
    result = engines.explain(linear_model, small_images, "gradient", target=2)
    expected = linear_model.fc.weight[2].reshape(3, 8, 8).expand_as(small_images)
    torch.testing.assert_close(result.attribution, expected)
    torch.testing.assert_close(result.map, expected.abs().amax(dim=1))


def test_gradient_matches_captum_saliency(smooth_model, small_images):
    ours = engines.explain(smooth_model, small_images, "gradient", target=torch.tensor([0, 3, 5]))
    theirs = Saliency(smooth_model).attribute(small_images, target=[0, 3, 5], abs=False)
    torch.testing.assert_close(ours.attribution, theirs)


def test_gradient_matches_captum_on_efficientnet(efficientnet, chelsea):
    ours = engines.explain(efficientnet, chelsea, "gradient")
    theirs = Saliency(efficientnet.model).attribute(chelsea, target=int(ours.target), abs=False)
    torch.testing.assert_close(ours.attribution, theirs)


def test_gradient_x_input_matches_captum(smooth_model, small_images):
    ours = engines.explain(smooth_model, small_images, "gradient_x_input", target=1)
    theirs = InputXGradient(smooth_model).attribute(small_images, target=1)
    torch.testing.assert_close(ours.attribution, theirs)
    torch.testing.assert_close(ours.map, theirs.sum(dim=1))
    assert ours.signed


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_middle", "riemann_right"])
def test_integrated_gradients_matches_captum(smooth_model, small_images, rule):
    ours = engines.explain(smooth_model, small_images, "integrated_gradients", target=4, steps=12, rule=rule)
    theirs = IntegratedGradients(smooth_model).attribute(
        small_images, baselines=torch.zeros_like(small_images), target=4, n_steps=12, method=rule
    )
    torch.testing.assert_close(ours.attribution, theirs, rtol=1e-4, atol=1e-6)


def test_trapezoid_rule_is_captums_rescaled_to_weights_that_sum_to_one(smooth_model, small_images):
    """Captum's trapezoid weights are 1/n on a 1/(n−1) grid; ours are the true rule: ×n/(n−1)."""
    steps = 12
    ours = engines.explain(smooth_model, small_images, "integrated_gradients", target=4, steps=steps,
                           rule="riemann_trapezoid")
    theirs = IntegratedGradients(smooth_model).attribute(
        small_images, baselines=torch.zeros_like(small_images), target=4, n_steps=steps, method="riemann_trapezoid"
    )
    torch.testing.assert_close(ours.attribution, theirs * steps / (steps - 1), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_matches_captum_on_efficientnet(efficientnet, chelsea):
    ours = engines.explain(efficientnet, chelsea, "integrated_gradients", steps=8)
    theirs = IntegratedGradients(efficientnet.model).attribute(
        chelsea, target=int(ours.target), n_steps=8, internal_batch_size=4
    )
    # Different batch splits round differently in float32, and a ReLU6 net turns tiny input
    # differences into small gradient jumps: compare at the scale of the map itself.
    scale = theirs.abs().max().item()
    torch.testing.assert_close(ours.attribution, theirs, rtol=0, atol=5e-3 * scale)
    assert ours.attribution.sum().item() == pytest.approx(theirs.sum().item(), rel=1e-3)


def test_integrated_gradients_completeness_tightens_with_steps(smooth_model, small_images):
    """IG sums to s_c(x) − s_c(x') within the quadrature error, which shrinks as steps grow."""
    target = 2
    drop = smooth_model(small_images)[:, target] - smooth_model(torch.zeros_like(small_images))[:, target]
    errors = []
    for steps in (2, 8, 64):
        result = engines.explain(smooth_model, small_images, "integrated_gradients", target=target, steps=steps,
                                 rule="riemann_trapezoid")
        errors.append((result.attribution.sum(dim=(1, 2, 3)) - drop).abs().max().item())
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-3 * drop.abs().max().item() + 1e-6
    gauss = engines.explain(smooth_model, small_images, "integrated_gradients", target=target, steps=16)
    assert (gauss.attribution.sum(dim=(1, 2, 3)) - drop).abs().max().item() < 1e-5


def test_integrated_gradients_is_exact_on_a_linear_model(linear_model, small_images):
    result = engines.explain(linear_model, small_images, "integrated_gradients", target=0, steps=3, baseline="white")
    expected = linear_model.fc.weight[0].reshape(3, 8, 8) * (small_images - 1)
    torch.testing.assert_close(result.attribution, expected)


def test_smoothgrad_with_no_noise_equals_the_gradient(smooth_model, small_images):
    smooth = engines.explain(smooth_model, small_images, "smoothgrad", samples=5, noise=0.0, variant="mean")
    plain = engines.explain(smooth_model, small_images, "gradient")
    torch.testing.assert_close(smooth.attribution, plain.attribution)
    torch.testing.assert_close(smooth.map, plain.map)


def test_smoothgrad_on_a_linear_model_is_the_weight_row(linear_model, small_images):
    result = engines.explain(linear_model, small_images, "smoothgrad", target=3, samples=7, noise=0.3, seed=5, variant="mean")
    expected = linear_model.fc.weight[3].reshape(3, 8, 8).expand_as(small_images)
    torch.testing.assert_close(result.attribution, expected)


def test_smoothgrad_is_the_mean_gradient_at_its_noisy_points(smooth_model, small_images):
    """Captum's Saliency at the same noisy points, averaged, is our SmoothGrad."""
    from engines.families.linear import smoothgrad_noise

    x = small_images[:1]
    sigma = 0.2 * (x.max() - x.min())
    points = (x + smoothgrad_noise(6, (3, 8, 8), seed=11) * sigma).clamp(0, 1)  # (6, C, H, W)
    theirs = Saliency(smooth_model).attribute(points, target=1, abs=False).mean(0, keepdim=True)
    ours = engines.explain(smooth_model, x, "smoothgrad", target=1, samples=6, noise=0.2, seed=11, variant="mean")
    torch.testing.assert_close(ours.attribution, theirs)


def test_the_default_smoothgrad_variant_is_mean_abs_as_measured():
    assert engines.method_info("smoothgrad").defaults()["variant"] == "mean_abs"


def test_smoothgrad_differs_across_seeds_and_not_within(smooth_model, small_images):
    a = engines.explain(smooth_model, small_images, "smoothgrad", samples=4, seed=1).map
    b = engines.explain(smooth_model, small_images, "smoothgrad", samples=4, seed=1).map
    c = engines.explain(smooth_model, small_images, "smoothgrad", samples=4, seed=2).map
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_quadrature_integrates_a_line_exactly(rule):
    alphas, weights = quadrature(rule, 6)
    assert alphas.min() >= 0 and alphas.max() <= 1
    assert weights.sum().item() == pytest.approx(1.0)
    assert (weights * (3 * alphas + 1)).sum().item() == pytest.approx(2.5)


def test_channel_reduction_choices(smooth_model, small_images):
    summed = engines.explain(smooth_model, small_images, "gradient", reduce="sum")
    torch.testing.assert_close(summed.map, summed.attribution.sum(dim=1))
    assert summed.signed


@pytest.mark.parametrize("variant, closed_form", [
    ("mean", lambda w: w), ("mean_abs", torch.abs), ("squared", torch.square),
])
def test_smoothgrad_variants_on_a_linear_model_are_the_weight_row_transformed(linear_model, small_images, variant,
                                                                              closed_form):
    """On a linear model every noisy gradient is the weight row w: mean gives w, mean_abs |w|, squared w²."""
    result = engines.explain(linear_model, small_images, "smoothgrad", target=2, samples=5, noise=0.3, variant=variant)
    expected = closed_form(linear_model.fc.weight[2].reshape(3, 8, 8)).expand_as(small_images)
    torch.testing.assert_close(result.attribution, expected)


@pytest.mark.parametrize("variant", ["mean_abs", "squared"])
def test_smoothgrad_variants_match_captum_saliency_at_the_same_noisy_points(smooth_model, small_images, variant):
    """mean_abs is the mean of Captum's Saliency(abs=True) at our noisy points; squared the mean of its square."""
    from engines.families.linear import smoothgrad_noise

    x = small_images[:1]
    sigma = 0.2 * (x.max() - x.min())
    points = (x + smoothgrad_noise(6, (3, 8, 8), seed=3) * sigma).clamp(0, 1)  # (6, C, H, W)
    g = Saliency(smooth_model).attribute(points, target=1, abs=False)
    theirs = (g.abs() if variant == "mean_abs" else g.square()).mean(0, keepdim=True)
    ours = engines.explain(smooth_model, x, "smoothgrad", target=1, samples=6, noise=0.2, seed=3, variant=variant)
    torch.testing.assert_close(ours.attribution, theirs)


def test_the_captum_smoothgrad_peer_comparable_to_each_variant_computes_it_without_noise(smooth_model, small_images):
    """With no noise every variant's peer (the one comparable to it) gives our map exactly."""
    info = engines.method_info("smoothgrad")
    for variant in ("mean", "mean_abs", "squared"):
        settings = info.settings({"samples": 3, "noise": 0.0, "variant": variant})
        peers = [p for p in info.peers if p.comparable(settings, (8, 8))]
        assert len(peers) == 1
        theirs = peers[0].to_map(peers[0].build(smooth_model, small_images, 0, settings, None)(), settings)
        ours = engines.explain(smooth_model, small_images, "smoothgrad", target=0, **settings).map
        torch.testing.assert_close(ours, theirs)
