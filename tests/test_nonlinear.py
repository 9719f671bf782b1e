"""Nonlinear maps (docs/methods.md §3, our family after Rosenzweig et al.) against the identities
they must satisfy, with the model evaluated directly as the oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import engines
from engines.families import nonlinear
from engines.core.explain import Context
from engines.models.catalogue import freeze
from engines.families.nonlinear import flow_path, region_grid, response_curve
from engines.core.passes import Cancelled

DIRECTIONS = ("central", "brighten", "darken")


def region_sums(values: torch.Tensor, patch: int) -> torch.Tensor:
    """Sum of `values` `(N, H, W)` over each patch × patch box, row by row, `(N, R)`, by slicing."""
    n, height, width = values.shape
    return torch.stack(
        [values[:, r0 : r0 + patch, c0 : c0 + patch].sum((1, 2)) for r0 in range(0, height, patch)
         for c0 in range(0, width, patch)],
        dim=1,
    )


def brighten(x: torch.Tensor, box: tuple[int, int, int, int], t: float) -> torch.Tensor:
    """`clip(x + t·1_box, 0, 1)`, every channel of the box's pixels."""
    r0, r1, c0, c1 = box
    out = x.clone()
    out[:, :, r0:r1, c0:c1] += t
    return out.clamp(0, 1)


class QuadraticModel(nn.Module):
    """Class 0: `½(a·x)² + b·x`; class 1: `d·x`. Its gradient is linear in x."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(3, 192, generator=generator) / 14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, d = self.w
        v = x.flatten(1)
        return torch.stack([0.5 * (v @ a) ** 2 + v @ b, v @ d], dim=1)


class SaturatedModel(nn.Module):
    """Class 0's logit is `1 + 20·ReLU(mean of region A − 0.45) + 0.01·mean(x)`, class 1's is 0.5.

    Region A is rows 4:8, columns 0:4 (region (1, 0) of the patch-4 grid). With A at brightness
    0.3 the ReLU is on its flat side: the gradient is only the faint 0.01 term, while brightening
    A by 0.25 raises the logit by 2.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x[:, :, 4:8, 0:4].mean((1, 2, 3))
        logit = 1 + 20 * torch.relu(a - 0.45) + 0.01 * x.mean((1, 2, 3))
        return torch.stack([logit, torch.full_like(logit, 0.5)], dim=1)


REGION_A = 2  # (row 1, col 0) of the 2 × 2 grid of 4 × 4 regions


@pytest.fixture
def saturated():
    x = 0.1 + 0.8 * torch.rand((1, 3, 8, 8), generator=torch.Generator().manual_seed(3))
    x[:, :, 4:8, 0:4] = 0.3
    return freeze(SaturatedModel()), x


# --------------------------------------------------------------------------- regions


def test_region_grid_covers_the_image_once_with_smaller_last_regions():
    grid = region_grid(8, 7, 3)
    assert grid.boxes == [(0, 3, 0, 3), (0, 3, 3, 6), (0, 3, 6, 7), (3, 6, 0, 3), (3, 6, 3, 6), (3, 6, 6, 7),
                          (6, 8, 0, 3), (6, 8, 3, 6), (6, 8, 6, 7)]
    covered = torch.zeros(8, 7)
    for r0, r1, c0, c1 in grid.boxes:
        covered[r0:r1, c0:c1] += 1
    assert (covered == 1).all()
    torch.testing.assert_close(grid.sizes(), torch.tensor([9.0, 9, 3, 9, 9, 3, 6, 6, 2]))


# --------------------------------------------------------------------------- 3a. secant


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_secant_equals_the_region_summed_gradient_on_a_linear_model_for_every_epsilon(
    direction, linear_model, small_images
):
    """Each pixel of region r holds S_r/|r|, with S_r = Σ_{i∈r} Σ_channels W_c,i for any ε."""
    patch = 3  # 8 = 3 + 3 + 2: the last row and column of regions are smaller
    weight = linear_model.fc.weight[1].reshape(3, 8, 8).sum(0)  # (H, W), channels summed
    grid = region_grid(8, 8, patch)
    expected = torch.zeros(8, 8)
    for (r0, r1, c0, c1), total in zip(grid.boxes, region_sums(weight[None], patch)[0]):
        expected[r0:r1, c0:c1] = total / ((r1 - r0) * (c1 - c0))
    for epsilon in (0.01, 0.05, 0.1):  # x ± ε stays inside [0, 1]
        result = engines.explain(linear_model, small_images, "secant", target=1, epsilon=epsilon, patch=patch,
                                 direction=direction)
        assert result.signed and result.attribution is None
        torch.testing.assert_close(result.map, expected.expand(3, 8, 8), rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_secant_converges_to_the_region_summed_gradient_on_a_smooth_model(direction, smooth_model, small_images):
    """The error falls as ε shrinks (as ε² for the central difference, as ε one-sided)."""
    gradient = engines.explain(smooth_model, small_images, "gradient", target=2, reduce="sum").map
    expected = region_sums(gradient, 4)  # (N, R)
    errors = []
    for epsilon in (0.2, 0.05, 0.0125):
        result = engines.explain(smooth_model, small_images, "secant", target=2, epsilon=epsilon, patch=4,
                                 direction=direction)
        errors.append((region_sums(result.map, 4) - expected).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < (1e-3 if direction == "central" else 2e-2) * expected.abs().max().item()


def test_region_secants_are_the_finite_differences_of_the_model(smooth_model, small_images):
    """Per-region S_r for central, brighten and darken, against direct model evaluations."""
    grid = region_grid(8, 8, 4)
    epsilon = 0.08
    with torch.no_grad():
        clean = smooth_model(small_images)[:, 3]
        up = torch.stack([smooth_model(brighten(small_images, box, epsilon))[:, 3] for box in grid.boxes], 1)
        down = torch.stack([smooth_model(brighten(small_images, box, -epsilon))[:, 3] for box in grid.boxes], 1)
    expected = {
        "central": (up - down) / (2 * epsilon),
        "brighten": (up - clean[:, None]) / epsilon,
        "darken": (clean[:, None] - down) / epsilon,
    }
    ctx = Context(smooth_model, small_images, target=3)
    for direction, want in expected.items():
        got = nonlinear.region_secants(ctx, grid, epsilon, direction)
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- 3b. nonlinearity


@pytest.mark.parametrize("span", [0.1, 0.5])
def test_nonlinearity_is_zero_on_a_linear_model(span, linear_model, small_images):
    """Zero also where large steps are clipped: the tangent term is the change actually applied."""
    result = engines.explain(linear_model, small_images, "nonlinearity", span=span, points=5, patch=3)
    assert not result.signed and result.attribution is None
    torch.testing.assert_close(result.map, torch.zeros(3, 8, 8), rtol=0, atol=2e-6)


def test_nonlinearity_of_a_region_is_its_response_curves_largest_gap(smooth_model, small_images):
    """The map's NL_r equals the probe's max |scores − tangent| at the same steps."""
    result = engines.explain(smooth_model, small_images[:1], "nonlinearity", target=0, span=0.08, points=7, patch=4)
    per_region = region_sums(result.map, 4)[0]
    assert (per_region > 0).all()
    for index, (row, col) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        curve = response_curve(smooth_model, small_images[:1], (row, col), target=0, span=0.08, points=7, patch=4)
        assert per_region[index].item() == pytest.approx(curve.nonlinearity, rel=1e-3, abs=1e-6)


def test_a_saturated_model_has_a_blank_gradient_but_nonlinear_maps_find_its_driver(saturated):
    """On a ReLU plateau the gradient is ≈ 0 everywhere; a finite brightening of region A moves
    the score by 2, and the secant and nonlinearity maps peak there."""
    model, x = saturated
    out = engines.explain_many(
        model, x, ["gradient", "secant", "nonlinearity"],
        params={"secant": {"epsilon": 0.25, "patch": 4, "direction": "brighten"}, "nonlinearity": {"patch": 4}},
    )
    assert out["gradient"].map.abs().max().item() < 1e-4
    grid = region_grid(8, 8, 4)
    region_a = grid.labels() == REGION_A
    for name in ("secant", "nonlinearity"):
        saliency = out[name].map[0]
        assert region_a.flatten()[saliency.argmax()], name
        assert grid.sum(out[name].map)[0, REGION_A].item() > 1.5, name  # S_A = 8, NL_A = 2
    central = engines.explain(model, x, "secant", epsilon=0.2, patch=4)
    assert region_a.flatten()[central.map[0].argmax()]


# --------------------------------------------------------------------------- response curve


def test_response_curve_matches_the_model_and_its_tangent_slope_is_the_region_summed_gradient(
    smooth_model, small_images
):
    x = small_images[1:2]
    curve = response_curve(smooth_model, x, (1, 0), target=4, span=0.09, points=7, patch=4)
    assert curve.region == (4, 8, 0, 4) and curve.target == 4
    torch.testing.assert_close(curve.t, torch.linspace(-0.09, 0.09, 7))
    with torch.no_grad():
        direct = torch.stack([smooth_model(brighten(x, curve.region, t))[0, 4] for t in curve.t.tolist()])
        score = smooth_model(x)[0, 4]
    torch.testing.assert_close(curve.scores, direct, rtol=1e-5, atol=1e-5)
    x_leaf = x.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(smooth_model(x_leaf)[0, 4], x_leaf)
    slope = gradient[0, :, 4:8, 0:4].sum()
    assert curve.slope == pytest.approx(slope.item(), rel=1e-5)
    torch.testing.assert_close(curve.tangent, score + curve.t * slope, rtol=1e-5, atol=1e-5)
    assert curve.nonlinearity == pytest.approx((curve.scores - curve.tangent).abs().max().item())
    assert curve.scores[3].item() == pytest.approx(score.item(), abs=1e-5)  # t = 0 is the clean score


def test_response_curve_takes_a_loaded_model_and_defaults_to_the_predicted_class(smooth_model, small_images):
    class Loaded:  # what matters of a LoadedModel: the module in `.model`
        model = smooth_model

    curve = response_curve(Loaded(), small_images[:1], (0, 1), patch=4, points=3)
    assert curve.target == smooth_model(small_images[:1]).argmax().item()
    assert curve.t.shape == curve.scores.shape == curve.tangent.shape == (3,)


# --------------------------------------------------------------------------- 3c. gradient flow


def test_gradient_flow_sums_to_the_score_drop_along_its_path(smooth_model, small_images):
    """Σ attribution = s_c(x_0) − s_c(x_T), with x_T's score from the model run on the path's end."""
    target = torch.tensor([0, 3, 5])
    result = engines.explain(smooth_model, small_images, "gradient_flow", target=target, steps=12, step_size=0.1)
    path = flow_path(smooth_model, small_images, target, steps=12, step_size=0.1)
    torch.testing.assert_close(result.attribution, path.attribution, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(result.map, result.attribution.sum(1))
    with torch.no_grad():
        drop = smooth_model(small_images)[torch.arange(3), target] - smooth_model(path.end)[torch.arange(3), target]
    assert (drop > 0).all() and not torch.equal(path.end, small_images)
    torch.testing.assert_close(result.attribution.sum((1, 2, 3)), drop, rtol=1e-3, atol=1e-6)


def test_gradient_flow_trapezoid_rule_is_exact_on_a_quadratic_model(small_images):
    """Along each straight step a quadratic's gradient is linear, which the trapezoid rule
    integrates exactly, however long the steps (even when clipping bends the path)."""
    model = freeze(QuadraticModel())
    target = torch.zeros(3, dtype=torch.long)
    path = flow_path(model, small_images, target, steps=6, step_size=1.5)
    with torch.no_grad():
        drop = model(small_images)[:, 0] - model(path.end)[:, 0]
    assert (drop.abs() > 0.1).all()
    torch.testing.assert_close(path.attribution.sum((1, 2, 3)), drop, rtol=1e-4, atol=1e-5)


def test_gradient_flow_stops_at_the_first_step_that_changes_the_prediction(linear_model, small_images):
    with torch.no_grad():
        predicted = linear_model(small_images).argmax(1)
    path = flow_path(linear_model, small_images, predicted, steps=200, step_size=0.05)
    with torch.no_grad():
        at_end = linear_model(path.end).argmax(1)
    assert (path.steps_taken < 200).all() and (at_end != predicted).all()
    assert len(set(path.steps_taken.tolist())) > 1  # images finish at different steps
    for n in range(3):
        image, label = small_images[n : n + 1], predicted[n : n + 1]
        alone = flow_path(linear_model, image, label, steps=200, step_size=0.05)
        torch.testing.assert_close(alone.end[0], path.end[n])  # finished images stop moving
        taken = int(path.steps_taken[n])
        if taken > 1:  # one step short of its end, the image still has its class
            before = flow_path(linear_model, image, label, steps=taken - 1, step_size=0.05)
            assert linear_model(before.end).argmax(1).item() == label.item()


def test_gradient_flow_is_exact_on_a_linear_model(linear_model, small_images):
    """A constant gradient makes every step's contribution exactly the score change."""
    target = torch.full((3,), 2)
    path = flow_path(linear_model, small_images, target, steps=5, step_size=0.4)
    expected = linear_model.fc.weight[2].reshape(3, 8, 8) * (small_images - path.end)
    torch.testing.assert_close(path.attribution, expected)


# --------------------------------------------------------------------------- settings, cost, cancelling


@pytest.mark.parametrize(
    "method, settings, words",
    [
        ("secant", {"epsilon": 0.0}, "epsilon"),
        ("secant", {"epsilon": -0.1}, "epsilon"),
        ("secant", {"epsilon": 1.5}, "epsilon"),
        ("secant", {"patch": 9}, r"patch must be an integer in \[1, 8\]"),
        ("secant", {"patch": 0}, "patch"),
        ("secant", {"direction": "up"}, "direction"),
        ("nonlinearity", {"span": 0.0}, "span"),
        ("nonlinearity", {"points": 1}, "points"),
        ("nonlinearity", {"patch": 20}, "patch"),
        ("gradient_flow", {"steps": 0}, "steps"),
        ("gradient_flow", {"step_size": 0.0}, "step_size"),
    ],
)
def test_bad_settings_name_the_parameter(method, settings, words, smooth_model, small_images):
    with pytest.raises(ValueError, match=words):
        engines.explain(smooth_model, small_images, method, **settings)


@pytest.mark.parametrize(
    "settings, words",
    [({"region": (2, 0)}, "region"), ({"points": 1}, "points"), ({"span": -0.1}, "span"), ({"patch": 9}, "patch")],
)
def test_response_curve_refuses_bad_settings(settings, words, smooth_model, small_images):
    given = {"region": (0, 0), "patch": 4, **settings}
    with pytest.raises(ValueError, match=words):
        response_curve(smooth_model, small_images[:1], **given)


def test_costs_count_the_regions_of_a_224_image():
    regions = (224 // 16) ** 2
    assert engines.method_info("secant").cost().forward == 2 * regions + 1
    assert engines.method_info("secant").cost({"direction": "darken"}).forward == regions + 1
    assert engines.method_info("nonlinearity").cost({"points": 5}).forward == 4 * regions + 1
    assert engines.method_info("gradient_flow").cost({"steps": 10}).passes == 22


def test_costs_follow_the_image_size():
    """A 64×48 image with 16-pixel patches has 4 × 3 regions."""
    assert engines.method_info("secant").cost({}, 10, (64, 48)).forward == 2 * 12 + 1


@pytest.mark.parametrize(
    "method, settings", [("secant", {"patch": 2}), ("nonlinearity", {"patch": 2}), ("gradient_flow", {"steps": 4})]
)
def test_a_cancelling_progress_callback_stops_the_run(method, settings, smooth_model, small_images):
    calls = []

    def cancel(done: int, total: int) -> None:
        calls.append((done, total))
        raise Cancelled

    with pytest.raises(Cancelled):
        engines.explain(smooth_model, small_images, method, progress=cancel, **settings)
    assert len(calls) == 1
