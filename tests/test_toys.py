"""The saturated toy (engines/models/toys.py): the gradient is blind at its image, while the secant and
nonlinearity maps (our nonlinear family, after Rosenzweig et al.) find the driving square."""

from __future__ import annotations

import pytest
import torch

import engines
from engines.models import toys


@pytest.fixture(scope="module")
def toy():
    return toys.saturated_toy()


def peak_inside(saliency: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
    """True where the map's `(H, W)` maximum lies in the box and nothing outside reaches it."""
    r0, r1, c0, c1 = box
    inside = torch.zeros_like(saliency, dtype=torch.bool)
    inside[r0:r1, c0:c1] = True
    row, col = divmod(int(saliency.argmax()), saliency.shape[1])
    return bool(inside[row, col]) and float(saliency[~inside].max()) < float(saliency.max())


def test_the_toy_is_a_two_class_loaded_model_on_a_64_pixel_image(toy):
    loaded, x = toy
    assert isinstance(loaded, engines.LoadedModel)
    assert loaded.name == loaded.spec.name == "saturated_toy" and loaded.spec.dataset == "toy"
    assert loaded.categories == ["square present", "square absent"]
    assert x.shape == (1, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert engines.predict(loaded, x).logits.argmax().item() == 0


def test_the_gradient_map_is_blank_next_to_the_secant_map(toy):
    """The model is on a plateau at x: the gradient's largest value is < 1e-4 of the secant's."""
    loaded, x = toy
    gradient = engines.explain(loaded, x, "gradient").map
    secant = engines.explain(loaded, x, "secant", patch=toys.PATCH, epsilon=0.1).map
    assert float(secant.abs().max()) > 0
    assert float(gradient.abs().max()) < 1e-4 * float(secant.abs().max())


@pytest.mark.parametrize("method", ["secant", "nonlinearity"])
def test_the_nonlinear_maps_peak_inside_the_driving_region(toy, method):
    loaded, x = toy
    result = engines.explain(loaded, x, method, patch=toys.PATCH)
    assert peak_inside(result.map[0], toys.toy_region())


def test_a_finite_darkening_of_the_region_moves_the_score_a_lot_while_its_tangent_is_flat(toy):
    loaded, x = toy
    curve = engines.response_curve(loaded, x, toys.toy_region_cell(), span=0.5, points=11, patch=toys.PATCH)
    assert curve.slope == 0 and float(curve.tangent.max() - curve.tangent.min()) == 0
    assert float(curve.scores.max() - curve.scores.min()) > 5  # the prediction flips at t = −0.5
    assert curve.nonlinearity > 5


def test_the_toy_is_frozen(toy):
    loaded, _ = toy
    parameters = list(loaded.model.parameters())
    assert parameters and not any(p.requires_grad for p in parameters)
    assert not loaded.model.training


def test_the_toy_is_deterministic(toy):
    loaded, x = toy
    again, x_again = toys.saturated_toy()
    torch.testing.assert_close(x, x_again, rtol=0, atol=0)
    for a, b in zip(loaded.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(loaded.model(x), again.model(x_again), rtol=0, atol=0)
