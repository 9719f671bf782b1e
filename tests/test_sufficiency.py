"""Salient-input reconstruction (docs/methods.md §4): is the salient region sufficient for the class?"""

from __future__ import annotations

import pytest
import torch

from engines.models.catalogue import freeze
from engines.evaluation.sufficiency import FILLS, harmonic_inpaint, kept_pixels, sufficiency
from helpers import count_forward_points
from test_masks import SIZE, PlantedModel, checkerboard


@pytest.fixture
def planted():
    return freeze(PlantedModel())


@pytest.fixture
def textured() -> torch.Tensor:
    return (0.5 + 0.4 * checkerboard()).expand(1, 3, SIZE, SIZE).clone()


@pytest.fixture
def others() -> torch.Tensor:
    """Smooth images without the texture the planted model looks for."""
    generator = torch.Generator().manual_seed(3)
    coarse = torch.rand((3, 3, 4, 4), generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def test_keeping_every_pixel_keeps_the_class_for_every_fill(smooth_model, small_images):
    others = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    saliency = torch.rand((3, 8, 8), generator=torch.Generator().manual_seed(1))
    report = sufficiency(smooth_model, small_images, saliency, keep=1.0, others=others, repeats=3)
    assert set(report.results) == set(FILLS) and not report.skipped
    assert report.fractions == {fill: 1.0 for fill in FILLS}
    for result in report.results.values():
        torch.testing.assert_close(result.images, small_images.expand_as(result.images))


def test_a_map_that_ranks_the_planted_region_first_is_sufficient(planted, textured, others):
    keep = planted.region.mean().item()  # exactly region A's pixels are kept
    report = sufficiency(planted, textured, planted.region, keep=keep, others=others)
    assert report.original.tolist() == [0]
    assert torch.equal(report.kept[0], planted.region.bool())
    assert report.fractions == {fill: 1.0 for fill in FILLS}


def test_a_map_that_ranks_the_complement_first_is_not_sufficient(planted, textured, others):
    keep = 1 - planted.region.mean().item()  # everything but region A is kept
    report = sufficiency(planted, textured, 1 - planted.region, keep=keep, others=others)
    for fill, fraction in report.fractions.items():
        assert fraction <= 0.25, fill


def test_the_most_salient_pixels_are_kept():
    saliency = torch.arange(20.0).reshape(1, 4, 5)
    kept = kept_pixels(saliency, 0.3)  # ⌈0.3 · 20⌉ = 6 pixels: the values 14..19
    assert kept.sum().item() == 6
    assert torch.equal(kept, saliency >= 14)


def test_all_refills_go_through_the_model_in_one_batched_call(smooth_model, small_images, monkeypatch):
    calls = count_forward_points(monkeypatch)
    others = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    sufficiency(smooth_model, small_images, torch.rand(3, 8, 8), keep=0.5, others=others, repeats=4)
    assert calls == [1 + 1 + 1 + 4 + 1 + 2]  # clean, blur, mean, 4 noise, inpaint, 2 pastes


def test_paste_puts_the_kept_region_on_each_other_image(smooth_model, small_images):
    others = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    report = sufficiency(smooth_model, small_images, torch.rand(3, 8, 8), keep=0.4, fills=("paste",), others=others)
    images = report.results["paste"].images  # (2, 3, C, H, W)
    kept = report.kept[None, :, None].expand_as(images)
    assert images.shape == (2, 3, 3, 8, 8)
    torch.testing.assert_close(images[kept], small_images[None].expand_as(images)[kept])
    torch.testing.assert_close(images[~kept], others[:, None].expand_as(images)[~kept])


def test_paste_without_other_images_is_skipped_and_says_why(smooth_model, small_images):
    report = sufficiency(smooth_model, small_images, torch.rand(3, 8, 8), fills=("mean", "paste"))
    assert set(report.results) == {"mean"} and "paste" in report.skipped


def test_noise_refills_differ_by_seed(smooth_model, small_images):
    report = sufficiency(smooth_model, small_images, torch.rand(3, 8, 8), fills=("noise",), repeats=3, keep=0.5)
    images = report.results["noise"].images
    assert images.shape == (3, 3, 3, 8, 8)
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])


def test_a_given_target_is_the_class_to_keep(smooth_model, small_images):
    report = sufficiency(smooth_model, small_images, torch.rand(3, 8, 8), keep=1.0, fills=("mean",), target=5)
    assert report.target.tolist() == [5, 5, 5]
    expected = (report.original == 5).float()
    torch.testing.assert_close(report.results["mean"].fractions, expected)


def test_harmonic_inpainting_restores_a_linear_ramp():
    """A linear function is harmonic: filling a hole from its border must give it back."""
    ramp = torch.linspace(0.1, 0.9, 48)
    image = (ramp[None, :] * 0.5 + ramp[:, None] * 0.5).expand(1, 3, 48, 48).clone()
    known = torch.ones((1, 1, 48, 48), dtype=torch.bool)
    known[..., 12:36, 16:40] = False
    filled = harmonic_inpaint(image, known)
    torch.testing.assert_close(filled[known.expand_as(image)], image[known.expand_as(image)], rtol=0, atol=0)
    torch.testing.assert_close(filled, image, rtol=0, atol=2e-3)


def test_harmonic_inpainting_solves_the_discrete_laplace_equation():
    """Oracle: a dense linear solve of 'every unknown pixel is the mean of its four neighbours
    (edges replicated), every known pixel fixed'."""
    n = 12
    image = torch.rand((1, 1, n, n), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    known = torch.zeros((1, 1, n, n), dtype=torch.bool)
    known[..., :3, :] = True
    known[..., 7, 8] = True
    neighbours = torch.zeros(n * n, n * n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                neighbours[i * n + j, min(max(a, 0), n - 1) * n + min(max(b, 0), n - 1)] += 0.25
    fixed = known.flatten()
    system = torch.eye(n * n, dtype=torch.float64) - torch.where(fixed[:, None], 0.0, neighbours)
    exact = torch.linalg.solve(system, torch.where(fixed, image.flatten(), 0.0)).reshape(1, 1, n, n)
    torch.testing.assert_close(harmonic_inpaint(image, known), exact, rtol=0, atol=1e-5)


def test_harmonic_inpainting_of_a_constant_image_is_constant():
    image = torch.full((2, 3, 20, 30), 0.3)
    known = torch.rand((2, 1, 20, 30), generator=torch.Generator().manual_seed(0)) < 0.1
    torch.testing.assert_close(harmonic_inpaint(image, known), image)


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"keep": 0.0}, "keep"),
        ({"keep": 1.5}, "keep"),
        ({"keep": -0.2}, "keep"),
        ({"fills": ("blur", "gan")}, "fills"),
        ({"fills": ()}, "fills"),
        ({"repeats": 0}, "repeats"),
        ({"saliency_map": torch.rand(3, 4, 4)}, "saliency_map"),
        ({"others": torch.rand(2, 3, 4, 4)}, "others"),
    ],
)
def test_bad_arguments_name_the_parameter(arguments, words, smooth_model, small_images):
    arguments = {"saliency_map": torch.rand(3, 8, 8), **arguments}
    with pytest.raises(ValueError, match=words):
        sufficiency(smooth_model, small_images, **arguments)
