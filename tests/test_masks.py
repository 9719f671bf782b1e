"""Mask-optimised maps (docs/methods.md §4): OISE and extremal perturbation, on models whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import engines
from engines.core import passes
from engines.families.masks import flip_cells, mean_colour, oise_map, rise_upsample
from engines.models.catalogue import Normalised, freeze
from helpers import count_forward_points

SIZE = 32
ROWS, COLS = slice(8, 16), slice(16, 24)  # region A: 8×8 pixels, 1/16 of the image


def checkerboard(size: int = SIZE) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((i + j) % 2 * 2 - 1).float()  # (H, W), ±1


class PlantedModel(nn.Module):
    """Two classes. Class 0's logit is 25 × the checkerboard contrast inside region A, − 5: only
    A's fine texture matters, and blurring or greying A removes it. Class 1's logit is 0."""

    def __init__(self):
        super().__init__()
        region = torch.zeros(SIZE, SIZE)
        region[ROWS, COLS] = 1
        self.register_buffer("region", region)
        self.register_buffer("weight", checkerboard() * region / region.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        signal = (x.mean(dim=1) * self.weight).sum(dim=(1, 2))  # (N,)
        return torch.stack([25 * signal - 5, torch.zeros_like(signal)], dim=1)


class ConstantModel(nn.Module):
    """Equal logits for every input: the target probability is always 1/2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((len(x), 2), device=x.device)


@pytest.fixture
def planted() -> nn.Module:
    return freeze(PlantedModel())


@pytest.fixture
def textured() -> torch.Tensor:
    """A checkerboard texture (0.1 / 0.9) over the whole image: class 0 with logit 5."""
    return (0.5 + 0.4 * checkerboard()).expand(1, 3, SIZE, SIZE).clone()


def mass_inside(saliency: torch.Tensor, region: torch.Tensor) -> float:
    return float((saliency * region).sum() / saliency.sum())


# --------------------------------------------------------------------------- OISE


def test_oise_is_deterministic_for_a_seed(smooth_model, small_images):
    a = engines.explain(smooth_model, small_images, "oise", queries=64, chains=8, seed=5)
    b = engines.explain(smooth_model, small_images, "oise", queries=64, chains=8, seed=5)
    torch.testing.assert_close(a.map, b.map)


def test_oise_differs_across_seeds(smooth_model, small_images):
    a = engines.explain(smooth_model, small_images, "oise", queries=64, chains=8, seed=0)
    b = engines.explain(smooth_model, small_images, "oise", queries=64, chains=8, seed=1)
    assert not torch.allclose(a.map, b.map)


def test_oise_map_is_in_unit_range_with_maximum_one(smooth_model, small_images):
    result = engines.explain(smooth_model, small_images, "oise", queries=64, chains=8)
    assert torch.isfinite(result.map).all() and (result.map >= 0).all()
    torch.testing.assert_close(result.map.amax(dim=(1, 2)), torch.ones(3))


def test_oise_map_of_an_empty_accumulator_is_zero_not_nan():
    torch.testing.assert_close(oise_map(torch.zeros(2, 4, 4), 0.96), torch.zeros(2, 4, 4))
    torch.testing.assert_close(oise_map(torch.full((2, 4, 4), 3.0), 1.0), torch.zeros(2, 4, 4))


def test_oise_map_keeps_what_exceeds_kappa_times_the_mean():
    counts = torch.tensor([[[0.0, 1.0], [2.0, 5.0]]])  # mean 2
    expected = torch.tensor([[[0.0, 0.0], [0.2, 3.2]]]) / 3.2  # max(S − 0.9·2, 0) / max
    torch.testing.assert_close(oise_map(counts, 0.9), expected)


def test_rise_upsampling_matches_a_bilinear_resize_then_crop():
    """RISE: bilinear to (s+1)·⌈H/s⌉, crop H×W at the shift. PIL's bilinear resize is the oracle."""
    cells = torch.rand((1, 1, 5, 5), generator=torch.Generator().manual_seed(0))
    height, width = 23, 17  # cells of ⌈23/5⌉ = 5 by ⌈17/5⌉ = 4 pixels: upsampled to 30 × 24
    full = np.asarray(Image.fromarray(cells[0, 0].numpy(), mode="F").resize((24, 30), Image.BILINEAR))
    for dy, dx in [(0, 0), (3, 2), (4, 3)]:
        ours = rise_upsample(cells, (height, width), torch.tensor([[dy, dx]]))
        assert ours.shape == (1, 1, height, width)
        np.testing.assert_allclose(ours[0, 0].numpy(), full[dy : dy + height, dx : dx + width], atol=1e-6)


def test_rise_upsampled_masks_are_image_sized_and_in_unit_range():
    generator = torch.Generator().manual_seed(0)
    cells = (torch.rand((6, 2, 8, 8), generator=generator) < 0.3).float()
    shifts = torch.randint(0, 28, (6, 2), generator=generator)
    masks = rise_upsample(cells, (224, 224), shifts)
    assert masks.shape == (6, 2, 224, 224)
    assert masks.min() >= 0 and masks.max() <= 1
    constant = rise_upsample(torch.full((3, 1, 8, 8), 0.7), (50, 40), torch.tensor([[0, 0], [6, 4], [3, 1]]))
    torch.testing.assert_close(constant, torch.full((3, 1, 50, 40), 0.7))


def test_with_probability_one_no_cell_ever_flips():
    generator = torch.Generator().manual_seed(0)
    start = (torch.rand((4, 2, 8, 8), generator=generator) < 0.3).float()
    cells = start
    for _ in range(20):
        cells = flip_cells(cells, torch.ones(4, 2), torch.rand((4, 8, 8), generator=generator))
    torch.testing.assert_close(cells, start)


def test_with_probability_zero_every_cell_flips_each_step():
    generator = torch.Generator().manual_seed(0)
    cells = (torch.rand((4, 2, 8, 8), generator=generator) < 0.3).float()
    for _ in range(5):
        flipped = flip_cells(cells, torch.zeros(4, 2), torch.rand((4, 8, 8), generator=generator))
        torch.testing.assert_close(flipped, 1 - cells)
        cells = flipped


def test_cells_flip_with_probability_one_minus_p():
    generator = torch.Generator().manual_seed(0)
    cells = torch.zeros((2000, 1, 8, 8))
    flipped = flip_cells(cells, torch.full((2000, 1), 0.25), torch.rand((2000, 8, 8), generator=generator))
    assert flipped.mean().item() == pytest.approx(0.75, abs=0.01)


def test_the_eta_term_acts_only_when_the_probability_changes(small_images):
    """With p constant, |Δp| = 0, so η changes nothing."""
    model = ConstantModel()
    a = engines.explain(model, small_images, "oise", queries=64, chains=8, eta=0.0)
    b = engines.explain(model, small_images, "oise", queries=64, chains=8, eta=0.5)
    torch.testing.assert_close(a.map, b.map)


def test_oise_finds_the_planted_region(planted, textured):
    result = engines.explain(planted, textured, "oise")
    region = planted.region
    assert region.flatten()[result.map[0].argmax()] == 1
    assert mass_inside(result.map[0], region) > 3 * region.mean().item()


def test_oise_runs_one_batched_pass_per_step(smooth_model, small_images, monkeypatch):
    calls = count_forward_points(monkeypatch)
    engines.explain(smooth_model, small_images, "oise", queries=64, chains=8)
    assert calls == [8] * 8  # steps = queries / chains, each one pass over the chains
    calls.clear()
    engines.explain(smooth_model, small_images, "oise", queries=70, chains=8)
    assert calls == [8] * 8  # the budget is rounded down to a multiple of chains


def test_oise_cost_is_its_queries():
    info = engines.method_info("oise")
    assert info.cost({"queries": 512, "chains": 32}).forward == 512 + 1  # the clean pass is counted too
    assert info.cost({"queries": 512, "chains": 32}).backward == 0


def test_the_baseline_is_the_models_mean_colour_when_it_has_one(small_images):
    wrapped = Normalised(nn.Identity(), (0.2, 0.4, 0.6), (1.0, 1.0, 1.0))
    torch.testing.assert_close(mean_colour(wrapped, small_images), torch.tensor([0.2, 0.4, 0.6]).reshape(1, 3, 1, 1).expand(3, -1, -1, -1))
    torch.testing.assert_close(mean_colour(nn.Identity(), small_images), small_images.mean(dim=(2, 3), keepdim=True))


def test_oise_progress_reports_the_whole_budget(smooth_model, small_images):
    seen = []
    engines.explain(smooth_model, small_images, "oise", queries=64, chains=8, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (64, 64) and all(t == 64 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize("method, settings", [("oise", {"queries": 64, "chains": 8}), ("extremal", {"iterations": 10})])
def test_a_cancelling_callback_stops_the_run(method, settings, smooth_model, small_images):
    def cancel(done, total):
        if done >= 2:
            raise passes.Cancelled()

    with pytest.raises(passes.Cancelled):
        engines.explain(smooth_model, small_images, method, progress=cancel, **settings)


@pytest.mark.parametrize(
    "method, settings, words",
    [
        ("oise", {"queries": 0}, "queries"),
        ("oise", {"queries": -5}, "queries"),
        ("oise", {"queries": 8, "chains": 16}, "chains"),
        ("oise", {"grid": 1}, "grid"),
        ("oise", {"grid": 9}, r"grid must be an integer in \[2, 8\]"),  # larger than the 8×8 images
        ("oise", {"kappa": 0.5}, "kappa"),
        ("extremal", {"area": 0.0}, "area"),
        ("extremal", {"area": 1.0}, "area"),
        ("extremal", {"area": 1.5}, "area"),
        ("extremal", {"iterations": 0}, "iterations"),
        ("extremal", {"variant": "dual"}, "variant"),
    ],
)
def test_bad_settings_name_the_parameter(method, settings, words, smooth_model, small_images):
    with pytest.raises(ValueError, match=words):
        engines.explain(smooth_model, small_images, method, **settings)


# --------------------------------------------------------------------------- extremal perturbation


def test_extremal_preserve_finds_the_planted_region(planted, textured):
    result = engines.explain(planted, textured, "extremal", iterations=100)
    region = planted.region
    assert region.flatten()[result.map[0].argmax()] == 1
    assert mass_inside(result.map[0], region) > 3 * region.mean().item()


def test_extremal_delete_marks_what_destroys_the_score(planted, textured):
    result = engines.explain(planted, textured, "extremal", iterations=100, variant="delete")
    assert mass_inside(result.map[0], planted.region) > 3 * planted.region.mean().item()


@pytest.mark.parametrize("area", [0.1, 0.3])
def test_extremal_mask_covers_the_asked_area(area, planted, textured):
    result = engines.explain(planted, textured, "extremal", iterations=100, area=area)
    assert result.map.mean().item() == pytest.approx(area, abs=0.03)
    assert (result.map > 0.5).float().mean().item() == pytest.approx(area, abs=0.05)


def test_extremal_is_deterministic(smooth_model, small_images):
    a = engines.explain(smooth_model, small_images, "extremal", iterations=10)
    b = engines.explain(smooth_model, small_images, "extremal", iterations=10)
    torch.testing.assert_close(a.map, b.map)


@pytest.mark.parametrize("frozen", [True, False])
def test_extremal_never_changes_the_model(frozen, small_images):
    from tests.conftest import SmoothCNN

    model = SmoothCNN().eval()
    if frozen:
        freeze(model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    engines.explain(model, small_images, "extremal", iterations=5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p in model.parameters():
        assert p.grad is None and p.requires_grad is (not frozen)
    assert not model.training


def test_extremal_reports_progress_every_iteration(smooth_model, small_images):
    seen = []
    engines.explain(smooth_model, small_images, "extremal", iterations=7, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 7) for i in range(1, 8)]


# --------------------------------------------------------------------------- RISE


def test_rise_equals_torchrays_rise_on_the_same_masks(smooth_model, small_images):
    """TorchRay given our masks (filter_masks), u = x − b and a model scoring logit(softmax), computes
    Σ p_i M_i / N: our map times p."""
    from torchray.attribution.rise import rise_class

    from engines.families.masks import _LogitOfProbability, mean_colour, rise_masks

    settings = {"masks": 24, "grid": 3, "p_on": 0.4, "seed": 5}
    ours = engines.explain(smooth_model, small_images, "rise", target=1, **settings).map
    masks = rise_masks(settings["seed"], settings["masks"], settings["grid"], settings["p_on"], (8, 8))
    baseline = mean_colour(smooth_model, small_images)
    for i in range(len(small_images)):
        adapted = _LogitOfProbability(smooth_model, baseline[i : i + 1])
        theirs = rise_class(adapted, small_images[i : i + 1] - baseline[i : i + 1], target=[1], num_masks=24,
                            num_cells=3, p=0.4, filter_masks=masks[:, None], batch_size=7)
        torch.testing.assert_close(ours[i] * settings["p_on"], theirs[0, 0], atol=1e-5, rtol=1e-4)


class _LeftHalf(nn.Module):
    """Class 0's logit is 4 × (the mean of the top-left quadrant − 0.5); class 1's is 0."""

    def forward(self, x):
        score = 4 * (x[:, :, :8, :8].mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_the_torchray_rise_peer_estimates_the_same_map():
    """With their own masks the estimator is the same: many masks bring both maps together."""
    info = engines.method_info("rise")
    model = _LeftHalf()
    x = torch.full((1, 3, 16, 16), 0.1)
    x[..., :8, :8] = 0.9  # bright where the model looks; the baseline is the mean colour
    settings = info.settings({"masks": 3000, "grid": 4})
    peer = info.peers[0]
    theirs = peer.to_map(peer.build(model, x, 0, settings, 500)(), settings)
    ours = engines.explain(model, x, "rise", target=0, **settings).map
    assert torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1] > 0.9


def test_rise_with_every_cell_on_is_the_clean_probability_everywhere(smooth_model, small_images):
    """p = 1: every mask shows the whole image, so the map is f_c(x) at every pixel."""
    result = engines.explain(smooth_model, small_images, "rise", target=0, masks=5, grid=2, p_on=1.0)
    clean = engines.predict(smooth_model, small_images).probabilities[:, 0]
    torch.testing.assert_close(result.map, clean[:, None, None].expand_as(result.map))


# --------------------------------------------------------------------------- extremal against TorchRay


def test_extremal_area_target_is_torchrays_reference_vector():
    """TorchRay's sorted reference: ⌊n·(1 − a)⌋ zeros, then ones; ours the same for every area."""
    from engines.families.masks import area_reference

    for pixels, area in [(1024, 0.1), (4096, 0.05), (1000, 0.33)]:
        theirs = torch.ones(pixels)
        theirs[: int(pixels * (1 - area))] = 0
        torch.testing.assert_close(area_reference(pixels, area, torch.device("cpu")), theirs)


def test_extremal_and_torchrays_extremal_perturbation_agree_on_the_planted_region(planted, textured):
    """At the same area, variant and iterations, our mask and TorchRay's (its own optimiser) put
    most of their mass on region A, and their maps correlate."""
    info = engines.method_info("extremal")
    settings = info.settings({"area": 0.08, "iterations": 400})  # TorchRay's learning rate needs a few hundred
    peer = info.peers[0]
    theirs = peer.to_map(peer.build(planted, textured, 0, settings, None)(), settings)
    ours = engines.explain(planted, textured, "extremal", target=0, **settings).map
    for saliency in (ours[0], theirs[0]):
        assert mass_inside(saliency, planted.region) > 5 * planted.region.mean().item()
    assert torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1] > 0.6


def test_the_first_extremal_step_seeds_the_mask_by_the_rewards_gradient():
    from engines.families.masks import seeded_parameters

    gradient = torch.tensor([[[[0.0, 1.0], [3.0, -1.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    seeded = seeded_parameters(gradient)
    torch.testing.assert_close(seeded[0, 0], torch.tensor([[0.625, 0.75], [1.0, 0.5]]))
    torch.testing.assert_close(seeded[1], torch.full((1, 2, 2), 0.5))  # a flat gradient: no order, all 0.5
