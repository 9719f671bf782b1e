"""Occlusion (docs/methods.md §5): the sliding-window map, the live slider and its fills."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import engines
from engines.core import passes
from engines.core.fills import OCCLUSION_FILLS, blur, fill_image, occlusion_fill
from engines.families.occlusion import occlude, occlude_box, pixel_ranks, window_starts


def target_scores(model, images, target):
    with torch.no_grad():
        return model(images)[:, target]


@pytest.mark.parametrize("fill", ["black", "white", "grey", "mean", "blur"])
def test_a_window_covering_the_whole_image_gives_the_score_drop_to_the_fill(fill, smooth_model, small_images):
    result = engines.explain(smooth_model, small_images, "occlusion", target=3, window=8, stride=1, fill=fill)
    drop = target_scores(smooth_model, small_images, 3) - target_scores(smooth_model, fill_image(small_images, fill), 3)
    torch.testing.assert_close(result.map, drop[:, None, None].expand(3, 8, 8), rtol=1e-5, atol=1e-5)


def closed_form_occlusion(weight_row, x, fill, window, stride):
    """The linear model's occlusion map, written out window by window (numpy, float64)."""
    n, c, h, w = x.shape
    contribution = (weight_row.reshape(c, h, w)[None] * (x - fill)).sum(1).double().numpy()  # (N, H, W)
    starts = lambda size: sorted(set(range(0, size - window + 1, stride)) | {size - window})
    total, covered = np.zeros((n, h, w)), np.zeros((h, w))
    for r in starts(h):
        for q in starts(w):
            total[:, r : r + window, q : q + window] += contribution[:, r : r + window, q : q + window].sum((1, 2))[
                :, None, None
            ]
            covered[r : r + window, q : q + window] += 1
    return torch.from_numpy(np.where(covered > 0, total / np.maximum(covered, 1), 0.0)).float()


@pytest.mark.parametrize("window, stride", [(3, 2), (4, 4), (2, 3), (5, 1)])
def test_on_a_linear_model_occlusion_is_the_windowed_weight_times_difference(window, stride, linear_model,
                                                                             small_images):
    """Drop = W_c · (x − fill) over the window, averaged over the windows covering each pixel."""
    result = engines.explain(linear_model, small_images, "occlusion", target=1, window=window, stride=stride,
                             fill="grey")
    expected = closed_form_occlusion(linear_model.fc.weight[1], small_images, 0.5, window, stride)
    torch.testing.assert_close(result.map, expected, rtol=1e-4, atol=1e-5)


def test_pixels_covered_by_no_window_are_zero(linear_model, small_images):
    result = engines.explain(linear_model, small_images, "occlusion", window=2, stride=3)
    assert (result.map[:, [2, 5], :] == 0).all() and (result.map[:, :, [2, 5]] == 0).all()
    assert (result.map[:, 0, 0] != 0).all()


@pytest.mark.parametrize(
    "size, window, stride, starts",
    [(224, 32, 16, list(range(0, 193, 16))), (10, 4, 3, [0, 3, 6]), (10, 4, 4, [0, 4, 6]), (8, 8, 5, [0])],
)
def test_window_grid_reaches_the_image_edges(size, window, stride, starts):
    assert window_starts(size, window, stride) == starts


def test_cost_is_one_forward_pass_per_window():
    info = engines.method_info("occlusion")
    assert info.cost().forward == 13 * 13 + 1 and info.cost().backward == 0
    assert info.cost({"window": 224}).forward == 1 + 1  # one window, and the clean pass
    assert info.cost({"window": 32, "stride": 16}, 10, (64, 96)).forward == 3 * 5 + 1


def test_occlusion_map_is_signed(smooth_model, small_images):
    result = engines.explain(smooth_model, small_images, "occlusion", window=4, stride=2)
    assert result.signed and result.attribution is None
    assert (result.map < 0).any() and (result.map > 0).any()


@pytest.mark.parametrize(
    "settings, words",
    [({"window": 9}, "window must be at most"), ({"stride": 0}, "stride"), ({"fill": "pink"}, "fill"),
     ({"window": 0}, "window"), ({"step": 2.0}, "step")],
)
def test_bad_occlusion_settings_name_the_parameter_and_its_range(settings, words, smooth_model, small_images):
    with pytest.raises(ValueError, match=words):
        engines.explain(smooth_model, small_images, "occlusion", **settings)


def test_a_cancelling_progress_callback_stops_occlusion(smooth_model, small_images):
    def cancel(done, total):
        raise passes.Cancelled()

    with pytest.raises(passes.Cancelled):
        engines.explain(smooth_model, small_images, "occlusion", window=4, stride=2, progress=cancel)


# --------------------------------------------------------------------------- fills


@pytest.mark.parametrize("kind, value", [("black", 0.0), ("white", 1.0), ("grey", 0.5)])
def test_constant_fills_have_their_pixel_value(kind, value, small_images):
    assert (occlusion_fill(small_images, kind) == value).all()


def test_mean_fill_is_each_images_mean_colour(small_images):
    expected = small_images.double().mean(dim=(2, 3)).float()  # (N, C)
    torch.testing.assert_close(occlusion_fill(small_images, "mean")[:, :, 3, 5], expected)


def test_blur_fill_is_the_baseline_blur(small_images):
    torch.testing.assert_close(occlusion_fill(small_images, "blur"), blur(small_images))


@pytest.mark.parametrize("kind, sign", [("darker", -1), ("brighter", 1)])
def test_darker_and_brighter_move_by_the_step_and_clip(kind, sign):
    x = torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0]).reshape(1, 1, 1, 5)
    expected = (x + sign * 0.1).clamp(0, 1)
    torch.testing.assert_close(occlusion_fill(x, kind, step=0.1), expected)


@pytest.mark.parametrize("kind", ["noise", "gaussian_noise"])
def test_noise_fills_are_in_range_deterministic_for_a_seed_and_vary_across_seeds(kind, small_images):
    a = occlusion_fill(small_images, kind, seed=3)
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, occlusion_fill(small_images, kind, seed=3))
    assert not torch.equal(a, occlusion_fill(small_images, kind, seed=4))


def test_noise_is_the_same_for_an_image_alone_or_in_a_batch(small_images):
    torch.testing.assert_close(occlusion_fill(small_images, "noise", seed=1)[2],
                               occlusion_fill(small_images[2:], "noise", seed=1)[0])


def test_uniform_noise_is_uniform():
    x = torch.zeros(1, 3, 64, 64)
    noise = occlusion_fill(x, "noise", seed=0)
    assert abs(noise.mean().item() - 0.5) < 0.01 and abs(noise.var().item() - 1 / 12) < 0.005


def test_integrated_gradients_baselines_are_unchanged(small_images):
    """`fill_image` keeps its kinds; the occlusion fills extend it."""
    assert OCCLUSION_FILLS[:5] == ("black", "white", "grey", "mean", "blur")
    with pytest.raises(ValueError, match="fill"):
        fill_image(small_images, "noise")


# --------------------------------------------------------------------------- live occlusion


@pytest.fixture
def distinct_map() -> torch.Tensor:
    """Three 8×8 maps holding every value 1 … 64 once, in a random order."""
    generator = torch.Generator().manual_seed(5)
    return torch.stack([torch.randperm(64, generator=generator).float().reshape(8, 8) + 1 for _ in range(3)])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_occlude_deletes_exactly_the_most_salient_fraction(fraction, smooth_model, small_images, distinct_map):
    result = occlude(smooth_model, small_images, distinct_map, fraction)
    k = int(np.floor(fraction * 64))
    for n in range(3):
        top = np.argsort(-distinct_map[n].numpy().ravel())[:k]
        expected = np.zeros(64, dtype=bool)
        expected[top] = True
        assert np.array_equal(result.mask[n].numpy().ravel(), expected)


def test_occlude_never_deletes_zero_saliency_pixels(smooth_model, small_images, distinct_map):
    sparse = torch.where(distinct_map > 40, distinct_map, torch.zeros(()))  # 24 non-zero pixels
    half = occlude(smooth_model, small_images, sparse, 0.5)
    assert half.mask.flatten(1).sum(1).tolist() == [24, 24, 24]
    assert not half.mask[sparse == 0].any()


def test_fraction_one_deletes_every_non_zero_pixel(smooth_model, small_images, distinct_map):
    signed = distinct_map - 20  # one zero per map, negatives included
    result = occlude(smooth_model, small_images, signed, 1.0)
    assert torch.equal(result.mask, signed != 0)


def test_fraction_zero_gives_the_clean_logits(smooth_model, small_images, distinct_map):
    result = occlude(smooth_model, small_images, distinct_map, 0.0)
    assert not result.mask.any()
    torch.testing.assert_close(result.image, small_images)
    torch.testing.assert_close(result.logits, smooth_model(small_images), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.probabilities, smooth_model(small_images).softmax(1), rtol=1e-5, atol=1e-6)


def test_ties_are_broken_in_raster_order(smooth_model, small_images):
    flat = torch.ones(3, 8, 8)
    result = occlude(smooth_model, small_images, flat, 0.25)
    assert result.mask[:, :2].all() and not result.mask[:, 2:].any()
    torch.testing.assert_close(pixel_ranks(flat)[0], torch.arange(64))


@pytest.mark.parametrize("fill", OCCLUSION_FILLS)
def test_occluded_pixels_take_the_fill_and_the_rest_is_untouched(fill, smooth_model, small_images, distinct_map):
    result = occlude(smooth_model, small_images, distinct_map, 0.3, fill=fill, step=0.2, seed=7)
    expected = occlusion_fill(small_images, fill, step=0.2, seed=7)
    inside = result.mask[:, None].expand_as(small_images)
    torch.testing.assert_close(result.image[inside], expected[inside])
    torch.testing.assert_close(result.image[~inside], small_images[~inside])


def test_occlude_runs_exactly_one_forward_pass(smooth_model, small_images, distinct_map, monkeypatch):
    calls = []
    real_forward = passes.forward
    monkeypatch.setattr(passes, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    monkeypatch.setattr(passes, "forward_with_graph", lambda *a, **k: pytest.fail("a map was computed"))
    monkeypatch.setattr(passes, "forward_points", lambda *a, **k: pytest.fail("many passes ran"))
    occlude(smooth_model, small_images, distinct_map, 0.4)
    occlude(smooth_model, small_images, distinct_map, 0.4, target=2)
    assert len(calls) == 2


def test_target_defaults_to_the_clean_prediction(smooth_model, small_images, distinct_map):
    result = occlude(smooth_model, small_images, distinct_map, 0.8, fill="white")
    assert torch.equal(result.target, smooth_model(small_images).argmax(1))
    assert occlude(smooth_model, small_images, distinct_map, 0.8, target=4).target.tolist() == [4, 4, 4]


def test_occlude_accepts_a_loaded_model(smooth_model, small_images, distinct_map):
    loaded = SimpleNamespace(model=smooth_model)  # what LoadedModel offers: `.model`
    a = occlude(loaded, small_images, distinct_map, 0.5)
    b = occlude(smooth_model, small_images, distinct_map, 0.5)
    torch.testing.assert_close(a.logits, b.logits)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "half"])
def test_fraction_outside_zero_one_is_refused(fraction, smooth_model, small_images, distinct_map):
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\]"):
        occlude(smooth_model, small_images, distinct_map, fraction)


def test_unknown_fill_is_refused_before_any_pass(smooth_model, small_images, distinct_map, monkeypatch):
    monkeypatch.setattr(passes, "forward", lambda *a, **k: pytest.fail("a pass ran"))
    with pytest.raises(ValueError, match="fill must be one of"):
        occlude(smooth_model, small_images, distinct_map, 0.5, fill="pink")


def test_a_map_of_the_wrong_shape_is_refused(smooth_model, small_images):
    with pytest.raises(ValueError, match="saliency_map"):
        occlude(smooth_model, small_images, torch.rand(3, 4, 4), 0.5)


def test_occlude_box_fills_exactly_the_box(smooth_model, small_images):
    result = occlude_box(smooth_model, small_images, (1, 4, 2, 7), fill="white")
    expected = torch.zeros(3, 8, 8, dtype=torch.bool)
    expected[:, 1:4, 2:7] = True
    assert torch.equal(result.mask, expected)
    assert (result.image[:, :, 1:4, 2:7] == 1).all()
    torch.testing.assert_close(result.logits, smooth_model(result.image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("box", [(0, 9, 0, 4), (3, 3, 0, 4), (-1, 2, 0, 4), (0, 2, 0)])
def test_a_box_outside_the_image_is_refused(box, smooth_model, small_images):
    with pytest.raises(ValueError, match="box"):
        occlude_box(smooth_model, small_images, box)
