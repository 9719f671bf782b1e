"""One map validator: every engine function that takes a map accepts the same shapes and refuses the same ones."""

from __future__ import annotations

import pytest
import torch

import engines
from engines.core.checks import check_map


def _callers(model, x):
    mask = torch.zeros(x.shape[0], 8, 8, dtype=torch.bool)
    mask[:, 2:5, 2:5] = True
    return {
        "occlude": lambda m: engines.occlude(model, x, m, 0.2, "black"),
        "deletion_curve": lambda m: engines.deletion_curve(model, x, m, steps=2),
        "sufficiency": lambda m: engines.sufficiency(model, x, m, keep=0.3, fills=("blur",)),
        "pointing_game": lambda m: engines.pointing_game(m, mask),
        "relevance_mass": lambda m: engines.relevance_mass(m, mask),
    }


def test_a_single_map_for_a_single_image_is_accepted_everywhere(smooth_model, small_images):
    x = small_images[:1]
    for name, call in _callers(smooth_model, x).items():
        call(torch.rand(8, 8))  # no error
        call(torch.rand(1, 8, 8))


@pytest.mark.parametrize("bad, problem", [
    (torch.rand(1, 8, 8), "shape"),  # one map for three images: never broadcast
    (torch.rand(3, 8, 7), "shape"),
    (torch.full((3, 8, 8), float("nan")), "NaN or infinite"),
    ([[0.0]], "torch.Tensor"),
])
def test_every_caller_refuses_the_same_maps_with_the_same_words(bad, problem, smooth_model, small_images):
    for name, call in _callers(smooth_model, small_images).items():
        if name in ("pointing_game", "relevance_mass") and problem == "shape" and bad.shape[0] == 1:
            continue  # these take maps without images: N comes from the map and the mask
        with pytest.raises(ValueError, match=problem):
            call(bad)


def test_the_map_comes_back_detached_in_the_asked_type_on_the_images_device(small_images):
    given = torch.rand(3, 8, 8, requires_grad=True)
    checked = check_map(given, small_images, dtype=torch.float64)
    assert checked.dtype == torch.float64 and not checked.requires_grad and checked.device == small_images.device
