"""Curves and checks that judge maps (docs/methods.md §2, §5, §6), against Quantus, scipy and
scikit-image where they define the same thing, and against constructed models otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import engines
from engines.evaluation import metrics
from engines.core import passes
from engines.core.fills import blur
from engines.evaluation.metrics import (
    PAPER_FRACTIONS,
    allegiance_curve,
    deletion_curve,
    insertion_curve,
    pointing_game,
    randomisation_check,
    randomisation_steps,
    relevance_mass,
    strictly_above,
)
from engines.models.catalogue import freeze
from helpers import snapshot


class RegionModel(nn.Module):
    """Two classes; class 0's logit is 10 × (mean of the top-left 4×4 block) − 5: only that block matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = 10 * x[:, :, :4, :4].mean(dim=(1, 2, 3)) - 5
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


class BrightnessModel(nn.Module):
    """Two classes: "bright" (0) when the mean pixel value exceeds 0.5, else "dark" (1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = 40 * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([logit, -logit], dim=1)


@pytest.fixture
def region_case():
    """An image bright in the block that decides the class, a map ranking that block first."""
    x = 0.1 + 0.3 * torch.rand((1, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    x[:, :, :4, :4] = 0.9
    good = torch.zeros(1, 8, 8)
    good[:, :4, :4] = 1.0 + torch.arange(16.0).reshape(4, 4) / 100
    return RegionModel(), x, good


def probability(model, images, target):
    with torch.no_grad():
        return model(images).softmax(1)[:, target]


# --------------------------------------------------------------------------- deletion / insertion


def test_a_map_ranking_the_important_pixels_first_has_the_lower_deletion_auc(region_case):
    model, x, good = region_case
    assert deletion_curve(model, x, good, steps=16).auc < deletion_curve(model, x, -good, steps=16).auc - 0.3


def test_a_map_ranking_the_important_pixels_first_has_the_higher_insertion_auc(region_case):
    model, x, good = region_case
    better = insertion_curve(model, x, good, steps=16, start="black").auc
    assert better > insertion_curve(model, x, -good, steps=16, start="black").auc + 0.3


def test_deletion_runs_from_the_clean_image_to_the_fill(smooth_model, small_images):
    curve = deletion_curve(smooth_model, small_images, torch.rand(3, 8, 8), target=2, steps=8, fill="white")
    torch.testing.assert_close(curve.fractions, torch.linspace(0, 1, 9, dtype=torch.float64))
    torch.testing.assert_close(curve.values[:, 0], probability(smooth_model, small_images, 2))
    torch.testing.assert_close(curve.values[:, -1], probability(smooth_model, torch.ones_like(small_images), 2))


def test_insertion_runs_from_the_blurred_image_to_the_clean_one(smooth_model, small_images):
    curve = insertion_curve(smooth_model, small_images, torch.rand(3, 8, 8), steps=8)
    predicted = smooth_model(small_images).argmax(1)
    assert torch.equal(curve.target, predicted)
    clean = smooth_model(small_images).softmax(1).gather(1, predicted[:, None])[:, 0]
    start = smooth_model(blur(small_images)).softmax(1).gather(1, predicted[:, None])[:, 0]
    torch.testing.assert_close(curve.values[:, -1], clean.detach())
    torch.testing.assert_close(curve.values[:, 0], start.detach())


def test_curve_auc_is_the_trapezoid_rule_over_the_fractions(smooth_model, small_images):
    curve = deletion_curve(smooth_model, small_images, torch.rand(3, 8, 8), steps=10)
    expected = [np.trapezoid(v, curve.fractions.numpy()) for v in curve.values.double().numpy()]
    np.testing.assert_allclose(curve.auc.numpy(), expected, rtol=1e-12)


def test_deletion_curve_matches_quantus_pixel_flipping(smooth_model):
    """Quantus's PixelFlipping with a 0 baseline is our black deletion curve after each step."""
    quantus = pytest.importorskip("quantus")
    generator = torch.Generator().manual_seed(1)
    x = 0.1 + 0.8 * torch.rand((3, 3, 12, 12), generator=generator)
    maps = torch.randn((3, 12, 12), generator=generator)  # distinct values: no ties to break
    target = torch.tensor([0, 2, 4])
    ours = deletion_curve(smooth_model, x, maps, target=target, steps=36, fill="black")  # 4 pixels per step
    metric = quantus.PixelFlipping(features_in_step=3 * 4, perturb_baseline=0.0, abs=False, normalise=False,
                                   disable_warnings=True)
    theirs = metric(model=smooth_model, x_batch=x.numpy(), y_batch=target.numpy(),
                    a_batch=maps[:, None].expand(3, 3, 12, 12).numpy().copy(), softmax=True, device="cpu",
                    channel_first=True)
    np.testing.assert_allclose(np.array(theirs), ours.values[:, 1:].numpy(), rtol=1e-5, atol=1e-6)


def test_deletion_is_one_batched_pass(smooth_model, small_images, monkeypatch):
    calls = []
    real = passes.forward_points
    monkeypatch.setattr(passes, "forward_points", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(passes, "forward", lambda *a, **k: pytest.fail("an extra pass ran"))
    deletion_curve(smooth_model, small_images, torch.rand(3, 8, 8), steps=12)
    assert calls == [13]


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda m, x, s: deletion_curve(m, x, s, steps=0), "steps"),
        (lambda m, x, s: deletion_curve(m, x, s, fill="pink"), "fill must be one of"),
        (lambda m, x, s: insertion_curve(m, x, s, start="pink"), "start must be one of"),
        (lambda m, x, s: deletion_curve(m, x, s[:, :4]), "saliency_map"),
        (lambda m, x, s: allegiance_curve(m, x, s, fill="grey ish"), "fill must be one of"),
        (lambda m, x, s: allegiance_curve(m, x, s, fractions=(0.0, 0.5, 1.2)), r"fractions must be .* \[0, 1\]"),
        (lambda m, x, s: allegiance_curve(m, x, s, fractions=(0.5, 0.1)), "ascending"),
    ],
)
def test_bad_curve_inputs_name_the_parameter(call, words, smooth_model, small_images, monkeypatch):
    monkeypatch.setattr(passes, "forward_points", lambda *a, **k: pytest.fail("a pass ran"))
    with pytest.raises(ValueError, match=words):
        call(smooth_model, small_images, torch.rand(3, 8, 8))


@pytest.mark.parametrize("curve", [deletion_curve, insertion_curve, allegiance_curve])
def test_a_cancelling_progress_callback_stops_a_curve(curve, smooth_model, small_images):
    def cancel(done, total):
        raise passes.Cancelled()

    with pytest.raises(passes.Cancelled):
        curve(smooth_model, small_images, torch.rand(3, 8, 8), progress=cancel)


# --------------------------------------------------------------------------- allegiance


def test_allegiance_uses_the_papers_fractions_and_starts_at_one(smooth_model, small_images):
    curve = allegiance_curve(smooth_model, small_images, torch.rand(3, 8, 8))
    assert curve.fractions.tolist() == [0, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert (curve.values[:, 0] == 1).all()
    assert set(curve.values.flatten().tolist()) <= {0.0, 1.0}


def test_allegiance_auc_is_numpy_trapezoid_over_the_uneven_fractions(smooth_model, small_images):
    curve = allegiance_curve(smooth_model, small_images, torch.rand(3, 8, 8), fill="white")
    expected = [np.trapezoid(v, PAPER_FRACTIONS) for v in curve.values.numpy()]
    np.testing.assert_allclose(curve.auc.numpy(), expected, rtol=1e-12)


def test_a_map_that_is_all_zero_deletes_nothing_and_scores_the_maximum(smooth_model, small_images):
    curve = allegiance_curve(smooth_model, small_images, torch.zeros(3, 8, 8))
    assert (curve.values == 1).all() and (curve.deleted == 0).all()
    np.testing.assert_allclose(curve.auc.numpy(), 0.9)


def brightness_allegiance(x, saliency, value):
    """The protocol written out for one image of BrightnessModel: does the image stay bright?"""
    order = np.argsort(-saliency.ravel(), kind="stable")
    kept = []
    for p in PAPER_FRACTIONS:
        k = int(np.floor(round(p * saliency.size, 9)))
        image = x.reshape(3, -1).copy()
        image[:, order[:k]] = value
        kept.append(float(image.mean() > 0.5))
    return kept


def test_black_deletion_flips_a_brightness_model_and_white_deletion_does_not(small_images):
    """Deleting the brightest pixels to black darkens the image until it turns "dark"; to white,
    the image only gets brighter and keeps its class."""
    x = (small_images[:1] + 0.15).clamp(0, 1)  # a bright image (mean > 0.5)
    saliency = x.mean(1) + torch.arange(64.0).reshape(1, 8, 8) * 1e-6  # brightest first, no ties
    model = BrightnessModel()
    black = allegiance_curve(model, x, saliency, fill="black")
    white = allegiance_curve(model, x, saliency, fill="white")
    assert black.values[0].tolist() == brightness_allegiance(x[0].numpy(), saliency[0].numpy(), 0.0)
    assert white.values[0].tolist() == [1.0] * 13
    assert black.auc.item() < white.auc.item() == pytest.approx(0.9)


def test_strictly_above_deletes_exactly_floor_p_hw_pixels_when_values_are_distinct():
    saliency = torch.randperm(100, generator=torch.Generator().manual_seed(0)).float().reshape(1, 10, 10) + 1
    fractions = torch.tensor([0.0, 0.03, 0.07, 0.29, 0.57, 0.9, 1.0], dtype=torch.float64)
    masks = strictly_above(saliency, fractions)
    assert masks.sum(dim=2)[:, 0].tolist() == [0, 3, 7, 29, 57, 90, 100]
    for mask, p in zip(masks, fractions.tolist()):
        top = np.argsort(-saliency.numpy().ravel())[: int(round(p * 100))]
        assert set(np.flatnonzero(mask[0].numpy())) == set(top)


def test_strictly_above_keeps_a_tied_group_straddling_the_cut_and_never_deletes_zeros():
    saliency = torch.tensor([[5.0, 4.0, 3.0, 3.0, 3.0, 2.0, 0.0, 0.0, 0.0, -1.0]]).reshape(1, 1, 10)
    fractions = torch.tensor([0.1, 0.2, 0.3, 0.5, 0.6, 0.9, 1.0], dtype=torch.float64)
    counts = strictly_above(saliency, fractions).sum(dim=2)[:, 0].tolist()
    # k = 1, 2: exact; k = 3, 4 cut through the three 3s: they are kept; k = 5: all three go;
    # k = 6, 9: the zeros are never deleted; k = 10: every non-zero pixel, the negative one too.
    assert counts == [1, 2, 2, 5, 6, 6, 7]


def test_allegiance_with_a_target_compares_with_that_class(small_images):
    x = (small_images[:1] + 0.15).clamp(0, 1)
    curve = allegiance_curve(BrightnessModel(), x, x.mean(1), fill="black", target=1)
    assert curve.values[0, 0] == 0 and curve.values[0, -1] == 1


# --------------------------------------------------------------------------- localisation


@pytest.fixture
def maps_and_masks():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn((6, 16, 16), generator=generator)
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 3:12] = True
    maps[0, 5, 5] = 10.0  # a sure hit
    maps[1, 0, 0] = 10.0  # a sure miss
    return maps, masks


def test_pointing_game_matches_quantus(maps_and_masks):
    quantus = pytest.importorskip("quantus")
    maps, masks = maps_and_masks
    theirs = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(
        model=None, x_batch=np.zeros((6, 3, 16, 16), np.float32), y_batch=np.zeros(6, int),
        a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy().astype(np.float32),
    )
    assert pointing_game(maps, masks).tolist() == [bool(v) for v in theirs]
    assert pointing_game(maps, masks)[:2].tolist() == [True, False]


def test_relevance_mass_matches_quantus_on_the_positive_part(maps_and_masks):
    """Quantus's RelevanceMassAccuracy on max(map, 0) is our relevance mass."""
    quantus = pytest.importorskip("quantus")
    maps, masks = maps_and_masks
    theirs = quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True)(
        model=None, x_batch=np.zeros((6, 3, 16, 16), np.float32), y_batch=np.zeros(6, int),
        a_batch=maps.clamp(min=0)[:, None].numpy(), s_batch=masks[:, None].numpy().astype(np.float32),
    )
    np.testing.assert_allclose(relevance_mass(maps, masks).numpy(), theirs, rtol=1e-5)


def test_relevance_mass_counts_only_positive_saliency():
    saliency = torch.tensor([[[3.0, -5.0], [1.0, 0.0]]])
    mask = torch.tensor([[True, True], [False, False]])
    assert relevance_mass(saliency, mask).tolist() == [0.75]
    assert torch.isnan(relevance_mass(-saliency.abs(), mask)).all()


def test_pointing_game_tolerance_and_constant_maps():
    saliency = torch.zeros(1, 9, 9)
    saliency[0, 4, 4] = 1.0
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 6] = True  # two pixels to the right of the peak
    assert pointing_game(saliency, mask).tolist() == [False]
    assert pointing_game(saliency, mask, tolerance=2).tolist() == [True]
    assert pointing_game(torch.ones(1, 9, 9), mask).tolist() == [False]  # a constant map points nowhere


def test_the_tolerant_pointing_game_hits_within_the_euclidean_radius_of_a_hand_made_mask():
    """A peak at distance d from the mask is a hit exactly when d <= tolerance (Euclidean, not a square)."""
    mask = torch.zeros(31, 31, dtype=torch.bool)
    mask[10:21, 10:21] = True  # an 11×11 square
    for (row, col), distance in [((15, 24), 4.0), ((15, 25), 5.0), ((23, 23), 18**0.5), ((24, 24), 32**0.5)]:
        saliency = torch.zeros(1, 31, 31)
        saliency[0, row, col] = 1.0
        for tolerance in (3, 4, 5, 6):
            assert pointing_game(saliency, mask, tolerance=tolerance).item() == (distance <= tolerance), (row, col, tolerance)


def test_the_pointing_tolerance_is_fifteen_pixels_at_224_scaled_with_the_image():
    from engines.evaluation.metrics import pointing_tolerance

    assert pointing_tolerance((224, 224)) == 15
    assert pointing_tolerance((448, 300)) == 20
    assert pointing_tolerance((64, 64)) == 4


def test_an_empty_mask_is_refused():
    with pytest.raises(ValueError, match="mask"):
        relevance_mass(torch.rand(2, 4, 4), torch.zeros(2, 4, 4))


# --------------------------------------------------------------------------- similarity of maps


def test_spearman_matches_quantus_and_scipy_with_ties():
    quantus = pytest.importorskip("quantus")
    generator = torch.Generator().manual_seed(3)
    a = torch.rand((4, 12, 12), generator=generator).round(decimals=1)  # many ties
    b = (a + 0.3 * torch.rand((4, 12, 12), generator=generator)).round(decimals=1)
    theirs = quantus.functions.similarity_func.correlation_spearman(a.flatten(1).numpy(), b.flatten(1).numpy(),
                                                                    batched=True)
    np.testing.assert_allclose(metrics.spearman(a, b).numpy(), theirs, rtol=1e-10)


def test_ssim_matches_scikit_image_gaussian_ssim():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    generator = torch.Generator().manual_seed(4)
    a = torch.rand((3, 20, 24), generator=generator)
    b = (a + 0.4 * torch.rand((3, 20, 24), generator=generator)).clamp(0, 1)
    theirs = [
        skimage_metrics.structural_similarity(u, v, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=1.0)
        for u, v in zip(a.double().numpy(), b.double().numpy())
    ]
    np.testing.assert_allclose(metrics.ssim(a, b).numpy(), theirs, rtol=1e-10)


def test_ssim_of_a_map_with_itself_is_one():
    a = torch.rand(2, 8, 8)
    np.testing.assert_allclose(metrics.ssim(a, a).numpy(), 1.0)


# --------------------------------------------------------------------------- randomisation


def test_randomisation_leaves_the_shared_model_bit_identical(smooth_model, small_images):
    before = snapshot(smooth_model)
    rng = torch.get_rng_state()
    randomisation_check(smooth_model, small_images, "gradient")
    after = snapshot(smooth_model)
    for key in ("requires_grad", "grads", "training", "hooks"):
        assert before[key] == after[key], key
    for group in ("params", "buffers"):
        for name, value in before[group].items():
            assert torch.equal(value, after[group][name]), name
    assert torch.equal(rng, torch.get_rng_state()), "the global RNG state changed"


def test_the_gradient_map_decorrelates_as_layers_are_randomised(smooth_model, small_images):
    steps = randomisation_check(smooth_model, small_images, "gradient")
    assert [s.layers for s in steps] == [("body.7",), ("body.3",), ("body.1",), ("body.0",)]
    assert steps[-1].spearman.abs().max() < 0.5
    assert steps[-1].ssim.max() < 0.5


def test_a_map_that_ignores_the_model_stays_identical_under_randomisation(smooth_model, small_images, monkeypatch):
    """The check flags a model-independent map (here the image's brightness, an edge-detector-like
    input map computed without the model) with similarity 1 at every step."""
    real = metrics.explain

    def brightness(model, x, method, target=None, **settings):
        result = real(model, x, method, target, **settings)
        result.map = x.mean(1)
        return result

    monkeypatch.setattr(metrics, "explain", brightness)
    for step in randomisation_check(smooth_model, small_images, "gradient"):
        np.testing.assert_allclose(step.spearman.numpy(), 1.0, rtol=1e-6)
        np.testing.assert_allclose(step.ssim.numpy(), 1.0, rtol=1e-6)


def test_maps_are_explained_on_a_frozen_copy_for_the_original_target(smooth_model, small_images, monkeypatch):
    seen = []
    real = metrics.explain

    def spy(model, x, method, target=None, **settings):
        seen.append((model, all(not p.requires_grad for p in model.parameters()), target))
        return real(model, x, method, target, **settings)

    monkeypatch.setattr(metrics, "explain", spy)
    randomisation_check(smooth_model, small_images, "gradient")
    predicted = smooth_model(small_images).argmax(1)
    assert seen[0][0] is smooth_model
    assert all(model is not smooth_model and frozen and torch.equal(target, predicted)
               for model, frozen, target in seen[1:])


def test_randomisation_is_deterministic_for_a_seed(smooth_model, small_images):
    a = randomisation_check(smooth_model, small_images, "gradient", seed=1)
    b = randomisation_check(smooth_model, small_images, "gradient", seed=1)
    c = randomisation_check(smooth_model, small_images, "gradient", seed=2)
    torch.testing.assert_close(a[-1].map, b[-1].map)
    assert not torch.allclose(a[0].map, c[0].map)


def _fixed_reset(self):
    """A reset whose weights do not depend on any RNG: Quantus and we must then agree exactly."""
    generator = torch.Generator().manual_seed(self.weight.numel())
    with torch.no_grad():
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator) * 0.5)
        self.bias.copy_(torch.randn(self.bias.shape, generator=generator) * 0.1)


class FixedConv(nn.Conv2d):
    reset_parameters = _fixed_reset


class FixedLinear(nn.Linear):
    reset_parameters = _fixed_reset


class FixedResetNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = FixedConv(3, 6, 3, padding=1)
        self.conv2 = FixedConv(6, 6, 3, padding=1)
        self.fc = FixedLinear(24, 5)
        with torch.no_grad():  # trained-looking weights, not the fixed reset
            for p in self.parameters():
                p.normal_(0, 0.3)

    def forward(self, x):
        h = nn.functional.softplus(self.conv2(nn.functional.softplus(self.conv1(x), beta=3)), beta=3)
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


def test_randomisation_spearman_matches_quantus_mprt():
    """Quantus's cascading MPRT (top-down, |map|, Spearman) on the same explanations: with resets
    that need no RNG, both randomise identically, so every layer's correlation must agree."""
    quantus = pytest.importorskip("quantus")
    model = freeze(FixedResetNet())
    x = torch.rand((3, 3, 12, 12), generator=torch.Generator().manual_seed(0))
    ours = randomisation_check(model, x, "gradient")

    def explain_func(model, inputs, targets, **kwargs):
        result = engines.explain(model, torch.as_tensor(inputs), "gradient", target=torch.as_tensor(targets))
        return result.map[:, None].numpy()

    predicted = engines.predict(model, x).logits.argmax(1).numpy()
    theirs = quantus.MPRT(layer_order="top_down", disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=predicted, a_batch=None, explain_func=explain_func,
        explain_func_kwargs={}, device="cpu",
    )
    assert [s.layers[0] for s in ours] == [k for k in theirs if k != "original"]
    for step in ours:
        np.testing.assert_allclose(step.spearman.numpy(), theirs[step.layers[0]], rtol=1e-5, atol=1e-6)


def test_deep_models_are_grouped_into_at_most_ten_steps_from_the_output_down():
    deep = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(15)], nn.Linear(4, 2))
    steps = randomisation_steps(deep)
    everything = metrics.parameterised_modules(deep)
    assert len(steps) == 10
    assert steps[0] == (("15",), ("15",))
    assert [m for _, modules in steps for m in modules] == everything  # each module once, top down
    assert everything[:3] == ["15", "14.1", "14.0"]


def test_efficientnet_is_grouped_by_blocks():
    efficientnet_lite = pytest.importorskip("efficientnet_lite_pytorch")
    net = efficientnet_lite.EfficientNet.from_name("efficientnet-lite0")
    steps = randomisation_steps(net)
    assert len(steps) == 10 and steps[0][0] == ("_fc",) and steps[-1][0] == ("_bn0", "_conv_stem")
    assert sum(len(modules) for _, modules in steps) == len(metrics.parameterised_modules(net))


def test_named_layers_make_one_step_each(smooth_model, small_images):
    steps = randomisation_check(smooth_model, small_images, "gradient", layers=["body.7", "body"])
    assert [s.layers for s in steps] == [("body.7",), ("body",)]
    assert steps[1].modules == ("body.3", "body.1", "body.0")


@pytest.mark.parametrize(
    "settings, words",
    [({"layers": ["head"]}, "layers"), ({"layers": 0}, "layers"), ({"seed": -1}, "seed"),
     ({"samples": 0}, "samples"), ({"method": "gradcam"}, "unknown method")],
)
def test_bad_randomisation_inputs_are_refused_before_any_pass(settings, words, smooth_model, small_images, monkeypatch):
    monkeypatch.setattr(passes, "forward_with_graph", lambda *a, **k: pytest.fail("a pass ran"))
    settings = {"method": "smoothgrad", **settings}
    with pytest.raises(ValueError, match=words):
        randomisation_check(smooth_model, small_images, **settings)


def test_a_cancelling_progress_callback_stops_the_randomisation(smooth_model, small_images):
    def cancel(done, total):
        raise passes.Cancelled()

    with pytest.raises(passes.Cancelled):
        randomisation_check(smooth_model, small_images, "gradient", progress=cancel)
