"""ROAD (Rong et al. 2022): noisy linear imputation and its curves, against pytorch-grad-cam's imputer."""

from __future__ import annotations

import pytest
import torch

import engines
from engines.evaluation.road import _WEIGHTS, impute, road_curve


def _holes(size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    removed = torch.rand((1, size, size), generator=generator) < 0.5
    removed[0, 2 : size // 2, 3 : size // 2 + 3] = True  # a block of unknowns, plus scattered ones
    return removed


def test_imputation_equals_pytorch_grad_cams_noisy_linear_imputer_without_noise():
    """Same sparse system (8 neighbours, 1/6 and 1/12, border renormalised), so the same values."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    removed = _holes(20, 1)
    ours = impute(x, removed, noise=0.0, tolerance=1e-7)
    theirs = NoisyLinearImputer(noise=0.0)(x[0], (~removed[0]).float())
    torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=0)


def test_every_removed_pixel_is_the_weighted_mean_of_its_neighbours_and_kept_pixels_are_unchanged():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    removed = torch.cat([_holes(12, 3), _holes(12, 4)])
    filled = impute(x, removed, noise=0.0, tolerance=1e-7)
    kernel = _WEIGHTS.reshape(1, 1, 3, 3).expand(3, 1, 3, 3)
    sums = torch.nn.functional.conv2d(filled, kernel, padding=1, groups=3)
    weights = torch.nn.functional.conv2d(torch.ones(1, 1, 12, 12), _WEIGHTS.reshape(1, 1, 3, 3), padding=1)
    mean = sums / weights
    hole = removed[:, None].expand_as(x)
    torch.testing.assert_close(filled[hole], mean[hole], atol=1e-5, rtol=0)
    assert torch.equal(filled[~hole], x[~hole])


def test_noise_is_seeded_and_only_on_removed_pixels():
    x = torch.full((1, 3, 10, 10), 0.5)
    removed = _holes(10, 5)
    a, b = impute(x, removed, noise=0.05, seed=1), impute(x, removed, noise=0.05, seed=1)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, impute(x, removed, noise=0.05, seed=2))
    spread = (a - 0.5)[removed[:, None].expand_as(x)]
    assert 0.02 < float(spread.std()) < 0.08  # a constant image imputes to itself, plus the noise
    assert torch.equal(a[~removed[:, None].expand_as(x)], x[~removed[:, None].expand_as(x)])


def test_on_a_linear_model_blind_to_half_the_image_removing_that_half_first_changes_nothing(linear_model):
    """f ignores the left half; a map ranking it first (MoRF) keeps the clean probability up to 50 %,
    and with the ranking reversed (LeRF) the same holds."""
    with torch.no_grad():
        linear_model.fc.weight.view(5, 3, 8, 8)[..., :4] = 0
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    left_first = torch.zeros(1, 8, 8)
    left_first[..., :4] = 1.0
    clean = engines.predict(linear_model, x).probabilities[0]
    target = int(clean.argmax())
    most = road_curve(linear_model, x, left_first, "most", target=target, noise=0.0)
    least = road_curve(linear_model, x, -left_first, "least", target=target, noise=0.0)
    for curve in (most, least):
        assert curve.fractions.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        torch.testing.assert_close(curve.values[0, :6], clean[target].expand(6), atol=1e-5, rtol=0)
        assert curve.auc[0] == pytest.approx(torch.trapezoid(curve.values[0].double(), curve.fractions).item())
    assert (most.values[0, 6:] - clean[target]).abs().max() > 1e-3  # the right half does matter


def test_road_curve_values_match_pytorch_grad_cams_road_at_each_percentile(smooth_model):
    """Their ROADMostRelevantFirst removes the pixels above a percentile; with distinct map values
    it is our MoRF point at that fraction (their imputer with no noise; their score a probability)."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADMostRelevantFirst

    x = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(7)) * 0.8 + 0.1
    saliency = torch.randperm(100, generator=torch.Generator().manual_seed(8)).float().reshape(1, 10, 10)
    ours = road_curve(smooth_model, x, saliency, "most", target=2, fractions=(0.0, 0.3, 0.7), noise=0.0)
    for fraction, value in zip((30, 70), ours.values[0, 1:]):
        metric = ROADMostRelevantFirst(percentile=100 - fraction)
        metric.perturbation.imputer = NoisyLinearImputer(noise=0.0)
        probability = lambda logits: torch.softmax(logits, dim=-1)[2]  # noqa: E731
        theirs = metric(x, saliency.numpy(), [probability], smooth_model, return_diff=False)
        assert float(theirs[0]) == pytest.approx(float(value), abs=1e-4)


@pytest.mark.parametrize("call, words", [
    (dict(order="top"), "order"), (dict(fractions=(0.0, 1.0)), "below 1"), (dict(noise=2.0), "noise"),
])
def test_bad_road_inputs_name_the_problem(smooth_model, small_images, call, words):
    with pytest.raises(ValueError, match=words):
        road_curve(smooth_model, small_images, small_images.mean(1), **call)
