"""LIME and Kernel SHAP over SLIC superpixels: exactness on linear models, efficiency, and Captum."""

from __future__ import annotations

import pytest
import torch

import engines
from engines.core.fills import fill_image
from engines.families import surrogate


def segment_values(saliency: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The one value each segment's pixels share in a map `(H, W)`, `(M,)`; fails if they differ."""
    values = []
    for j in range(int(labels.max()) + 1):
        inside = saliency[labels == j]
        torch.testing.assert_close(inside, inside[:1].expand_as(inside))
        values.append(inside[0])
    return torch.stack(values)


def linear_coefficients(model, x, labels, target, baseline):
    """For f linear in the pixels, f(x on z, baseline elsewhere) = f(baseline) + Σ_j z_j c_j with
    c_j = W_target · ((x − baseline) on segment j): the coefficients both methods must find."""
    weight = model.fc.weight[target].reshape(x.shape[1:])  # (C, H, W)
    delta = (x[0] - fill_image(x, baseline)[0]) * weight
    return torch.stack([delta[:, labels == j].sum() for j in range(int(labels.max()) + 1)])


@pytest.mark.parametrize("name, extra", [("lime", {"ridge": 0.0}), ("kernel_shap", {})])
def test_on_a_model_linear_in_the_superpixels_both_recover_its_coefficients(name, extra, linear_model, small_images):
    """A linear model is exactly linear in the superpixel indicators: the fit returns its coefficients."""
    x = small_images[:1]
    settings = dict(n_segments=6, compactness=1.0, samples=200, baseline="grey", **extra)
    result = engines.explain(linear_model, x, name, target=3, **settings)
    labels = surrogate.superpixels(x, 6, 1.0)[0]
    assert int(labels.max()) + 1 >= 3
    torch.testing.assert_close(segment_values(result.map[0], labels),
                               linear_coefficients(linear_model, x, labels, 3, "grey"), rtol=1e-4, atol=1e-5)


def test_kernel_shap_sums_to_the_score_change_from_the_baseline(smooth_model, small_images):
    """Efficiency: Σ φ = f(x) − f(baseline) for each image of a nonlinear model, even with few samples."""
    result = engines.explain(smooth_model, small_images, "kernel_shap", n_segments=8, samples=20, baseline="black")
    labels = surrogate.superpixels(small_images, 8, 10.0)
    logits = engines.predict(smooth_model, torch.cat([small_images, torch.zeros_like(small_images)])).logits
    for n in range(len(small_images)):
        change = logits[n, result.target[n]] - logits[len(small_images) + n, result.target[n]]
        torch.testing.assert_close(segment_values(result.map[n], labels[n]).sum(), change, rtol=1e-4, atol=1e-5)


def test_the_segmentation_settings_change_the_superpixels(small_images):
    """More segments asked, more segments cut; labels run 0 … M − 1 without gaps."""
    few, many = surrogate.superpixels(small_images, 2, 10.0), surrogate.superpixels(small_images, 30, 10.0)
    for labels in (few, many):
        for image in labels:
            assert torch.equal(image.unique(), torch.arange(int(image.max()) + 1))
    assert int(many[0].max()) > int(few[0].max())


def test_kernel_shaps_sample_sizes_follow_the_shapley_kernel():
    """Coalition sizes are drawn ∝ (M − 1) / (k (M − k)): the empirical frequencies match."""
    z = surrogate.kernel_shap_samples(6, 20002, seed=0)
    assert z[0].all() and not z[1].any()
    sizes = torch.bincount(z[2:].sum(1), minlength=6)[1:6].double() / 20000
    torch.testing.assert_close(sizes, surrogate.shapley_size_probabilities(6), atol=0.01, rtol=0)


def test_lime_weights_are_limes_image_kernel():
    """π(z) = √exp(−d²/σ²), d = 1 − cos(z, 1): 1 for the whole image, exp(−1/(2σ²)) for nothing shown."""
    z = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    d = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(surrogate.lime_kernel(z, 0.25), torch.exp(-d**2 / 0.0625).sqrt())


@pytest.fixture(scope="module")
def shapes():
    return engines.load_model("shapes_cnn", device="cpu")


@pytest.fixture(scope="module")
def star(shapes):
    return shapes.preprocess(engines.read_image(engines.sample_images()["shapes_star"]))


def _captum(name, model, x, target, settings):
    peer = next(p for p in engines.method_info(name).peers if p.library == "captum")
    full = engines.method_info(name).settings(settings)
    return peer.to_map(peer.build(model, x, target, full, 32)(), full)


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_captum_given_the_same_samples_computes_the_same_map(name, shapes, star):
    """Same result: Captum's Lime (our kernel and ridge as its similarity and model) and KernelShap,
    fed our samples through their perturb_func, with our superpixels as the feature mask, fit the
    same regression. (KernelShap pins its end points with weight 10⁶ where we constrain exactly.)"""
    pytest.importorskip("captum")
    settings = {"n_segments": 12, "samples": 150}
    ours = engines.explain(shapes, star, name, target=4, **settings).map
    theirs = _captum(name, shapes.model, star, 4, settings)
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=0, atol=(1e-4 if name == "lime" else 1e-3) * scale)


def test_kernel_shap_ranks_the_superpixels_as_captums_own_sampling_does(shapes, star):
    """Same ranking: with Captum's own random sampler (which cannot be seeded apart from torch's
    global generator, so the samples differ), Kernel SHAP at 600 samples orders the superpixels
    as ours does (Spearman ≥ 0.9)."""
    pytest.importorskip("captum")
    from captum.attr import KernelShap
    from scipy.stats import spearmanr

    settings = {"n_segments": 10, "samples": 600, "baseline": "mean"}
    ours = engines.explain(shapes, star, "kernel_shap", target=4, **settings).map[0]
    labels = surrogate.superpixels(star, 10, 10.0)[0]
    torch.manual_seed(0)
    theirs = KernelShap(shapes.model).attribute(star, baselines=fill_image(star, "mean"), target=4,
                                                feature_mask=labels[None, None], n_samples=600,
                                                perturbations_per_eval=64)[0, 0]
    rho = spearmanr(segment_values(ours, labels).numpy(), segment_values(theirs, labels).numpy()).statistic
    assert rho >= 0.9


def test_a_bad_segmentation_setting_names_itself(smooth_model, small_images):
    with pytest.raises(ValueError, match="n_segments"):
        engines.explain(smooth_model, small_images, "lime", n_segments=0)
